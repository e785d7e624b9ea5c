/*
 * workpool.h — runs the expensive part of a call (an Argon2id hash) on a
 * few dedicated threads, so the rpc worker threads never wait for it and
 * cheap calls (Validate, which every other service makes) stay fast during
 * a login storm.
 *
 * A handler hands its call over with workpool_defer and returns what that
 * returns (RPC_DEFERRED, or RESOURCE_EXHAUSTED when the queue is full). The
 * job runs on a pool thread, and its return code finishes the call. The
 * queue is bounded. Locking is internal.
 */
#ifndef PARLEY_WORKPOOL_H
#define PARLEY_WORKPOOL_H

#include "server.h"

typedef struct workpool workpool;

/* The job: fills rpc_call_response(call) or fails it; returns the code.
 * arg is freed by free_arg (may be NULL) after the call is finished. */
typedef rpc_code (*workpool_fn)(rpc_call *call, void *arg);

workpool *workpool_new(int threads, int queue_max);

/* Takes ownership of arg in every case. */
rpc_code workpool_defer(workpool *p, rpc_call *call, workpool_fn fn, void *arg,
			void (*free_arg)(void *));

/* Runs every queued job to the end, then joins the threads and frees. */
void workpool_stop(workpool *p);

#endif

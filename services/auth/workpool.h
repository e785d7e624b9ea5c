/*
 * workpool.h — runs the expensive part of a call (an Argon2id hash) on a
 * few dedicated threads, so the rpc worker threads never wait for it and
 * cheap calls (Validate, which every other service makes) stay fast during
 * a login storm.
 *
 * A handler hands its call over with workpool_defer and returns what that
 * returns (RPC_DEFERRED, or RESOURCE_EXHAUSTED when the queue is full). The
 * job runs on a pool thread, and its return code finishes the call.
 *
 * The queue is bounded (queue_max jobs waiting; a deferred call keeps its
 * rpc call slot, so the owner sizes it well below the slots) and fair:
 * each job names its flow (the caller's address), and the threads take
 * one job per waiting flow in turn, so one client with many jobs queued
 * delays another client's job by at most one job of its own per thread.
 * Locking is internal.
 */
#ifndef PARLEY_WORKPOOL_H
#define PARLEY_WORKPOOL_H

#include "server.h"

typedef struct workpool workpool;

/* The job: fills rpc_call_response(call) or fails it; returns the code.
 * arg is freed by free_arg (may be NULL) after the call is finished. */
typedef rpc_code (*workpool_fn)(rpc_call *call, void *arg);

/* NULL when threads or memory are missing. */
workpool *workpool_new(int threads, int queue_max);

/* Queues fn(call, arg) behind the other jobs of flow (at most
 * RPC_PEER_MAX - 1 bytes are compared). Takes ownership of arg in every
 * case. RPC_DEFERRED, or RESOURCE_EXHAUSTED (call failed, retry_after_ms
 * set) when the queue is full or the pool stops. */
rpc_code workpool_defer(workpool *p, rpc_call *call, const char *flow, workpool_fn fn,
			void *arg, void (*free_arg)(void *));

/* Runs every queued job to the end, then joins the threads and frees. */
void workpool_stop(workpool *p);

#endif

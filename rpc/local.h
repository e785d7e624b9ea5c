/*
 * local.h — in-process calls, between server.c and client.c only.
 *
 * A started server registers under the URL it listens on. An rpc_client
 * whose URL is exactly that one, in the same process, calls the server
 * directly: the same envelope, checks, authenticator, handlers, deadlines
 * and statuses as over the socket, run on the caller's thread with no
 * socket and no thread hand-off. This is what lets the services of one
 * parleyd call each other at the cost of a function call, while the same
 * code talks tcp between hosts of a cluster.
 */
#ifndef PARLEY_RPC_LOCAL_H
#define PARLEY_RPC_LOCAL_H

#include <nng/nng.h>

#include "server.h"

/* The started server listening on url in this process, pinned so that it
 * cannot close until rpc_local_release; NULL if there is none. */
rpc_server *rpc_local_acquire(const char *url);
void rpc_local_release(rpc_server *srv);

/* Runs one call on srv, pinned by rpc_local_acquire: the pin is released
 * once the handler has returned (a deferred reply needs no server).
 * request (a packed RpcRequest) is consumed; on RPC_OK *reply is the
 * packed RpcResponse, to free with nng_msg_free. Fails only when no answer
 * came by deadline_ms (DEADLINE_EXCEEDED) or memory ran out; every status
 * of the call itself travels in the reply. */
rpc_code rpc_local_call(rpc_server *srv, nng_msg *request, int64_t deadline_ms,
			nng_msg **reply, rpc_status *st);

#endif

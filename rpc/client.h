/*
 * client.h — blocking RPC calls over an nng REQ socket.
 *
 * One rpc_client per server address. It dials in the background and
 * redials after the server restarts. rpc_client_call is safe to use from
 * many threads at once: each call has its own nng context.
 *
 * When a server of this same process listens on exactly this url, calls go
 * to it directly on the calling thread (see local.h), with the same checks
 * and statuses; this is how the services inside one parleyd talk.
 */
#ifndef PARLEY_RPC_CLIENT_H
#define PARLEY_RPC_CLIENT_H

#include "rpc.h"

typedef struct rpc_client rpc_client;

typedef struct rpc_call_opts {
	uint32_t timeout_ms;	/* 0 = RPC_DEFAULT_TIMEOUT_MS */
	int64_t deadline_ms;	/* monotonic; if set, the call ends by then (min with timeout) */
	const char *token;	/* sent as "authorization: Bearer <token>" if not NULL */
	const char *peer;	/* sent as metadata "peer" if not NULL: the address of the
				 * end client a gateway calls for (trusted in-process only) */
	/* The call is idempotent: if the connection carrying it drops before
	 * the answer, send it again on the next connection, within the
	 * deadline. false (the default): a dropped connection fails the call
	 * UNAVAILABLE, saying it may have taken effect; it is never sent twice. */
	bool resend;
} rpc_call_opts;

/* Opens a client for url (e.g. "tcp://127.0.0.1:5201"). Does not wait for
 * the server to be up. A TLS url (tls+tcp://, wss://) is dialled with the
 * process's TLS setting (tls.h). */
int rpc_client_open(rpc_client **clip, const char *url, rpc_status *st);
void rpc_client_close(rpc_client *cli);
const char *rpc_client_url(const rpc_client *cli);
/* True when the server at the client's URL runs in this process (its calls
 * are function calls, see local.h); once true, true for good. */
bool rpc_client_is_local(rpc_client *cli);

/*
 * Calls method (its name in svc, e.g. "Login") with req and waits for the
 * answer. On RPC_OK *resp holds the decoded reply, owned by the caller:
 * free it with protobuf_c_message_free_unpacked(*resp, NULL). On failure
 * *resp is NULL and st says why. A server with no connection up gets
 * RPC_CONNECT_GRACE_MS to (re)connect, then the call fails UNAVAILABLE
 * without waiting out its timeout, or FAILED_PRECONDITION when a TLS check
 * keeps the connection down; the message says which (rpc_tls_diagnose). A
 * call that outlives its timeout gets DEADLINE_EXCEEDED.
 */
rpc_code rpc_client_call(rpc_client *cli, const ProtobufCServiceDescriptor *svc,
			 const char *method, const ProtobufCMessage *req,
			 ProtobufCMessage **resp, const rpc_call_opts *opts, rpc_status *st);

/* The same with a raw body and a raw reply body (malloc'd, caller frees);
 * for tests and tools that speak for methods they were not built with. */
rpc_code rpc_client_call_raw(rpc_client *cli, const char *full_method, const void *body,
			     size_t len, void **reply, size_t *reply_len,
			     const rpc_call_opts *opts, rpc_status *st);

#endif

/*
 * server.h — an RPC endpoint: one nng REP socket served through many nng
 * contexts at once, so a slow call never blocks a fast one.
 *
 * A service registers its protobuf-c ServiceDescriptor and a table of
 * handlers, one per method in descriptor order; dispatch looks the method up
 * in the descriptor (no switch on names). Before a handler runs, the runtime
 * has: checked the frame size, decoded the envelope and the body, checked
 * every string for UTF-8, refused requests whose deadline passed, and, for
 * methods marked RPC_AUTH_REQUIRED, resolved the bearer token to a user id
 * through the server's authenticator. Every endpoint also serves
 * parley.v1.Health/Check.
 *
 * Threads: nng's callbacks only queue calls; a pool of worker threads runs
 * the handlers. Handlers may block (they may call other services) and run
 * concurrently: a service's own state needs its own locks.
 *
 * Budgets: `contexts` calls are received and run at once; calls handed to
 * another thread (deferred) have a budget of their own, so that cheap calls
 * always find a context however many slow ones wait. Connections are
 * capped as rpc_limits says (rpc.h, conns.h): one peer cannot hold an
 * endpoint, and a peer that does not read its replies is cut off.
 */
#ifndef PARLEY_RPC_SERVER_H
#define PARLEY_RPC_SERVER_H

#include "rpc.h"

typedef struct rpc_server rpc_server;
typedef struct rpc_call rpc_call;

/*
 * A handler reads req and fills resp (already initialised for the method's
 * output type). Memory hung off resp must outlive the handler: take it from
 * rpc_call_alloc / rpc_call_strdup, which the runtime frees after the reply
 * is sent, or use static storage. Return RPC_OK, an error code (after
 * rpc_call_fail for a message), or RPC_DEFERRED to answer later with
 * rpc_call_finish from any thread: then rpc_call_defer must have succeeded
 * BEFORE the call was handed to the other thread, and the handler must not
 * touch the call after the hand-off (the other thread may have finished it
 * and its slot may serve another call already).
 */
typedef rpc_code (*rpc_handler_fn)(rpc_call *call, const ProtobufCMessage *req,
				   ProtobufCMessage *resp, void *svc_ctx);

typedef enum rpc_auth {
	RPC_AUTH_NONE = 0,	/* anyone may call */
	RPC_AUTH_REQUIRED = 1,	/* a valid bearer token, else UNAUTHENTICATED */
} rpc_auth;

typedef struct rpc_method {
	rpc_handler_fn fn;
	rpc_auth auth;
} rpc_method;

/*
 * Resolves a bearer token to a user id (at most RPC_USER_ID_MAX-1 bytes).
 * Returns RPC_OK, or a code with st set: UNAUTHENTICATED for a bad token,
 * UNAVAILABLE when the auth service cannot be reached before deadline_ms
 * (monotonic). Called from worker threads concurrently.
 */
typedef rpc_code (*rpc_authn_fn)(void *ctx, const char *token, int64_t deadline_ms,
				 char user_id[RPC_USER_ID_MAX], rpc_status *st);

typedef struct rpc_server_opts {
	int contexts;	/* calls received and run at once (default 256) */
	int deferred;	/* deferred calls waiting at once, on top (default: contexts) */
	int workers;	/* handler threads (default 16) */
	const char *name; /* for log lines, e.g. "auth" */
} rpc_server_opts;

/* Creates a server listening on url. opts may be NULL. A TLS url
 * (tls+tcp://, wss://) uses the process's TLS setting (tls.h) and fails
 * INVALID_ARGUMENT without a certificate. */
int rpc_server_open(rpc_server **srvp, const char *url, const rpc_server_opts *opts,
		    rpc_status *st);

/* methods has svc->n_methods entries, in the descriptor's order; a NULL fn
 * answers UNIMPLEMENTED. Call before rpc_server_start. */
int rpc_server_add_service(rpc_server *srv, const ProtobufCServiceDescriptor *svc,
			   const rpc_method *methods, void *svc_ctx);

/* Call before rpc_server_start. */
void rpc_server_set_authenticator(rpc_server *srv, rpc_authn_fn fn, void *ctx);

/* Starts receiving. */
int rpc_server_start(rpc_server *srv, rpc_status *st);

/* Stops taking new calls and waits until every call in flight has been
 * answered, except deferred ones: their owner finishes them next (it can
 * tell by rpc_server_stopping). Health/Check answers NOT_SERVING from the
 * start. Calls keep being served until none has arrived for
 * RPC_SHUTDOWN_QUIET_MS (at most RPC_SHUTDOWN_SETTLE_MS), so that none
 * already on its way is turned away; calls arriving after that are
 * answered UNAVAILABLE (retry_after_ms RPC_SHUTDOWN_RETRY_MS), nothing
 * done, until rpc_server_close stops receiving. In-process calls (see
 * local.h) count as calls in flight too. */
void rpc_server_shutdown(rpc_server *srv);

#define RPC_SHUTDOWN_QUIET_MS 200
#define RPC_SHUTDOWN_SETTLE_MS 2000
#define RPC_SHUTDOWN_RETRY_MS 1000
#define RPC_CLOSE_LINGER_MS 100
/* Longest wait for nng to let go of the socket when closing (see server.c). */
#define RPC_CLOSE_BOUND_MS 4000

/*
 * nng_close(sock) (after rpc_tls_forget), waiting at most bound_ms: nng 1.5
 * can leave a close waiting on a pipe's teardown for good (server.c). Past
 * the bound the close goes on in a detached thread and false is returned:
 * whatever the socket's callbacks use must then stay allocated. If it ends
 * later and what is not NULL, "closing WHAT finished late" is logged as
 * who.
 */
bool rpc_close_bounded(nng_socket sock, int bound_ms, const char *who, const char *what);

/* Waits up to drain_ms for the remaining calls to be answered and their
 * replies to go out, closes every connection (replies a peer left unread
 * are dropped), closes the socket and frees the server. Deferred calls
 * still unanswered then are dropped (their clients time out): finish them
 * before. Bounded: after rpc_server_shutdown (which waits for handlers,
 * themselves bounded by their deadlines), at most drain_ms plus
 * RPC_CLOSE_LINGER_MS plus RPC_CLOSE_BOUND_MS; no stalled peer holds it up. */
void rpc_server_close(rpc_server *srv, int drain_ms);

/* True once rpc_server_shutdown has begun: deferred handlers should finish. */
bool rpc_server_stopping(const rpc_server *srv);

/* The authenticated caller's user id, or NULL for RPC_AUTH_NONE methods
 * called without a token. Valid until the call finishes. */
const char *rpc_call_caller(const rpc_call *call);

/*
 * The caller's address without its port, for limits kept per client: an IP
 * address ("127.0.0.1", "::1"; an IPv4-mapped IPv6 address as IPv4), "ipc",
 * "inproc", or "unknown" when the connection is gone or of another kind.
 * For an in-process call (local.h): the IP address in the request's "peer"
 * metadata, which the HTTP face sets to the browser's, else "local". That
 * metadata is trusted on in-process calls and on connections whose peer
 * was verified by mutual TLS (NNG_OPT_TLS_VERIFIED: a certificate of the
 * cluster's CA, e.g. a gateway on another host), never otherwise. Call
 * from the thread that owns the call; valid until the call finishes.
 */
#define RPC_PEER_MAX 48 /* INET6_ADDRSTRLEN and a NUL */
const char *rpc_call_peer(const rpc_call *call);

/* The raw bearer token of the call, or NULL. */
const char *rpc_call_token(const rpc_call *call);

/* The call's deadline, monotonic milliseconds (rpc_now_ms). */
int64_t rpc_call_deadline(const rpc_call *call);

/* The request id the client chose (for log lines). */
uint64_t rpc_call_request_id(const rpc_call *call);

/* Zeroed memory that lives until the reply is sent. Never NULL (aborts on
 * out-of-memory like the rest of the process would). */
void *rpc_call_alloc(rpc_call *call, size_t size);
char *rpc_call_strdup(rpc_call *call, const char *s);

/* The call carries secrets (a password, a new token): once its reply is
 * built, before the memory is freed, the runtime zeroes the request frame,
 * the envelope's copy of the body and everything in the call's arena (the
 * reply's fields and packed body). The unpacked request is the handler's
 * to wipe (it knows which fields are secret). The reply frame itself
 * belongs to nng once sent and is not wiped. */
void rpc_call_wipe_after_reply(rpc_call *call);

/* Sets the status message of the reply and returns code. */
rpc_code rpc_call_fail(rpc_call *call, rpc_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Puts a prefix (e.g. "messages[3]: ") before the status message a failed
 * check has set, keeping its code; returns that code. */
rpc_code rpc_call_fail_prefix(rpc_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Copies st's code, message and retry hint into the reply; returns its code. */
rpc_code rpc_call_fail_status(rpc_call *call, const rpc_status *st);

/* With RESOURCE_EXHAUSTED: tells the client when trying again makes sense. */
void rpc_call_retry_after(rpc_call *call, uint32_t ms);

/* The response message of a deferred call, to fill before finishing. */
ProtobufCMessage *rpc_call_response(rpc_call *call);

/*
 * Marks the call as answered later, before the handler hands it to another
 * thread: it gives back its place among the `contexts` (a spare slot starts
 * receiving in its place) and counts against the deferred budget instead.
 * Call it under the lock that guards the hand-off, then hand off, then
 * return RPC_DEFERRED. Errors (the call's status is set; return the code,
 * and do not hand the call off): RESOURCE_EXHAUSTED when `deferred` calls
 * already wait (with retry_after_ms) or memory ran out.
 */
__attribute__((warn_unused_result)) rpc_code rpc_call_defer(rpc_call *call);

/* Sends the reply of a call whose handler returned RPC_DEFERRED. Exactly once
 * per deferred call; after it the call must not be touched. */
void rpc_call_finish(rpc_call *call, rpc_code code);

#endif

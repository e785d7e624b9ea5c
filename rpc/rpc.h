/*
 * rpc.h — what the server and the client of the Parley RPC runtime share:
 * the status codes (gRPC's canonical ones), the size limits, and the checks
 * every message from the network passes before code trusts it.
 *
 * The wire format is proto/parley/v1/rpc.proto: one RpcRequest per nng REQ
 * message, one RpcResponse per REP message. Nothing here allocates except
 * where a function says so.
 */
#ifndef PARLEY_RPC_H
#define PARLEY_RPC_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>
#include <protobuf-c/protobuf-c.h>

/* gRPC's canonical codes, same names and numbers as parley.v1.Code. */
typedef enum rpc_code {
	RPC_OK = 0,
	RPC_CANCELLED = 1,
	RPC_UNKNOWN = 2,
	RPC_INVALID_ARGUMENT = 3,
	RPC_DEADLINE_EXCEEDED = 4,
	RPC_NOT_FOUND = 5,
	RPC_ALREADY_EXISTS = 6,
	RPC_PERMISSION_DENIED = 7,
	RPC_RESOURCE_EXHAUSTED = 8,
	RPC_FAILED_PRECONDITION = 9,
	RPC_ABORTED = 10,
	RPC_OUT_OF_RANGE = 11,
	RPC_UNIMPLEMENTED = 12,
	RPC_INTERNAL = 13,
	RPC_UNAVAILABLE = 14,
	RPC_DATA_LOSS = 15,
	RPC_UNAUTHENTICATED = 16,
	/* Not a wire code: a handler that will answer later (see server.h). */
	RPC_DEFERRED = 1000,
} rpc_code;

/* Requests larger than this are refused with RESOURCE_EXHAUSTED. */
#define RPC_MAX_REQUEST (64 * 1024)
/* A server socket drops the connection of a peer sending a frame larger than
 * this (NNG_OPT_RECVMAXSZ); frames between the two limits get an answer. */
#define RPC_MAX_FRAME (4 * RPC_MAX_REQUEST)
/* Clients accept responses up to this size. */
#define RPC_MAX_RESPONSE (16 * 1024 * 1024)
/* A PUB socket's subscribers never send: one that does is cut off past this. */
#define RPC_MAX_PUB_INBOUND 1024
/* A SUB socket drops its publisher on a frame larger than any event. */
#define RPC_MAX_EVENT_FRAME RPC_MAX_FRAME
/* Deadline used when a request carries timeout_ms = 0, and the longest one
 * a server honours. */
#define RPC_DEFAULT_TIMEOUT_MS 30000
#define RPC_MAX_TIMEOUT_MS 120000
/* How long a client call waits for a connection before UNAVAILABLE. */
#define RPC_CONNECT_GRACE_MS 1000
/* Longest user id any service accepts (auth checks the exact rule). */
#define RPC_USER_ID_MAX 64

#define RPC_STATUS_MESSAGE_MAX 256

/*
 * Limits on what one peer can hold of a listening socket (see conns.h).
 * Process-wide: rpc_set_limits before servers and sockets are opened; each
 * field 0 means its default.
 */
typedef struct rpc_limits {
	int max_conns;		/* connections per listening socket (default 4096) */
	int max_per_peer;	/* connections from one IP address (default 512) */
	int max_calls;		/* calls in flight on one connection (default 128) */
	int max_replies;	/* replies left unread before the connection is closed
				 * (default max_calls + 32) */
	size_t max_reply_bytes;	/* bytes of them (default 32 MiB) */
	int idle_ms;		/* a connection with no call this long is closed (300000;
				 * -1: never) */
	int send_timeout_ms;	/* longest wait to hand one reply to a connection (10000) */
} rpc_limits;

/* Descriptors kept for the process's own use (store, logs, outgoing
 * connections) when connection caps are derived from RLIMIT_NOFILE. */
#define RPC_FD_RESERVE 256

/* Sets the process-wide limits (0 fields take defaults). Not thread-safe
 * with servers opening: call at start. */
void rpc_set_limits(const rpc_limits *l);
/* The limits in force, defaults filled in. */
void rpc_get_limits(rpc_limits *l);

/* Raises the soft RLIMIT_NOFILE to the hard limit (nng 1.5 has no cap on
 * connections of its own: descriptors are what runs out). Returns the soft
 * limit now in force. */
long rpc_raise_fd_limit(void);

/* Caps frames a socket accepts (NNG_OPT_RECVMAXSZ: nng 1.5 accepts any size
 * a peer declares, and allocates it). Every nng socket is given one:
 * request/reply sockets their protocol's limit, PUB/SUB ones theirs (a PUB
 * socket discards what it receives, but only after reading it whole).
 * Returns an nng error. */
int rpc_socket_cap(nng_socket sock, size_t max_frame);

typedef struct rpc_status {
	rpc_code code;
	uint32_t retry_after_ms;
	char message[RPC_STATUS_MESSAGE_MAX];
} rpc_status;

/* "INVALID_ARGUMENT" for RPC_INVALID_ARGUMENT; "UNKNOWN_CODE" if out of range. */
const char *rpc_code_name(rpc_code code);

/* Sets st (if not NULL) and returns code, so callers can write
 * `return rpc_status_set(st, RPC_NOT_FOUND, "no room '%s'", id);`. */
rpc_code rpc_status_set(rpc_status *st, rpc_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
rpc_code rpc_status_vset(rpc_status *st, rpc_code code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Translates an nng error where it enters our code. */
rpc_code rpc_code_from_nng(int nng_err);

/* Milliseconds: monotonic (for deadlines) and wall clock (for timestamps). */
int64_t rpc_now_ms(void);
uint64_t rpc_wall_ms(void);

/* Initialises a condition variable that measures CLOCK_MONOTONIC. Every
 * condition variable that is ever waited on with a timeout is made by this
 * (rpc_cond_wait_until requires it). */
void rpc_cond_init(pthread_cond_t *cv);

/* pthread_cond_timedwait until a monotonic deadline (rpc_now_ms) on a cv
 * made by rpc_cond_init; returns
 * at once if it has passed. The caller holds mtx and re-checks its
 * condition after, as with any condition wait. */
void rpc_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mtx, int64_t until_ms);

/* True when buf[0..len) is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF). NUL bytes are valid UTF-8; callers that forbid
 * them check separately. */
__attribute__((warn_unused_result)) bool rpc_utf8_valid(const void *buf, size_t len);

/* Number of code points in a valid UTF-8 string. */
size_t rpc_utf8_length(const char *s);

/* Checks an encoded message of type d before anyone trusts its strings:
 * every string field, in nested messages and map entries too, must be valid
 * UTF-8 without NUL bytes (protobuf-c checks neither, and its C strings
 * would silently end at a NUL). On failure writes the dotted field path
 * into st and returns RPC_INVALID_ARGUMENT. */
__attribute__((warn_unused_result)) rpc_code
rpc_check_wire(const ProtobufCMessageDescriptor *d, const void *buf, size_t len, rpc_status *st);

/* "/parley.v1.Auth/Login" for the Login method of parley.v1.Auth. */
int rpc_full_method(char *buf, size_t len, const ProtobufCServiceDescriptor *svc,
		    const ProtobufCMethodDescriptor *m);

#endif

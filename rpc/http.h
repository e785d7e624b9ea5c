/*
 * http.h — the HTTP face of the RPC runtime: the Connect protocol
 * (connectrpc.com/docs/protocol) over HTTP/1.1 and HTTPS, on libmicrohttpd.
 *
 * A registry of protobuf-c service descriptors, each with the URL of the
 * rpc server that serves it: every method of a registered service is
 * served at POST /<package>.<Service>/<Method>. There is one dispatch
 * path: the body (application/json through rpc_json_decode, or
 * application/proto bytes) is checked with rpc_check_wire and sent with
 * rpc_client_call_raw to the target URL, which is an in-process call when
 * that server runs in this process (local.h: the same envelope, checks,
 * authenticator and statuses as nng) and an nng call otherwise (the
 * gateway). `Authorization: Bearer` is the token, `Connect-Timeout-Ms` the
 * deadline, the client's IP address the "peer" metadata. This module knows
 * descriptors and URLs, nothing of any particular service.
 *
 * Server streams are registered separately (rpc_http_add_stream): a
 * function that runs on a thread of its own for each call and writes
 * messages with rpc_http_stream_send, framed as Connect envelopes
 * (application/connect+json, application/connect+proto) on a chunked
 * HTTP/1.1 response.
 *
 * Limits (each answered with a status and a Connect error body naming
 * it): bodies over RPC_MAX_REQUEST get 413 before they are read (by
 * Content-Length) or as soon as a chunked body passes it; unknown paths
 * 404; wrong verbs 405 with Allow; unknown content types 415; bad JSON,
 * wrong types, unknown fields, invalid UTF-8 400 invalid_argument. A
 * request's headers must arrive within RPC_HTTP_HEADER_TIMEOUT_S of its
 * first byte (or of the connection's opening), and its body within
 * RPC_HTTP_BODY_TIMEOUT_S after them, else the connection is closed (slow
 * loris); a connection idle for RPC_HTTP_IDLE_TIMEOUT_S is closed; at most
 * max_connections connections at once, max_per_ip from one address.
 *
 * Threads: one thread per connection (libmicrohttpd's thread-per-
 * connection mode, bounded by max_connections and a fixed stack size);
 * unary calls run on it, so a slow call never holds up another
 * connection. A stream has one more thread for its function. Registration
 * happens before rpc_http_start; after it the registry is read-only.
 */
#ifndef PARLEY_RPC_HTTP_H
#define PARLEY_RPC_HTTP_H

#include "rpc.h"

typedef struct rpc_http rpc_http;
typedef struct rpc_http_stream rpc_http_stream;

#define RPC_HTTP_HEADER_TIMEOUT_S 10
#define RPC_HTTP_BODY_TIMEOUT_S 30
#define RPC_HTTP_IDLE_TIMEOUT_S 60
#define RPC_HTTP_DEFAULT_MAX_CONNECTIONS 1000
#define RPC_HTTP_DEFAULT_MAX_PER_IP 100
/* Longest bearer token accepted (Parley's are 43 characters). */
#define RPC_HTTP_TOKEN_MAX 256

typedef struct rpc_http_opts {
	/* "http://HOST:PORT" or "https://HOST:PORT"; HOST may be a name, an
	 * IPv4 address or a bracketed IPv6 address. */
	const char *url;
	/* PEM files. https needs cert and key; ca makes every connection
	 * present a client certificate signed by it (mutual TLS). */
	const char *tls_cert;
	const char *tls_key;
	const char *tls_ca;
	unsigned max_connections; /* 0 = RPC_HTTP_DEFAULT_MAX_CONNECTIONS */
	unsigned max_per_ip;	  /* 0 = RPC_HTTP_DEFAULT_MAX_PER_IP */
	const char *name;	  /* for log lines (default "http") */
	const char *version;	  /* reported by GET /healthz, may be NULL */
} rpc_http_opts;

/*
 * Parses opts->url, reads the TLS files and binds the listening socket
 * (nothing is served before rpc_http_start). Errors: INVALID_ARGUMENT for
 * a URL that is not http(s)://HOST:PORT, or https without both
 * certificate and key, or TLS options on http; NOT_FOUND / PERMISSION_DENIED
 * for a TLS file that cannot be read; UNAVAILABLE when the address cannot
 * be bound (the message says why, e.g. "Address in use"); UNIMPLEMENTED
 * when libmicrohttpd was built without TLS.
 */
int rpc_http_open(rpc_http **hp, const rpc_http_opts *opts, rpc_status *st);

/*
 * Serves every method of svc at POST /<svc->name>/<Method> by calling
 * target_url (copied). Errors: ALREADY_EXISTS if svc is registered;
 * RESOURCE_EXHAUSTED past RPC_HTTP_MAX_SERVICES; what rpc_client_open
 * returns for target_url.
 */
#define RPC_HTTP_MAX_SERVICES 16
int rpc_http_add_service(rpc_http *h, const ProtobufCServiceDescriptor *svc,
			 const char *target_url, rpc_status *st);

/*
 * A server stream's body. req is the decoded request (the method's input
 * type), valid while fn runs. fn sends messages of the method's output
 * type with rpc_http_stream_send and returns RPC_OK, or a code with st
 * set: that ends the stream with the Connect end-of-stream message.
 * fn runs on a thread of its own; it must return soon after
 * rpc_http_stream_send failed or its cancel hook ran.
 */
typedef rpc_code (*rpc_http_stream_fn)(rpc_http_stream *s, const ProtobufCMessage *req,
				       void *ctx, rpc_status *st);

/*
 * Serves path (e.g. "/parley.v1.Messaging/Subscribe") as a Connect server
 * stream, instead of a unary call. The path's service must be registered
 * first (its descriptor gives the message types). Errors: NOT_FOUND for a
 * path of no registered service, ALREADY_EXISTS for a path already a
 * stream.
 */
int rpc_http_add_stream(rpc_http *h, const char *path, rpc_http_stream_fn fn, void *ctx,
			rpc_status *st);

/*
 * Sends msg (the method's output type) to the stream's client. Blocks
 * while the previous message is still on its way (so a stream holds one
 * message at a time, whatever the client's speed). Errors: CANCELLED when
 * the client has gone, UNAVAILABLE when the server is shutting down,
 * RESOURCE_EXHAUSTED when memory ran out.
 */
rpc_code rpc_http_stream_send(rpc_http_stream *s, const ProtobufCMessage *msg, rpc_status *st);

/*
 * Registers fn(arg), called at most once, from another thread, as soon as
 * the client goes away or the server shuts down: it should make whatever
 * the stream's function waits on return early. It is never called after
 * the stream's function returned. If the stream is cancelled already, fn
 * runs at once on the calling thread. Pass NULL to remove it; that waits
 * for a hook running at that moment to return.
 */
void rpc_http_stream_on_cancel(rpc_http_stream *s, void (*fn)(void *arg), void *arg);

/* The call's bearer token (NULL if none), client address, and deadline
 * (monotonic ms; 0 = none), valid while the stream's function runs. */
const char *rpc_http_stream_token(const rpc_http_stream *s);
const char *rpc_http_stream_peer(const rpc_http_stream *s);
int64_t rpc_http_stream_deadline(const rpc_http_stream *s);

/*
 * A plain GET handler (the web page, /metrics): fills the reply for path
 * and returns true, or returns false for a path it does not serve (404).
 * body is malloc'd (the runtime frees it) unless static_body is set.
 * Called on connection threads, concurrently.
 */
typedef struct rpc_http_reply {
	unsigned status;	  /* 0 = 200 */
	const char *content_type; /* static string */
	void *body;
	size_t len;
	bool static_body;	  /* body is static storage: do not free */
	/* Optional: the representation's ETag (quoted, static or living as
	 * long as the server). A GET or HEAD whose If-None-Match names it
	 * gets 304 with no body (and the headers below). */
	const char *etag;
	/* Optional: more response headers, name/value pairs ending in NULL,
	 * in static storage (Cache-Control, Content-Security-Policy, ...). */
	const char *const *headers;
} rpc_http_reply;
typedef bool (*rpc_http_get_fn)(void *ctx, const char *path, rpc_http_reply *out);

/* GET and HEAD of every path nothing else serves go to fn (the web page). */
void rpc_http_set_static(rpc_http *h, rpc_http_get_fn fn, void *ctx);
/* GET and HEAD of /metrics go to fn. */
void rpc_http_set_metrics(rpc_http *h, rpc_http_get_fn fn, void *ctx);

/* Starts serving. Errors: INTERNAL when libmicrohttpd cannot start. */
int rpc_http_start(rpc_http *h, rpc_status *st);

/* Stops accepting connections and new calls, ends every stream with
 * UNAVAILABLE (its cancel hook runs), and waits for calls in flight to
 * be answered (at most RPC_MAX_TIMEOUT_MS). */
void rpc_http_shutdown(rpc_http *h);

/* Shuts down if needed, closes every connection and frees h. */
void rpc_http_close(rpc_http *h);

/* The URL served, as given. */
const char *rpc_http_url(const rpc_http *h);

#endif

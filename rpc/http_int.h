/*
 * http_int.h — what http.c (the server, routing, limits) and connect.c
 * (the Connect protocol: codecs, errors, unary calls, streams) share.
 * Internal to rpc/.
 *
 * Locking: h->mtx guards the connection list (for the watchdog), the
 * stream list, the counters and `stopping`; the registry (services,
 * routes, hooks) is written before rpc_http_start and only read after.
 * A request (http_req) belongs to its connection's thread.
 */
#ifndef PARLEY_RPC_HTTP_INT_H
#define PARLEY_RPC_HTTP_INT_H

#include <netinet/in.h>
#include <pthread.h>

#include <jansson.h>
#include <microhttpd.h>

#include "client.h"
#include "http.h"

#define HTTP_PEER_MAX INET6_ADDRSTRLEN

typedef enum http_codec {
	CODEC_NONE = 0,
	CODEC_JSON,
	CODEC_PROTO,
} http_codec;

/* One registered service: its descriptor and the client for its URL. */
struct http_service {
	const ProtobufCServiceDescriptor *desc;
	rpc_client *cli;
};

/* A path served as a server stream. */
struct http_stream_route {
	char path[256];
	const struct http_service *svc;
	const ProtobufCMethodDescriptor *method;
	rpc_http_stream_fn fn;
	void *ctx;
};

/* One TCP connection (libmicrohttpd's socket context). */
struct http_conn {
	struct http_conn *prev, *next; /* in h->conns, under h->mtx */
	int fd;
	int64_t deadline_ms;	/* [h->mtx] close the connection by then; 0 = none */
	bool cut;		/* [h->mtx] the watchdog shut it down */
	int tls_checked;	/* [connection thread] 0 unknown, 1 good, -1 refused */
	char peer[HTTP_PEER_MAX];
};

typedef enum http_kind {
	KIND_UNARY,
	KIND_STREAM,
	KIND_ANSWERED,	/* an answer was queued at the headers: ignore the body */
	KIND_GET,	/* GET or HEAD: answered once the (empty) request is in */
} http_kind;

/* One HTTP request, from its headers to its answer. */
struct http_req {
	http_kind kind;
	struct http_conn *conn;
	const struct http_service *svc;
	const ProtobufCMethodDescriptor *method;
	const struct http_stream_route *stream;
	http_codec codec;
	char full_method[256];
	char token[RPC_HTTP_TOKEN_MAX + 1];
	bool has_token;
	uint32_t timeout_ms;	/* 0 = none given */
	uint8_t *body;
	size_t len, cap;
};

struct rpc_http {
	char url[256];
	char name[32];
	char version[32];
	bool tls;
	int listen_fd;
	char *tls_cert, *tls_key, *tls_ca; /* PEM contents */
	unsigned max_connections, max_per_ip;
	struct MHD_Daemon *mhd;

	struct http_service services[RPC_HTTP_MAX_SERVICES];
	int nservices;
	struct http_stream_route streams[4];
	int nstreams;
	rpc_http_get_fn static_fn, metrics_fn;
	void *static_ctx, *metrics_ctx;

	pthread_mutex_t mtx;
	pthread_cond_t cv;	/* counters fell, or the watchdog should stop */
	struct http_conn conns;	/* list head */
	rpc_http_stream *live;	/* running streams */
	int calls;		/* unary calls in flight */
	int nresp;		/* stream responses libmicrohttpd still sends */
	int nlive;		/* stream threads running */
	bool stopping;
	bool watchdog_stop;
	bool watchdog_running;
	pthread_t watchdog;
};

/* ---- connect.c --------------------------------------------------------- */

/* Content-Type -> codec; *streaming tells application/connect+... */
http_codec connect_codec(const char *content_type, bool *streaming);
const char *connect_content_type(http_codec c, bool streaming);

/* The HTTP status Connect maps a code to, and Connect's name for it. */
unsigned connect_http_status(rpc_code code);
const char *connect_code_name(rpc_code code);

/* Queues a Connect error for st (status from the code unless http_status
 * is non-zero), with Retry-After when st carries a retry hint; extra
 * header (name, value) may be NULL. */
enum MHD_Result connect_queue_error(struct MHD_Connection *c, unsigned http_status,
				    const rpc_status *st, const char *hname, const char *hvalue);

/* {"code": ..., "message": ...} for st (new reference, NULL when out of memory). */
json_t *connect_error_json(const rpc_status *st);

/*
 * A request body in codec -> the binary message, checked (UTF-8, no NUL)
 * like every message off the network. *wire is body itself for proto, a
 * new buffer to free for JSON (*owned tells). Errors: INVALID_ARGUMENT
 * naming the field, RESOURCE_EXHAUSTED.
 */
rpc_code connect_to_wire(http_codec codec, const ProtobufCMessageDescriptor *d,
			 const uint8_t *body, size_t len, uint8_t **wire, size_t *wlen,
			 bool *owned, rpc_status *st);

/* A message -> its encoding in codec, malloc'd; NULL when out of memory. */
void *connect_encode(http_codec codec, const ProtobufCMessage *msg, size_t *len);

/* Runs the unary call of r (its body complete) and queues the answer. */
enum MHD_Result connect_unary(rpc_http *h, struct MHD_Connection *c, struct http_req *r);

/* Starts the stream of r (its body complete) and queues the response. */
enum MHD_Result connect_stream(rpc_http *h, struct MHD_Connection *c, struct http_req *r);

/* Ends every live stream (shutdown): each is cancelled, then sends its
 * end message with UNAVAILABLE. Called without h->mtx. */
void connect_cancel_streams(rpc_http *h);

/* ---- http.c ------------------------------------------------------------- */

/* Adds delta to one of h's counters (under h->mtx); wakes the shutdown
 * when it falls. */
void http_count(rpc_http *h, int *counter, int delta);

/* Sets the connection's deadline (0 = none); with only_sooner, only if
 * that brings it closer. cn may be NULL. */
void http_conn_deadline(rpc_http *h, struct http_conn *cn, int64_t deadline, bool only_sooner);

/* The connection state of c (set when it opened), or NULL. */
struct http_conn *http_conn_of(struct MHD_Connection *c);

/* The registered service and method "/pkg.Svc/Method" names, or NULL. */
const struct http_service *http_find_method(const rpc_http *h, const char *path,
					    const ProtobufCMethodDescriptor **mp);

/* ---- http_request.c ------------------------------------------------------- */

/* libmicrohttpd's access handler and request-completed callback. */
enum MHD_Result http_on_request(void *cls, struct MHD_Connection *c, const char *url,
				const char *method, const char *version, const char *upload,
				size_t *upload_size, void **req_ctx);
void http_on_completed(void *cls, struct MHD_Connection *c, void **req_ctx,
		       enum MHD_RequestTerminationCode toe);

#endif

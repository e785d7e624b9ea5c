/*
 * http.c — the HTTP server under the Connect protocol (see http.h): the
 * listening socket, TLS material, libmicrohttpd's daemon, routing, body
 * limits, and the watchdog that closes connections too slow to send
 * their headers or body. The protocol itself is in connect.c.
 */
#define _GNU_SOURCE
#include "http_int.h"
#include "version.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <jansson.h>

#include "log.h"

#define TLS_FILE_MAX (1024 * 1024)
#define LISTEN_BACKLOG 1024
/* Per-connection memory for libmicrohttpd's buffers: request line and
 * headers must fit (larger ones get 431); bodies are ours, not in it. */
#define CONN_MEMORY_LIMIT (64 * 1024)
/* Connection threads run in-process handlers: room for them, bounded. */
#define CONN_STACK_SIZE (512 * 1024)
#define WATCHDOG_TICK_MS 250

/* ---- small helpers ---------------------------------------------------------- */

void
http_count(rpc_http *h, int *counter, int delta)
{
	pthread_mutex_lock(&h->mtx);
	*counter += delta;
	if (delta < 0)
		pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mtx);
}

static const char *
errno_text(int err)
{
	/* nng says it this way; log readers (and tests) look for one phrase. */
	return err == EADDRINUSE ? "Address in use" : strerror(err);
}

/* Reads a PEM file whole into a NUL-terminated malloc'd string. */
static rpc_code
read_pem(const char *what, const char *path, char **out, rpc_status *st)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n;

	*out = NULL;
	if (f == NULL)
		return rpc_status_set(st, errno == ENOENT ? RPC_NOT_FOUND : RPC_PERMISSION_DENIED,
				      "cannot read the TLS %s '%s': %s", what, path, strerror(errno));
	buf = malloc(TLS_FILE_MAX + 1);
	if (buf == NULL) {
		fclose(f);
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	n = fread(buf, 1, TLS_FILE_MAX + 1, f);
	fclose(f);
	if (n == 0 || n > TLS_FILE_MAX || strstr(buf, "-----BEGIN") == NULL) {
		free(buf);
		return rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "the TLS %s '%s' is not a PEM file of at most %d bytes", what,
				      path, TLS_FILE_MAX);
	}
	buf[n] = '\0';
	*out = buf;
	return RPC_OK;
}

/* "http://HOST:PORT" -> tls, host, port. */
static rpc_code
parse_url(const char *url, bool *tls, char *host, size_t hlen, char *port, size_t plen,
	  rpc_status *st)
{
	const char *p, *colon, *end;

	if (strncmp(url, "http://", 7) == 0) {
		*tls = false;
		p = url + 7;
	} else if (strncmp(url, "https://", 8) == 0) {
		*tls = true;
		p = url + 8;
	} else {
		goto bad;
	}
	if (*p == '[') {
		end = strchr(p, ']');
		if (end == NULL || end[1] != ':')
			goto bad;
		if ((size_t)(end - p - 1) >= hlen)
			goto bad;
		snprintf(host, hlen, "%.*s", (int)(end - p - 1), p + 1);
		colon = end + 1;
	} else {
		colon = strrchr(p, ':');
		if (colon == NULL || colon == p || (size_t)(colon - p) >= hlen)
			goto bad;
		snprintf(host, hlen, "%.*s", (int)(colon - p), p);
		if (strchr(host, '/') != NULL)
			goto bad;
	}
	if (colon[1] == '\0' || strlen(colon + 1) >= plen ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1))
		goto bad;
	snprintf(port, plen, "%s", colon + 1);
	return RPC_OK;
bad:
	return rpc_status_set(st, RPC_INVALID_ARGUMENT,
			      "'%s' is not an HTTP address: use http://HOST:PORT or https://HOST:PORT",
			      url);
}

static rpc_code
bind_listener(rpc_http *h, const char *host, const char *port, rpc_status *st)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int err = 0, rv, one = 1;

	if ((rv = getaddrinfo(host, port, &hints, &res)) != 0)
		return rpc_status_set(st, RPC_INVALID_ARGUMENT, "%s: cannot resolve '%s': %s",
				      h->url, host, gai_strerror(rv));
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
				ai->ai_protocol);

		if (fd < 0) {
			err = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, LISTEN_BACKLOG) == 0) {
			h->listen_fd = fd;
			break;
		}
		err = errno;
		close(fd);
	}
	freeaddrinfo(res);
	if (h->listen_fd < 0)
		return rpc_status_set(st, RPC_UNAVAILABLE, "cannot listen on %s: %s", h->url,
				      errno_text(err));
	return RPC_OK;
}

/* ---- registry ---------------------------------------------------------------- */

int
rpc_http_open(rpc_http **hp, const rpc_http_opts *o, rpc_status *st)
{
	char host[256], port[16];
	rpc_http *h;
	bool tls = false;

	*hp = NULL;
	if (parse_url(o->url, &tls, host, sizeof(host), port, sizeof(port), st) != RPC_OK)
		return st->code;
	if (tls && (o->tls_cert == NULL || o->tls_key == NULL))
		return rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "%s is https: give a certificate and a key (--tls-cert, --tls-key)",
				      o->url);
	if (tls && !MHD_is_feature_supported(MHD_FEATURE_TLS))
		return rpc_status_set(st, RPC_UNIMPLEMENTED,
				      "this libmicrohttpd was built without TLS: cannot serve %s",
				      o->url);
	h = calloc(1, sizeof(*h));
	if (h == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	snprintf(h->url, sizeof(h->url), "%s", o->url);
	snprintf(h->name, sizeof(h->name), "%s", o->name ? o->name : "http");
	snprintf(h->version, sizeof(h->version), "%s", o->version ? o->version : "");
	h->tls = tls;
	h->listen_fd = -1;
	h->max_connections = o->max_connections ? o->max_connections
						: RPC_HTTP_DEFAULT_MAX_CONNECTIONS;
	h->max_per_ip = o->max_per_ip ? o->max_per_ip : RPC_HTTP_DEFAULT_MAX_PER_IP;
	h->conns.next = h->conns.prev = &h->conns;
	pthread_mutex_init(&h->mtx, NULL);
	rpc_cond_init(&h->cv);
	if (tls && (read_pem("certificate", o->tls_cert, &h->tls_cert, st) != RPC_OK ||
		    read_pem("key", o->tls_key, &h->tls_key, st) != RPC_OK ||
		    (o->tls_ca && read_pem("CA", o->tls_ca, &h->tls_ca, st) != RPC_OK)))
		goto fail;
	if (bind_listener(h, host, port, st) != RPC_OK)
		goto fail;
	*hp = h;
	return RPC_OK;

fail:
	rpc_http_close(h);
	return st->code;
}

const char *
rpc_http_url(const rpc_http *h)
{
	return h->url;
}

int
rpc_http_add_service(rpc_http *h, const ProtobufCServiceDescriptor *svc, const char *target_url,
		     rpc_status *st)
{
	struct http_service *s;

	for (int i = 0; i < h->nservices; i++)
		if (h->services[i].desc == svc)
			return rpc_status_set(st, RPC_ALREADY_EXISTS, "%s is served already",
					      svc->name);
	if (h->nservices == RPC_HTTP_MAX_SERVICES)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "at most %d services",
				      RPC_HTTP_MAX_SERVICES);
	s = &h->services[h->nservices];
	if (rpc_client_open(&s->cli, target_url, st) != RPC_OK)
		return st->code;
	s->desc = svc;
	h->nservices++;
	return RPC_OK;
}

/* The service and method a path "/pkg.Svc/Method" names, or NULL. */
static const struct http_service *
find_method(const rpc_http *h, const char *path, const ProtobufCMethodDescriptor **mp)
{
	const char *slash;
	size_t n;

	if (path[0] != '/' || (slash = strchr(path + 1, '/')) == NULL)
		return NULL;
	n = (size_t)(slash - path - 1);
	for (int i = 0; i < h->nservices; i++) {
		const struct http_service *s = &h->services[i];

		if (strlen(s->desc->name) == n && memcmp(s->desc->name, path + 1, n) == 0) {
			*mp = protobuf_c_service_descriptor_get_method_by_name(s->desc, slash + 1);
			return *mp != NULL ? s : NULL;
		}
	}
	return NULL;
}

int
rpc_http_add_stream(rpc_http *h, const char *path, rpc_http_stream_fn fn, void *ctx,
		    rpc_status *st)
{
	const ProtobufCMethodDescriptor *m;
	const struct http_service *svc = find_method(h, path, &m);
	struct http_stream_route *r;

	if (svc == NULL)
		return rpc_status_set(st, RPC_NOT_FOUND, "no registered service has %s", path);
	for (int i = 0; i < h->nstreams; i++)
		if (strcmp(h->streams[i].path, path) == 0)
			return rpc_status_set(st, RPC_ALREADY_EXISTS, "%s is a stream already",
					      path);
	if (h->nstreams == (int)(sizeof(h->streams) / sizeof(h->streams[0])))
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "too many streams");
	r = &h->streams[h->nstreams++];
	snprintf(r->path, sizeof(r->path), "%s", path);
	r->svc = svc;
	r->method = m;
	r->fn = fn;
	r->ctx = ctx;
	return RPC_OK;
}

void
rpc_http_set_static(rpc_http *h, rpc_http_get_fn fn, void *ctx)
{
	h->static_fn = fn;
	h->static_ctx = ctx;
}

void
rpc_http_set_metrics(rpc_http *h, rpc_http_get_fn fn, void *ctx)
{
	h->metrics_fn = fn;
	h->metrics_ctx = ctx;
}

/* ---- connections and the watchdog ---------------------------------------------- */

static void
conn_set_deadline(rpc_http *h, struct http_conn *cn, int64_t deadline, bool only_sooner)
{
	if (cn == NULL)
		return;
	pthread_mutex_lock(&h->mtx);
	if (!only_sooner || cn->deadline_ms == 0 || deadline < cn->deadline_ms)
		cn->deadline_ms = deadline;
	pthread_mutex_unlock(&h->mtx);
}

static void
on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
	      enum MHD_ConnectionNotificationCode toe)
{
	rpc_http *h = cls;
	struct http_conn *cn = *socket_ctx;
	const union MHD_ConnectionInfo *ci;

	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (cn == NULL)
			return;
		/* Before libmicrohttpd closes the socket: the watchdog must
		 * never shut down a descriptor number reused by then. */
		pthread_mutex_lock(&h->mtx);
		cn->prev->next = cn->next;
		cn->next->prev = cn->prev;
		pthread_mutex_unlock(&h->mtx);
		free(cn);
		*socket_ctx = NULL;
		return;
	}
	if ((cn = calloc(1, sizeof(*cn))) == NULL)
		return; /* the request handler answers 503 */
	cn->fd = -1;
	if ((ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD)) != NULL)
		cn->fd = ci->connect_fd;
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci != NULL && ci->client_addr != NULL) {
		const struct sockaddr *sa = ci->client_addr;

		if (sa->sa_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, cn->peer,
				  sizeof(cn->peer));
		else if (sa->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr,
				  cn->peer, sizeof(cn->peer));
	}
	cn->deadline_ms = rpc_now_ms() + RPC_HTTP_HEADER_TIMEOUT_S * 1000;
	pthread_mutex_lock(&h->mtx);
	cn->next = &h->conns;
	cn->prev = h->conns.prev;
	h->conns.prev->next = cn;
	h->conns.prev = cn;
	pthread_mutex_unlock(&h->mtx);
	*socket_ctx = cn;
}

static struct http_conn *
conn_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci != NULL ? ci->socket_context : NULL;
}

/* The request line has arrived: its headers have HEADER_TIMEOUT from now. */
static void *
on_request_line(void *cls, const char *uri, struct MHD_Connection *c)
{
	rpc_http *h = cls;

	conn_set_deadline(h, conn_of(c), rpc_now_ms() + RPC_HTTP_HEADER_TIMEOUT_S * 1000, true);
	return NULL;
}

/*
 * Closes connections past their deadline: libmicrohttpd's own timeout
 * counts idle time only, so a client trickling one byte at a time would
 * hold a connection (and its thread) for ever. Shutting the socket down
 * (not closing it: the descriptor stays libmicrohttpd's) makes its thread
 * see the end of the connection and clean up.
 */
static void *
watchdog_main(void *arg)
{
	rpc_http *h = arg;

	pthread_mutex_lock(&h->mtx);
	while (!h->watchdog_stop) {
		int64_t now = rpc_now_ms();

		for (struct http_conn *cn = h->conns.next; cn != &h->conns; cn = cn->next) {
			if (cn->cut || cn->deadline_ms == 0 || now < cn->deadline_ms ||
			    cn->fd < 0)
				continue;
			cn->cut = true;
			shutdown(cn->fd, SHUT_RDWR);
			plog_info(h->name, "closed a connection from %s: request not received in time",
				  cn->peer);
		}
		rpc_cond_wait_until(&h->cv, &h->mtx, now + WATCHDOG_TICK_MS);
	}
	pthread_mutex_unlock(&h->mtx);
	return NULL;
}

/* ---- plain answers -------------------------------------------------------------- */

static enum MHD_Result
queue_bytes(struct MHD_Connection *c, unsigned status, const char *ctype, void *body,
	    size_t len, enum MHD_ResponseMemoryMode mode, const char *hname, const char *hvalue)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
	enum MHD_Result ret;

	if (resp == NULL) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	if (ctype != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	if (hname != NULL)
		MHD_add_response_header(resp, hname, hvalue);
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
answer_health(rpc_http *h, struct MHD_Connection *c)
{
	json_t *o = json_object();
	char *text = NULL;
	bool stopping;

	pthread_mutex_lock(&h->mtx);
	stopping = h->stopping;
	pthread_mutex_unlock(&h->mtx);
	if (o != NULL) {
		json_object_set_new(o, "status", json_string(stopping ? "stopping" : "ok"));
		if (h->version[0] != '\0')
			json_object_set_new(o, "version", json_string(h->version));
		json_object_set_new(o, "commit", json_string(parley_commit));
		text = json_dumps(o, JSON_COMPACT);
		json_decref(o);
	}
	if (text == NULL)
		return MHD_NO;
	return queue_bytes(c, stopping ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK,
			   "application/json", text, strlen(text), MHD_RESPMEM_MUST_FREE, NULL,
			   NULL);
}

static enum MHD_Result
answer_get(struct MHD_Connection *c, rpc_http_get_fn fn, void *ctx, const char *path)
{
	rpc_http_reply rep = {0};
	rpc_status st;

	if (!fn(ctx, path, &rep)) {
		rpc_status_set(&st, RPC_NOT_FOUND, "nothing at '%.128s'", path);
		return connect_queue_error(c, MHD_HTTP_NOT_FOUND, &st, NULL, NULL);
	}
	return queue_bytes(c, rep.status ? rep.status : MHD_HTTP_OK, rep.content_type, rep.body,
			   rep.len, rep.static_body ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_FREE,
			   NULL, NULL);
}

static enum MHD_Result
answer_405(struct MHD_Connection *c, const char *method, const char *path, const char *allow)
{
	rpc_status st;

	rpc_status_set(&st, RPC_UNIMPLEMENTED, "%s is not allowed on %.128s: use %s", method,
		       path, allow);
	return connect_queue_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, &st, MHD_HTTP_HEADER_ALLOW,
				   allow);
}

/* ---- requests ---------------------------------------------------------------------- */

/* With --tls-ca: the client's certificate must verify against it. */
static bool
client_cert_ok(rpc_http *h, struct MHD_Connection *c, struct http_conn *cn)
{
	const union MHD_ConnectionInfo *ci;
	unsigned int status = 0, n = 0;

	if (h->tls_ca == NULL)
		return true;
	if (cn->tls_checked != 0)
		return cn->tls_checked > 0;
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	cn->tls_checked = -1;
	if (ci != NULL && ci->tls_session != NULL &&
	    gnutls_certificate_get_peers(ci->tls_session, &n) != NULL && n > 0 &&
	    gnutls_certificate_verify_peers2(ci->tls_session, &status) == GNUTLS_E_SUCCESS &&
	    status == 0)
		cn->tls_checked = 1;
	return cn->tls_checked > 0;
}

/* Reads the headers of an RPC request into r; answers and returns false
 * on anything wrong with them. */
static bool
read_rpc_headers(rpc_http *h, struct MHD_Connection *c, struct http_req *r, bool stream,
		 enum MHD_Result *ret)
{
	const char *ctype = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	const char *tmo = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Connect-Timeout-Ms");
	const char *ver = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						      "Connect-Protocol-Version");
	const char *enc = MHD_lookup_connection_value(
	    c, MHD_HEADER_KIND, stream ? "Connect-Content-Encoding" : "Content-Encoding");
	const char *clen = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
	bool streaming = false;
	unsigned status = MHD_HTTP_BAD_REQUEST;
	rpc_status st;

	r->codec = ctype ? connect_codec(ctype, &streaming) : CODEC_NONE;
	if (r->codec == CODEC_NONE || streaming != stream) {
		rpc_status_set(&st, RPC_INVALID_ARGUMENT,
			       "content type '%.64s' is not served at %s: use %s", ctype ? ctype : "",
			       r->full_method,
			       stream ? "application/connect+json or application/connect+proto"
				      : "application/json or application/proto");
		*ret = connect_queue_error(c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, &st, "Accept-Post",
					   stream ? "application/connect+json, application/connect+proto"
						  : "application/json, application/proto");
		return false;
	}
	if (ver != NULL && strcmp(ver, "1") != 0) {
		rpc_status_set(&st, RPC_INVALID_ARGUMENT,
			       "Connect-Protocol-Version '%.16s' is not supported: use 1", ver);
		goto fail;
	}
	if (enc != NULL && strcasecmp(enc, "identity") != 0) {
		rpc_status_set(&st, RPC_UNIMPLEMENTED,
			       "content encoding '%.32s' is not supported: the server supports "
			       "identity",
			       enc);
		status = 0;
		goto fail;
	}
	if (auth != NULL) {
		if (strncasecmp(auth, "Bearer ", 7) != 0 || auth[7] == '\0' ||
		    strlen(auth + 7) > RPC_HTTP_TOKEN_MAX) {
			rpc_status_set(&st, RPC_UNAUTHENTICATED,
				       "the Authorization header must be 'Bearer <token>'");
			status = 0;
			goto fail;
		}
		snprintf(r->token, sizeof(r->token), "%s", auth + 7);
		r->has_token = true;
	}
	if (tmo != NULL) {
		size_t n = strlen(tmo);
		unsigned long long ms;

		if (n == 0 || n > 10 || strspn(tmo, "0123456789") != n ||
		    (ms = strtoull(tmo, NULL, 10)) == 0) {
			rpc_status_set(&st, RPC_INVALID_ARGUMENT,
				       "Connect-Timeout-Ms must be 1 to 10 digits, not '%.16s'", tmo);
			goto fail;
		}
		/* The servers cap deadlines at RPC_MAX_TIMEOUT_MS anyway. */
		r->timeout_ms = ms > RPC_MAX_TIMEOUT_MS ? RPC_MAX_TIMEOUT_MS : (uint32_t)ms;
	}
	if (clen != NULL) {
		unsigned long long n = strtoull(clen, NULL, 10);
		unsigned long long max = RPC_MAX_REQUEST + (stream ? 5 : 0);

		if (n > max) {
			rpc_status_set(&st, RPC_RESOURCE_EXHAUSTED,
				       "request body of %llu bytes exceeds the limit of %d bytes", n,
				       RPC_MAX_REQUEST);
			status = MHD_HTTP_CONTENT_TOO_LARGE;
			goto fail;
		}
	}
	return true;

fail:
	*ret = connect_queue_error(c, status, &st, NULL, NULL);
	return false;
}

/* Headers complete: route the request, answer what needs no body. */
static enum MHD_Result
begin_request(rpc_http *h, struct MHD_Connection *c, struct http_req *r, const char *path,
	      const char *method)
{
	bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	enum MHD_Result ret = MHD_YES;
	rpc_status st;

	r->kind = KIND_ANSWERED;
	if (r->conn == NULL) {
		rpc_status_set(&st, RPC_RESOURCE_EXHAUSTED, "out of memory");
		return connect_queue_error(c, 0, &st, NULL, NULL);
	}
	if (!client_cert_ok(h, c, r->conn)) {
		rpc_status_set(&st, RPC_PERMISSION_DENIED,
			       "this server requires a client certificate signed by its CA");
		return connect_queue_error(c, 0, &st, "Connection", "close");
	}
	if (strcmp(path, "/healthz") == 0)
		return get ? answer_health(h, c) : answer_405(c, method, path, "GET, HEAD");
	if (strcmp(path, "/metrics") == 0 && h->metrics_fn != NULL)
		return get ? answer_get(c, h->metrics_fn, h->metrics_ctx, path)
			   : answer_405(c, method, path, "GET, HEAD");

	r->svc = find_method(h, path, &r->method);
	if (r->svc == NULL) {
		if (get && h->static_fn != NULL)
			return answer_get(c, h->static_fn, h->static_ctx, path);
		if (get)
			rpc_status_set(&st, RPC_NOT_FOUND, "nothing at '%.128s'", path);
		else
			rpc_status_set(&st, RPC_UNIMPLEMENTED, "no method at '%.128s'", path);
		return connect_queue_error(c, MHD_HTTP_NOT_FOUND, &st, NULL, NULL);
	}
	snprintf(r->full_method, sizeof(r->full_method), "%s", path);
	for (int i = 0; i < h->nstreams; i++)
		if (strcmp(h->streams[i].path, path) == 0)
			r->stream = &h->streams[i];
	if (strcmp(method, "POST") != 0)
		return answer_405(c, method, path, "POST");
	if (!read_rpc_headers(h, c, r, r->stream != NULL, &ret))
		return ret;
	r->kind = r->stream != NULL ? KIND_STREAM : KIND_UNARY;
	conn_set_deadline(h, r->conn, rpc_now_ms() + RPC_HTTP_BODY_TIMEOUT_S * 1000, false);
	return MHD_YES;
}

/* A piece of the body: kept up to the limit, counted past it. */
static enum MHD_Result
take_body(struct http_req *r, const char *data, size_t n)
{
	size_t max = RPC_MAX_REQUEST + (r->kind == KIND_STREAM ? 5 : 0);

	if (r->len + n > max) {
		/* Past the limit (a chunked body): keep nothing more, answer
		 * 413 at its end, and give up on a client that keeps going. */
		free(r->body);
		r->body = NULL;
		r->cap = 0;
		r->len += n;
		return r->len > 4 * (size_t)RPC_MAX_REQUEST ? MHD_NO : MHD_YES;
	}
	if (r->len + n > r->cap) {
		size_t cap = r->cap ? r->cap : 1024;
		uint8_t *b;

		while (cap < r->len + n)
			cap *= 2;
		if (cap > max)
			cap = max;
		if ((b = realloc(r->body, cap)) == NULL)
			return MHD_NO;
		r->body = b;
		r->cap = cap;
	}
	memcpy(r->body + r->len, data, n);
	r->len += n;
	return MHD_YES;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
	   const char *version, const char *upload, size_t *upload_size, void **req_ctx)
{
	rpc_http *h = cls;
	struct http_req *r = *req_ctx;
	size_t max;
	rpc_status st;

	if (r == NULL) {
		if ((r = calloc(1, sizeof(*r))) == NULL)
			return MHD_NO;
		*req_ctx = r;
		r->conn = conn_of(c);
		pthread_mutex_lock(&h->mtx);
		if (h->stopping) {
			pthread_mutex_unlock(&h->mtx);
			r->kind = KIND_ANSWERED;
			rpc_status_set(&st, RPC_UNAVAILABLE, "the server is shutting down");
			return connect_queue_error(c, 0, &st, "Connection", "close");
		}
		pthread_mutex_unlock(&h->mtx);
		/* An answer queued before the request is complete makes
		 * libmicrohttpd close the connection after it: right for a
		 * refused upload, wrong for a plain GET (no keep-alive). */
		if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
			r->kind = KIND_GET;
			return MHD_YES;
		}
		return begin_request(h, c, r, url, method);
	}
	if (*upload_size > 0) {
		size_t n = *upload_size;

		*upload_size = 0;
		if (r->kind == KIND_ANSWERED)
			return MHD_YES;
		return take_body(r, upload, n);
	}
	if (r->kind == KIND_ANSWERED)
		return MHD_YES;
	if (r->kind == KIND_GET)
		return begin_request(h, c, r, url, method);
	/* The whole body is in. */
	conn_set_deadline(h, r->conn, 0, false);
	max = RPC_MAX_REQUEST + (r->kind == KIND_STREAM ? 5 : 0);
	if (r->len > max) {
		r->kind = KIND_ANSWERED;
		rpc_status_set(&st, RPC_RESOURCE_EXHAUSTED,
			       "request body of %zu bytes exceeds the limit of %d bytes", r->len,
			       RPC_MAX_REQUEST);
		return connect_queue_error(c, MHD_HTTP_CONTENT_TOO_LARGE, &st, "Connection",
					   "close");
	}
	if (r->kind == KIND_STREAM) {
		r->kind = KIND_ANSWERED;
		return connect_stream(h, c, r);
	}
	r->kind = KIND_ANSWERED;
	return connect_unary(h, c, r);
}

static void
on_completed(void *cls, struct MHD_Connection *c, void **req_ctx,
	     enum MHD_RequestTerminationCode toe)
{
	rpc_http *h = cls;
	struct http_req *r = *req_ctx;

	if (r == NULL)
		return;
	/* The next request on this connection has until the idle timeout to
	 * arrive (its request line then shortens that, see on_request_line). */
	conn_set_deadline(h, r->conn, rpc_now_ms() + RPC_HTTP_IDLE_TIMEOUT_S * 1000, false);
	free(r->body);
	free(r);
	*req_ctx = NULL;
}

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	rpc_http *h = cls;
	char line[512];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	plog_info(h->name, "%s", line);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

int
rpc_http_start(rpc_http *h, rpc_status *st)
{
	struct MHD_OptionItem tls_opts[4] = {{MHD_OPTION_END, 0, NULL}};
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	int n = 0;

	if (h->tls) {
		flags |= MHD_USE_TLS;
		tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_key};
		tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, h->tls_cert};
		if (h->tls_ca != NULL)
			tls_opts[n++] =
			    (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, h->tls_ca};
		tls_opts[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
	}
	if (pthread_create(&h->watchdog, NULL, watchdog_main, h) != 0)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "cannot start a thread");
	h->watchdog_running = true;
	h->mhd = MHD_start_daemon(
	    flags, 0, NULL, NULL, on_request, h,
	    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
	    MHD_OPTION_LISTEN_SOCKET, h->listen_fd,
	    MHD_OPTION_CONNECTION_LIMIT, h->max_connections,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, h->max_per_ip,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)RPC_HTTP_IDLE_TIMEOUT_S,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY_LIMIT,
	    MHD_OPTION_THREAD_STACK_SIZE, (size_t)CONN_STACK_SIZE,
	    MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
	    MHD_OPTION_URI_LOG_CALLBACK, on_request_line, h,
	    MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1,
	    MHD_OPTION_ARRAY, tls_opts,
	    MHD_OPTION_END);
	if (h->mhd == NULL)
		return rpc_status_set(st, RPC_INTERNAL,
				      "cannot serve %s (libmicrohttpd refused to start%s)", h->url,
				      h->tls ? "; is the key the certificate's?" : "");
	/* libmicrohttpd owns the listening socket now. */
	return RPC_OK;
}

void
rpc_http_shutdown(rpc_http *h)
{
	int64_t until = rpc_now_ms() + RPC_MAX_TIMEOUT_MS;
	int listen_fd = -1;

	pthread_mutex_lock(&h->mtx);
	if (h->stopping) {
		pthread_mutex_unlock(&h->mtx);
		return;
	}
	h->stopping = true;
	pthread_mutex_unlock(&h->mtx);
	if (h->mhd != NULL)
		listen_fd = MHD_quiesce_daemon(h->mhd);
	if (listen_fd >= 0) {
		close(listen_fd);
		h->listen_fd = -1;
	}
	connect_cancel_streams(h);
	pthread_mutex_lock(&h->mtx);
	while ((h->calls > 0 || h->nlive > 0) && rpc_now_ms() < until)
		rpc_cond_wait_until(&h->cv, &h->mtx, until);
	pthread_mutex_unlock(&h->mtx);
}

void
rpc_http_close(rpc_http *h)
{
	if (h == NULL)
		return;
	rpc_http_shutdown(h);
	if (h->mhd != NULL)
		MHD_stop_daemon(h->mhd);
	else if (h->listen_fd >= 0)
		close(h->listen_fd);
	if (h->watchdog_running) {
		pthread_mutex_lock(&h->mtx);
		h->watchdog_stop = true;
		pthread_cond_broadcast(&h->cv);
		pthread_mutex_unlock(&h->mtx);
		pthread_join(h->watchdog, NULL);
	}
	if (h->nlive > 0) {
		/* A stream function that ignored its cancellation still uses h. */
		plog_error(h->name, "%d streams did not end: leaving their state", h->nlive);
		return;
	}
	for (int i = 0; i < h->nservices; i++)
		rpc_client_close(h->services[i].cli);
	free(h->tls_cert);
	if (h->tls_key != NULL)
		explicit_bzero(h->tls_key, strlen(h->tls_key));
	free(h->tls_key);
	free(h->tls_ca);
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mtx);
	free(h);
}

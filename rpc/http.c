/*
 * http.c — the HTTP server under the Connect protocol (see http.h): the
 * registry, the listening socket, TLS material, libmicrohttpd's daemon
 * and its lifecycle, the connections, and the watchdog that closes those
 * too slow to send their headers or body. Requests are http_request.c's;
 * the protocol itself (codecs, errors, calls, streams) connect.c's and
 * stream.c's.
 */
#define _GNU_SOURCE
#include "http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define TLS_FILE_MAX (1024 * 1024)
#define LISTEN_BACKLOG 1024
/* Per-connection memory for libmicrohttpd's buffers: request line and
 * headers must fit (larger ones get 431); bodies are ours, not in it. */
#define CONN_MEMORY_LIMIT (64 * 1024)
/* Connection threads run in-process handlers: room for them, bounded. */
#define CONN_STACK_SIZE (512 * 1024)
#define WATCHDOG_TICK_MS 250
/* At shutdown, how long streams' last messages may take to go out. */
#define HTTP_FLUSH_MS 2000

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
	/* Terminated before strstr reads it: the buffer is not zeroed. */
	buf[n < TLS_FILE_MAX ? n : TLS_FILE_MAX] = '\0';
	if (n == 0 || n > TLS_FILE_MAX || strstr(buf, "-----BEGIN") == NULL) {
		explicit_bzero(buf, n < TLS_FILE_MAX ? n : TLS_FILE_MAX); /* may be a key */
		free(buf);
		return rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "the TLS %s '%s' is not a PEM file of at most %d bytes", what,
				      path, TLS_FILE_MAX);
	}
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
const struct http_service *
http_find_method(const rpc_http *h, const char *path, const ProtobufCMethodDescriptor **mp)
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
	const struct http_service *svc = http_find_method(h, path, &m);
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

void
http_conn_deadline(rpc_http *h, struct http_conn *cn, int64_t deadline, bool only_sooner)
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

struct http_conn *
http_conn_of(struct MHD_Connection *c)
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

	http_conn_deadline(h, http_conn_of(c), rpc_now_ms() + RPC_HTTP_HEADER_TIMEOUT_S * 1000, true);
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


/* fmt is libmicrohttpd's own: the attribute tells clang's -Wformat-nonliteral. */
__attribute__((format(printf, 2, 0))) static void
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
	    flags, 0, NULL, NULL, http_on_request, h,
	    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
	    MHD_OPTION_LISTEN_SOCKET, h->listen_fd,
	    MHD_OPTION_CONNECTION_LIMIT, h->max_connections,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, h->max_per_ip,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)RPC_HTTP_IDLE_TIMEOUT_S,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY_LIMIT,
	    MHD_OPTION_THREAD_STACK_SIZE, (size_t)CONN_STACK_SIZE,
	    MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
	    MHD_OPTION_NOTIFY_COMPLETED, http_on_completed, h,
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
	/* The streams' end messages (UNAVAILABLE: come back later) are on
	 * their way: give clients that read a moment to get them. */
	until = rpc_now_ms() + HTTP_FLUSH_MS;
	while (h->nresp > 0 && rpc_now_ms() < until)
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

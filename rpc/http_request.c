/*
 * http_request.c — one HTTP request (see http.h): routing by path,
 * /healthz and the GET hooks, the Connect headers (content type,
 * Authorization, Connect-Timeout-Ms, encodings), the body and its limit,
 * and the deadlines the watchdog (http.c) enforces while it arrives.
 * Everything here runs on the request's connection thread.
 */
#define _GNU_SOURCE
#include "http_int.h"
#include "secret.h"
#include "version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gnutls/gnutls.h>
#include <jansson.h>

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

/* Whether an If-None-Match header (a list of entity tags, or "*") names
 * etag; weak tags (W/"...") match too, as RFC 9110 wants for GET. */
static bool
etag_matches(const char *inm, const char *etag)
{
	size_t n = strlen(etag);

	while (*inm != '\0') {
		size_t len;

		inm += strspn(inm, " \t,");
		if (strncmp(inm, "W/", 2) == 0)
			inm += 2;
		len = strcspn(inm, " \t,");
		if ((len == 1 && inm[0] == '*') || (len == n && strncmp(inm, etag, n) == 0))
			return true;
		inm += len;
	}
	return false;
}

static enum MHD_Result
answer_get(struct MHD_Connection *c, rpc_http_get_fn fn, void *ctx, const char *path)
{
	rpc_http_reply rep = {0};
	struct MHD_Response *resp;
	enum MHD_ResponseMemoryMode mode;
	const char *inm;
	unsigned status;
	enum MHD_Result ret;
	rpc_status st;

	if (!fn(ctx, path, &rep)) {
		rpc_status_set(&st, RPC_NOT_FOUND, "nothing at '%.128s'", path);
		return connect_queue_error(c, MHD_HTTP_NOT_FOUND, &st, NULL, NULL);
	}
	status = rep.status ? rep.status : MHD_HTTP_OK;
	mode = rep.static_body ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_FREE;
	inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
	if (rep.etag != NULL && status == MHD_HTTP_OK && inm != NULL && etag_matches(inm, rep.etag)) {
		/* The client's copy is current: no body. */
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(rep.body);
		rep.body = NULL;
		rep.len = 0;
		mode = MHD_RESPMEM_PERSISTENT;
		status = MHD_HTTP_NOT_MODIFIED;
	}
	if ((resp = MHD_create_response_from_buffer(rep.len, rep.body, mode)) == NULL) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(rep.body);
		return MHD_NO;
	}
	if (rep.content_type != NULL && status != MHD_HTTP_NOT_MODIFIED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rep.content_type);
	if (rep.etag != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, rep.etag);
	for (const char *const *hd = rep.headers; hd != NULL && hd[0] != NULL; hd += 2)
		MHD_add_response_header(resp, hd[0], hd[1]);
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
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

	r->svc = http_find_method(h, path, &r->method);
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
	http_conn_deadline(h, r->conn, rpc_now_ms() + RPC_HTTP_BODY_TIMEOUT_S * 1000, false);
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
		rpc_secret_wipe_free(r->body, r->cap);
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
		/* Not realloc: it would free the old copy (a password,
		 * maybe) without wiping it. */
		if ((b = malloc(cap)) == NULL)
			return MHD_NO;
		if (r->len > 0)
			memcpy(b, r->body, r->len);
		rpc_secret_wipe_free(r->body, r->cap);
		r->body = b;
		r->cap = cap;
	}
	memcpy(r->body + r->len, data, n);
	r->len += n;
	return MHD_YES;
}

enum MHD_Result
http_on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
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
		r->conn = http_conn_of(c);
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
	http_conn_deadline(h, r->conn, 0, false);
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

void
http_on_completed(void *cls, struct MHD_Connection *c, void **req_ctx,
	     enum MHD_RequestTerminationCode toe)
{
	rpc_http *h = cls;
	struct http_req *r = *req_ctx;

	if (r == NULL)
		return;
	/* The next request on this connection has until the idle timeout to
	 * arrive (its request line then shortens that, see on_request_line). */
	http_conn_deadline(h, r->conn, rpc_now_ms() + RPC_HTTP_IDLE_TIMEOUT_S * 1000, false);
	/* The body and the bearer token are secrets (a Login's password). */
	rpc_secret_wipe_free(r->body, r->cap);
	rpc_secret_wipe_free(r, sizeof(*r));
	*req_ctx = NULL;
}

/*
 * stream.c — Connect server streams over HTTP/1.1 (see http.h).
 *
 * Each stream has a thread of its own running the registered function,
 * which hands messages to rpc_http_stream_send. The connection's thread
 * is libmicrohttpd's: its content reader (stream_read) takes one framed
 * message at a time from the stream's slot and writes it as a chunk.
 * While the slot is empty the reader waits on an eventfd and on the
 * socket itself, so a client that goes away is noticed at once, not at
 * the next write: the stream is then cancelled (its cancel hook runs) and
 * the next send fails.
 *
 * Memory: one framed message per stream (the slot) plus libmicrohttpd's
 * write buffer; a sender waits while the slot is full, so a slow client
 * costs its own stream time, never memory, and never another stream.
 *
 * Locking: s->mtx guards the slot and the flags marked [mtx]; h->mtx the
 * list of live streams. A stream is freed with its last reference: the
 * response (dropped by libmicrohttpd's free callback), the thread, and
 * anyone cancelling it.
 */
#define _GNU_SOURCE
#include "http_int.h"
#include "metrics.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"

#define STREAM_STACK_SIZE (256 * 1024)
#define STREAM_CHUNK (16 * 1024)
#define FLAG_END_STREAM 0x02
#define FLAG_COMPRESSED 0x01

struct rpc_http_stream {
	rpc_http *h;
	const struct http_stream_route *route;
	http_codec codec;
	ProtobufCMessage *req;	/* owned by the thread */
	char token[RPC_HTTP_TOKEN_MAX + 1];
	bool has_token;
	char peer[HTTP_PEER_MAX];
	int64_t deadline_ms;
	int sock;		/* the connection's socket (libmicrohttpd's) */
	int efd;		/* the reader's wake-up */
	rpc_http_stream *next_live; /* under h->mtx */

	pthread_mutex_t mtx;
	pthread_cond_t cv;	/* the slot emptied, or a flag changed */
	int refs;		/* [mtx] */
	uint8_t *frame;		/* [mtx] the slot: one framed message */
	size_t len, off;	/* [mtx] */
	bool final_queued;	/* [mtx] the end-of-stream message is in or through the slot */
	bool gone;		/* [mtx] the client went away */
	bool stopping;		/* [mtx] the server is shutting down */
	void (*cancel_fn)(void *); /* [mtx] */
	void *cancel_arg;	/* [mtx] */
	bool cancel_running;	/* [mtx] */
};

static void
stream_unref(rpc_http_stream *s)
{
	bool last;

	pthread_mutex_lock(&s->mtx);
	last = --s->refs == 0;
	pthread_mutex_unlock(&s->mtx);
	if (!last)
		return;
	if (s->req != NULL)
		protobuf_c_message_free_unpacked(s->req, NULL);
	free(s->frame);
	close(s->efd);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mtx);
	free(s);
}

static void
wake_reader(rpc_http_stream *s)
{
	uint64_t one = 1;

	if (write(s->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		plog_error(s->h->name, "stream wake-up failed: %s", strerror(errno));
}

/* The client went away (stopping = false) or the server stops: flags it,
 * wakes the sender, and runs the cancel hook once. */
static void
stream_cancel(rpc_http_stream *s, bool stopping)
{
	void (*fn)(void *);
	void *arg;

	pthread_mutex_lock(&s->mtx);
	if (stopping)
		s->stopping = true;
	else
		s->gone = true;
	fn = s->cancel_fn;
	arg = s->cancel_arg;
	s->cancel_fn = NULL;
	s->cancel_running = fn != NULL;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mtx);
	wake_reader(s);
	if (fn == NULL)
		return;
	fn(arg);
	pthread_mutex_lock(&s->mtx);
	s->cancel_running = false;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mtx);
}

void
connect_cancel_streams(rpc_http *h)
{
	rpc_http_stream **all;
	int n = 0;

	pthread_mutex_lock(&h->mtx);
	all = calloc((size_t)h->nlive + 1, sizeof(*all));
	for (rpc_http_stream *s = h->live; s != NULL && all != NULL; s = s->next_live) {
		pthread_mutex_lock(&s->mtx);
		s->refs++;
		pthread_mutex_unlock(&s->mtx);
		all[n++] = s;
	}
	pthread_mutex_unlock(&h->mtx);
	for (int i = 0; i < n; i++) {
		stream_cancel(all[i], true);
		stream_unref(all[i]);
	}
	free(all);
}

/* ---- framing ------------------------------------------------------------------------ */

/* Puts flags + length + payload into the slot once it is free; takes payload. */
static rpc_code
slot_put(rpc_http_stream *s, uint8_t flags, void *payload, size_t len, bool final,
	 rpc_status *st)
{
	uint8_t *f = malloc(len + 5);
	rpc_code code = RPC_OK;

	if (f == NULL) {
		free(payload);
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	f[0] = flags;
	f[1] = (uint8_t)(len >> 24);
	f[2] = (uint8_t)(len >> 16);
	f[3] = (uint8_t)(len >> 8);
	f[4] = (uint8_t)len;
	memcpy(f + 5, payload, len);
	free(payload);

	pthread_mutex_lock(&s->mtx);
	while (s->frame != NULL && !s->gone && (final || !s->stopping))
		pthread_cond_wait(&s->cv, &s->mtx);
	if (s->gone)
		code = rpc_status_set(st, RPC_CANCELLED, "the client went away");
	else if (s->stopping && !final)
		code = rpc_status_set(st, RPC_UNAVAILABLE, "the server is shutting down");
	if (code == RPC_OK) {
		s->frame = f;
		s->len = len + 5;
		s->off = 0;
		s->final_queued = final;
		f = NULL;
	}
	pthread_mutex_unlock(&s->mtx);
	free(f);
	if (code == RPC_OK)
		wake_reader(s);
	return code;
}

rpc_code
rpc_http_stream_send(rpc_http_stream *s, const ProtobufCMessage *msg, rpc_status *st)
{
	size_t len;
	void *payload = connect_encode(s->codec, msg, &len);

	if (payload == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	return slot_put(s, 0, payload, len, false, st);
}

/* The end-of-stream message: {} or {"error": {...}}. */
static void
send_end(rpc_http_stream *s, const rpc_status *st)
{
	json_t *o = json_object();
	char *text;
	rpc_status ignored;

	if (o != NULL && st->code != RPC_OK)
		json_object_set_new(o, "error", connect_error_json(st));
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (text == NULL) {
		/* Nothing sensible to send: end the response in error. */
		pthread_mutex_lock(&s->mtx);
		s->gone = true;
		pthread_mutex_unlock(&s->mtx);
		wake_reader(s);
		return;
	}
	slot_put(s, FLAG_END_STREAM, text, strlen(text), true, &ignored);
}

/* ---- the stream's thread ---------------------------------------------------------------- */

static void *
stream_main(void *arg)
{
	static rpc_metric *open_streams;
	rpc_http_stream *s = arg;
	rpc_http *h = s->h;
	rpc_status st = {0};
	rpc_code code;
	rpc_metric *gauge = __atomic_load_n(&open_streams, __ATOMIC_ACQUIRE);

	if (gauge == NULL) {
		gauge = rpc_metrics_gauge("parley_http_streams_open",
					  "Connect server streams running (Subscribe).", NULL);
		__atomic_store_n(&open_streams, gauge, __ATOMIC_RELEASE);
	}
	rpc_gauge_add(gauge, 1);
	code = s->route->fn(s, s->req, s->route->ctx, &st);
	rpc_gauge_add(gauge, -1);
	pthread_mutex_lock(&s->mtx);
	s->cancel_fn = NULL;
	while (s->cancel_running)
		pthread_cond_wait(&s->cv, &s->mtx);
	if (s->stopping)
		/* Whatever the function made of its cancellation, the client
		 * should know why its stream ended and come back. */
		code = rpc_status_set(&st, RPC_UNAVAILABLE,
				      "the server is shutting down: subscribe again later");
	pthread_mutex_unlock(&s->mtx);
	if (code == RPC_OK)
		st.code = RPC_OK;
	else if (st.code != code)
		rpc_status_set(&st, code, "%s", rpc_code_name(code));
	send_end(s, &st);

	pthread_mutex_lock(&h->mtx);
	for (rpc_http_stream **p = &h->live; *p != NULL; p = &(*p)->next_live)
		if (*p == s) {
			*p = s->next_live;
			break;
		}
	h->nlive--;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mtx);
	stream_unref(s);
	return NULL;
}

/* ---- the connection's side ----------------------------------------------------------------- */

static ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	rpc_http_stream *s = cls;

	for (;;) {
		struct pollfd fds[2] = {{.fd = s->efd, .events = POLLIN},
					{.fd = s->sock, .events = POLLRDHUP}};
		uint64_t drained;

		pthread_mutex_lock(&s->mtx);
		if (s->frame != NULL) {
			size_t n = s->len - s->off < max ? s->len - s->off : max;

			memcpy(buf, s->frame + s->off, n);
			s->off += n;
			if (s->off == s->len) {
				free(s->frame);
				s->frame = NULL;
				pthread_cond_broadcast(&s->cv);
			}
			pthread_mutex_unlock(&s->mtx);
			return (ssize_t)n;
		}
		if (s->final_queued) {
			pthread_mutex_unlock(&s->mtx);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		if (s->gone) {
			pthread_mutex_unlock(&s->mtx);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		pthread_mutex_unlock(&s->mtx);

		if (poll(fds, 2, -1) < 0 && errno != EINTR) {
			stream_cancel(s, false);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		if (fds[1].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) {
			stream_cancel(s, false);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		if (fds[0].revents & POLLIN && read(s->efd, &drained, sizeof(drained)) < 0 &&
		    errno != EAGAIN)
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
}

/* libmicrohttpd is done with the response (sent, or the connection died). */
static void
stream_response_free(void *cls)
{
	rpc_http_stream *s = cls;
	bool finished;

	pthread_mutex_lock(&s->mtx);
	finished = s->final_queued && s->frame == NULL;
	pthread_mutex_unlock(&s->mtx);
	if (!finished)
		stream_cancel(s, false);
	http_count(s->h, &s->h->nresp, -1);
	stream_unref(s);
}

/* An answer for a stream that never started: 200 and one end message. */
static enum MHD_Result
queue_stream_error(struct MHD_Connection *c, http_codec codec, const rpc_status *st)
{
	json_t *o = json_object();
	char *text, *frame;
	size_t len;
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (o != NULL)
		json_object_set_new(o, "error", connect_error_json(st));
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (text == NULL)
		return MHD_NO;
	len = strlen(text);
	frame = malloc(len + 5);
	if (frame == NULL) {
		free(text);
		return MHD_NO;
	}
	frame[0] = FLAG_END_STREAM;
	frame[1] = (char)(len >> 24);
	frame[2] = (char)(len >> 16);
	frame[3] = (char)(len >> 8);
	frame[4] = (char)len;
	memcpy(frame + 5, text, len);
	free(text);
	resp = MHD_create_response_from_buffer(len + 5, frame, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(frame);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				connect_content_type(codec, true));
	ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* The request body of a server stream: exactly one enveloped message. */
static rpc_code
unwrap_request(const struct http_req *r, const uint8_t **msg, size_t *len, rpc_status *st)
{
	uint32_t n;

	if (r->len < 5)
		return rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "a stream request is one enveloped message: got %zu bytes",
				      r->len);
	if (r->body[0] & ~FLAG_COMPRESSED)
		return rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "unknown envelope flags 0x%02x in a request message", r->body[0]);
	if (r->body[0] & FLAG_COMPRESSED)
		return rpc_status_set(st, RPC_UNIMPLEMENTED,
				      "compressed messages are not supported: the server supports "
				      "identity");
	n = (uint32_t)r->body[1] << 24 | (uint32_t)r->body[2] << 16 | (uint32_t)r->body[3] << 8 |
	    r->body[4];
	if ((size_t)n != r->len - 5)
		return rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "the envelope says %u bytes but %zu follow: send exactly one "
				      "message",
				      n, r->len - 5);
	*msg = r->body + 5;
	*len = n;
	return RPC_OK;
}

enum MHD_Result
connect_stream(rpc_http *h, struct MHD_Connection *c, struct http_req *r)
{
	const ProtobufCMessageDescriptor *in = r->stream->method->input;
	rpc_http_stream *s = NULL;
	struct MHD_Response *resp;
	pthread_attr_t attr;
	pthread_t tid;
	const uint8_t *msg = NULL;
	uint8_t *wire;
	size_t len = 0, wlen;
	bool owned, started;
	enum MHD_Result ret;
	rpc_status st = {0};

	if (unwrap_request(r, &msg, &len, &st) != RPC_OK ||
	    connect_to_wire(r->codec, in, msg, len, &wire, &wlen, &owned, &st) != RPC_OK)
		return queue_stream_error(c, r->codec, &st);
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		if (owned)
			free(wire);
		rpc_status_set(&st, RPC_RESOURCE_EXHAUSTED, "out of memory");
		return queue_stream_error(c, r->codec, &st);
	}
	s->req = protobuf_c_message_unpack(in, NULL, wlen, wire);
	if (owned)
		free(wire);
	s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->req == NULL || s->efd < 0) {
		rpc_status_set(&st, s->req ? RPC_RESOURCE_EXHAUSTED : RPC_INVALID_ARGUMENT,
			       s->req ? "cannot make a stream (%s)" : "malformed %s",
			       s->req ? strerror(errno) : in->name);
		if (s->req != NULL)
			protobuf_c_message_free_unpacked(s->req, NULL);
		if (s->efd >= 0)
			close(s->efd);
		free(s);
		return queue_stream_error(c, r->codec, &st);
	}
	s->h = h;
	s->route = r->stream;
	s->codec = r->codec;
	s->sock = r->conn->fd;
	s->has_token = r->has_token;
	memcpy(s->token, r->token, sizeof(s->token));
	memcpy(s->peer, r->conn->peer, sizeof(s->peer));
	s->deadline_ms = r->timeout_ms ? rpc_now_ms() + r->timeout_ms : 0;
	s->refs = 2; /* the response and the thread */
	pthread_mutex_init(&s->mtx, NULL);
	rpc_cond_init(&s->cv);

	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_CHUNK, stream_read, s,
						 stream_response_free);
	if (resp == NULL) {
		s->refs = 1;
		stream_unref(s);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				connect_content_type(r->codec, true));

	pthread_mutex_lock(&h->mtx);
	h->nresp++;
	started = !h->stopping;
	if (started) {
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, STREAM_STACK_SIZE);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		started = pthread_create(&tid, &attr, stream_main, s) == 0;
		pthread_attr_destroy(&attr);
	}
	if (started) {
		s->next_live = h->live;
		h->live = s;
		h->nlive++;
	}
	pthread_mutex_unlock(&h->mtx);
	if (!started) {
		/* No thread: the response holds the only reference, and
		 * carries the end message at once. */
		rpc_status_set(&st, RPC_UNAVAILABLE, "cannot start the stream now; try again");
		s->refs = 1;
		send_end(s, &st);
	}
	ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ---- for stream functions ------------------------------------------------------------------ */

void
rpc_http_stream_on_cancel(rpc_http_stream *s, void (*fn)(void *), void *arg)
{
	bool now;

	pthread_mutex_lock(&s->mtx);
	/* A hook running now may use what its arg points to: let it end. */
	while (s->cancel_running)
		pthread_cond_wait(&s->cv, &s->mtx);
	now = fn != NULL && (s->gone || s->stopping);
	s->cancel_fn = now ? NULL : fn;
	s->cancel_arg = arg;
	pthread_mutex_unlock(&s->mtx);
	/* Cancelled before the hook was there: the function learns it from
	 * its next send; running the hook here would only be earlier. */
	if (now)
		fn(arg);
}

const char *
rpc_http_stream_token(const rpc_http_stream *s)
{
	return s->has_token ? s->token : NULL;
}

const char *
rpc_http_stream_peer(const rpc_http_stream *s)
{
	return s->peer[0] ? s->peer : NULL;
}

int64_t
rpc_http_stream_deadline(const rpc_http_stream *s)
{
	return s->deadline_ms;
}

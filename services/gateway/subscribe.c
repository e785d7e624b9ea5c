/*
 * subscribe.c — Messaging/Subscribe as a stream over Open/Poll/Close (see
 * subscribe.h).
 *
 * Threads: gw_subscribe runs on the stream's own thread; sub_cancel runs
 * on the connection's thread (client gone) or the shutting-down thread.
 * sub->mtx guards the session id and `cancelled` between the two.
 */
#include "subscribe.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "parley/v1/messaging.pb-c.h"

#define SESSION_ID_MAX 64

typedef struct sub {
	rpc_client *cli;
	rpc_call_opts opts;	/* token and peer of the HTTP caller */
	pthread_mutex_t mtx;
	bool cancelled;		/* [mtx] */
	bool hook_closed;	/* [mtx] the cancel hook closed the session */
	char session[SESSION_ID_MAX + 1]; /* [mtx] */
} sub;

static void
close_session(sub *b, const char *id)
{
	Parley__V1__CloseRequest req = PARLEY__V1__CLOSE_REQUEST__INIT;
	rpc_call_opts o = b->opts;
	ProtobufCMessage *resp = NULL;
	rpc_status st;

	req.session_id = (char *)id;
	o.timeout_ms = SUBSCRIBE_SLACK_MS;
	rpc_client_call(b->cli, &parley__v1__messaging__descriptor, "Close", &req.base, &resp, &o,
			&st);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
}

/* The client went away or the server stops: closing the session answers
 * the Poll in progress at once, so the stream ends now, not after it. */
static void
sub_cancel(void *arg)
{
	sub *b = arg;
	char id[SESSION_ID_MAX + 1];

	pthread_mutex_lock(&b->mtx);
	b->cancelled = true;
	memcpy(id, b->session, sizeof(id));
	b->hook_closed = id[0] != '\0';
	pthread_mutex_unlock(&b->mtx);
	if (id[0] != '\0')
		close_session(b, id);
}

/* Where the stream stands per room: the last seq sent to the client. */
typedef struct cursor {
	Parley__V1__RoomCursor msg;
	Parley__V1__RoomCursor *ptr;
} cursor;

static int
cursor_index(const cursor *c, size_t n, const char *room)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(c[i].msg.room_id, room) == 0)
			return (int)i;
	return -1;
}

/* Sends the events of one Poll reply that the client has not had yet (by
 * seq per room; presence has seq 0 and always goes), or the keep-alive. */
static rpc_code
forward(rpc_http_stream *s, Parley__V1__PollResponse *pr, cursor *cur, size_t ncur,
	rpc_status *st)
{
	Parley__V1__SubscribeResponse out = PARLEY__V1__SUBSCRIBE_RESPONSE__INIT;
	size_t n = 0;

	for (size_t i = 0; i < pr->n_events; i++) {
		Parley__V1__Event *ev = pr->events[i];
		int k = cursor_index(cur, ncur, ev->room_id);

		if (ev->seq != 0 && k >= 0) {
			if (ev->seq <= cur[k].msg.since_seq)
				continue;
			cur[k].msg.since_seq = ev->seq;
		}
		pr->events[n++] = ev;
	}
	out.n_events = n;
	out.events = pr->events;
	return rpc_http_stream_send(s, &out.base, st);
}

static rpc_code
poll_loop(rpc_http_stream *s, sub *b, const char *id, cursor *cur, size_t ncur,
	  rpc_status *st)
{
	Parley__V1__PollRequest req = PARLEY__V1__POLL_REQUEST__INIT;
	Parley__V1__RoomCursor **acked = malloc(ncur * sizeof(*acked));
	int64_t deadline = rpc_http_stream_deadline(s);
	int failures = 0;
	rpc_code code;

	if (acked == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	for (size_t i = 0; i < ncur; i++)
		acked[i] = &cur[i].msg;
	req.session_id = (char *)id;
	req.acked = acked;
	req.n_acked = ncur;
	for (;;) {
		Parley__V1__PollResponse *pr = NULL;
		Parley__V1__SubscribeResponse keepalive = PARLEY__V1__SUBSCRIBE_RESPONSE__INIT;
		rpc_call_opts o = b->opts;
		int64_t left = deadline ? deadline - rpc_now_ms() : SUBSCRIBE_WAIT_MS;

		if (left <= 0) {
			code = rpc_status_set(st, RPC_DEADLINE_EXCEEDED,
					      "the stream reached its Connect-Timeout-Ms");
			break;
		}
		/* acked: a Poll reply lost on its way (a timeout across the
		 * network) is sent again, from the session's store. */
		req.wait_ms = left < SUBSCRIBE_WAIT_MS ? (uint32_t)left : SUBSCRIBE_WAIT_MS;
		o.timeout_ms = req.wait_ms + SUBSCRIBE_SLACK_MS;
		code = rpc_client_call(b->cli, &parley__v1__messaging__descriptor, "Poll", &req.base,
				       (ProtobufCMessage **)&pr, &o, st);
		if (code == RPC_OK) {
			failures = 0;
			code = forward(s, pr, cur, ncur, st);
			protobuf_c_message_free_unpacked(&pr->base, NULL);
			if (code != RPC_OK)
				break;
			continue;
		}
		if (code != RPC_DEADLINE_EXCEEDED || ++failures > SUBSCRIBE_RETRIES)
			break;
		/* A slow network hop, not an answer: keep the client's line alive. */
		if ((code = rpc_http_stream_send(s, &keepalive.base, st)) != RPC_OK)
			break;
	}
	free(acked);
	return code;
}

rpc_code
gw_subscribe(rpc_http_stream *s, const ProtobufCMessage *reqm, void *ctx, rpc_status *st)
{
	const Parley__V1__SubscribeRequest *req = (const void *)reqm;
	Parley__V1__OpenRequest open = PARLEY__V1__OPEN_REQUEST__INIT;
	Parley__V1__OpenResponse *opened = NULL;
	Parley__V1__SubscribeResponse first = PARLEY__V1__SUBSCRIBE_RESPONSE__INIT;
	sub b = {.cli = ctx};
	cursor *cur = NULL;
	char id[SESSION_ID_MAX + 1];
	bool cancelled, closed;
	rpc_code code;

	b.opts.token = rpc_http_stream_token(s);
	b.opts.peer = rpc_http_stream_peer(s);
	b.opts.deadline_ms = rpc_http_stream_deadline(s);
	pthread_mutex_init(&b.mtx, NULL);
	rpc_http_stream_on_cancel(s, sub_cancel, &b);

	/* Open checks the rooms (count, ids, membership, since_seq): its
	 * errors are the stream's. */
	open.n_rooms = req->n_rooms;
	open.rooms = req->rooms;
	code = rpc_client_call(b.cli, &parley__v1__messaging__descriptor, "Open", &open.base,
			       (ProtobufCMessage **)&opened, &b.opts, st);
	if (code != RPC_OK)
		goto out;
	snprintf(id, sizeof(id), "%s", opened->session_id);
	pthread_mutex_lock(&b.mtx);
	memcpy(b.session, id, sizeof(id));
	cancelled = b.cancelled;
	pthread_mutex_unlock(&b.mtx);
	if (cancelled) {
		code = rpc_status_set(st, RPC_CANCELLED, "the client went away");
		goto out_close;
	}

	if ((cur = calloc(req->n_rooms ? req->n_rooms : 1, sizeof(*cur))) == NULL) {
		code = rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out_close;
	}
	for (size_t i = 0; i < req->n_rooms; i++) {
		parley__v1__room_cursor__init(&cur[i].msg);
		cur[i].msg.room_id = req->rooms[i]->room_id;
		cur[i].msg.since_seq = req->rooms[i]->since_seq;
	}
	first.n_heads = opened->n_heads;
	first.heads = opened->heads;
	code = rpc_http_stream_send(s, &first.base, st);
	if (code == RPC_OK)
		code = poll_loop(s, &b, id, cur, req->n_rooms, st);

out_close:
	rpc_http_stream_on_cancel(s, NULL, NULL);
	pthread_mutex_lock(&b.mtx);
	closed = b.hook_closed;
	pthread_mutex_unlock(&b.mtx);
	/* A hook that ran while Open was on its way had no session to
	 * close: this one is still ours to close. */
	if (!closed)
		close_session(&b, id);
out:
	rpc_http_stream_on_cancel(s, NULL, NULL);
	free(cur);
	if (opened != NULL)
		protobuf_c_message_free_unpacked(&opened->base, NULL);
	pthread_mutex_destroy(&b.mtx);
	return code;
}

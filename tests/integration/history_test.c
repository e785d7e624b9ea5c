/*
 * history_test.c — the History service: paging in both directions, limits,
 * has_more and head_seq, members only; and a history service running alone
 * in another process, reading the store read-only, including before the
 * messaging service has created its tables.
 */
#include <string.h>
#include <unistd.h>

#include "mx_util.h"
#include "parley/v1/rooms.pb-c.h"

#define N_MSGS 120 /* seqs 2..121 after the creator's JOINED */

static mx_user a, b;
static char room[65];

/* Asks a page and checks it holds seqs from..to (empty when from > to). */
static void
expect_page(rpc_client *hist, uint64_t before, uint64_t after, uint32_t limit, uint64_t from,
	    uint64_t to, bool more, uint64_t head)
{
	Parley__V1__GetHistoryRequest r = PARLEY__V1__GET_HISTORY_REQUEST__INIT;
	Parley__V1__GetHistoryResponse *h;
	rpc_call_opts o = {.timeout_ms = 10000, .token = a.token};
	size_t want = from <= to ? (size_t)(to - from + 1) : 0;
	rpc_status st;

	r.room_id = room;
	r.before_seq = before;
	r.after_seq = after;
	r.limit = limit;
	TH_CODE(rpc_client_call(hist, &parley__v1__history__descriptor, "GetHistory", &r.base,
				(ProtobufCMessage **)&h, &o, &st),
		RPC_OK, &st);
	TH_CHECK(h->n_events == want && h->has_more == more && h->head_seq == head,
		 "before %llu after %llu limit %u: got %zu events, has_more %d, head %llu; want "
		 "%zu, %d, %llu",
		 (unsigned long long)before, (unsigned long long)after, limit, h->n_events,
		 h->has_more, (unsigned long long)h->head_seq, want, more, (unsigned long long)head);
	for (size_t i = 0; i < h->n_events; i++) {
		char text[32];
		const Parley__V1__Event *e = h->events[i];

		TH_CHECK(e->seq == from + i, "ascending from %llu", (unsigned long long)from);
		TH_CHECK(strcmp(e->room_id, room) == 0 && e->ts_ms > 0, "room and ts set");
		if (e->seq >= 2 && e->seq <= N_MSGS + 1) {
			snprintf(text, sizeof(text), "message %llu", (unsigned long long)e->seq - 2);
			TH_CHECK(e->body_case == PARLEY__V1__EVENT__BODY_MESSAGE &&
				     strcmp(e->message->text, text) == 0,
				 "seq %llu is '%s'", (unsigned long long)e->seq, text);
		}
	}
	protobuf_c_message_free_unpacked(&h->base, NULL);
}

static void
test_paging(void)
{
	const uint64_t head = N_MSGS + 1;

	expect_page(mx_hist, 0, 0, 0, head - 49, head, true, head);	/* latest 50 */
	expect_page(mx_hist, 0, 0, 500, 1, head, false, head);		/* all */
	expect_page(mx_hist, 0, 0, 1, head, head, true, head);
	expect_page(mx_hist, head - 49, 0, 50, head - 99, head - 50, true, head);
	expect_page(mx_hist, 22, 0, 50, 1, 21, false, head);
	expect_page(mx_hist, 2, 0, 50, 1, 1, false, head);
	expect_page(mx_hist, 1, 0, 50, 1, 0, false, head);		/* nothing before 1 */
	expect_page(mx_hist, 100000, 0, 10, head - 9, head, true, head); /* past the end */
	expect_page(mx_hist, 0, 50, 10, 51, 60, true, head);
	expect_page(mx_hist, 0, 100, 50, 101, head, false, head);
	expect_page(mx_hist, 0, head - 1, 50, head, head, false, head);
	expect_page(mx_hist, 0, head, 50, 1, 0, false, head);		/* nothing after head */
	expect_page(mx_hist, 0, 100000, 50, 1, 0, false, head);
	printf("ok paging before/after, limits, has_more, head_seq\n");
}

static void
test_members_only(void)
{
	Parley__V1__GetHistoryResponse *h;
	rpc_status st;

	TH_CODE(mx_history(&b, room, 0, 0, 0, &h, &st), RPC_PERMISSION_DENIED, &st);
	TH_CODE(mx_history(&a, "no-such-room", 0, 0, 0, &h, &st), RPC_NOT_FOUND, &st);
	TH_CODE(mx_join(&b, room, &st), RPC_OK, &st);
	TH_CODE(mx_history(&b, room, 0, 0, 1, &h, &st), RPC_OK, &st);
	protobuf_c_message_free_unpacked(&h->base, NULL);
	TH_CODE(mx_leave(&b, room, &st), RPC_OK, &st);
	TH_CODE(mx_history(&b, room, 0, 0, 1, &h, &st), RPC_PERMISSION_DENIED, &st);
	mx_wait_membership(&a, room, b.name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT);
	printf("ok members only; refused right after LeaveRoom\n");
}

/* Sets d up to run in a process of its own beside `of`: the same data
 * directory, and of's auth and rooms to call (extra[0..3]; more arguments
 * go from extra[4]). */
static void
beside(th_daemon *d, const th_daemon *of)
{
	snprintf(d->dir, sizeof(d->dir), "%s", of->dir);
	d->extra[0] = "--auth";
	d->extra[1] = of->auth;
	d->extra[2] = "--rooms";
	d->extra[3] = of->rooms;
}

/* History in a daemon of its own on the same data directory. */
static void
test_read_only_process(void)
{
	th_daemon h = {0};
	rpc_client *hist;
	Parley__V1__GetHistoryResponse *r;
	rpc_call_opts o = {.timeout_ms = 10000, .token = a.token};
	Parley__V1__GetHistoryRequest req = PARLEY__V1__GET_HISTORY_REQUEST__INIT;
	uint64_t head, seq;
	rpc_status st;

	beside(&h, &mx_d);
	TH_CHECK(th_start(&h, "history"), "start a history-only parleyd");
	hist = th_client(h.history);
	TH_CODE(mx_history(&a, room, 0, 0, 1, &r, &st), RPC_OK, &st);
	head = r->head_seq;
	protobuf_c_message_free_unpacked(&r->base, NULL);
	req.room_id = room;
	req.limit = 1;
	TH_CODE(rpc_client_call(hist, &parley__v1__history__descriptor, "GetHistory", &req.base,
				(ProtobufCMessage **)&r, &o, &st),
		RPC_OK, &st);
	TH_CHECK(r->head_seq == head, "the same head from the other process");
	protobuf_c_message_free_unpacked(&r->base, NULL);
	/* A message written after it opened is there too. */
	TH_CODE(mx_send(&a, room, "late news", NULL, &seq, NULL, &st), RPC_OK, &st);
	TH_CODE(rpc_client_call(hist, &parley__v1__history__descriptor, "GetHistory", &req.base,
				(ProtobufCMessage **)&r, &o, &st),
		RPC_OK, &st);
	TH_CHECK(r->head_seq == seq && r->n_events == 1 && r->events[0]->seq == seq &&
		     strcmp(r->events[0]->message->text, "late news") == 0,
		 "the new message is read");
	protobuf_c_message_free_unpacked(&r->base, NULL);
	rpc_client_close(hist);
	TH_CHECK(th_stop(&h) == 0, "history-only parleyd exits 0");
	printf("ok a history service in its own process reads the store read-only\n");
}

/* A history-only daemon opened before any message table exists. */
static void
test_tables_appear_later(void)
{
	th_daemon x = {0}, h = {0}, m = {0};
	mx_user u;
	rpc_client *xauth, *xrooms, *hist;
	Parley__V1__GetHistoryRequest req = PARLEY__V1__GET_HISTORY_REQUEST__INIT;
	Parley__V1__CreateRoomRequest cr = PARLEY__V1__CREATE_ROOM_REQUEST__INIT;
	Parley__V1__GetHistoryResponse *r;
	ProtobufCMessage *resp;
	rpc_call_opts o = {.timeout_ms = 10000};
	uint64_t head = 0;
	rpc_status st;

	TH_CHECK(th_start(&x, "auth,rooms"), "auth and rooms only");
	xauth = th_client(x.auth);
	xrooms = th_client(x.rooms);
	snprintf(u.name, sizeof(u.name), "%s", th_name("early"));
	th_register_login(xauth, u.name, u.token, sizeof(u.token));
	o.token = u.token;
	cr.room_id = "early";
	TH_CODE(rpc_client_call(xrooms, &parley__v1__rooms__descriptor, "CreateRoom", &cr.base, &resp,
				&o, &st),
		RPC_OK, &st);
	protobuf_c_message_free_unpacked(resp, NULL);

	beside(&h, &x);
	TH_CHECK(th_start(&h, "history"), "history-only parleyd before any message table");
	hist = th_client(h.history);
	req.room_id = "early";
	TH_CODE(rpc_client_call(hist, &parley__v1__history__descriptor, "GetHistory", &req.base,
				(ProtobufCMessage **)&r, &o, &st),
		RPC_OK, &st);
	TH_CHECK(r->head_seq == 0 && r->n_events == 0 && !r->has_more, "an empty timeline");
	protobuf_c_message_free_unpacked(&r->base, NULL);

	/* Messaging comes up in a third process, creates its tables and
	 * copies the creator's JOINED in; the history process sees it. */
	beside(&m, &x);
	m.extra[4] = "--room-events";
	m.extra[5] = x.room_events;
	m.extra[6] = "--rooms-internal";
	m.extra[7] = x.rooms_internal;
	TH_CHECK(th_start(&m, "messaging"), "messaging in its own process");
	for (int i = 0; i < 200 && head == 0; i++) {
		TH_CODE(rpc_client_call(hist, &parley__v1__history__descriptor, "GetHistory",
					&req.base, (ProtobufCMessage **)&r, &o, &st),
			RPC_OK, &st);
		head = r->head_seq;
		if (head > 0)
			TH_CHECK(r->n_events == 1 &&
				     r->events[0]->body_case == PARLEY__V1__EVENT__BODY_MEMBERSHIP &&
				     strcmp(r->events[0]->sender, u.name) == 0,
				 "the creator's JOINED");
		protobuf_c_message_free_unpacked(&r->base, NULL);
		if (head == 0)
			usleep(50000);
	}
	TH_CHECK(head == 1, "the history process found the new tables");
	rpc_client_close(hist);
	rpc_client_close(xrooms);
	rpc_client_close(xauth);
	TH_CHECK(th_stop(&m) == 0 && th_stop(&h) == 0, "clean exits");
	th_cleanup(&x);
	printf("ok a read-only history opens tables created after it started\n");
}

int
main(void)
{
	rpc_status st;

	mx_start(NULL);
	mx_users_new(&a, 1, "hista");
	mx_users_new(&b, 1, "histb");
	snprintf(room, sizeof(room), "%s", th_name("hist"));
	TH_CODE(mx_create_room(&a, room, &st), RPC_OK, &st);
	mx_wait_membership(&a, room, a.name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED);
	for (int i = 0; i < N_MSGS; i++) {
		char text[32];
		uint64_t seq;

		snprintf(text, sizeof(text), "message %d", i);
		TH_CODE(mx_send(&a, room, text, NULL, &seq, NULL, &st), RPC_OK, &st);
		TH_CHECK(seq == (uint64_t)i + 2, "seq %llu", (unsigned long long)seq);
	}
	test_paging();
	test_read_only_process();
	test_members_only();
	test_tables_appear_later();
	mx_stop();
	return 0;
}

/*
 * chat_live_test.c — per-user presence, typing and history FORWARD
 * (issue 10, items 5, 7 and 8) against a real parleyd.
 *
 *   - presence with two sessions of one user: one ONLINE when the first
 *     opens, no OFFLINE when the first of the two closes, one OFFLINE when
 *     the last does; parley.internal.v1.Presence/Online agrees at each step
 *     and refuses bad input and non-members with their messages;
 *   - typing: TypingChange (seq 0) reaches the other member's session, and
 *     typing = false follows by itself, stamped at least 6 s after the
 *     typing = true; the per-room rate limit answers RESOURCE_EXHAUSTED
 *     with retry_after_ms; non-members and bad rooms are refused;
 *   - GetHistory FORWARD from after_seq 0 pages from seq 1; the direction
 *     rules with their messages; UNSPECIFIED still reads the latest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mx_util.h"
#include "parley/internal/v1/presence.pb-c.h"

/* Online(room, ids) as u: the number of ids online, or -1 with st. */
static int
online(const mx_user *u, const char *room, const char *const *ids, size_t n, rpc_status *st)
{
	Parley__Internal__V1__OnlineRequest r = PARLEY__INTERNAL__V1__ONLINE_REQUEST__INIT;
	Parley__Internal__V1__OnlineResponse *resp;
	int k;

	r.room_id = (char *)room;
	r.user_ids = (char **)ids;
	r.n_user_ids = n;
	if (mx_call(mx_msg, &parley__internal__v1__presence__descriptor, "Online", u, &r.base,
		    (ProtobufCMessage **)&resp, st) != RPC_OK)
		return -1;
	k = (int)resp->n_online_user_ids;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return k;
}

static rpc_code
typing(const mx_user *u, const char *room, bool on, rpc_status *st)
{
	Parley__V1__SetTypingRequest r = PARLEY__V1__SET_TYPING_REQUEST__INIT;

	r.room_id = (char *)room;
	r.typing = on;
	return mx_call(mx_msg, &parley__v1__messaging__descriptor, "SetTyping", u, &r.base, NULL,
		       st);
}

struct seen {
	int online, offline, typing_on, typing_off;
	uint64_t on_ts, off_ts;
	bool marker;
};

/* Polls sid until the marker text (if any) or `until` says stop. */
static void
poll_into(const mx_user *u, const char *sid, const char *who, const char *marker,
	  struct seen *s, bool (*until)(const struct seen *))
{
	rpc_status st = {0};

	for (int rounds = 0; rounds < 200 && !until(s); rounds++) {
		Parley__V1__PollResponse *p;

		TH_CODE(mx_poll(u, sid, 2000, 0, &p, &st), RPC_OK, &st);
		for (size_t i = 0; i < p->n_events; i++) {
			Parley__V1__Event *e = p->events[i];

			if (marker != NULL && e->body_case == PARLEY__V1__EVENT__BODY_MESSAGE &&
			    strcmp(e->message->text, marker) == 0)
				s->marker = true;
			if (strcmp(e->sender, who) != 0)
				continue;
			if (e->body_case == PARLEY__V1__EVENT__BODY_PRESENCE) {
				TH_CHECK(e->seq == 0, "presence is ephemeral");
				s->online += e->presence->state ==
					     PARLEY__V1__PRESENCE_CHANGE__STATE__ONLINE;
				s->offline += e->presence->state ==
					      PARLEY__V1__PRESENCE_CHANGE__STATE__OFFLINE;
			} else if (e->body_case == PARLEY__V1__EVENT__BODY_TYPING) {
				TH_CHECK(e->seq == 0, "typing is ephemeral");
				if (e->typing->typing) {
					s->typing_on++;
					s->on_ts = e->ts_ms;
				} else {
					s->typing_off++;
					s->off_ts = e->ts_ms;
				}
			}
		}
		protobuf_c_message_free_unpacked(&p->base, NULL);
	}
	TH_CHECK(until(s), "the awaited events came");
}

static bool got_online(const struct seen *s) { return s->online > 0; }
static bool got_marker(const struct seen *s) { return s->marker; }
static bool got_offline(const struct seen *s) { return s->offline > 0; }
static bool got_typing_on(const struct seen *s) { return s->typing_on > 0; }
static bool got_typing_off(const struct seen *s) { return s->typing_off > 0; }

static void
presence(mx_user *alice, mx_user *bob, mx_user *carol, const char *room)
{
	const char *r1[1] = {room};
	const char *ids[3] = {alice->name, bob->name, carol->name};
	char bob_sid[80], a1[80], a2[80];
	struct seen s = {0};
	rpc_status st = {0};
	static const char *many[1001];

	TH_CODE(mx_open(bob, 1, r1, NULL, bob_sid, NULL, &st), RPC_OK, &st);
	TH_CHECK(online(bob, room, ids, 3, &st) == 1, "only bob is online (%s)", st.message);
	TH_CODE(mx_open(alice, 1, r1, NULL, a1, NULL, &st), RPC_OK, &st);
	poll_into(bob, bob_sid, alice->name, NULL, &s, got_online);
	TH_CODE(mx_open(alice, 1, r1, NULL, a2, NULL, &st), RPC_OK, &st);
	TH_CHECK(online(bob, room, ids, 3, &st) == 2, "alice and bob are online");

	/* The first of alice's two sessions ends: nothing to say. */
	TH_CODE(mx_close(alice, a1, &st), RPC_OK, &st);
	TH_CHECK(online(bob, room, ids, 3, &st) == 2, "alice is online while a session is open");
	TH_CODE(mx_send(bob, room, "marker one", NULL, NULL, NULL, &st), RPC_OK, &st);
	poll_into(bob, bob_sid, alice->name, "marker one", &s, got_marker);
	TH_CHECK(s.offline == 0 && s.online == 1, "no OFFLINE while another session is open");

	/* The last one ends: OFFLINE once. */
	TH_CODE(mx_close(alice, a2, &st), RPC_OK, &st);
	poll_into(bob, bob_sid, alice->name, NULL, &s, got_offline);
	s.marker = false;
	TH_CODE(mx_send(bob, room, "marker two", NULL, NULL, NULL, &st), RPC_OK, &st);
	poll_into(bob, bob_sid, alice->name, "marker two", &s, got_marker);
	TH_CHECK(s.online == 1 && s.offline == 1, "one ONLINE and one OFFLINE (%d, %d)", s.online,
		 s.offline);
	TH_CHECK(online(bob, room, ids, 3, &st) == 1, "alice is offline");
	TH_CODE(mx_close(bob, bob_sid, &st), RPC_OK, &st);

	/* Online's refusals. */
	TH_CHECK(online(carol, room, ids, 3, &st) < 0 && st.code == RPC_PERMISSION_DENIED &&
			 strstr(st.message, "not a member") != NULL,
		 "a non-member is refused (%s)", st.message);
	for (int i = 0; i < 1001; i++)
		many[i] = alice->name;
	TH_CHECK(online(bob, room, many, 1001, &st) < 0 && st.code == RPC_INVALID_ARGUMENT &&
			 strstr(st.message, "at most 1000") != NULL,
		 "1001 ids are refused (%s)", st.message);
	ids[1] = "Not A User";
	TH_CHECK(online(bob, room, ids, 3, &st) < 0 && st.code == RPC_INVALID_ARGUMENT &&
			 strstr(st.message, "user_ids[1]") != NULL,
		 "a bad id is refused (%s)", st.message);
	TH_CHECK(online(bob, "Bad Room", ids, 1, &st) < 0 && st.code == RPC_INVALID_ARGUMENT &&
			 strstr(st.message, "room_id must be") != NULL,
		 "a bad room is refused (%s)", st.message);
	TH_CHECK(online(NULL, room, ids, 1, &st) < 0 && st.code == RPC_UNAUTHENTICATED,
		 "Online needs a token");
}

static void
typing_notices(mx_user *alice, mx_user *bob, mx_user *carol, const char *room,
	       const char *room2)
{
	const char *r1[1] = {room};
	char sid[80];
	struct seen s = {0};
	rpc_status st = {0};
	rpc_code code = RPC_OK;
	int calls;

	TH_CODE(mx_open(bob, 1, r1, NULL, sid, NULL, &st), RPC_OK, &st);
	TH_CODE(typing(alice, room, true, &st), RPC_OK, &st);
	poll_into(bob, sid, alice->name, NULL, &s, got_typing_on);
	poll_into(bob, sid, alice->name, NULL, &s, got_typing_off);
	TH_CHECK(s.typing_on == 1 && s.typing_off == 1, "one typing=true, then one false");
	/* The lapse runs on the monotonic clock; the two stamps are wall-clock
	 * milliseconds, each rounded down: they may differ by a little less. */
	TH_CHECK(s.off_ts + 5 >= s.on_ts + 6000, "typing lapses 6 s after the last true (%llu ms)",
		 (unsigned long long)(s.off_ts - s.on_ts));
	TH_CODE(mx_close(bob, sid, &st), RPC_OK, &st);

	/* A burst of 5, then one a second: 20 quick calls run out. */
	for (calls = 0; calls < 20 && code == RPC_OK; calls++)
		code = typing(alice, room2, calls % 2 == 0, &st);
	TH_CODE(code, RPC_RESOURCE_EXHAUSTED, &st);
	TH_CHECK(st.retry_after_ms > 0 && strstr(st.message, "typing notices") != NULL,
		 "the limit says when to try again (%u, %s)", st.retry_after_ms, st.message);
	TH_CHECK(calls > 5, "the first 5 pass (%d)", calls);
	TH_CODE(typing(carol, room, true, &st), RPC_PERMISSION_DENIED, &st);
	TH_CHECK(strstr(st.message, "not a member") != NULL, "%s", st.message);
	TH_CODE(typing(alice, "Bad Room", true, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CHECK(strstr(st.message, "room_id must be") != NULL, "%s", st.message);
}

static rpc_code
history_dir(const mx_user *u, const char *room, uint64_t before, uint64_t after, uint32_t limit,
	    int dir, Parley__V1__GetHistoryResponse **out, rpc_status *st)
{
	Parley__V1__GetHistoryRequest r = PARLEY__V1__GET_HISTORY_REQUEST__INIT;

	r.room_id = (char *)room;
	r.before_seq = before;
	r.after_seq = after;
	r.limit = limit;
	r.direction = (Parley__V1__GetHistoryRequest__Direction)dir;
	return mx_call(mx_hist, &parley__v1__history__descriptor, "GetHistory", u, &r.base,
		       (ProtobufCMessage **)out, st);
}

static void
forward(mx_user *alice, const char *room)
{
	Parley__V1__GetHistoryResponse *h;
	rpc_status st = {0};
	const int fwd = PARLEY__V1__GET_HISTORY_REQUEST__DIRECTION__FORWARD;
	const int back = PARLEY__V1__GET_HISTORY_REQUEST__DIRECTION__BACKWARD;

	for (int i = 0; i < 4; i++)
		TH_CODE(mx_send(alice, room, "page me", NULL, NULL, NULL, &st), RPC_OK, &st);
	TH_CODE(history_dir(alice, room, 0, 0, 2, fwd, &h, &st), RPC_OK, &st);
	TH_CHECK(h->n_events == 2 && h->events[0]->seq == 1 && h->events[1]->seq == 2 &&
			 h->has_more,
		 "FORWARD from 0 starts at seq 1");
	protobuf_c_message_free_unpacked(&h->base, NULL);
	TH_CODE(history_dir(alice, room, 0, 2, 2, fwd, &h, &st), RPC_OK, &st);
	TH_CHECK(h->n_events == 2 && h->events[0]->seq == 3, "FORWARD after 2 starts at 3");
	protobuf_c_message_free_unpacked(&h->base, NULL);
	TH_CODE(history_dir(alice, room, 0, 0, 2, 0, &h, &st), RPC_OK, &st);
	TH_CHECK(h->n_events == 2 && h->events[1]->seq == h->head_seq,
		 "UNSPECIFIED with both 0 reads the latest");
	protobuf_c_message_free_unpacked(&h->base, NULL);
	TH_CODE(history_dir(alice, room, 0, 0, 2, back, &h, &st), RPC_OK, &st);
	TH_CHECK(h->n_events == 2 && h->events[1]->seq == h->head_seq,
		 "BACKWARD with both 0 reads the latest");
	protobuf_c_message_free_unpacked(&h->base, NULL);
	TH_CODE(history_dir(alice, room, 0, 2, 2, back, &h, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CHECK(strstr(st.message, "after_seq must be 0") != NULL, "%s", st.message);
	TH_CODE(history_dir(alice, room, 3, 0, 2, fwd, &h, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CHECK(strstr(st.message, "before_seq must be 0") != NULL, "%s", st.message);
	TH_CODE(history_dir(alice, room, 0, 0, 2, 7, &h, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CHECK(strstr(st.message, "direction must be") != NULL, "%s", st.message);
}

int
main(void)
{
	mx_user alice, bob, carol;
	char room[65], room2[65], room3[65];
	rpc_status st = {0};

	mx_start(NULL);
	mx_user_new(&alice, "lv");
	mx_user_new(&bob, "lv");
	mx_user_new(&carol, "lv");
	snprintf(room, sizeof(room), "%s", th_name("live"));
	snprintf(room2, sizeof(room2), "%s", th_name("live"));
	snprintf(room3, sizeof(room3), "%s", th_name("live"));
	TH_CODE(mx_create_room(&alice, room, &st), RPC_OK, &st);
	TH_CODE(mx_create_room(&alice, room2, &st), RPC_OK, &st);
	TH_CODE(mx_create_room(&alice, room3, &st), RPC_OK, &st);
	TH_CODE(mx_join(&bob, room, &st), RPC_OK, &st);

	presence(&alice, &bob, &carol, room);
	typing_notices(&alice, &bob, &carol, room, room2);
	forward(&alice, room3);

	mx_stop();
	printf("chat_live_test: ok\n");
	return 0;
}

/*
 * messaging_test.c — the Messaging service end to end on a real parleyd:
 * idempotent sends, permissions and leaving, presence, resume, the PUB
 * backbone seen from outside, session expiry and caps, and bad input.
 */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "mx_util.h"
#include "parley/v1/health.pb-c.h"

#define GOT_MAX 4096
#define MAX_SESSIONS 20		/* the daemon's --max-sessions... */
#define MAX_USER_SESSIONS 12	/* ...and --max-user-sessions */
#define STR_(x) #x
#define STR(x) STR_(x)

/* What one session has been given, in order. */
struct got {
	size_t n;
	struct {
		char room[65];
		char sender[40];
		char text[128];
		uint64_t seq;
		int body;
		int kind; /* membership kind or presence state */
	} e[GOT_MAX];
};

static struct got g1;

static void
poll_once(const mx_user *u, const char *sid, uint32_t wait_ms, struct got *g)
{
	Parley__V1__PollResponse *r;
	rpc_status st;

	TH_CODE(mx_poll(u, sid, wait_ms, 1000, &r, &st), RPC_OK, &st);
	for (size_t i = 0; i < r->n_events; i++) {
		const Parley__V1__Event *e = r->events[i];

		TH_CHECK(g->n < GOT_MAX, "too many events");
		snprintf(g->e[g->n].room, sizeof(g->e[0].room), "%s", e->room_id);
		snprintf(g->e[g->n].sender, sizeof(g->e[0].sender), "%s", e->sender);
		g->e[g->n].text[0] = '\0';
		g->e[g->n].seq = e->seq;
		g->e[g->n].body = e->body_case;
		g->e[g->n].kind = 0;
		if (e->body_case == PARLEY__V1__EVENT__BODY_MESSAGE)
			snprintf(g->e[g->n].text, sizeof(g->e[0].text), "%s", e->message->text);
		else if (e->body_case == PARLEY__V1__EVENT__BODY_MEMBERSHIP)
			g->e[g->n].kind = e->membership->kind;
		else if (e->body_case == PARLEY__V1__EVENT__BODY_PRESENCE)
			g->e[g->n].kind = e->presence->state;
		TH_CHECK(e->ts_ms > 0, "ts set");
		g->n++;
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* The last seq of room in g (0 if none). */
static uint64_t
last_seq(const struct got *g, const char *room)
{
	uint64_t s = 0;

	for (size_t i = 0; i < g->n; i++)
		if (strcmp(g->e[i].room, room) == 0 && g->e[i].seq > 0)
			s = g->e[i].seq;
	return s;
}

/* Polls until room's last seq in g reaches seq. */
static void
poll_to_seq(const mx_user *u, const char *sid, struct got *g, const char *room, uint64_t seq)
{
	for (int i = 0; i < 200 && last_seq(g, room) < seq; i++)
		poll_once(u, sid, 1000, g);
	TH_CHECK(last_seq(g, room) >= seq, "%s reached seq %llu of %s (at %llu)", u->name,
		 (unsigned long long)seq, room, (unsigned long long)last_seq(g, room));
}

/* Index of the presence event of user with state in g, or -1. */
static long
find_presence(const struct got *g, const char *user, int state)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->e[i].body == PARLEY__V1__EVENT__BODY_PRESENCE &&
		    strcmp(g->e[i].sender, user) == 0 && g->e[i].kind == state)
			return (long)i;
	return -1;
}

static void
poll_to_presence(const mx_user *u, const char *sid, struct got *g, const char *user, int state)
{
	for (int i = 0; i < 100 && find_presence(g, user, state) < 0; i++)
		poll_once(u, sid, 1000, g);
	TH_CHECK(find_presence(g, user, state) >= 0, "%s saw presence %d of %s", u->name, state,
		 user);
}

/* Is event i the session user's removal from its room? Delivered alone,
 * after a gap: what came just before it may have been sent after the
 * user left, so it is withheld. */
static bool
is_removal(const struct got *g, size_t i)
{
	return g->e[i].body == PARLEY__V1__EVENT__BODY_MEMBERSHIP &&
	       (g->e[i].kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT ||
		g->e[i].kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__KICKED ||
		g->e[i].kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__BANNED);
}

/* Checks per-room order in g: each room's seqs are consecutive (but for a
 * removal, which only has to come later). */
static void
check_order(const struct got *g)
{
	for (size_t i = 0; i < g->n; i++) {
		uint64_t prev = 0;
		bool first = true;

		if (g->e[i].seq == 0)
			continue;
		for (size_t k = 0; k < i; k++)
			if (g->e[k].seq != 0 && strcmp(g->e[k].room, g->e[i].room) == 0) {
				prev = g->e[k].seq;
				first = false;
			}
		TH_CHECK(first || g->e[i].seq == prev + 1 || (is_removal(g, i) && g->e[i].seq > prev),
			 "room %s: seq %llu after %llu",
			 g->e[i].room, (unsigned long long)g->e[i].seq, (unsigned long long)prev);
	}
}

static void
new_room(const mx_user *owner, char *room)
{
	rpc_status st;

	snprintf(room, 65, "%s", th_name("room"));
	TH_CODE(mx_create_room(owner, room, &st), RPC_OK, &st);
	mx_wait_membership(owner, room, owner->name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED);
}

static void
join(const mx_user *u, const char *room)
{
	rpc_status st;

	TH_CODE(mx_join(u, room, &st), RPC_OK, &st);
	mx_wait_membership(u, room, u->name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED);
}

/* ---- the tests ------------------------------------------------------------- */

/* Opens a session of u until it is let in, or fails the test after a
 * bounded number of tries: a closed session's worker ends on its own
 * thread, so its place frees up shortly after Close returns. */
static void
open_when_freed(const mx_user *u, const char *const *rooms, char *sid)
{
	rpc_status st;
	rpc_code code = RPC_OK;

	for (int i = 0; i < 250; i++) {
		code = mx_open(u, 1, rooms, NULL, sid, NULL, &st);
		if (code != RPC_RESOURCE_EXHAUSTED)
			break;
		usleep(20000);
	}
	TH_CODE(code, RPC_OK, &st);
}

/* The daemon allows MAX_SESSIONS sessions, MAX_USER_SESSIONS of one user:
 * a takes its whole share, b the rest. */
static void
test_max_sessions(const mx_user *a, const mx_user *b)
{
	char room[65], sa[MAX_USER_SESSIONS][65], sb[MAX_SESSIONS - MAX_USER_SESSIONS][65];
	char extra[65];
	const char *rooms[1] = {room};
	const int nb = MAX_SESSIONS - MAX_USER_SESSIONS;
	rpc_status st;

	new_room(a, room);
	join(b, room);
	for (int i = 0; i < MAX_USER_SESSIONS; i++)
		TH_CODE(mx_open(a, 1, rooms, NULL, sa[i], NULL, &st), RPC_OK, &st);
	TH_CODE(mx_open(a, 1, rooms, NULL, extra, NULL, &st), RPC_RESOURCE_EXHAUSTED, &st);
	TH_CHECK(st.retry_after_ms > 0, "a retry hint");
	TH_CHECK(strstr(st.message, "you have too many") != NULL, "the user's cap: %s",
		 st.message);
	/* A session whose Close was answered is no longer its user's: the
	 * place is free at once, although its worker may still be ending
	 * (that counts against the global cap only). */
	TH_CODE(mx_close(a, sa[0], &st), RPC_OK, &st);
	TH_CODE(mx_open(a, 1, rooms, NULL, sa[0], NULL, &st), RPC_OK, &st);

	/* Another user is not held back by a's cap, only by the global one
	 * (where the worker of a's closed session may count a moment more). */
	for (int i = 0; i < nb; i++)
		open_when_freed(b, rooms, sb[i]);
	TH_CODE(mx_open(b, 1, rooms, NULL, extra, NULL, &st), RPC_RESOURCE_EXHAUSTED, &st);
	TH_CHECK(st.retry_after_ms > 0, "a retry hint");
	TH_CHECK(strstr(st.message, "you have") == NULL, "the global cap: %s", st.message);

	/* A closed session gives its place back to its user... */
	TH_CODE(mx_close(a, sa[0], &st), RPC_OK, &st);
	open_when_freed(a, rooms, sa[0]);
	TH_CODE(mx_open(a, 1, rooms, NULL, extra, NULL, &st), RPC_RESOURCE_EXHAUSTED, &st);
	/* ...and to everyone. */
	TH_CODE(mx_close(b, sb[0], &st), RPC_OK, &st);
	open_when_freed(b, rooms, sb[0]);
	TH_CODE(mx_open(b, 1, rooms, NULL, extra, NULL, &st), RPC_RESOURCE_EXHAUSTED, &st);

	for (int i = 0; i < MAX_USER_SESSIONS; i++)
		TH_CODE(mx_close(a, sa[i], &st), RPC_OK, &st);
	for (int i = 0; i < nb; i++)
		TH_CODE(mx_close(b, sb[i], &st), RPC_OK, &st);
	printf("ok max sessions, overall and per user\n");
}

static void
test_send_idempotent(const mx_user *a, const mx_user *b)
{
	char r1[65], r2[65];
	uint64_t s1, t1, s, t, s_b, n1, n2;
	Parley__V1__GetHistoryResponse *h;
	rpc_status st;

	new_room(a, r1);
	new_room(a, r2);
	TH_CODE(mx_send(a, r1, "hello", "m1", &s1, &t1, &st), RPC_OK, &st);
	TH_CHECK(s1 == 2, "first message after JOINED is seq 2, got %llu", (unsigned long long)s1);
	TH_CHECK(t1 > 0, "ts assigned");
	TH_CODE(mx_send(a, r1, "hello", "m1", &s, &t, &st), RPC_OK, &st);
	TH_CHECK(s == s1 && t == t1, "retry gives the original seq and ts");
	TH_CODE(mx_send(a, r1, "hello again", "m1", &s, &t, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CHECK(strstr(st.message, "client_msg_id") != NULL, "says why: %s", st.message);
	TH_CODE(mx_send(a, r2, "hello", "m1", &s, &t, &st), RPC_INVALID_ARGUMENT, &st);
	join(b, r1);
	TH_CODE(mx_send(b, r1, "hello", "m1", &s_b, NULL, &st), RPC_OK, &st);
	TH_CHECK(s_b > s1, "another sender's m1 is its own message");
	TH_CODE(mx_send(a, r1, "no id", NULL, &n1, NULL, &st), RPC_OK, &st);
	TH_CODE(mx_send(a, r1, "no id", NULL, &n2, NULL, &st), RPC_OK, &st);
	TH_CHECK(n2 == n1 + 1, "without an id every send is new");

	TH_CODE(mx_history(a, r1, 0, 0, 0, &h, &st), RPC_OK, &st);
	TH_CHECK(h->head_seq == n2 && h->n_events == n2 && !h->has_more, "history of %s: %zu/%llu",
		 r1, h->n_events, (unsigned long long)h->head_seq);
	for (size_t i = 0; i < h->n_events; i++)
		TH_CHECK(h->events[i]->seq == i + 1, "ascending, gap-free");
	TH_CHECK(h->events[s1 - 1]->body_case == PARLEY__V1__EVENT__BODY_MESSAGE &&
		     strcmp(h->events[s1 - 1]->message->text, "hello") == 0 &&
		     strcmp(h->events[s1 - 1]->message->client_msg_id, "m1") == 0 &&
		     strcmp(h->events[s1 - 1]->sender, a->name) == 0 &&
		     h->events[s1 - 1]->ts_ms == t1,
		 "stored as sent");
	TH_CHECK(h->events[0]->body_case == PARLEY__V1__EVENT__BODY_MEMBERSHIP &&
		     h->events[0]->membership->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED,
		 "JOINED first");
	protobuf_c_message_free_unpacked(&h->base, NULL);
	printf("ok send: seqs, idempotent retries, history\n");
}

struct dup_send {
	const mx_user *u;
	const char *room;
	uint64_t seq, ts;
};

static void *
dup_sender(void *arg)
{
	struct dup_send *d = arg;
	rpc_status st;

	TH_CODE(mx_send(d->u, d->room, "said once", "same-id", &d->seq, &d->ts, &st), RPC_OK, &st);
	return NULL;
}

/* The same send from many threads at once lands in one batch or in
 * several: either way it is stored once and everyone gets its seq. */
static void
test_concurrent_retries(const mx_user *a)
{
	char room[65];
	struct dup_send d[8];
	pthread_t t[8];
	Parley__V1__GetHistoryResponse *h;
	size_t found = 0;
	rpc_status st;

	new_room(a, room);
	for (int i = 0; i < 8; i++) {
		d[i] = (struct dup_send){.u = a, .room = room};
		TH_CHECK(pthread_create(&t[i], NULL, dup_sender, &d[i]) == 0, "thread");
	}
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	for (int i = 1; i < 8; i++)
		TH_CHECK(d[i].seq == d[0].seq && d[i].ts == d[0].ts, "one seq for all: %llu vs %llu",
			 (unsigned long long)d[i].seq, (unsigned long long)d[0].seq);
	TH_CODE(mx_history(a, room, 0, 0, 500, &h, &st), RPC_OK, &st);
	for (size_t i = 0; i < h->n_events; i++)
		found += h->events[i]->body_case == PARLEY__V1__EVENT__BODY_MESSAGE;
	TH_CHECK(found == 1 && h->head_seq == d[0].seq, "stored once (%zu)", found);
	protobuf_c_message_free_unpacked(&h->base, NULL);
	printf("ok concurrent retries of one send store it once\n");
}

static void
test_permissions_and_leave(const mx_user *a, const mx_user *b, const mx_user *c)
{
	char rp[65], rq[65], sid[65], refused[65];
	const char *rooms[2] = {rp, rq};
	uint64_t heads[2], seq, left_seq, keep_seq;
	Parley__V1__GetHistoryResponse *h;
	size_t before;
	rpc_status st;

	new_room(a, rp);
	new_room(a, rq);
	/* c is in neither room. */
	TH_CODE(mx_send(c, rp, "let me in", "x", &seq, NULL, &st), RPC_PERMISSION_DENIED, &st);
	TH_CHECK(strstr(st.message, rp) != NULL, "names the room: %s", st.message);
	TH_CODE(mx_open(c, 1, rooms, NULL, sid, NULL, &st), RPC_PERMISSION_DENIED, &st);
	TH_CODE(mx_history(c, rp, 0, 0, 0, &h, &st), RPC_PERMISSION_DENIED, &st);
	TH_CODE(mx_send(a, "no-such-room-here", "hi", NULL, &seq, NULL, &st), RPC_NOT_FOUND, &st);

	join(b, rp);
	join(b, rq);
	TH_CODE(mx_send(a, rp, "before leave", NULL, &seq, NULL, &st), RPC_OK, &st);
	TH_CODE(mx_open(b, 2, rooms, NULL, sid, heads, &st), RPC_OK, &st);
	memset(&g1, 0, sizeof(g1));
	poll_to_seq(b, sid, &g1, rp, seq);
	poll_to_seq(b, sid, &g1, rq, heads[1]);

	TH_CODE(mx_leave(b, rp, &st), RPC_OK, &st);
	before = g1.n;
	/* Refused at once, no waiting for the membership log. */
	TH_CODE(mx_send(b, rp, "still here?", NULL, &seq, NULL, &st), RPC_PERMISSION_DENIED, &st);
	TH_CODE(mx_history(b, rp, 0, 0, 0, &h, &st), RPC_PERMISSION_DENIED, &st);
	TH_CODE(mx_send(a, rp, "after leave", NULL, &seq, NULL, &st), RPC_OK, &st);
	TH_CODE(mx_send(a, rq, "other room", NULL, &keep_seq, NULL, &st), RPC_OK, &st);
	poll_to_seq(b, sid, &g1, rq, keep_seq);
	left_seq = mx_wait_membership(a, rp, b->name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT);
	TH_CHECK(left_seq > 0, "LEFT in the timeline");
	/* The session ends the room with b's own LEFT, and nothing else of
	 * it comes after LeaveRoom returned. */
	poll_to_seq(b, sid, &g1, rp, left_seq);
	TH_CODE(mx_send(a, rp, "after the LEFT", NULL, &seq, NULL, &st), RPC_OK, &st);
	TH_CODE(mx_send(a, rq, "other room again", NULL, &keep_seq, NULL, &st), RPC_OK, &st);
	poll_to_seq(b, sid, &g1, rq, keep_seq);
	for (size_t i = before; i < g1.n; i++)
		TH_CHECK(strcmp(g1.e[i].room, rp) != 0 ||
			     (g1.e[i].seq == left_seq && is_removal(&g1, i) &&
			      strcmp(g1.e[i].sender, b->name) == 0),
			 "after LeaveRoom, %s got seq %llu of %s (only its LEFT, seq %llu, may come)",
			 b->name, (unsigned long long)g1.e[i].seq, rp, (unsigned long long)left_seq);
	check_order(&g1);
	TH_CODE(mx_open(b, 1, rooms, NULL, refused, NULL, &st), RPC_PERMISSION_DENIED, &st);
	/* Closed: an open session follows b into the rooms of later tests
	 * (and makes b online there). */
	TH_CODE(mx_close(b, sid, &st), RPC_OK, &st);
	printf("ok permissions; leaving takes effect at once and the LEFT ends the room\n");
}

static void
test_presence(const mx_user *a, const mx_user *b)
{
	char room[65], sa[65], sb[65];
	const char *rooms[1] = {room};
	uint64_t head;
	rpc_status st;

	new_room(a, room);
	join(b, room);
	TH_CODE(mx_open(a, 1, rooms, NULL, sa, &head, &st), RPC_OK, &st);
	memset(&g1, 0, sizeof(g1));
	poll_to_seq(a, sa, &g1, room, head);
	TH_CODE(mx_open(b, 1, rooms, NULL, sb, NULL, &st), RPC_OK, &st);
	poll_to_presence(a, sa, &g1, b->name, PARLEY__V1__PRESENCE_CHANGE__STATE__ONLINE);
	TH_CODE(mx_close(b, sb, &st), RPC_OK, &st);
	poll_to_presence(a, sa, &g1, b->name, PARLEY__V1__PRESENCE_CHANGE__STATE__OFFLINE);
	TH_CHECK(find_presence(&g1, b->name, PARLEY__V1__PRESENCE_CHANGE__STATE__ONLINE) <
		     find_presence(&g1, b->name, PARLEY__V1__PRESENCE_CHANGE__STATE__OFFLINE),
		 "online before offline");
	TH_CHECK(find_presence(&g1, a->name, PARLEY__V1__PRESENCE_CHANGE__STATE__ONLINE) < 0,
		 "one's own presence is not echoed");
	for (size_t i = 0; i < g1.n; i++)
		if (g1.e[i].body == PARLEY__V1__EVENT__BODY_PRESENCE)
			TH_CHECK(g1.e[i].seq == 0, "presence carries seq 0");

	/* Expiry: b opens and never polls; after --session-idle it is gone
	 * and a sees b go offline. */
	TH_CODE(mx_open(b, 1, rooms, NULL, sb, NULL, &st), RPC_OK, &st);
	memset(&g1, 0, sizeof(g1));
	poll_to_presence(a, sa, &g1, b->name, PARLEY__V1__PRESENCE_CHANGE__STATE__ONLINE);
	poll_to_presence(a, sa, &g1, b->name, PARLEY__V1__PRESENCE_CHANGE__STATE__OFFLINE);
	{
		Parley__V1__PollResponse *r;
		TH_CODE(mx_poll(b, sb, 0, 0, &r, &st), RPC_NOT_FOUND, &st);
	}
	TH_CODE(mx_close(a, sa, &st), RPC_OK, &st);
	printf("ok presence: online, offline on close and on expiry\n");
}

static void
test_resume(const mx_user *a)
{
	char room[65], sid[65], text[64];
	const char *rooms[1] = {room};
	uint64_t head, last, since, heads[1], seq;
	size_t msgs = 0;
	rpc_status st;

	new_room(a, room);
	for (int i = 0; i < 10; i++) {
		snprintf(text, sizeof(text), "first-%d", i);
		TH_CODE(mx_send(a, room, text, NULL, &seq, NULL, &st), RPC_OK, &st);
	}
	TH_CODE(mx_open(a, 1, rooms, NULL, sid, &head, &st), RPC_OK, &st);
	TH_CHECK(head == 11, "head at open is 11, got %llu", (unsigned long long)head);
	memset(&g1, 0, sizeof(g1));
	poll_to_seq(a, sid, &g1, room, head);
	check_order(&g1);
	TH_CHECK(g1.n == 11 && g1.e[0].seq == 1, "all of it from since_seq 0 (%zu)", g1.n);
	last = last_seq(&g1, room);
	TH_CODE(mx_close(a, sid, &st), RPC_OK, &st);
	for (int i = 0; i < 100; i++) {
		snprintf(text, sizeof(text), "missed-%d", i);
		TH_CODE(mx_send(a, room, text, NULL, &seq, NULL, &st), RPC_OK, &st);
	}
	since = last;
	TH_CODE(mx_open(a, 1, rooms, &since, sid, heads, &st), RPC_OK, &st);
	TH_CHECK(heads[0] == last + 100, "head is %llu", (unsigned long long)heads[0]);
	memset(&g1, 0, sizeof(g1));
	poll_to_seq(a, sid, &g1, room, last + 100);
	poll_once(a, sid, 300, &g1);
	check_order(&g1);
	for (size_t i = 0; i < g1.n; i++) {
		if (g1.e[i].seq == 0)
			continue;
		snprintf(text, sizeof(text), "missed-%zu", msgs);
		TH_CHECK(g1.e[i].seq == last + 1 + msgs && strcmp(g1.e[i].text, text) == 0,
			 "event %zu: seq %llu '%s'", i, (unsigned long long)g1.e[i].seq,
			 g1.e[i].text);
		msgs++;
	}
	TH_CHECK(msgs == 100, "exactly the 100 missed, got %zu", msgs);
	TH_CODE(mx_close(a, sid, &st), RPC_OK, &st);
	printf("ok resume after close: exactly the missed 100\n");
}

/* The persisted events of a reply, in order: their seqs into seqs. */
static size_t
persisted_seqs(const Parley__V1__PollResponse *r, uint64_t *seqs, size_t cap)
{
	size_t n = 0;

	for (size_t i = 0; i < r->n_events && n < cap; i++)
		if (r->events[i]->seq != 0)
			seqs[n++] = r->events[i]->seq;
	return n;
}

/* A Poll reply lost on the way: the next Poll says what the client has
 * (acked) and gets the same events again, once, in order. */
static void
test_lost_reply(const mx_user *a)
{
	char room[65], other[65], sid[65], text[32];
	const char *rooms[1] = {room};
	Parley__V1__PollResponse *r;
	uint64_t head, seq, seqs[64];
	size_t n;
	rpc_status st;

	new_room(a, room);
	new_room(a, other);
	for (int i = 0; i < 5; i++) {
		snprintf(text, sizeof(text), "lost-%d", i);
		TH_CODE(mx_send(a, room, text, NULL, &seq, NULL, &st), RPC_OK, &st);
	}
	TH_CODE(mx_open(a, 1, rooms, NULL, sid, &head, &st), RPC_OK, &st);
	TH_CHECK(head == 6, "head %llu", (unsigned long long)head);

	/* The first reply: everything, 1..head. Then it is "lost". */
	TH_CODE(mx_poll(a, sid, 5000, 100, &r, &st), RPC_OK, &st);
	n = persisted_seqs(r, seqs, 64);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	TH_CHECK(n == head && seqs[0] == 1 && seqs[n - 1] == head, "first reply: %zu events", n);

	/* The client has nothing: all of it again, in order. */
	TH_CODE(mx_poll_acked(a, sid, 5000, room, 0, &r, &st), RPC_OK, &st);
	n = persisted_seqs(r, seqs, 64);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	TH_CHECK(n == head, "again after a lost reply: %zu events, want %llu", n,
		 (unsigned long long)head);
	for (size_t i = 0; i < n; i++)
		TH_CHECK(seqs[i] == i + 1, "event %zu has seq %llu", i, (unsigned long long)seqs[i]);

	/* The client has 1..4: 5 and 6 again. */
	TH_CODE(mx_poll_acked(a, sid, 5000, room, 4, &r, &st), RPC_OK, &st);
	n = persisted_seqs(r, seqs, 64);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	TH_CHECK(n == 2 && seqs[0] == 5 && seqs[1] == 6, "the tail again: %zu events", n);

	/* Acked up to date, or ahead: nothing more; a new message once. */
	TH_CODE(mx_poll_acked(a, sid, 300, room, head, &r, &st), RPC_OK, &st);
	TH_CHECK(persisted_seqs(r, seqs, 64) == 0, "nothing when up to date");
	protobuf_c_message_free_unpacked(&r->base, NULL);
	TH_CODE(mx_poll_acked(a, sid, 300, room, head + 100, &r, &st), RPC_OK, &st);
	TH_CHECK(persisted_seqs(r, seqs, 64) == 0, "acked ahead changes nothing");
	protobuf_c_message_free_unpacked(&r->base, NULL);
	TH_CODE(mx_send(a, room, "after", NULL, &seq, NULL, &st), RPC_OK, &st);
	TH_CODE(mx_poll_acked(a, sid, 5000, room, head, &r, &st), RPC_OK, &st);
	n = persisted_seqs(r, seqs, 64);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	TH_CHECK(n == 1 && seqs[0] == head + 1, "the new message once: %zu events", n);

	TH_CODE(mx_poll_acked(a, sid, 0, other, 0, &r, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(mx_close(a, sid, &st), RPC_OK, &st);
	printf("ok a lost Poll reply is sent again after acked\n");
}

static void
test_external_subscriber(const mx_user *a)
{
	char room[65], other[65], topic[66], text[32];
	nng_socket sub;
	uint64_t seq, first = 0;
	bool synced = false;
	rpc_status st;
	int got = 0;

	new_room(a, room);
	new_room(a, other);
	TH_CHECK(nng_sub0_open(&sub) == 0, "sub socket");
	snprintf(topic, sizeof(topic), "%s", room);
	TH_CHECK(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, topic, strlen(topic) + 1) == 0,
		 "subscribe");
	nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 300);
	TH_CHECK(nng_dial(sub, mx_d.events, NULL, 0) == 0, "dial %s", mx_d.events);
	/* PUB/SUB joins late: probe until the first frame comes through. */
	for (int i = 0; i < 100 && !synced; i++) {
		nng_msg *m;

		snprintf(text, sizeof(text), "probe-%d", i);
		TH_CODE(mx_send(a, room, text, NULL, &seq, NULL, &st), RPC_OK, &st);
		if (nng_recvmsg(sub, &m, 0) == 0) {
			synced = true;
			nng_msg_free(m);
		}
	}
	TH_CHECK(synced, "the subscriber gets frames");
	nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 10000);
	for (int i = 0; i < 20; i++) {
		snprintf(text, sizeof(text), "ext-%d", i);
		TH_CODE(mx_send(a, other, text, NULL, &seq, NULL, &st), RPC_OK, &st);
		TH_CODE(mx_send(a, room, text, NULL, &seq, NULL, &st), RPC_OK, &st);
		if (first == 0)
			first = seq;
	}
	while (got < 20) {
		Parley__V1__Event *e;
		nng_msg *m;
		size_t rl = strlen(room) + 1;

		TH_CHECK(nng_recvmsg(sub, &m, 0) == 0, "frame %d arrives", got);
		TH_CHECK(nng_msg_len(m) > rl && memcmp(nng_msg_body(m), room, rl) == 0,
			 "frame is room_id, NUL, event");
		e = parley__v1__event__unpack(NULL, nng_msg_len(m) - rl,
					      (uint8_t *)nng_msg_body(m) + rl);
		TH_CHECK(e != NULL && strcmp(e->room_id, room) == 0 &&
			     e->body_case == PARLEY__V1__EVENT__BODY_MESSAGE,
			 "a message of the room");
		if (strncmp(e->message->text, "probe-", 6) != 0) {
			snprintf(text, sizeof(text), "ext-%d", got);
			TH_CHECK(strcmp(e->message->text, text) == 0 && e->seq == first + (uint64_t)got,
				 "in order: '%s' seq %llu", e->message->text,
				 (unsigned long long)e->seq);
			got++;
		}
		parley__v1__event__free_unpacked(e, NULL);
		nng_msg_free(m);
	}
	nng_close(sub);
	printf("ok an external SUB socket receives the room's events in order\n");
}

static rpc_code
raw_send(const mx_user *u, const uint8_t *body, size_t len, rpc_status *st)
{
	rpc_call_opts o = {.timeout_ms = 10000, .token = u->token};
	void *reply;
	size_t rlen;
	rpc_code code = rpc_client_call_raw(mx_msg, "/parley.v1.Messaging/Send", body, len, &reply,
					    &rlen, &o, st);

	free(reply);
	return code;
}

static void
test_bad_input(const mx_user *a, const mx_user *b)
{
	char room[65], sid[65], big[5000], id65[70], rooms65[65][8];
	const char *rooms[65];
	uint64_t seq, since;
	Parley__V1__PollResponse *pr;
	Parley__V1__GetHistoryResponse *h;
	mx_user nobody = {.name = "nobody", .token = "not-a-token"};
	rpc_status st;

	new_room(a, room);
	memset(big, 'x', sizeof(big));
	big[4097] = '\0';
	TH_CODE(mx_send(a, room, big, NULL, &seq, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	big[4096] = '\0';
	TH_CODE(mx_send(a, room, big, NULL, &seq, NULL, &st), RPC_OK, &st);
	TH_CODE(mx_send(a, room, "", NULL, &seq, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(mx_send(a, "", "hi", NULL, &seq, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(mx_send(a, "Upper", "hi", NULL, &seq, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	memset(id65, 'a', 65);
	id65[65] = '\0';
	TH_CODE(mx_send(a, id65, "hi", NULL, &seq, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(mx_send(a, room, "hi", id65, &seq, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	id65[64] = '\0';
	TH_CODE(mx_send(a, room, "hi", id65, &seq, NULL, &st), RPC_OK, &st);
	TH_CODE(mx_send(&nobody, room, "hi", NULL, &seq, NULL, &st), RPC_UNAUTHENTICATED, &st);
	{
		/* A NUL inside the text, and bytes that are not UTF-8. */
		uint8_t body[128];
		size_t rl = strlen(room), n = 0;

		body[n++] = 0x0a;
		body[n++] = (uint8_t)rl;
		memcpy(body + n, room, rl);
		n += rl;
		memcpy(body + n, "\x12\x05" "ab\0cd", 7);
		TH_CODE(raw_send(a, body, n + 7, &st), RPC_INVALID_ARGUMENT, &st);
		TH_CHECK(strstr(st.message, "NUL") != NULL, "says NUL: %s", st.message);
		memcpy(body + n, "\x12\x03" "a\xff" "b", 5);
		TH_CODE(raw_send(a, body, n + 5, &st), RPC_INVALID_ARGUMENT, &st);
		memcpy(body + n, "\x12\x03" "abc", 5);
		TH_CODE(raw_send(a, body, n + 5, &st), RPC_OK, &st);
	}
	{
		/* A NUL in a nested string: Open's rooms[0].room_id = "a\0b". */
		static const uint8_t open_nul[] = {0x0a, 0x05, 0x0a, 0x03, 'a', 0, 'b'};
		rpc_call_opts o = {.timeout_ms = 10000, .token = a->token};
		void *reply;
		size_t rlen;

		TH_CODE(rpc_client_call_raw(mx_msg, "/parley.v1.Messaging/Open", open_nul,
					    sizeof(open_nul), &reply, &rlen, &o, &st),
			RPC_INVALID_ARGUMENT, &st);
		TH_CHECK(strstr(st.message, "rooms[0].room_id") != NULL, "names the field: %s",
			 st.message);
		free(reply);
	}

	TH_CODE(mx_open(a, 0, rooms, NULL, sid, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	for (int i = 0; i < 65; i++) {
		snprintf(rooms65[i], sizeof(rooms65[i]), "r%d", i);
		rooms[i] = rooms65[i];
	}
	TH_CODE(mx_open(a, 65, rooms, NULL, sid, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	rooms[0] = room;
	rooms[1] = room;
	TH_CODE(mx_open(a, 2, rooms, NULL, sid, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	rooms[1] = "Not_valid";
	TH_CODE(mx_open(a, 2, rooms, NULL, sid, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	since = 1000000;
	TH_CODE(mx_open(a, 1, rooms, &since, sid, NULL, &st), RPC_OUT_OF_RANGE, &st);

	TH_CODE(mx_open(a, 1, rooms, NULL, sid, NULL, &st), RPC_OK, &st);
	TH_CODE(mx_poll(a, sid, 30001, 0, &pr, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(mx_poll(a, "", 0, 0, &pr, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(mx_poll(a, "00112233445566778899aabbccddeeff", 0, 0, &pr, &st), RPC_NOT_FOUND,
		&st);
	TH_CODE(mx_poll(a, id65, 0, 0, &pr, &st), RPC_NOT_FOUND, &st);
	TH_CODE(mx_poll(b, sid, 0, 0, &pr, &st), RPC_PERMISSION_DENIED, &st);
	TH_CODE(mx_close(b, sid, &st), RPC_PERMISSION_DENIED, &st);
	TH_CODE(mx_poll(a, sid, 0, 5000000, &pr, &st), RPC_OK, &st);
	TH_CHECK(pr->n_events <= 1000, "max_events is capped");
	protobuf_c_message_free_unpacked(&pr->base, NULL);
	TH_CODE(mx_close(a, sid, &st), RPC_OK, &st);
	TH_CODE(mx_poll(a, sid, 0, 0, &pr, &st), RPC_NOT_FOUND, &st);
	TH_CODE(mx_close(a, sid, &st), RPC_NOT_FOUND, &st);

	TH_CODE(mx_history(a, room, 5, 5, 0, &h, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(mx_history(a, room, 0, 0, 501, &h, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(mx_history(a, "a b", 0, 0, 0, &h, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(mx_history(&nobody, room, 0, 0, 0, &h, &st), RPC_UNAUTHENTICATED, &st);

	/* Still serving, and still correct. */
	TH_CHECK(th_wait_serving(mx_d.messaging, 5000), "messaging serving");
	TH_CHECK(th_wait_serving(mx_d.history, 5000), "history serving");
	TH_CODE(mx_send(a, room, "still fine", NULL, &seq, NULL, &st), RPC_OK, &st);
	TH_CODE(mx_history(a, room, 0, 0, 500, &h, &st), RPC_OK, &st);
	TH_CHECK(h->head_seq == seq && h->events[h->n_events - 1]->seq == seq, "history agrees");
	protobuf_c_message_free_unpacked(&h->base, NULL);
	printf("ok bad input gets clear statuses; the service stays up\n");
}

int
main(void)
{
	static const char *const extra[] = {"--session-idle", "5",
					    "--max-sessions", STR(MAX_SESSIONS),
					    "--max-user-sessions", STR(MAX_USER_SESSIONS), NULL};
	mx_user a, b, c;

	mx_start(extra);
	mx_user_new(&a, "alice");
	mx_user_new(&b, "bob");
	mx_user_new(&c, "carol");

	test_max_sessions(&a, &b);
	test_send_idempotent(&a, &b);
	test_concurrent_retries(&a);
	test_permissions_and_leave(&a, &b, &c);
	test_presence(&a, &b);
	test_resume(&a);
	test_lost_reply(&a);
	test_external_subscriber(&a);
	test_bad_input(&a, &b);

	mx_stop();
	return 0;
}

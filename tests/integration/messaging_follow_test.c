/*
 * messaging_follow_test — an open session follows its user's memberships
 * (real parleyd over tcp):
 *   - the user joins a room from another login: the next Polls of the open
 *     session carry that room, from the JOINED event on, without reopening;
 *   - the user leaves it from elsewhere: the LEFT is the room's last event
 *     in the session, nothing sent after it comes;
 *   - joining again brings the room back (from the new JOINED: nothing of
 *     what was said while out), and acked may name the followed room.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mx_util.h"

#define EV_MAX 512

/* What the session was given of one room, in order. */
struct seen {
	size_t n;
	struct {
		uint64_t seq;
		int body, kind;
		char sender[40], text[64];
	} e[EV_MAX];
};

/* One Poll: events of room go into *g, those of other rooms only count. */
static void
poll_room(const mx_user *u, const char *sid, const char *room, struct seen *g)
{
	Parley__V1__PollResponse *r;
	rpc_status st;

	TH_CODE(mx_poll(u, sid, 1000, 1000, &r, &st), RPC_OK, &st);
	for (size_t i = 0; i < r->n_events; i++) {
		const Parley__V1__Event *e = r->events[i];

		if (strcmp(e->room_id, room) != 0 || e->seq == 0)
			continue;
		TH_CHECK(g->n < EV_MAX, "too many events");
		g->e[g->n].seq = e->seq;
		g->e[g->n].body = e->body_case;
		g->e[g->n].kind = e->body_case == PARLEY__V1__EVENT__BODY_MEMBERSHIP
					  ? (int)e->membership->kind
					  : 0;
		snprintf(g->e[g->n].sender, sizeof(g->e[0].sender), "%s", e->sender);
		snprintf(g->e[g->n].text, sizeof(g->e[0].text), "%s",
			 e->body_case == PARLEY__V1__EVENT__BODY_MESSAGE ? e->message->text : "");
		g->n++;
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

static long
find_text(const struct seen *g, const char *text)
{
	for (size_t i = 0; i < g->n; i++)
		if (strcmp(g->e[i].text, text) == 0)
			return (long)i;
	return -1;
}

static long
find_seq(const struct seen *g, uint64_t seq)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->e[i].seq == seq)
			return (long)i;
	return -1;
}

/* Polls (bounded) until room's text or seq shows up in g. */
static long
poll_until(const mx_user *u, const char *sid, const char *room, struct seen *g,
	   const char *text, uint64_t seq)
{
	long at = -1;

	for (int i = 0; i < 60 && at < 0; i++) {
		poll_room(u, sid, room, g);
		at = text != NULL ? find_text(g, text) : find_seq(g, seq);
	}
	TH_CHECK(at >= 0, "the session got '%s' (seq %llu) of %s", text ? text : "",
		 (unsigned long long)seq, room);
	return at;
}

static bool
is_membership(const struct seen *g, long i, const char *user, int kind)
{
	return g->e[i].body == PARLEY__V1__EVENT__BODY_MEMBERSHIP && g->e[i].kind == kind &&
	       strcmp(g->e[i].sender, user) == 0;
}

/* Waits (bounded) until user's JOINED after seq `after` is in the room's
 * timeline as reader sees it. */
static void
wait_second_joined(const mx_user *reader, const char *room, const char *user, uint64_t after)
{
	for (int i = 0; i < 300; i++) {
		if (mx_wait_membership(reader, room, user,
				       PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED) > after)
			return;
		usleep(20000);
	}
	TH_CHECK(false, "no JOINED of %s in %s after seq %llu", user, room,
		 (unsigned long long)after);
}

int
main(void)
{
	static struct seen g2, g1;
	mx_user a, b, elsewhere;
	char r1[65], r2[65], sid[65];
	const char *rooms[1] = {r1};
	uint64_t seq, left, joined;
	Parley__V1__PollResponse *pr;
	rpc_status st;
	long at, j;

	mx_start(NULL);
	mx_user_new(&a, "fola");
	mx_user_new(&b, "folb");
	/* The same user, another login: "joined from anywhere". */
	elsewhere = b;
	th_register_login(mx_auth, b.name, elsewhere.token, sizeof(elsewhere.token));
	TH_CHECK(strcmp(elsewhere.token, b.token) != 0, "a second token");
	snprintf(r1, sizeof(r1), "%s", th_name("folr"));
	snprintf(r2, sizeof(r2), "%s", th_name("folr"));
	TH_CODE(mx_create_room(&a, r1, &st), RPC_OK, &st);
	TH_CODE(mx_create_room(&a, r2, &st), RPC_OK, &st);
	TH_CODE(mx_join(&b, r1, &st), RPC_OK, &st);
	TH_CODE(mx_open(&b, 1, rooms, NULL, sid, NULL, &st), RPC_OK, &st);
	TH_CODE(mx_send(&a, r2, "before b joined", NULL, &seq, NULL, &st), RPC_OK, &st);

	/* 1. Joined elsewhere: the room comes to the open session. */
	TH_CODE(mx_join(&elsewhere, r2, &st), RPC_OK, &st);
	/* The JOINED enters the room's timeline when messaging has applied
	 * the membership change: a message sent before that is ordered
	 * before it (and is history, not followed). Wait for it first. */
	mx_wait_membership(&a, r2, b.name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED);
	TH_CODE(mx_send(&a, r2, "hello r2", NULL, &seq, NULL, &st), RPC_OK, &st);
	at = poll_until(&b, sid, r2, &g2, "hello r2", 0);
	j = 0;
	TH_CHECK(is_membership(&g2, j, b.name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED),
		 "the first event of the followed room is b's JOINED (got seq %llu, body %d)",
		 (unsigned long long)g2.e[0].seq, g2.e[0].body);
	TH_CHECK(find_text(&g2, "before b joined") < 0, "nothing from before the JOINED");
	for (long i = 1; i <= at; i++)
		TH_CHECK(g2.e[i].seq == g2.e[i - 1].seq + 1, "r2 in order: seq %llu after %llu",
			 (unsigned long long)g2.e[i].seq, (unsigned long long)g2.e[i - 1].seq);
	joined = g2.e[0].seq;
	printf("ok a room joined from another login comes to the open session from its JOINED "
	       "(seq %llu)\n",
	       (unsigned long long)joined);

	/* acked may name the followed room. */
	TH_CODE(mx_poll_acked(&b, sid, 0, r2, seq, &pr, &st), RPC_OK, &st);
	protobuf_c_message_free_unpacked(&pr->base, NULL);

	/* 2. Left elsewhere: the LEFT ends the room; nothing after it. */
	TH_CODE(mx_leave(&elsewhere, r2, &st), RPC_OK, &st);
	TH_CODE(mx_send(&a, r2, "after b left", NULL, &seq, NULL, &st), RPC_OK, &st);
	left = mx_wait_membership(&a, r2, b.name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT);
	at = poll_until(&b, sid, r2, &g2, NULL, left);
	TH_CHECK(is_membership(&g2, at, b.name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT),
		 "seq %llu is b's LEFT", (unsigned long long)left);
	TH_CODE(mx_send(&a, r2, "after the LEFT", NULL, &seq, NULL, &st), RPC_OK, &st);
	TH_CODE(mx_send(&a, r1, "r1 marker", NULL, &seq, NULL, &st), RPC_OK, &st);
	poll_until(&b, sid, r1, &g1, "r1 marker", 0);
	TH_CHECK(g2.n == (size_t)at + 1, "the LEFT was r2's last event (%zu after it)",
		 g2.n - (size_t)at - 1);
	TH_CHECK(find_text(&g2, "after b left") < 0, "nothing sent after LeaveRoom returned");
	printf("ok a room left from another login ends with its LEFT (seq %llu)\n",
	       (unsigned long long)left);

	/* 3. Joined again: back from the new JOINED on. */
	TH_CODE(mx_join(&elsewhere, r2, &st), RPC_OK, &st);
	wait_second_joined(&a, r2, b.name, left);
	TH_CODE(mx_send(&a, r2, "welcome back", NULL, &seq, NULL, &st), RPC_OK, &st);
	at = poll_until(&b, sid, r2, &g2, "welcome back", 0);
	j = find_seq(&g2, left) + 1;
	TH_CHECK(is_membership(&g2, j, b.name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED),
		 "the room comes back with b's new JOINED");
	TH_CHECK(find_text(&g2, "after b left") < 0 && find_text(&g2, "after the LEFT") < 0,
		 "nothing said while b was out");
	for (long i = j + 1; i <= at; i++)
		TH_CHECK(g2.e[i].seq == g2.e[i - 1].seq + 1, "r2 in order: seq %llu after %llu",
			 (unsigned long long)g2.e[i].seq, (unsigned long long)g2.e[i - 1].seq);
	printf("ok joining again brings the room back from the new JOINED\n");

	TH_CODE(mx_close(&b, sid, &st), RPC_OK, &st);
	mx_stop();
	printf("messaging_follow_test: all ok\n");
	return 0;
}

/*
 * client_follow_test.c — parley_follow and parley_send against a real
 * parleyd with every service: idempotent sends, and a follower that sees
 * every message exactly once, in order, while the daemon is killed (-9) and
 * restarted under it. Cancel ends a pending long poll promptly.
 */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "parley.h"

#define NMSG 60

static th_daemon d;

static parley_conn *
connect_all(void)
{
	parley_endpoints ep;
	parley_conn *c;
	rpc_status st;

	parley_endpoints_set(&ep, PARLEY_AUTH, d.auth, &st);
	parley_endpoints_set(&ep, PARLEY_ROOMS, d.rooms, &st);
	parley_endpoints_set(&ep, PARLEY_HISTORY, d.history, &st);
	parley_endpoints_set(&ep, PARLEY_MESSAGING, d.messaging, &st);
	TH_CODE(parley_connect(&c, &ep, &st), RPC_OK, &st);
	return c;
}

static parley_conn *
user(const char *name)
{
	parley_conn *c = connect_all();
	char pw[64];
	rpc_status st;
	rpc_code code;

	snprintf(pw, sizeof(pw), "password-%s", name);
	code = parley_register(c, name, pw, NULL, NULL, NULL, &st);
	TH_CHECK(code == RPC_OK || code == RPC_ALREADY_EXISTS, "register: %s", st.message);
	TH_CODE(parley_login(c, name, pw, NULL, &st), RPC_OK, &st);
	return c;
}

typedef struct seen {
	int count[NMSG + 1];
	uint64_t last_seq;
	int total;
	bool order_broken;
} seen;

static void
on_event(const Parley__V1__Event *ev, void *arg)
{
	seen *s = arg;
	int i;

	if (ev->seq != 0) {
		if (ev->seq <= s->last_seq)
			s->order_broken = true;
		s->last_seq = ev->seq;
	}
	if (ev->body_case == PARLEY__V1__EVENT__BODY_MESSAGE && ev->message != NULL &&
	    sscanf(ev->message->text, "m%d", &i) == 1 && i >= 1 && i <= NMSG) {
		s->count[i]++;
		s->total++;
	}
}

static const char *room;
static volatile int sent;

static void *
sender(void *arg)
{
	parley_conn *c = arg;

	parley_set_timeout(c, 30000);
	for (int i = 1; i <= NMSG; i++) {
		char text[32];
		rpc_status st;

		snprintf(text, sizeof(text), "m%d", i);
		TH_CODE(parley_send(c, room, text, NULL, NULL, &st), RPC_OK, &st);
		__atomic_store_n(&sent, i, __ATOMIC_RELEASE);
		usleep(20000);
	}
	return NULL;
}

static void
test_idempotent_send(parley_conn *c)
{
	Parley__V1__SendResponse *a, *b;
	char id[PARLEY_CLIENT_MSG_ID_LEN + 1];
	rpc_status st;

	parley_new_client_msg_id(id);
	TH_CODE(parley_send(c, room, "once", id, &a, &st), RPC_OK, &st);
	TH_CODE(parley_send(c, room, "once", id, &b, &st), RPC_OK, &st);
	TH_CHECK(a->seq == b->seq, "a retried send got seq %llu, then %llu",
		 (unsigned long long)a->seq, (unsigned long long)b->seq);
	parley_free(a);
	parley_free(b);
	printf("ok a retried send is stored once\n");
}

static void
test_follow_across_restarts(parley_conn *alice, parley_conn *bob)
{
	Parley__V1__GetHistoryResponse *h;
	parley_follow *f;
	parley_cursor cur;
	seen s = {0};
	pthread_t t;
	rpc_status st;
	int64_t deadline = rpc_now_ms() + 60000;
	int kills = 0;

	TH_CODE(parley_history(bob, room, 0, 0, 1, &h, &st), RPC_OK, &st);
	cur.room_id = room;
	cur.since_seq = h->head_seq;
	s.last_seq = h->head_seq;
	parley_free(h);
	TH_CODE(parley_follow_new(&f, bob, &cur, 1, &st), RPC_OK, &st);
	TH_CHECK(pthread_create(&t, NULL, sender, alice) == 0, "thread");

	while (s.total < NMSG && rpc_now_ms() < deadline) {
		rpc_code code = parley_follow_poll(f, 2000, on_event, &s, &st);

		TH_CHECK(code == RPC_OK || parley_code_transient(code) || code == RPC_NOT_FOUND,
			 "follow: %s %s", rpc_code_name(code), st.message);
		/* Kill the daemon under the follower twice, mid-stream. */
		if ((kills == 0 && s.total >= NMSG / 3) || (kills == 1 && s.total >= 2 * NMSG / 3)) {
			th_kill9(&d);
			TH_CHECK(th_restart(&d), "restart");
			kills++;
			printf("killed and restarted parleyd after %d messages\n", s.total);
		}
	}
	pthread_join(t, NULL);
	/* Anything delivered twice would come now. */
	for (int i = 0; i < 3; i++)
		parley_follow_poll(f, 200, on_event, &s, &st);
	TH_CHECK(kills == 2, "the daemon was killed %d times", kills);
	TH_CHECK(!s.order_broken, "events out of order");
	for (int i = 1; i <= NMSG; i++)
		TH_CHECK(s.count[i] == 1, "message m%d seen %d times", i, s.count[i]);
	TH_CHECK(parley_follow_seq(f, room) == s.last_seq, "follow_seq");
	TH_CHECK(parley_follow_seq(f, "elsewhere") == 0, "unknown room");
	parley_follow_free(f);
	printf("ok every message once across two kill -9 restarts\n");
}

static void *
cancel_later(void *arg)
{
	usleep(300000);
	parley_follow_cancel(arg);
	return NULL;
}

static void
test_cancel(parley_conn *bob)
{
	parley_cursor cur = {.room_id = room};
	Parley__V1__GetHistoryResponse *h;
	parley_follow *f;
	pthread_t t;
	rpc_status st;
	seen s = {0};
	int64_t start;
	rpc_code code;

	TH_CODE(parley_history(bob, room, 0, 0, 1, &h, &st), RPC_OK, &st);
	cur.since_seq = h->head_seq;
	parley_free(h);
	TH_CODE(parley_follow_new(&f, bob, &cur, 1, &st), RPC_OK, &st);
	TH_CHECK(pthread_create(&t, NULL, cancel_later, f) == 0, "thread");
	start = rpc_now_ms();
	do
		code = parley_follow_poll(f, 20000, on_event, &s, &st);
	while (code == RPC_OK && rpc_now_ms() - start < 25000);
	TH_CODE(code, RPC_CANCELLED, &st);
	printf("cancel ended the poll after %lld ms\n", (long long)(rpc_now_ms() - start));
	TH_CHECK(rpc_now_ms() - start < 3000, "cancel took too long");
	pthread_join(t, NULL);
	parley_follow_free(f);
	printf("ok cancel\n");
}

int
main(void)
{
	parley_conn *alice, *bob;
	rpc_status st;
	rpc_code code;

	TH_CHECK(th_start(&d, NULL), "parleyd did not start");
	alice = user("alice");
	bob = user("bob");
	room = th_name("follow");
	TH_CODE(parley_room_create(alice, room, NULL, NULL, NULL, &st), RPC_OK, &st);
	code = parley_room_join(alice, room, NULL, &st);
	TH_CHECK(code == RPC_OK || code == RPC_ALREADY_EXISTS, "join: %s", st.message);
	TH_CODE(parley_room_join(bob, room, NULL, &st), RPC_OK, &st);

	test_idempotent_send(alice);
	test_follow_across_restarts(alice, bob);
	test_cancel(bob);

	parley_disconnect(alice);
	parley_disconnect(bob);
	th_cleanup(&d);
	printf("ok client follow test\n");
	return 0;
}

/*
 * unread_test.c — the unread counters (services/messaging/unread.c) on a
 * real LMDB environment: counts are right after 10 and after 10,000
 * messages, and answering costs the same number of store lookups for both
 * (the structural proof that GetUnread never scans a room's history), and
 * mentions are found on word boundaries only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "messaging_int.h"

#define CHECK(cond, ...)                                                                  \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                     \
			fprintf(stderr, "\n");                                            \
			exit(1);                                                          \
		}                                                                         \
	} while (0)

struct expect {
	uint64_t unread, mentions;
};

/* Writes n messages into room: alice every 10th, bob the rest, bob
 * mentioning alice every 7th; returns what alice should see after read. */
static struct expect
fill(messaging_service *m, const char *room, uint64_t n, uint64_t read)
{
	struct expect e = {0};
	store_txn *txn;

	CHECK(store_begin(m->env, true, &txn) == STORE_OK, "begin");
	for (uint64_t seq = 1; seq <= n; seq++) {
		const char *sender = seq % 10 == 0 ? "alice" : "bob";
		const char *text = seq % 10 != 0 && seq % 7 == 0 ? "hi @alice, look" : "hello";

		CHECK(timeline_append(txn, &m->tl, room, seq, "x", 1) == STORE_OK, "append");
		CHECK(mx_unread_note(m, txn, room, seq, sender, text) == STORE_OK, "note");
		if (seq > read && strcmp(sender, "bob") == 0) {
			e.unread++;
			e.mentions += strstr(text, "@alice") != NULL;
		}
		if (seq % 1000 == 0) {
			CHECK(store_commit(txn) == STORE_OK, "commit");
			CHECK(store_begin(m->env, true, &txn) == STORE_OK, "begin");
		}
	}
	CHECK(mx_unread_mark(m, txn, "alice", room, read) == STORE_OK, "mark");
	CHECK(mx_unread_mark(m, txn, "alice", room, read / 2) == STORE_OK, "mark back");
	CHECK(store_commit(txn) == STORE_OK, "commit");
	return e;
}

static unsigned
check_room(messaging_service *m, const char *room, uint64_t n, uint64_t read, struct expect e)
{
	mx_unread u;
	unsigned reads = 0;
	store_txn *txn;

	CHECK(store_begin(m->env, false, &txn) == STORE_OK, "begin");
	CHECK(mx_unread_get(m, txn, "alice", room, &u, &reads) == STORE_OK, "get");
	store_abort(txn);
	CHECK(u.head == n && u.read == read, "head %llu read %llu", (unsigned long long)u.head,
	      (unsigned long long)u.read);
	CHECK(u.unread == e.unread && u.mentions == e.mentions,
	      "%s: unread %llu (want %llu), mentions %llu (want %llu)", room,
	      (unsigned long long)u.unread, (unsigned long long)e.unread,
	      (unsigned long long)u.mentions, (unsigned long long)e.mentions);
	return reads;
}

static void
mentions(void)
{
	static const struct {
		const char *text;
		int n;
	} cases[] = {
	    {"@alice", 1},	   {"hi @alice.", 1},	   {"(@alice)", 1},
	    {"@alice,@bob2", 2},   {"mail@alice", 0},	   {"@alicex", 1}, /* alicex, not alice */
	    {"@@alice", 0},	   {"@Alice", 0},	   {"@al", 0},
	    {"@alice @alice", 1},  {"@sender hi", 0},	   {"a@b @carol_1-x.y!", 1},
	};
	char out[UNREAD_MENTIONS_MAX][RPC_USER_ID_MAX];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = mx_mentions(cases[i].text, "sender", out, UNREAD_MENTIONS_MAX);

		CHECK((int)n == cases[i].n, "'%s' mentions %zu users, want %d", cases[i].text, n,
		      cases[i].n);
	}
	CHECK(mx_mentions("@alice", "sender", out, 1) == 1 && strcmp(out[0], "alice") == 0,
	      "the id is alice");
	CHECK(mx_mentions("hey @alicex.", "sender", out, 1) == 1 && strcmp(out[0], "alicex") == 0,
	      "a longer id is another user (%s)", out[0]);
}

int
main(void)
{
	char dir[] = "/tmp/parley-unread-XXXXXX", cmd[64];
	messaging_service m = {0};
	rpc_status st = {0};
	unsigned small, big;

	mentions();
	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	CHECK(store_open(&m.env, dir, NULL, NULL, 0) == STORE_OK, "open");
	timeline_init(&m.tl, m.env);
	CHECK(timeline_open(&m.tl) == STORE_OK, "timeline");
	CHECK(mx_unread_open(&m, &st) == RPC_OK, "%s", st.message);

	small = check_room(&m, "small", 10, 4, fill(&m, "small", 10, 4));
	big = check_room(&m, "big", 10000, 5000, fill(&m, "big", 10000, 5000));
	CHECK(small == big && small > 0,
	      "the lookups do not grow with the room: %u for 10 messages, %u for 10,000", small,
	      big);
	printf("unread_test: ok (%u lookups per room)\n", big);

	timeline_fini(&m.tl);
	store_close(m.env);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : 1;
}

/* validation_test.c — the shared id/text rules and the login rate limiter. */
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include <sodium.h>

#include "harness.h"
#include "ratelimit.h"
#include "svc.h"

static void
test_ids(void)
{
	TH_CHECK(svc_valid_user_id("abc"), "min");
	TH_CHECK(svc_valid_user_id("0a_b.c-d"), "charset");
	TH_CHECK(!svc_valid_user_id("ab"), "too short");
	TH_CHECK(svc_valid_user_id("abcdefghijklmnopqrstuvwxyz012345"), "32");
	TH_CHECK(!svc_valid_user_id("abcdefghijklmnopqrstuvwxyz0123456"), "33");
	TH_CHECK(!svc_valid_user_id("-abc"), "first char");
	TH_CHECK(!svc_valid_user_id("Abc"), "upper case");
	TH_CHECK(!svc_valid_user_id("a bc"), "space");
	TH_CHECK(!svc_valid_user_id("ab\xc3\xa9"), "non-ascii");
	TH_CHECK(svc_valid_room_id("g"), "1 char room");
	TH_CHECK(!svc_valid_room_id(""), "empty room");
	char room[70];
	memset(room, 'r', 64);
	room[64] = '\0';
	TH_CHECK(svc_valid_room_id(room), "64");
	room[64] = 'r';
	room[65] = '\0';
	TH_CHECK(!svc_valid_room_id(room), "65");
	printf("ok ids\n");
}

static void
test_text(void)
{
	TH_CHECK(svc_valid_text("Alice", 1, 64), "plain");
	TH_CHECK(!svc_valid_text("", 1, 64), "empty");
	TH_CHECK(svc_valid_text("\xc3\xa9\xc3\xa9", 2, 2), "counts characters not bytes");
	TH_CHECK(!svc_valid_text("a\tb", 1, 64), "tab");
	TH_CHECK(!svc_valid_text("a\x7f", 1, 64), "DEL");
	TH_CHECK(!svc_valid_text("a\xc2\x85", 1, 64), "C1 NEL");
	TH_CHECK(svc_valid_text("a\xc2\xa0", 1, 64), "NBSP is fine");
	printf("ok text\n");
}

/* 3 free failures, then 1 s doubling to 8 s, forgotten after 60 s. */
static const ratelimit_policy policy = {
	.free_failures = 3, .max_in_flight = 2, .base_wait_ms = 1000, .max_wait_ms = 8000,
	.forget_ms = 60000,
};

/* One try of key at now that fails; checks it was allowed. */
static void
fail_once(ratelimit *rl, const char *key, int64_t now)
{
	bool in_flight;

	TH_CHECK(ratelimit_reserve(rl, key, now, &in_flight) == 0, "%s may try at %lld", key,
		 (long long)now);
	ratelimit_fail(rl, key, now);
}

/* Failures slow a key down exponentially; there is never a hard wall. */
static void
test_ratelimit(void)
{
	ratelimit *rl = ratelimit_new(&policy, 16);
	int64_t t = 1000000;
	uint32_t wait;
	bool in_flight;

	TH_CHECK(rl != NULL, "new");
	for (int i = 0; i < 3; i++)
		fail_once(rl, "alice", t);
	/* The last free failure: the first wait, 1 s from that failure. */
	wait = ratelimit_reserve(rl, "alice", t + 100, &in_flight);
	TH_CHECK(wait == 900 && !in_flight, "first wait 900 ms left, got %u (%d)", wait, in_flight);
	TH_CHECK(ratelimit_reserve(rl, "bob", t + 100, NULL) == 0, "others unaffected");
	ratelimit_release(rl, "bob");
	/* Each further failure doubles the wait: 2 s, 4 s, 8 s, then 8 s. */
	t += 1000;
	for (uint32_t want = 2000; want <= 16000; want *= 2) {
		fail_once(rl, "alice", t);
		wait = ratelimit_reserve(rl, "alice", t, &in_flight);
		TH_CHECK(wait == (want < 8000 ? want : 8000) && !in_flight, "wait %u, want %u", wait,
			 want < 8000 ? want : 8000);
		TH_CHECK(ratelimit_reserve(rl, "alice", t + wait - 1, NULL) == 1, "1 ms left");
		t += wait;
	}
	/* Once its wait is over a key may try, one try at a time. */
	TH_CHECK(ratelimit_reserve(rl, "alice", t, NULL) == 0, "a try after the wait");
	wait = ratelimit_reserve(rl, "alice", t, &in_flight);
	TH_CHECK(wait > 0 && wait <= 1000 && in_flight, "one at a time while waiting: %u", wait);
	/* A success forgets the failures: the free ones are back. */
	ratelimit_reset(rl, "alice");
	for (int i = 0; i < 3; i++)
		fail_once(rl, "alice", t);
	TH_CHECK(ratelimit_reserve(rl, "alice", t, NULL) == 1000, "slowed again after 3");
	/* So does a quiet forget_ms after the last failure. */
	TH_CHECK(ratelimit_reserve(rl, "alice", t + 59999, NULL) == 0, "a try before forgetting");
	ratelimit_fail(rl, "alice", t + 59999);
	TH_CHECK(ratelimit_reserve(rl, "alice", t + 59999, NULL) == 2000, "4 failures: 2 s");
	t += 59999 + 60000;
	for (int i = 0; i < 3; i++)
		fail_once(rl, "alice", t);
	ratelimit_free(rl);
	printf("ok rate limiter: exponential, forgetting, no wall\n");
}

/* Tries in flight count: a burst gets the free tries, not one per caller,
 * and at most max_in_flight at once. */
static void
test_ratelimit_reservations(void)
{
	ratelimit *rl = ratelimit_new(&policy, 16);
	int64_t t = 1000000;
	uint32_t wait;
	bool in_flight;

	TH_CHECK(rl != NULL, "new");
	TH_CHECK(ratelimit_reserve(rl, "carol", t, NULL) == 0, "reserve 1");
	TH_CHECK(ratelimit_reserve(rl, "carol", t, NULL) == 0, "reserve 2");
	/* Only tries in flight block: they may succeed, so a short wait. */
	wait = ratelimit_reserve(rl, "carol", t, &in_flight);
	TH_CHECK(wait > 0 && wait <= 1000 && in_flight, "max_in_flight reached, wait %u", wait);

	/* A released try frees its slot. */
	ratelimit_release(rl, "carol");
	TH_CHECK(ratelimit_reserve(rl, "carol", t, NULL) == 0, "slot given back");
	TH_CHECK(ratelimit_reserve(rl, "carol", t, NULL) > 0, "full again");
	/* In flight and failed together never pass the free failures. */
	ratelimit_fail(rl, "carol", t);
	ratelimit_fail(rl, "carol", t);
	TH_CHECK(ratelimit_reserve(rl, "carol", t, NULL) == 0, "third free try");
	wait = ratelimit_reserve(rl, "carol", t, &in_flight);
	TH_CHECK(wait > 0 && wait <= 1000 && in_flight, "2 failed + 1 in flight = 3: %u", wait);
	ratelimit_fail(rl, "carol", t);
	TH_CHECK(ratelimit_reserve(rl, "carol", t, NULL) == 1000, "failed: waits");

	/* A success forgets failures but not the other tries in flight. */
	TH_CHECK(ratelimit_reserve(rl, "dan", t, NULL) == 0, "dan 1");
	TH_CHECK(ratelimit_reserve(rl, "dan", t, NULL) == 0, "dan 2");
	ratelimit_reset(rl, "dan");
	TH_CHECK(ratelimit_reserve(rl, "dan", t, NULL) == 0, "one slot back");
	TH_CHECK(ratelimit_reserve(rl, "dan", t, NULL) > 0, "two in flight");
	/* Tries in flight outlive forgetting: their failures still count. */
	ratelimit_fail(rl, "dan", t + 100000);
	ratelimit_fail(rl, "dan", t + 100000);
	TH_CHECK(ratelimit_reserve(rl, "dan", t + 100000, NULL) == 0, "third");
	ratelimit_fail(rl, "dan", t + 100000);
	TH_CHECK(ratelimit_reserve(rl, "dan", t + 100000, NULL) == 1000, "counted");

	/* Settling what is not reserved never underflows into a lockout. */
	for (int i = 0; i < 10; i++)
		ratelimit_release(rl, "erin");
	TH_CHECK(ratelimit_reserve(rl, "erin", t, NULL) == 0, "erin 1");
	TH_CHECK(ratelimit_reserve(rl, "erin", t, NULL) == 0, "erin 2");

	/* The empty key is a key like any other. */
	for (int i = 0; i < 3; i++)
		fail_once(rl, "", t);
	TH_CHECK(ratelimit_reserve(rl, "", t, NULL) == 1000, "empty key limited");

	/* A flood of other keys in a tiny table: every new key is taken in
	 * (the oldest entries make room), memory does not grow, the newest
	 * keys are still counted, and settling a reservation that was
	 * evicted is harmless. */
	{
		struct mallinfo2 before = mallinfo2(), after;
		int refused = 0;

		for (int i = 0; i < 10000; i++) {
			char key[32];

			snprintf(key, sizeof(key), "user%d", i);
			if (ratelimit_reserve(rl, key, t + i, NULL) == 0)
				ratelimit_fail(rl, key, t + i);
			else
				refused++;
		}
		after = mallinfo2();
		TH_CHECK(refused == 0, "%d new keys refused: a full table must evict", refused);
		TH_CHECK(after.uordblks == before.uordblks, "the flood allocated %zd bytes",
			 (ssize_t)(after.uordblks - before.uordblks));
	}
	/* The newest key is counted: two more failures slow it down. */
	for (int i = 0; i < 2; i++) {
		TH_CHECK(ratelimit_reserve(rl, "user9999", t + 9999, NULL) == 0, "user9999 try %d", i);
		ratelimit_fail(rl, "user9999", t + 9999);
	}
	TH_CHECK(ratelimit_reserve(rl, "user9999", t + 9999, NULL) > 0,
		 "the newest key keeps its failures through the flood");
	/* erin's tries in flight went with her evicted entry: settling one is
	 * a no-op and she may try again at once. */
	ratelimit_release(rl, "erin");
	TH_CHECK(ratelimit_reserve(rl, "erin", t + 9999, NULL) == 0, "erin after eviction");
	ratelimit_fail(rl, "erin", t + 10000);
	ratelimit_free(rl);
	printf("ok rate limiter reservations\n");
}

int
main(void)
{
	TH_CHECK(sodium_init() >= 0, "sodium");
	test_ids();
	test_text();
	test_ratelimit();
	test_ratelimit_reservations();
	return 0;
}

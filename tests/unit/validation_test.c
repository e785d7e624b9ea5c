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

static void
test_ratelimit(void)
{
	ratelimit *rl = ratelimit_new(3, 10000, 16);
	int64_t t = 1000000;

	TH_CHECK(rl != NULL, "new");
	for (int i = 0; i < 3; i++) {
		TH_CHECK(ratelimit_reserve(rl, "alice", t) == 0, "allowed %d", i);
		ratelimit_fail(rl, "alice", t);
	}
	TH_CHECK(ratelimit_reserve(rl, "alice", t + 100) == 9900, "waits out the window");
	TH_CHECK(ratelimit_reserve(rl, "bob", t + 100) == 0, "others unaffected");
	ratelimit_release(rl, "bob");
	TH_CHECK(ratelimit_reserve(rl, "alice", t + 10000) == 0, "window over");
	ratelimit_fail(rl, "alice", t + 10000);
	TH_CHECK(ratelimit_reserve(rl, "alice", t + 10000) == 0, "second try");
	ratelimit_reset(rl, "alice");
	for (int i = 0; i < 3; i++)
		TH_CHECK(ratelimit_reserve(rl, "alice", t + 10000) == 0, "reset %d", i);
	ratelimit_release(rl, "alice");
	ratelimit_release(rl, "alice");
	ratelimit_release(rl, "alice");
	ratelimit_free(rl);
	printf("ok rate limiter\n");
}

/* Tries in flight count: a burst gets max tries, not one per caller. */
static void
test_ratelimit_reservations(void)
{
	ratelimit *rl = ratelimit_new(3, 10000, 16);
	int64_t t = 1000000;
	uint32_t wait;

	TH_CHECK(rl != NULL, "new");
	for (int i = 0; i < 3; i++)
		TH_CHECK(ratelimit_reserve(rl, "carol", t) == 0, "reserve %d", i);
	/* Only tries in flight block: they may succeed, so a short wait. */
	wait = ratelimit_reserve(rl, "carol", t);
	TH_CHECK(wait > 0 && wait <= 1000, "blocked by tries in flight, wait %u", wait);

	/* A released try frees its slot; released twice frees nothing more. */
	ratelimit_release(rl, "carol");
	TH_CHECK(ratelimit_reserve(rl, "carol", t) == 0, "slot given back");
	TH_CHECK(ratelimit_reserve(rl, "carol", t) > 0, "full again");

	/* Failures: the whole window. */
	for (int i = 0; i < 3; i++)
		ratelimit_fail(rl, "carol", t + 100);
	TH_CHECK(ratelimit_reserve(rl, "carol", t + 100) == 9900, "failed: waits the window");

	/* A success forgets failures but not the other tries in flight. */
	TH_CHECK(ratelimit_reserve(rl, "dan", t) == 0, "dan 1");
	TH_CHECK(ratelimit_reserve(rl, "dan", t) == 0, "dan 2");
	TH_CHECK(ratelimit_reserve(rl, "dan", t) == 0, "dan 3");
	ratelimit_reset(rl, "dan");
	TH_CHECK(ratelimit_reserve(rl, "dan", t) == 0, "one slot back");
	TH_CHECK(ratelimit_reserve(rl, "dan", t) > 0, "two still in flight");

	/* Tries in flight outlive their window: they carry into the next. */
	TH_CHECK(ratelimit_reserve(rl, "dan", t + 10000) > 0, "still in flight");
	ratelimit_fail(rl, "dan", t + 10000);
	ratelimit_fail(rl, "dan", t + 10000);
	ratelimit_fail(rl, "dan", t + 10000);
	TH_CHECK(ratelimit_reserve(rl, "dan", t + 10000) == 10000, "failed in the new window");

	/* Settling what is not reserved never underflows into a lockout. */
	for (int i = 0; i < 10; i++)
		ratelimit_release(rl, "erin");
	for (int i = 0; i < 3; i++)
		TH_CHECK(ratelimit_reserve(rl, "erin", t) == 0, "erin %d", i);

	/* A flood of other keys in a tiny table (16 entries): every new key
	 * is taken in (the oldest entries make room), memory does not grow,
	 * the newest keys are still counted, and settling a reservation that
	 * was evicted is harmless. */
	{
		struct mallinfo2 before = mallinfo2(), after;
		int refused = 0;

		for (int i = 0; i < 10000; i++) {
			char key[32];

			snprintf(key, sizeof(key), "user%d", i);
			if (ratelimit_reserve(rl, key, t + i) == 0)
				ratelimit_fail(rl, key, t + i);
			else
				refused++;
		}
		after = mallinfo2();
		TH_CHECK(refused == 0, "%d new keys refused: a full table must evict", refused);
		TH_CHECK(after.uordblks == before.uordblks, "the flood allocated %zd bytes",
			 (ssize_t)(after.uordblks - before.uordblks));
	}
	/* The newest key is counted: two more failures lock it out. */
	for (int i = 0; i < 2; i++) {
		TH_CHECK(ratelimit_reserve(rl, "user9999", t + 9999) == 0, "user9999 try %d", i);
		ratelimit_fail(rl, "user9999", t + 9999);
	}
	TH_CHECK(ratelimit_reserve(rl, "user9999", t + 9999) == 10000,
		 "the newest key keeps its failures through the flood");
	/* erin's three tries in flight went with her evicted entry: settling
	 * one is a no-op and she may try again at once. */
	ratelimit_release(rl, "erin");
	for (int i = 0; i < 3; i++)
		TH_CHECK(ratelimit_reserve(rl, "erin", t + 9999) == 0, "erin after eviction %d", i);
	TH_CHECK(ratelimit_reserve(rl, "erin", t + 9999) > 0, "erin counted again");
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

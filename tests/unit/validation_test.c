/* validation_test.c — the shared id/text rules and the login rate limiter. */
#include <string.h>

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
	ratelimit *rl = ratelimit_new(3, 1000, 16);
	int64_t t = 1000000;

	TH_CHECK(rl != NULL, "new");
	for (int i = 0; i < 3; i++) {
		TH_CHECK(ratelimit_check(rl, "alice", t) == 0, "allowed %d", i);
		ratelimit_fail(rl, "alice", t);
	}
	TH_CHECK(ratelimit_check(rl, "alice", t + 100) == 900, "waits out the window");
	TH_CHECK(ratelimit_check(rl, "bob", t + 100) == 0, "others unaffected");
	TH_CHECK(ratelimit_check(rl, "alice", t + 1000) == 0, "window over");
	ratelimit_fail(rl, "alice", t);
	ratelimit_fail(rl, "alice", t);
	ratelimit_reset(rl, "alice");
	TH_CHECK(ratelimit_check(rl, "alice", t) == 0, "reset");
	/* A flood of other keys in a tiny table evicts old entries, never
	 * grows memory, and never crashes. */
	for (int i = 0; i < 10000; i++) {
		char key[32];
		snprintf(key, sizeof(key), "user%d", i);
		ratelimit_fail(rl, key, t + i);
	}
	ratelimit_free(rl);
	printf("ok rate limiter\n");
}

int
main(void)
{
	TH_CHECK(sodium_init() >= 0, "sodium");
	test_ids();
	test_text();
	test_ratelimit();
	return 0;
}

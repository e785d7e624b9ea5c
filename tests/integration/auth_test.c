/*
 * auth_test.c — the Auth service end to end: a real parleyd on real tcp
 * sockets, called through the rpc client.
 */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "store.h"
#include "parley/v1/auth.pb-c.h"

static th_daemon d;

static rpc_client *auth, *home; /* auth: the one calls use; home: from 127.0.0.1 */

static rpc_code
call(const char *method, const ProtobufCMessage *req, ProtobufCMessage **resp,
     const char *token, rpc_status *st)
{
	rpc_call_opts o = {.timeout_ms = 10000, .token = token};

	return rpc_client_call(auth, &parley__v1__auth__descriptor, method, req, resp, &o, st);
}

static rpc_code
do_register(const char *user, const char *pw, const char *name, const char *email,
	    rpc_status *st)
{
	Parley__V1__RegisterRequest r = PARLEY__V1__REGISTER_REQUEST__INIT;
	ProtobufCMessage *resp;
	rpc_code code;

	r.user_id = (char *)user;
	r.password = (char *)pw;
	r.display_name = (char *)name;
	r.email = (char *)email;
	code = call("Register", &r.base, &resp, NULL, st);
	if (resp != NULL) {
		Parley__V1__RegisterResponse *rr = (void *)resp;
		TH_CHECK(rr->user != NULL && strcmp(rr->user->user_id, user) == 0, "user echoed");
		TH_CHECK(rr->user->created_at_ms > 0, "created_at set");
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	return code;
}

/* Logs in; on success copies the token. Returns the raw reply bytes'
 * status message for comparison. */
static rpc_code
do_login(const char *user, const char *pw, char *token, rpc_status *st)
{
	Parley__V1__LoginRequest r = PARLEY__V1__LOGIN_REQUEST__INIT;
	ProtobufCMessage *resp;
	rpc_code code;

	r.user_id = (char *)user;
	r.password = (char *)pw;
	code = call("Login", &r.base, &resp, NULL, st);
	if (code == RPC_OK) {
		Parley__V1__LoginResponse *lr = (void *)resp;
		TH_CHECK(strlen(lr->token) == 43, "token is 43 chars of base64url: %s", lr->token);
		TH_CHECK(lr->expires_at_ms > rpc_wall_ms(), "expiry in the future");
		TH_CHECK(lr->user && strcmp(lr->user->user_id, user) == 0, "user in reply");
		if (token)
			strcpy(token, lr->token);
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	return code;
}

static rpc_code
do_validate(const char *token, char *user_out, rpc_status *st)
{
	Parley__V1__ValidateRequest r = PARLEY__V1__VALIDATE_REQUEST__INIT;
	ProtobufCMessage *resp;
	rpc_code code;

	r.token = (char *)token;
	code = call("Validate", &r.base, &resp, NULL, st);
	if (code == RPC_OK) {
		if (user_out)
			strcpy(user_out, ((Parley__V1__ValidateResponse *)resp)->user_id);
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	return code;
}

static rpc_code
do_logout(const char *token, rpc_status *st)
{
	Parley__V1__LogoutRequest r = PARLEY__V1__LOGOUT_REQUEST__INIT;
	ProtobufCMessage *resp;
	rpc_code code = call("Logout", &r.base, &resp, token, st);

	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

static rpc_code
do_change_password(const char *token, const char *old_pw, const char *new_pw, rpc_status *st)
{
	Parley__V1__ChangePasswordRequest r = PARLEY__V1__CHANGE_PASSWORD_REQUEST__INIT;
	ProtobufCMessage *resp;
	rpc_code code;

	r.old_password = (char *)old_pw;
	r.new_password = (char *)new_pw;
	code = call("ChangePassword", &r.base, &resp, token, st);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

/* A client whose calls come from source address ip (any 127.x.y.z is this
 * host), so that each test has an address, and its limits, of its own. */
static rpc_client *
client_from(const char *ip)
{
	char url[128];

	snprintf(url, sizeof(url), "tcp://%.40s;%.64s", ip, d.auth + strlen("tcp://"));
	return th_client(url);
}

/* Makes auth's calls from ip (NULL: home) until the next use_address. */
static void
use_address(const char *ip)
{
	static rpc_client *mine;

	if (mine != NULL)
		rpc_client_close(mine);
	mine = ip != NULL ? client_from(ip) : NULL;
	auth = mine != NULL ? mine : home;
}

/*
 * Logs in as user with the wrong pw `free` times (each UNAUTHENTICATED),
 * then until the limit refuses: it must within 3 more tries (each failure
 * past the free ones doubles the wait from 1 s, so only a stall of seconds
 * between two calls lets one more through). Leaves the refusal in st.
 */
static void
fail_until_refused(const char *user, const char *pw, int free, rpc_status *st)
{
	rpc_code code;

	for (int i = 0; i < free; i++)
		TH_CODE(do_login(user, pw, NULL, st), RPC_UNAUTHENTICATED, st);
	for (int i = 0;; i++) {
		code = do_login(user, pw, NULL, st);
		if (code == RPC_RESOURCE_EXHAUSTED)
			break;
		TH_CHECK(code == RPC_UNAUTHENTICATED && i < 3, "try %d past the free ones: %s (%s)",
			 i, rpc_code_name(code), st->message);
	}
	TH_CHECK(st->retry_after_ms > 0 && st->retry_after_ms <= 15 * 60000,
		 "retry_after_ms=%u (%s)", st->retry_after_ms, st->message);
	TH_CHECK(strstr(st->message, "; try again in ") != NULL, "says when: %s", st->message);
}

static void
test_register_login_validate_logout(void)
{
	char token[64], who[64];
	rpc_status st;

	TH_CODE(do_register("alice", "correct horse", "Alice Ünicode", "alice@example.org", &st),
		RPC_OK, &st);
	TH_CODE(do_register("alice", "another pass", "Alice 2", "", &st), RPC_ALREADY_EXISTS,
		&st);
	TH_CODE(do_login("alice", "correct horse", token, &st), RPC_OK, &st);
	TH_CODE(do_validate(token, who, &st), RPC_OK, &st);
	TH_CHECK(strcmp(who, "alice") == 0, "validate names alice, got %s", who);
	TH_CODE(do_logout(token, &st), RPC_OK, &st);
	TH_CODE(do_validate(token, NULL, &st), RPC_UNAUTHENTICATED, &st);
	TH_CODE(do_logout(token, &st), RPC_UNAUTHENTICATED, &st);
	printf("ok register/login/validate/logout\n");
}

static void
test_register_validation(void)
{
	char big[2000];
	rpc_status st;

	use_address("127.0.0.2"); /* invalid requests do not count against it */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	TH_CODE(do_register("ab", "password1", "A", "", &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(do_register("_abc", "password1", "A", "", &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(do_register("Abc", "password1", "A", "", &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(do_register("abcdefghijklmnopqrstuvwxyz0123456", "password1", "A", "", &st),
		RPC_INVALID_ARGUMENT, &st);
	TH_CODE(do_register("bob", "short", "Bob", "", &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(do_register("bob", big, "Bob", "", &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(do_register("bob", "password1", "", "", &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(do_register("bob", "password1", "tab\there", "", &st), RPC_INVALID_ARGUMENT, &st);
	big[65] = '\0';
	TH_CODE(do_register("bob", "password1", big, "", &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(do_register("bob", "password1", "Bob", "no-at-sign", &st), RPC_INVALID_ARGUMENT,
		&st);
	TH_CODE(do_register("bob", "password1", "Bob", "a@b@c", &st), RPC_INVALID_ARGUMENT, &st);
	/* 64 characters of two bytes each is fine: the limit counts characters. */
	{
		char name[200] = "";
		for (int i = 0; i < 64; i++)
			strcat(name, "é");
		TH_CODE(do_register("bob", "password1", name, "bob@example.org", &st), RPC_OK, &st);
	}
	printf("ok register validation\n");
}

static void
test_login_failures_identical_and_limited(void)
{
	Parley__V1__LoginRequest r = PARLEY__V1__LOGIN_REQUEST__INIT;
	uint8_t body[256];
	void *reply1, *reply2;
	size_t len1, len2, blen;
	rpc_status st1, st2;
	rpc_call_opts o = {.timeout_ms = 10000};
	long cpu_unknown, cpu_wrong;

	use_address("127.0.0.3");
	TH_CODE(do_register("carol", "carol-password", "Carol", "", &st1), RPC_OK, &st1);

	/* Unknown user and wrong password: same status, same message. */
	TH_CODE(do_login("nosuchuser", "whatever-pass", NULL, &st1), RPC_UNAUTHENTICATED, &st1);
	TH_CODE(do_login("carol", "wrong-password", NULL, &st2), RPC_UNAUTHENTICATED, &st2);
	TH_CHECK(strcmp(st1.message, st2.message) == 0, "'%s' vs '%s'", st1.message, st2.message);

	/* Same work for both: an unknown user is checked against a dummy hash,
	 * so it has no fast path. Compare the daemon's CPU time spent on five
	 * tries of each (not wall time: load on the machine stretches that,
	 * not the work done); distinct accounts keep the rate limiter out of
	 * it. A fast path would cost next to nothing against an Argon2id
	 * verification. */
	cpu_unknown = cpu_wrong = 0;
	for (int i = 0; i < 5; i++) {
		char user[32], pw[32];
		long c0;

		snprintf(user, sizeof(user), "timing%d", i);
		snprintf(pw, sizeof(pw), "timing-password-%d", i);
		TH_CODE(do_register(user, pw, "Timing", "", &st1), RPC_OK, &st1);
		snprintf(user, sizeof(user), "ghost%d", i);
		c0 = th_proc_cpu_ticks(d.pid);
		TH_CODE(do_login(user, "whatever-pass", NULL, &st1), RPC_UNAUTHENTICATED, &st1);
		cpu_unknown += th_proc_cpu_ticks(d.pid) - c0;
		snprintf(user, sizeof(user), "timing%d", i);
		c0 = th_proc_cpu_ticks(d.pid);
		TH_CODE(do_login(user, "wrong-password", NULL, &st1), RPC_UNAUTHENTICATED, &st1);
		cpu_wrong += th_proc_cpu_ticks(d.pid) - c0;
	}
	TH_CHECK(cpu_wrong > 0 && cpu_unknown * 2 >= cpu_wrong,
		 "unknown user cost %ld CPU ticks, wrong password %ld: a fast path", cpu_unknown,
		 cpu_wrong);

	/* Byte-for-byte: same raw reply for both causes (same request id is
	 * not possible across calls, so compare the status part via a raw
	 * call each, which returns the message and no body). */
	r.user_id = "nosuchuser2";
	r.password = "whatever-pass";
	blen = parley__v1__login_request__pack(&r, body);
	TH_CHECK(rpc_client_call_raw(auth, "/parley.v1.Auth/Login", body, blen, &reply1, &len1,
				     &o, &st1) == RPC_UNAUTHENTICATED, "raw unknown");
	r.user_id = "carol";
	blen = parley__v1__login_request__pack(&r, body);
	TH_CHECK(rpc_client_call_raw(auth, "/parley.v1.Auth/Login", body, blen, &reply2, &len2,
				     &o, &st2) == RPC_UNAUTHENTICATED, "raw wrong");
	TH_CHECK(strcmp(st1.message, st2.message) == 0 && len1 == 0 && len2 == 0,
		 "same bytes for both failures");

	/* carol has now failed 2 times from here (one above, one raw); 3 more
	 * use up the 5 free failures, then even her password waits. */
	fail_until_refused("carol", "wrong-password", 3, &st1);
	TH_CHECK(strstr(st1.message, "too many failed logins for this account from your "
				     "address") != NULL,
		 "names the limit: %s", st1.message);
	TH_CODE(do_login("carol", "carol-password", NULL, &st1), RPC_RESOURCE_EXHAUSTED, &st1);
	TH_CHECK(st1.retry_after_ms > 0, "retry_after_ms=%u", st1.retry_after_ms);
	/* Unknown accounts are limited the same way: no enumeration. */
	fail_until_refused("nosuchuser", "whatever-pass", 4, &st1);
	TH_CHECK(strstr(st1.message, "for this account from your address") != NULL, "%s",
		 st1.message);
	/* Another account is not affected. */
	TH_CODE(do_login("alice", "correct horse", NULL, &st1), RPC_OK, &st1);
	/* Nor is carol from another address: a stranger cannot lock her out. */
	use_address("127.0.0.4");
	TH_CODE(do_login("carol", "carol-password", NULL, &st1), RPC_OK, &st1);
	printf("ok identical login failures, limited per account and address\n");
}

/* One address guessing across accounts is slowed down as a whole, the
 * empty user_id included; other addresses are not. */
static void
test_address_limited(void)
{
	char user[32];
	rpc_status st;

	use_address("127.0.0.5");
	for (int i = 0; i < 29; i++) {
		snprintf(user, sizeof(user), "spray%d", i);
		TH_CODE(do_login(user, "whatever-pass", NULL, &st), RPC_UNAUTHENTICATED, &st);
	}
	fail_until_refused("spray-last", "whatever-pass", 1, &st);
	TH_CHECK(strstr(st.message, "too many failed logins from your address") != NULL,
		 "names the address limit: %s", st.message);
	TH_CODE(do_login("alice", "correct horse", NULL, &st), RPC_RESOURCE_EXHAUSTED, &st);
	use_address("127.0.0.6");
	TH_CODE(do_login("alice", "correct horse", NULL, &st), RPC_OK, &st);

	/* The empty user_id is an account like any other to the limits. */
	use_address("127.0.0.7");
	fail_until_refused("", "whatever-pass", 5, &st);
	TH_CHECK(strstr(st.message, "for this account from your address") != NULL, "%s",
		 st.message);
	printf("ok one address is limited across accounts, empty user_id too\n");
}

/* Register is limited per address by its ALREADY_EXISTS answers, so it
 * cannot list accounts for free; new accounts and invalid requests do not
 * count. */
static void
test_register_limited(void)
{
	char user[32];
	rpc_status st;
	rpc_code code;

	use_address("127.0.0.9");
	for (int i = 0; i < 3; i++) {
		snprintf(user, sizeof(user), "reg%d", i);
		TH_CODE(do_register(user, "reg-password", "Reg", "", &st), RPC_OK, &st);
	}
	for (int i = 0; i < 10; i++)
		TH_CODE(do_register("reg0", "reg-password", "Reg", "", &st), RPC_ALREADY_EXISTS,
			&st);
	TH_CODE(do_register("ab", "reg-password", "Reg", "", &st), RPC_INVALID_ARGUMENT, &st);
	/* 10 taken names asked for: the next waits (a stall of a second
	 * between two calls could let one more through, never three). */
	for (int i = 0;; i++) {
		code = do_register("reg0", "reg-password", "Reg", "", &st);
		if (code == RPC_RESOURCE_EXHAUSTED)
			break;
		TH_CHECK(code == RPC_ALREADY_EXISTS && i < 3, "try %d: %s (%s)", i,
			 rpc_code_name(code), st.message);
	}
	TH_CHECK(strstr(st.message, "too many taken user ids asked for from your address; try "
				    "again in ") != NULL &&
		     st.retry_after_ms > 0,
		 "%s (retry after %u ms)", st.message, st.retry_after_ms);
	/* While it waits, the address registers nothing. */
	TH_CODE(do_register("reg-new", "reg-password", "Reg", "", &st), RPC_RESOURCE_EXHAUSTED,
		&st);
	use_address("127.0.0.10");
	TH_CODE(do_register("reg0", "reg-password", "Reg", "", &st), RPC_ALREADY_EXISTS, &st);
	TH_CODE(do_register("reg-new", "reg-password", "Reg", "", &st), RPC_OK, &st);
	printf("ok register limited per address, taken names included\n");
}

#define BURST 20
#define LOGIN_LIMIT 5 /* free failures per account and address (guard.h) */

struct burst {
	const char *user, *pw;
	pthread_barrier_t go;
	pthread_mutex_t mtx;
	int ok, unauthenticated, exhausted;
};

static void *
burst_login(void *arg)
{
	struct burst *b = arg;
	rpc_status st;
	rpc_code code;

	pthread_barrier_wait(&b->go);
	code = do_login(b->user, b->pw, NULL, &st);
	TH_CHECK(code == RPC_OK || code == RPC_UNAUTHENTICATED || code == RPC_RESOURCE_EXHAUSTED,
		 "got %s (%s)", rpc_code_name(code), st.message);
	if (code == RPC_RESOURCE_EXHAUSTED)
		TH_CHECK(st.retry_after_ms > 0 && st.retry_after_ms <= 15 * 60000 &&
				 strstr(st.message, "too many ") != NULL,
			 "retry_after_ms=%u (%s)", st.retry_after_ms, st.message);
	pthread_mutex_lock(&b->mtx);
	if (code == RPC_OK)
		b->ok++;
	else if (code == RPC_UNAUTHENTICATED)
		b->unauthenticated++;
	else
		b->exhausted++;
	pthread_mutex_unlock(&b->mtx);
	return NULL;
}

/* BURST logins of user with pw, all released at once. */
static void
run_burst(struct burst *b, const char *user, const char *pw)
{
	pthread_t t[BURST];

	*b = (struct burst){.user = user, .pw = pw};
	pthread_barrier_init(&b->go, NULL, BURST);
	pthread_mutex_init(&b->mtx, NULL);
	for (int i = 0; i < BURST; i++)
		TH_CHECK(pthread_create(&t[i], NULL, burst_login, b) == 0, "thread");
	for (int i = 0; i < BURST; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&b->go);
	pthread_mutex_destroy(&b->mtx);
}

static void
test_login_burst_limited(void)
{
	struct burst b;
	rpc_status st;

	/* Concurrent wrong passwords: each check is reserved before it is
	 * queued, so only the LOGIN_LIMIT free ones are hashed, not one per
	 * call. After them the account waits 1 s, then 2 s: only a caller
	 * stalled that long could get a sixth or seventh check. */
	use_address("127.0.0.8");
	TH_CODE(do_register("frank", "frank-password", "Frank", "", &st), RPC_OK, &st);
	run_burst(&b, "frank", "wrong-password");
	TH_CHECK(b.unauthenticated >= LOGIN_LIMIT && b.unauthenticated <= LOGIN_LIMIT + 2 &&
			 b.exhausted == BURST - b.unauthenticated && b.ok == 0,
		 "%d unauthenticated, %d exhausted, %d ok of %d", b.unauthenticated, b.exhausted,
		 b.ok, BURST);

	/* The same for an account that does not exist: no enumeration. */
	run_burst(&b, "nobody-burst", "whatever-pass");
	TH_CHECK(b.unauthenticated >= LOGIN_LIMIT && b.unauthenticated <= LOGIN_LIMIT + 2 &&
			 b.exhausted == BURST - b.unauthenticated,
		 "unknown user: %d unauthenticated, %d exhausted", b.unauthenticated,
		 b.exhausted);

	/* A success forgets failures: 4 wrong, then right, then a full
	 * allowance again. */
	TH_CODE(do_register("grace", "grace-password", "Grace", "", &st), RPC_OK, &st);
	for (int i = 0; i < LOGIN_LIMIT - 1; i++)
		TH_CODE(do_login("grace", "wrong-password", NULL, &st), RPC_UNAUTHENTICATED, &st);
	TH_CODE(do_login("grace", "grace-password", NULL, &st), RPC_OK, &st);

	/* Concurrent right passwords: some may be turned away while slots
	 * are in flight, but every slot comes back, so afterwards the account
	 * has its whole allowance: nothing leaked. */
	run_burst(&b, "grace", "grace-password");
	TH_CHECK(b.ok >= 1 && b.unauthenticated == 0 && b.ok + b.exhausted == BURST,
		 "%d ok, %d exhausted, %d unauthenticated", b.ok, b.exhausted,
		 b.unauthenticated);
	fail_until_refused("grace", "wrong-password", LOGIN_LIMIT, &st);
	printf("ok concurrent logins limited, slots released\n");
}

static void
test_change_password_revokes_others(void)
{
	char t1[64], t2[64];
	rpc_status st;

	use_address("127.0.0.11");
	TH_CODE(do_register("dave", "dave-password", "Dave", "", &st), RPC_OK, &st);
	TH_CODE(do_login("dave", "dave-password", t1, &st), RPC_OK, &st);
	TH_CODE(do_login("dave", "dave-password", t2, &st), RPC_OK, &st);
	TH_CODE(do_change_password(t1, "not-the-password", "new-password", &st),
		RPC_PERMISSION_DENIED, &st);
	TH_CODE(do_change_password(t1, "dave-password", "short", &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(do_change_password(NULL, "dave-password", "new-password", &st),
		RPC_UNAUTHENTICATED, &st);
	TH_CODE(do_change_password(t1, "dave-password", "new-password", &st), RPC_OK, &st);
	TH_CODE(do_validate(t1, NULL, &st), RPC_OK, &st);
	TH_CODE(do_validate(t2, NULL, &st), RPC_UNAUTHENTICATED, &st);
	TH_CODE(do_login("dave", "dave-password", NULL, &st), RPC_UNAUTHENTICATED, &st);
	TH_CODE(do_login("dave", "new-password", NULL, &st), RPC_OK, &st);

	/* A wrong old password counts like a failed login of the account
	 * from this address (the one above is forgiven by the login). */
	TH_CODE(do_login("dave", "new-password", t1, &st), RPC_OK, &st);
	for (int i = 0;; i++) {
		rpc_code code = do_change_password(t1, "not-the-password", "newer-password", &st);
		if (code == RPC_RESOURCE_EXHAUSTED)
			break;
		TH_CHECK(code == RPC_PERMISSION_DENIED && i < LOGIN_LIMIT + 3, "try %d: %s (%s)", i,
			 rpc_code_name(code), st.message);
	}
	TH_CHECK(strstr(st.message, "too many failed logins for this account from your "
				    "address") != NULL,
		 "%s", st.message);
	use_address("127.0.0.12");
	TH_CODE(do_login("dave", "new-password", NULL, &st), RPC_OK, &st);
	printf("ok change password revokes other sessions, is limited like a login\n");
}

static void
test_forged_tokens(void)
{
	rpc_status st;

	TH_CODE(do_validate("", NULL, &st), RPC_UNAUTHENTICATED, &st);
	TH_CODE(do_validate("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, &st),
		RPC_UNAUTHENTICATED, &st);
	TH_CODE(do_validate("!!!!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, &st),
		RPC_UNAUTHENTICATED, &st);
	TH_CODE(do_logout("not-a-token", &st), RPC_UNAUTHENTICATED, &st);
	printf("ok forged tokens refused\n");
}

static void
test_persistence_across_restart(void)
{
	char token[64];
	rpc_status st;

	use_address("127.0.0.13");
	TH_CODE(do_login("alice", "correct horse", token, &st), RPC_OK, &st);
	TH_CHECK(th_restart(&d), "restart");
	TH_CODE(do_validate(token, NULL, &st), RPC_OK, &st);
	TH_CODE(do_login("alice", "correct horse", NULL, &st), RPC_OK, &st);
	printf("ok users and sessions survive a restart\n");
}

static bool
count_one(void *arg, store_val key, store_val val)
{
	(void)key;
	(void)val;
	(*(int *)arg)++;
	return true;
}

/* Entries in table of the store in dir, opened read-only; -1 on error. */
static int
count_entries(const char *dir, const char *table)
{
	store_opts o = {.read_only = true};
	store_env *env;
	store_table t;
	store_txn *txn;
	int n = 0;

	if (store_open(&env, dir, &o, NULL, 0) != STORE_OK)
		return -1;
	if (store_table_open(env, table, &t) != STORE_OK ||
	    store_begin(env, false, &txn) != STORE_OK) {
		store_close(env);
		return -1;
	}
	if (store_scan(txn, t, NULL, 0, false, count_one, &n) != STORE_OK)
		n = -1;
	store_abort(txn);
	store_close(env);
	return n;
}

static void
test_token_expiry(void)
{
	th_daemon e = {0};
	rpc_client *saved = auth;
	char token[64];
	rpc_status st;

	e.extra[0] = "--token-ttl";
	e.extra[1] = "1";
	TH_CHECK(th_start(&e, "auth"), "start short-ttl daemon");
	auth = th_client(e.auth);
	TH_CODE(do_register("erin", "erin-password", "Erin", "", &st), RPC_OK, &st);
	TH_CODE(do_login("erin", "erin-password", token, &st), RPC_OK, &st);
	TH_CODE(do_validate(token, NULL, &st), RPC_OK, &st);
	usleep(1300 * 1000);
	TH_CODE(do_validate(token, NULL, &st), RPC_UNAUTHENTICATED, &st);
	TH_CODE(do_logout(token, &st), RPC_UNAUTHENTICATED, &st);
	printf("ok tokens expire\n");

	/* Sessions never presented again do not stay forever: the sweeper
	 * deletes them (here every second, the token lifetime). Read the
	 * daemon's store as a second process may, read-only. */
	for (int i = 0; i < 3; i++)
		TH_CODE(do_login("erin", "erin-password", token, &st), RPC_OK, &st);
	int64_t until = rpc_now_ms() + 20000;
	while ((count_entries(e.dir, "auth.tokens") != 0 ||
		count_entries(e.dir, "auth.user_tokens") != 0) &&
	       rpc_now_ms() < until)
		usleep(100 * 1000);
	TH_CHECK(count_entries(e.dir, "auth.tokens") == 0 &&
		     count_entries(e.dir, "auth.user_tokens") == 0,
		 "expired sessions swept: %d tokens, %d user index entries left",
		 count_entries(e.dir, "auth.tokens"), count_entries(e.dir, "auth.user_tokens"));
	rpc_client_close(auth);
	auth = saved;
	TH_CHECK(th_stop(&e) == 0, "clean exit");
	th_cleanup(&e);
	printf("ok expired sessions are swept\n");
}

int
main(void)
{
	TH_CHECK(th_start(&d, "auth"), "start parleyd");
	auth = home = th_client(d.auth);

	test_register_login_validate_logout();
	test_register_validation();
	test_login_failures_identical_and_limited();
	test_address_limited();
	test_register_limited();
	test_login_burst_limited();
	test_change_password_revokes_others();
	test_forged_tokens();
	test_persistence_across_restart();
	test_token_expiry();

	use_address(NULL);
	rpc_client_close(home);
	TH_CHECK(th_stop(&d) == 0, "parleyd exits 0 on SIGTERM");
	th_cleanup(&d);
	return 0;
}

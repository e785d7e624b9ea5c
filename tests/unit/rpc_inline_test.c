/*
 * rpc_inline_test.c — quick methods (rpc_method.quick) over a real tcp
 * socket: while the server's in-process check says yes they run on nng's
 * callback thread, with no hand-off to a worker; while it says no, and for
 * every other method, on a worker. Statuses (the authenticator's too),
 * deferred replies, an in-process call made from such a handler, and many
 * clients at once work the same on either path. A call from such a
 * handler to a server outside the process is refused at once, not left to
 * wait on nng's own thread; a call that waited in the queue past its
 * deadline is not run.
 */
#define _GNU_SOURCE 1 /* pthread_getname_np */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "harness.h"
#include "rpc_calls.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/health.pb-c.h"
#include "server.h"

#define CLIENTS 8
#define CALLS 300

static bool inline_ok = true;	   /* the server's in-process check */
static pthread_mutex_t ran_mtx = PTHREAD_MUTEX_INITIALIZER;
static char ran_on[CLIENTS + 1][16]; /* [ran_mtx] the last handler's thread, per caller */
static rpc_client *nested;	   /* a client of the second server, in process */
static rpc_client *far;		   /* a client of nothing in this process */
static int slow_runs;		   /* ChangePassword calls run, atomic */

static bool
check_inline(void *ctx)
{
	(void)ctx;
	return __atomic_load_n(&inline_ok, __ATOMIC_SEQ_CST);
}

/* The caller's slot: the token's first byte is a digit naming it. */
static void
note_thread(const char *token)
{
	unsigned k = token[0] >= '0' && token[0] <= '9' ? (unsigned)(token[0] - '0') : CLIENTS;
	char name[16];

	pthread_getname_np(pthread_self(), name, sizeof(name));
	pthread_mutex_lock(&ran_mtx);
	memcpy(ran_on[k], name, sizeof(name));
	pthread_mutex_unlock(&ran_mtx);
}

/* Validate (quick): the token reversed; "n..." first asks the second
 * server, in process, as Send asks Rooms/IsMember. */
static rpc_code
validate(rpc_call *c, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	const Parley__V1__ValidateRequest *req = (const void *)reqm;
	Parley__V1__ValidateResponse *resp = (void *)respm;
	size_t n = strlen(req->token);
	char *u = rpc_call_alloc(c, n + 1);

	(void)ctx;
	if (n == 0)
		return rpc_call_fail(c, RPC_INVALID_ARGUMENT, "empty token");
	note_thread(req->token);
	if (strchr(req->token, 'n') != NULL &&
	    health(nested) != PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING)
		return rpc_call_fail(c, RPC_UNAVAILABLE, "the second server did not answer");
	if (strchr(req->token, 'f') != NULL) {
		char user[8];
		rpc_status st;

		/* A server not in this process: refused, its message passed on. */
		rpc_call_fail(c, call_validate(far, "x", user, sizeof(user), &st), "%s",
			      st.message);
		return st.code;
	}
	for (size_t i = 0; i < n; i++)
		u[i] = req->token[n - 1 - i];
	resp->user_id = u;
	return RPC_OK;
}

static void *
finish_soon(void *p)
{
	usleep(2000);
	rpc_call_finish(p, RPC_OK);
	return NULL;
}

/* Login (quick): deferred, answered from another thread. */
static rpc_code
login(rpc_call *c, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	const Parley__V1__LoginRequest *req = (const void *)reqm;
	Parley__V1__LoginResponse *resp = (void *)respm;
	pthread_t t;

	(void)ctx;
	note_thread(req->user_id);
	resp->token = rpc_call_strdup(c, req->user_id);
	if (rpc_call_defer(c) != RPC_OK)
		return RPC_RESOURCE_EXHAUSTED;
	TH_CHECK(pthread_create(&t, NULL, finish_soon, c) == 0, "thread");
	pthread_detach(t);
	return RPC_DEFERRED;
}

/* Logout (quick, needs a token: the authenticator runs first). */
static rpc_code
logout(rpc_call *c, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	(void)reqm;
	(void)respm;
	(void)ctx;
	note_thread(rpc_call_token(c));
	return RPC_OK;
}

/* ChangePassword (not quick): always on a worker; takes new_password ms. */
static rpc_code
change_password(rpc_call *c, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	const Parley__V1__ChangePasswordRequest *req = (const void *)reqm;

	(void)c;
	(void)respm;
	(void)ctx;
	note_thread(req->old_password);
	__atomic_add_fetch(&slow_runs, 1, __ATOMIC_SEQ_CST);
	usleep((useconds_t)atoi(req->new_password) * 1000);
	return RPC_OK;
}

static rpc_code
authn(void *ctx, const char *token, int64_t deadline_ms, char user_id[RPC_USER_ID_MAX],
      rpc_status *st)
{
	(void)ctx;
	(void)deadline_ms;
	if (token[0] < '0' || token[0] > '9')
		return rpc_status_set(st, RPC_UNAUTHENTICATED, "bad token");
	snprintf(user_id, RPC_USER_ID_MAX, "someone");
	return RPC_OK;
}

static const rpc_method methods[] = {
	{.fn = NULL},						    /* Register */
	{.fn = login, .auth = RPC_AUTH_NONE, .quick = true},	    /* Login */
	{.fn = logout, .auth = RPC_AUTH_REQUIRED, .quick = true},  /* Logout */
	{.fn = validate, .auth = RPC_AUTH_NONE, .quick = true},    /* Validate */
	{.fn = change_password, .auth = RPC_AUTH_NONE},		    /* ChangePassword */
	{.fn = NULL},						    /* UpdateProfile */
	{.fn = NULL},						    /* GetUsers */
	{.fn = NULL},						    /* DeleteAccount */
};

static rpc_code
call_change_password(rpc_client *cli, const char *who, const char *ms, uint32_t timeout_ms,
		     rpc_status *st)
{
	Parley__V1__ChangePasswordRequest req = PARLEY__V1__CHANGE_PASSWORD_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	rpc_call_opts o = {.timeout_ms = timeout_ms};
	rpc_code code;

	req.old_password = (char *)who;
	req.new_password = (char *)ms;
	code = rpc_client_call(cli, &parley__v1__auth__descriptor, "ChangePassword", &req.base,
			       &resp, &o, st);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

static void *
occupy_worker(void *p)
{
	rpc_status st;

	TH_CODE(call_change_password(p, "8", "400", 5000, &st), RPC_OK, &st);
	return NULL;
}

static rpc_code
call_login(rpc_client *cli, const char *who, char *token, size_t len, rpc_status *st)
{
	Parley__V1__LoginRequest req = PARLEY__V1__LOGIN_REQUEST__INIT;
	Parley__V1__LoginResponse *resp;
	rpc_code code;

	req.user_id = (char *)who;
	req.password = "x";
	code = rpc_client_call(cli, &parley__v1__auth__descriptor, "Login", &req.base,
			       (ProtobufCMessage **)&resp, NULL, st);
	if (code == RPC_OK) {
		snprintf(token, len, "%s", resp->token);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

static bool
on_nng(unsigned k)
{
	bool yes;

	pthread_mutex_lock(&ran_mtx);
	yes = strncmp(ran_on[k], "nng:", 4) == 0;
	pthread_mutex_unlock(&ran_mtx);
	return yes;
}

struct client_run {
	rpc_client *cli;
	unsigned k;
	int wrong;
};

/* CALLS Validates (every tenth nested) and Logins, answers checked. */
static void *
client_main(void *p)
{
	struct client_run *r = p;
	char token[32], user[32], want[32];
	rpc_status st;

	for (int i = 0; i < CALLS; i++) {
		int n = snprintf(token, sizeof(token), "%u-%d%s", r->k, i, i % 10 == 0 ? "n" : "");

		for (int j = 0; j < n; j++)
			want[j] = token[n - 1 - j];
		want[n] = '\0';
		if (call_validate(r->cli, token, user, sizeof(user), &st) != RPC_OK ||
		    strcmp(user, want) != 0)
			r->wrong++;
		if (i % 3 == 0 && (call_login(r->cli, token, user, sizeof(user), &st) != RPC_OK ||
				   strcmp(user, token) != 0))
			r->wrong++;
	}
	return NULL;
}

int
main(void)
{
	char url[64], url2[64], url3[64], user[32];
	pthread_t busy[2];
	int64_t t0;
	rpc_server_opts opts = {.name = "inline-test", .workers = 2};
	rpc_server *srv, *second;
	rpc_client *cli[CLIENTS];
	struct client_run runs[CLIENTS];
	pthread_t threads[CLIENTS];
	rpc_status st;

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", th_free_port());
	snprintf(url2, sizeof(url2), "tcp://127.0.0.1:%d", th_free_port());
	TH_CHECK(rpc_server_open(&second, url2, &opts, &st) == RPC_OK, "open: %s", st.message);
	TH_CHECK(rpc_server_start(second, &st) == RPC_OK, "start: %s", st.message);
	TH_CHECK(rpc_client_open(&nested, url2, &st) == RPC_OK, "client");
	TH_CHECK(rpc_client_is_local(nested), "the second server is in process");
	snprintf(url3, sizeof(url3), "tcp://127.0.0.1:%d", th_free_port());
	TH_CHECK(rpc_client_open(&far, url3, &st) == RPC_OK, "client");
	TH_CHECK(rpc_server_open(&srv, url, &opts, &st) == RPC_OK, "open: %s", st.message);
	rpc_server_add_service(srv, &parley__v1__auth__descriptor, methods, NULL);
	rpc_server_set_authenticator(srv, authn, NULL);
	rpc_server_set_inline(srv, check_inline, NULL);
	TH_CHECK(rpc_server_start(srv, &st) == RPC_OK, "start: %s", st.message);
	/* Another spelling of the address: over tcp, not in process. */
	for (int i = 0; i < CLIENTS; i++) {
		char remote[64];

		snprintf(remote, sizeof(remote), "tcp://localhost:%s", strrchr(url, ':') + 1);
		TH_CHECK(rpc_client_open(&cli[i], remote, &st) == RPC_OK, "client");
		TH_CHECK(!rpc_client_is_local(cli[i]), "the client goes over tcp");
	}

	/* The check says yes: quick methods on nng's thread, others not. */
	TH_CODE(call_validate(cli[0], "0abc", user, sizeof(user), &st), RPC_OK, &st);
	TH_CHECK(strcmp(user, "cba0") == 0, "user %s", user);
	TH_CHECK(on_nng(0), "Validate ran on '%s', want one of nng's threads", ran_on[0]);
	TH_CODE(call_login(cli[0], "0me", user, sizeof(user), &st), RPC_OK, &st);
	TH_CHECK(strcmp(user, "0me") == 0 && on_nng(0), "deferred Login: %s on '%s'", user,
		 ran_on[0]);
	TH_CODE(call_logout(cli[0], "0tok", &st), RPC_OK, &st);
	TH_CHECK(on_nng(0), "Logout (quick, authenticated) ran on '%s'", ran_on[0]);
	TH_CODE(call_change_password(cli[0], "0", "0", 5000, &st), RPC_OK, &st);
	TH_CHECK(!on_nng(0), "ChangePassword (not quick) ran on '%s', want a worker", ran_on[0]);
	TH_CODE(call_validate(cli[0], "0n", user, sizeof(user), &st), RPC_OK, &st);
	TH_CHECK(on_nng(0), "a nested in-process call from nng's thread");
	printf("ok quick methods run on nng's thread, others on a worker\n");

	/* Statuses are the same: the handler's, the runtime's, the
	 * authenticator's. */
	TH_CODE(call_validate(cli[0], "", user, sizeof(user), &st), RPC_INVALID_ARGUMENT, &st);
	TH_CHECK(strcmp(st.message, "empty token") == 0, "message %s", st.message);
	TH_CODE(call_logout(cli[0], "bad", &st), RPC_UNAUTHENTICATED, &st);
	TH_CHECK(strcmp(st.message, "bad token") == 0, "message %s", st.message);
	TH_CODE(call_logout(cli[0], NULL, &st), RPC_UNAUTHENTICATED, &st);
	TH_CHECK(strcmp(st.message, "missing bearer token") == 0, "message %s", st.message);
	printf("ok statuses as on the worker path\n");

	/* A call from nng's thread to a server not in this process is
	 * refused at once: waiting for its socket there could starve the
	 * threads that would deliver the answer. */
	t0 = rpc_now_ms();
	TH_CODE(call_validate(cli[0], "0f", user, sizeof(user), &st), RPC_UNAVAILABLE, &st);
	TH_CHECK(strstr(st.message, "must not wait on a socket") != NULL, "message %s", st.message);
	TH_CHECK(rpc_now_ms() - t0 < 1000, "refused in %lld ms", (long long)(rpc_now_ms() - t0));
	printf("ok a call to a server elsewhere is refused on nng's thread\n");

	/* Both workers busy: a call that waits in the queue past its deadline
	 * is answered DEADLINE_EXCEEDED and never run. */
	for (int i = 0; i < 2; i++)
		TH_CHECK(pthread_create(&busy[i], NULL, occupy_worker, cli[6 + i]) == 0, "thread");
	while (__atomic_load_n(&slow_runs, __ATOMIC_SEQ_CST) < 3) /* 1 above, and these 2 */
		usleep(1000);
	TH_CODE(call_change_password(cli[0], "0", "0", 100, &st), RPC_DEADLINE_EXCEEDED, &st);
	for (int i = 0; i < 2; i++)
		pthread_join(busy[i], NULL);
	usleep(100 * 1000);
	TH_CHECK(__atomic_load_n(&slow_runs, __ATOMIC_SEQ_CST) == 3,
		 "a call past its deadline was run (%d runs)",
		 __atomic_load_n(&slow_runs, __ATOMIC_SEQ_CST));
	printf("ok a call that waited past its deadline is not run\n");

	/* The check says no (a dependency is remote): every method on a
	 * worker. */
	__atomic_store_n(&inline_ok, false, __ATOMIC_SEQ_CST);
	TH_CODE(call_validate(cli[1], "1abc", user, sizeof(user), &st), RPC_OK, &st);
	TH_CHECK(strcmp(user, "cba1") == 0 && !on_nng(1), "Validate ran on '%s', want a worker",
		 ran_on[1]);
	TH_CODE(call_login(cli[1], "1me", user, sizeof(user), &st), RPC_OK, &st);
	TH_CHECK(!on_nng(1), "deferred Login ran on '%s', want a worker", ran_on[1]);
	printf("ok with the check saying no, quick methods run on a worker\n");

	/* Many clients at once, on both paths in turn. */
	for (int round = 0; round < 2; round++) {
		__atomic_store_n(&inline_ok, round == 0, __ATOMIC_SEQ_CST);
		for (unsigned i = 0; i < CLIENTS; i++) {
			runs[i] = (struct client_run){.cli = cli[i], .k = i};
			TH_CHECK(pthread_create(&threads[i], NULL, client_main, &runs[i]) == 0,
				 "thread");
		}
		for (unsigned i = 0; i < CLIENTS; i++) {
			pthread_join(threads[i], NULL);
			TH_CHECK(runs[i].wrong == 0, "client %u: %d wrong answers", i, runs[i].wrong);
		}
	}
	printf("ok %d clients x %d calls, inline and on workers, all answered right\n", CLIENTS,
	       CALLS);

	rpc_server_close(srv, 1000);
	rpc_server_close(second, 1000);
	for (int i = 0; i < CLIENTS; i++)
		rpc_client_close(cli[i]);
	rpc_client_close(nested);
	rpc_client_close(far);
	nng_fini();
	return 0;
}

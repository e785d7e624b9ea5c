/*
 * rpc_local_test.c — in-process calls (rpc/local.h): a client on a server's
 * own URL in the same process runs the call on its thread, with the same
 * statuses as over the socket; a deferred reply crosses threads; a caller
 * that gives up at its deadline leaks nothing; a draining server refuses.
 */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "harness.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/health.pb-c.h"
#include "server.h"

static pthread_t handler_thread; /* the thread that ran the last Validate */

/* Validate: synchronous; answers the token reversed as the user id. */
static rpc_code
validate(rpc_call *c, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	const Parley__V1__ValidateRequest *req = (const void *)reqm;
	Parley__V1__ValidateResponse *resp = (void *)respm;
	size_t n = strlen(req->token);
	char *u = rpc_call_alloc(c, n + 1);

	(void)ctx;
	__atomic_store_n(&handler_thread, pthread_self(), __ATOMIC_SEQ_CST); /* read by the test thread */
	if (n == 0)
		return rpc_call_fail(c, RPC_INVALID_ARGUMENT, "empty token");
	for (size_t i = 0; i < n; i++)
		u[i] = req->token[n - 1 - i];
	resp->user_id = u;
	resp->expires_at_ms = 42;
	return RPC_OK;
}

#define LATE_MS 300 /* the delay of the call whose caller gives up */
static int finished; /* calls of LATE_MS finished by finish_later */

struct later {
	rpc_call *call;
	int delay_ms;
};

static void *
finish_later(void *p)
{
	struct later *l = p;

	usleep((useconds_t)l->delay_ms * 1000);
	rpc_call_finish(l->call, RPC_UNAUTHENTICATED);
	if (l->delay_ms == LATE_MS)
		__atomic_add_fetch(&finished, 1, __ATOMIC_SEQ_CST);
	free(l);
	return NULL;
}

/* Login: deferred, answered from another thread after user_id ms. */
static rpc_code
login(rpc_call *c, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	const Parley__V1__LoginRequest *req = (const void *)reqm;
	struct later *l = malloc(sizeof(*l));
	pthread_t t;

	(void)respm;
	(void)ctx;
	TH_CHECK(l != NULL, "alloc");
	*l = (struct later){.call = c, .delay_ms = atoi(req->user_id)};
	if (rpc_call_defer(c) != RPC_OK) {
		free(l);
		return RPC_RESOURCE_EXHAUSTED;
	}
	TH_CHECK(pthread_create(&t, NULL, finish_later, l) == 0, "thread");
	pthread_detach(t);
	return RPC_DEFERRED;
}

/* Logout: needs a token; answers OK. */
static rpc_code
logout(rpc_call *c, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	(void)c;
	(void)reqm;
	(void)respm;
	(void)ctx;
	return RPC_OK;
}

static rpc_code
authn(void *ctx, const char *token, int64_t deadline_ms, char user_id[RPC_USER_ID_MAX],
      rpc_status *st)
{
	(void)ctx;
	(void)deadline_ms;
	if (strcmp(token, "good") != 0)
		return rpc_status_set(st, RPC_UNAUTHENTICATED, "bad token");
	snprintf(user_id, RPC_USER_ID_MAX, "someone");
	return RPC_OK;
}

static const rpc_method methods[] = {
	{.fn = NULL},				   /* Register */
	{.fn = login, .auth = RPC_AUTH_NONE},	   /* Login */
	{.fn = logout, .auth = RPC_AUTH_REQUIRED}, /* Logout */
	{.fn = validate, .auth = RPC_AUTH_NONE},   /* Validate */
	{.fn = NULL},				   /* ChangePassword */
	{.fn = NULL},				   /* UpdateProfile */
	{.fn = NULL},				   /* GetUsers */
	{.fn = NULL},				   /* DeleteAccount */
};

static rpc_code
call_validate(rpc_client *cli, const char *token, char *user, size_t len, rpc_status *st)
{
	Parley__V1__ValidateRequest req = PARLEY__V1__VALIDATE_REQUEST__INIT;
	Parley__V1__ValidateResponse *resp;
	rpc_code code;

	req.token = (char *)token;
	__atomic_store_n(&handler_thread, (pthread_t)0, __ATOMIC_SEQ_CST);
	code = rpc_client_call(cli, &parley__v1__auth__descriptor, "Validate", &req.base,
			       (ProtobufCMessage **)&resp, NULL, st);
	if (code == RPC_OK) {
		snprintf(user, len, "%s", resp->user_id);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

static rpc_code
call_login(rpc_client *cli, const char *delay_ms, uint32_t timeout_ms, rpc_status *st)
{
	Parley__V1__LoginRequest req = PARLEY__V1__LOGIN_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	rpc_call_opts o = {.timeout_ms = timeout_ms};
	rpc_code code;

	req.user_id = (char *)delay_ms;
	req.password = "x";
	code = rpc_client_call(cli, &parley__v1__auth__descriptor, "Login", &req.base, &resp, &o,
			       st);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

static rpc_code
call_logout(rpc_client *cli, const char *token, rpc_status *st)
{
	Parley__V1__LogoutRequest req = PARLEY__V1__LOGOUT_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	rpc_call_opts o = {.token = token};
	rpc_code code;

	code = rpc_client_call(cli, &parley__v1__auth__descriptor, "Logout", &req.base, &resp, &o,
			       st);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

static int
health(rpc_client *cli)
{
	Parley__V1__HealthCheckRequest req = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	Parley__V1__HealthCheckResponse *resp;
	rpc_status st;
	int status;

	if (rpc_client_call(cli, &parley__v1__health__descriptor, "Check", &req.base,
			    (ProtobufCMessage **)&resp, NULL, &st) != RPC_OK)
		return -1;
	status = resp->status;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return status;
}

int
main(void)
{
	char url[64], other_url[64], user[64];
	rpc_server_opts opts = {.name = "local-test", .workers = 2};
	rpc_server *srv;
	rpc_client *local, *remote;
	rpc_status st;
	int port = th_free_port();

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
	snprintf(other_url, sizeof(other_url), "tcp://localhost:%d", port);
	TH_CHECK(rpc_server_open(&srv, url, &opts, &st) == RPC_OK, "open: %s", st.message);
	rpc_server_add_service(srv, &parley__v1__auth__descriptor, methods, NULL);
	rpc_server_set_authenticator(srv, authn, NULL);
	TH_CHECK(rpc_server_start(srv, &st) == RPC_OK, "start: %s", st.message);
	TH_CHECK(rpc_client_open(&local, url, &st) == RPC_OK, "client");
	TH_CHECK(rpc_client_open(&remote, other_url, &st) == RPC_OK, "client");

	/* The same URL: the handler runs on this thread. Another spelling of
	 * the same address goes over tcp to a worker thread, with the same
	 * answer. */
	TH_CODE(call_validate(local, "abc", user, sizeof(user), &st), RPC_OK, &st);
	TH_CHECK(strcmp(user, "cba") == 0, "user %s", user);
	TH_CHECK(pthread_equal(__atomic_load_n(&handler_thread, __ATOMIC_SEQ_CST), pthread_self()), "ran on the caller's thread");
	TH_CODE(call_validate(remote, "abc", user, sizeof(user), &st), RPC_OK, &st);
	TH_CHECK(strcmp(user, "cba") == 0, "user %s", user);
	TH_CHECK(!pthread_equal(__atomic_load_n(&handler_thread, __ATOMIC_SEQ_CST), pthread_self()), "ran on a worker thread");
	printf("ok a client on the server's own URL calls in process\n");

	/* Statuses and messages are those of the socket path. */
	for (int i = 0; i < 2; i++) {
		rpc_client *c = i == 0 ? local : remote;

		TH_CODE(call_validate(c, "", user, sizeof(user), &st), RPC_INVALID_ARGUMENT, &st);
		TH_CHECK(strcmp(st.message, "empty token") == 0, "message %s", st.message);
		TH_CODE(call_logout(c, NULL, &st), RPC_UNAUTHENTICATED, &st);
		TH_CODE(call_logout(c, "bad", &st), RPC_UNAUTHENTICATED, &st);
		TH_CHECK(strcmp(st.message, "bad token") == 0, "message %s", st.message);
		TH_CODE(call_logout(c, "good", &st), RPC_OK, &st);
		TH_CODE(call_login(c, "20", 5000, &st), RPC_UNAUTHENTICATED, &st);
		TH_CHECK(health(c) == PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING,
			 "health");
	}
	printf("ok same statuses in process and over tcp, deferred replies included\n");

	/* A caller that gives up before a deferred reply: DEADLINE_EXCEEDED,
	 * and the late reply frees the call (ASan would see a leak or a use
	 * after free). */
	TH_CODE(call_login(local, "300", 50, &st), RPC_DEADLINE_EXCEEDED, &st);
	/* The owner finishes a deferred call before the server closes (the
	 * server's contract): wait for it, not for a time (TSan saw a late
	 * finish after rpc_server_close had freed the server). */
	for (int i = 0; i < 3000 && __atomic_load_n(&finished, __ATOMIC_SEQ_CST) == 0; i++)
		usleep(10 * 1000);
	TH_CHECK(__atomic_load_n(&finished, __ATOMIC_SEQ_CST) == 1, "the late reply was finished");
	printf("ok a caller past its deadline gets DEADLINE_EXCEEDED\n");

	/* Draining: refused, not run; health says NOT_SERVING. */
	rpc_server_shutdown(srv);
	TH_CODE(call_validate(local, "abc", user, sizeof(user), &st), RPC_UNAVAILABLE, &st);
	TH_CHECK(strstr(st.message, "shutting down") != NULL && st.retry_after_ms > 0,
		 "message %s", st.message);
	TH_CHECK(health(local) == PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING,
		 "health while draining");
	TH_CODE(call_validate(remote, "abc", user, sizeof(user), &st), RPC_UNAVAILABLE, &st);
	TH_CHECK(strstr(st.message, "shutting down") != NULL && st.retry_after_ms > 0,
		 "message %s", st.message);
	TH_CHECK(health(remote) == PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING,
		 "health while draining, over tcp");
	printf("ok a draining server refuses in process and over tcp\n");

	/* Closed: the URL is no longer served in process; the client falls
	 * back to the socket, which is gone too. */
	rpc_server_close(srv, 1000);
	TH_CODE(call_validate(local, "abc", user, sizeof(user), &st), RPC_UNAVAILABLE, &st);
	rpc_client_close(local);
	rpc_client_close(remote);
	printf("ok a closed server is unavailable\n");
	/* nng frees a closed socket's listener and connections on its reaper
	 * thread, after nng_close returns: wait for that before exiting, so
	 * the leak checker sees what is ours. */
	nng_fini();
	return 0;
}

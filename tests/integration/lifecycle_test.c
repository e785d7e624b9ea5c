/*
 * lifecycle_test.c — parleyd as an operator sees it: flags, log lines, and a
 * SIGTERM that answers the calls in flight, refuses later ones with
 * UNAVAILABLE, and exits 0.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "harness.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/health.pb-c.h"
#include "parley/v1/rpc.pb-c.h"

#define NLOGINS 6 /* with the latecomer, below the 8 checks one address may have in flight */

/* One context of a raw REQ socket: every call on it goes down the same
 * connection, in the order the sends complete. */
struct rawcall {
	nng_ctx ctx;
	nng_aio *aio;
};

static nng_socket sock;

static void
raw_send(struct rawcall *r, const char *method, const ProtobufCMessage *body)
{
	Parley__V1__RpcRequest env = PARLEY__V1__RPC_REQUEST__INIT;
	uint8_t buf[1024];
	nng_msg *m;

	env.method = (char *)method;
	env.body.data = buf + 512;
	env.body.len = protobuf_c_message_pack(body, env.body.data);
	env.timeout_ms = 30000;
	TH_CHECK(nng_msg_alloc(&m, parley__v1__rpc_request__get_packed_size(&env)) == 0,
		 "alloc");
	parley__v1__rpc_request__pack(&env, nng_msg_body(m));
	nng_aio_set_msg(r->aio, m);
	nng_ctx_send(r->ctx, r->aio);
	nng_aio_wait(r->aio);
	TH_CHECK(nng_aio_result(r->aio) == 0, "send %s", method);
}

/* The reply's code; body, if asked for, gets the reply body unpacked. */
static rpc_code
raw_recv(struct rawcall *r, char *msg, size_t len, uint32_t *retry_after_ms,
	 Parley__V1__HealthCheckResponse **health)
{
	Parley__V1__RpcResponse *resp;
	rpc_code code;
	nng_msg *m;

	nng_ctx_recv(r->ctx, r->aio);
	nng_aio_wait(r->aio);
	if (nng_aio_result(r->aio) != 0) {
		snprintf(msg, len, "no reply: %s", nng_strerror(nng_aio_result(r->aio)));
		return RPC_UNKNOWN;
	}
	m = nng_aio_get_msg(r->aio);
	resp = parley__v1__rpc_response__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
	nng_msg_free(m);
	TH_CHECK(resp != NULL, "a well-formed reply");
	code = resp->status != NULL ? (rpc_code)resp->status->code : RPC_OK;
	snprintf(msg, len, "%s",
		 resp->status != NULL && resp->status->message ? resp->status->message : "");
	if (retry_after_ms != NULL)
		*retry_after_ms = resp->status != NULL ? resp->status->retry_after_ms : 0;
	if (health != NULL && code == RPC_OK)
		*health = parley__v1__health_check_response__unpack(NULL, resp->body.len,
								     resp->body.data);
	parley__v1__rpc_response__free_unpacked(resp, NULL);
	return code;
}

static void
raw_login(struct rawcall *r, const char *user)
{
	Parley__V1__LoginRequest login = PARLEY__V1__LOGIN_REQUEST__INIT;

	login.user_id = (char *)user;
	login.password = "not-the-password";
	raw_send(r, "/parley.v1.Auth/Login", &login.base);
}

/* Health/Check on r; returns the serving status, or -1 with no reply. */
static int
raw_health(struct rawcall *r)
{
	Parley__V1__HealthCheckRequest req = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	Parley__V1__HealthCheckResponse *h = NULL;
	char msg[256];
	int status;

	raw_send(r, "/parley.v1.Health/Check", &req.base);
	if (raw_recv(r, msg, sizeof(msg), NULL, &h) != RPC_OK || h == NULL)
		return -1;
	status = h->status;
	parley__v1__health_check_response__free_unpacked(h, NULL);
	return status;
}

static void
test_sigterm_answers_inflight(void)
{
	th_daemon d = {0};
	struct rawcall logins[NLOGINS], probe, late;
	char user[32], msg[256];
	uint32_t retry_after;
	rpc_code code;
	int status;

	TH_CHECK(th_start(&d, "auth"), "start");
	TH_CHECK(nng_req0_open(&sock) == 0, "req socket");
	nng_socket_set_ms(sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	TH_CHECK(nng_dial(sock, d.auth, NULL, 0) == 0, "dial");
	for (int i = 0; i < NLOGINS; i++)
		TH_CHECK(nng_ctx_open(&logins[i].ctx, sock) == 0 &&
			     nng_aio_alloc(&logins[i].aio, NULL, NULL) == 0, "ctx");
	TH_CHECK(nng_ctx_open(&probe.ctx, sock) == 0 &&
		     nng_aio_alloc(&probe.aio, NULL, NULL) == 0 &&
		     nng_ctx_open(&late.ctx, sock) == 0 &&
		     nng_aio_alloc(&late.aio, NULL, NULL) == 0, "ctx");
	TH_CHECK(raw_health(&probe) == PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING,
		 "serving");

	/* NLOGINS wrong-password logins (distinct users, so no rate limit),
	 * then a health check behind them on the same connection: its reply
	 * proves the server has read every login. Argon2id checks on at most
	 * one thread per core take far longer than the rest of this test
	 * needs: at SIGTERM some are hashing and the rest are queued. */
	for (int i = 0; i < NLOGINS; i++) {
		snprintf(user, sizeof(user), "nobody-%d", i);
		raw_login(&logins[i], user);
	}
	TH_CHECK(raw_health(&probe) == PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING,
		 "serving with logins queued");
	kill(d.pid, SIGTERM);

	/* While it drains, the server still answers: health says NOT_SERVING,
	 * and a new call is served (it may have been on its way) or refused
	 * with UNAVAILABLE and a retry hint, not cut off with the connection.
	 * (rpc_local_test shows the refusal itself, deterministically.) */
	do
		status = raw_health(&probe);
	while (status == PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	TH_CHECK(status == PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING,
		 "draining server answers health NOT_SERVING (got %d)", status);
	raw_login(&late, "latecomer");
	code = raw_recv(&late, msg, sizeof(msg), &retry_after, NULL);
	TH_CHECK(code == RPC_UNAUTHENTICATED ||
		     (code == RPC_UNAVAILABLE && strstr(msg, "shutting down") != NULL &&
		      retry_after > 0),
		 "a call after SIGTERM: %s %s (retry after %u ms)", rpc_code_name(code), msg,
		 retry_after);

	/* Every call received before SIGTERM is answered for real. */
	for (int i = 0; i < NLOGINS; i++) {
		code = raw_recv(&logins[i], msg, sizeof(msg), NULL, NULL);
		TH_CHECK(code == RPC_UNAUTHENTICATED, "login %d: %s %s", i, rpc_code_name(code),
			 msg);
	}
	TH_CHECK(th_wait_exit(&d, 20000) == 0, "exit status 0 after SIGTERM");
	nng_close(sock);
	for (int i = 0; i < NLOGINS; i++)
		nng_aio_free(logins[i].aio);
	nng_aio_free(probe.aio);
	nng_aio_free(late.aio);
	TH_CHECK(th_log_has(&d, "auth serving on"), "start line");
	TH_CHECK(th_log_has(&d, "shutting down"), "stop line");
	TH_CHECK(th_log_has(&d, "stopped"), "stopped line");
	th_cleanup(&d);
	printf("ok SIGTERM answers every call in flight and exits 0\n");
}

static int
run_parleyd(const char *const *args)
{
	const char *argv[16];
	int n = 0, status;
	pid_t pid;

	argv[n++] = getenv("PARLEYD");
	for (; *args != NULL; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		freopen("/dev/null", "w", stderr);
		freopen("/dev/null", "w", stdout);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_bad_flags(void)
{
	static const char *const help[] = {"--help", NULL};
	static const char *const unknown[] = {"--no-such-flag", NULL};
	static const char *const bad_service[] = {"--services", "auth,nope", NULL};
	static const char *const bad_number[] = {"--workers", "many", NULL};
	static const char *const zero[] = {"--workers", "0", NULL};
	static const char *const bad_dir[] = {"--data-dir", "/proc/parley-cannot-be-here",
					      "--services", "auth", NULL};

	TH_CHECK(getenv("PARLEYD") != NULL, "PARLEYD set by ctest");
	TH_CHECK(run_parleyd(help) == 0, "--help");
	TH_CHECK(run_parleyd(unknown) == 2, "unknown flag");
	TH_CHECK(run_parleyd(bad_service) == 2, "unknown service");
	TH_CHECK(run_parleyd(bad_number) == 2, "not a number");
	TH_CHECK(run_parleyd(zero) == 2, "zero workers");
	TH_CHECK(run_parleyd(bad_dir) == 1, "unusable data dir");
	printf("ok flags are checked\n");
}

static void
test_port_in_use(void)
{
	th_daemon a = {0};
	char dir[300];

	TH_CHECK(th_start(&a, "auth"), "start a");
	snprintf(dir, sizeof(dir), "%s/second", a.dir);
	/* A second daemon on a's port refuses to start: exit 1. */
	const char *const args[] = {"--services", "auth", "--data-dir", dir, "--auth-listen",
				    a.auth, NULL};
	TH_CHECK(run_parleyd(args) == 1, "second daemon on the same port must fail");
	TH_CHECK(th_wait_serving(a.auth, 5000), "the first one is unharmed");
	th_cleanup(&a);
	printf("ok a taken port is a clear error\n");
}

/* A restarted daemon that cannot take its ports back is not "up" because
 * another daemon answers there: the harness waits for the started line of
 * the new process, not the one the log kept from the run before. */
static void
test_restart_onto_taken_ports(void)
{
	th_daemon b = {0}, a = {0};

	TH_CHECK(th_start(&b, "auth"), "start b");
	TH_CHECK(th_stop(&b) == 0, "stop b");
	memcpy(a.auth, b.auth, sizeof(a.auth));
	memcpy(a.rooms, b.rooms, sizeof(a.rooms));
	memcpy(a.history, b.history, sizeof(a.history));
	memcpy(a.messaging, b.messaging, sizeof(a.messaging));
	memcpy(a.events, b.events, sizeof(a.events));
	memcpy(a.room_events, b.room_events, sizeof(a.room_events));
	memcpy(a.rooms_internal, b.rooms_internal, sizeof(a.rooms_internal));
	memcpy(a.http, b.http, sizeof(a.http));
	TH_CHECK(th_start(&a, "auth"), "start a on b's ports");
	TH_CHECK(!th_restart(&b), "b restarted onto a's ports counts as up");
	TH_CHECK(b.pid == 0, "b's new process has exited");
	TH_CHECK(th_log_has(&b, "in use"), "b's log says why");
	TH_CHECK(th_wait_serving(a.auth, 5000), "a is unharmed");
	th_cleanup(&a);
	th_cleanup(&b);
	printf("ok a restart onto taken ports fails\n");
}

int
main(void)
{
	test_bad_flags();
	test_sigterm_answers_inflight();
	test_port_in_use();
	test_restart_onto_taken_ports();
	return 0;
}

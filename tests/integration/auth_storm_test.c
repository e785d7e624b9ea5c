/*
 * auth_storm_test.c — a login storm does not starve the cheap calls: while
 * hundreds of Logins for unknown accounts are in flight from many addresses
 * and connections, more than the auth endpoint has call slots, Validate and
 * Health keep answering within their ordinary deadlines, and the storm
 * itself is answered at once once the bounded hash queue is full
 * (RESOURCE_EXHAUSTED with retry_after_ms), never left waiting for a slot.
 *
 * The storm runs on nng's threads: each of STORM_CALLS contexts sends its
 * next Login as soon as the last one is answered.
 */
#include <pthread.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "harness.h"
#include "tsan.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/health.pb-c.h"
#include "parley/v1/rpc.pb-c.h"

#define STORM_ADDRS 24	 /* source addresses 127.0.2.1 ... */
#define STORM_CONNS 4	 /* connections per address */
#define STORM_CTXS 6	 /* calls in flight per connection */
#define STORM_CALLS (STORM_ADDRS * STORM_CONNS * STORM_CTXS) /* 576 > 256 slots */
#define CHEAP_TIMEOUT_MS 5000 /* what other services give a Validate */

static th_daemon d;

struct storm_call {
	nng_ctx ctx;
	nng_aio *aio;
	bool receiving;
	int id, n;
};

static struct {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool stop;
	int running; /* calls that will still send or receive */
	long unauthenticated, queue_full, address_limited, other;
	char other_msg[256];
} storm = {.mtx = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static nng_socket socks[STORM_ADDRS * STORM_CONNS];
static struct storm_call calls[STORM_CALLS];

static void
storm_send(struct storm_call *c)
{
	Parley__V1__LoginRequest login = PARLEY__V1__LOGIN_REQUEST__INIT;
	Parley__V1__RpcRequest env = PARLEY__V1__RPC_REQUEST__INIT;
	uint8_t body[128];
	char user[32];
	nng_msg *m;

	snprintf(user, sizeof(user), "storm%d-%d", c->id, c->n++);
	login.user_id = user;
	login.password = "not-anyones-password";
	env.method = "/parley.v1.Auth/Login";
	env.timeout_ms = 60000;
	env.body.data = body;
	env.body.len = parley__v1__login_request__pack(&login, body);
	TH_CHECK(nng_msg_alloc(&m, parley__v1__rpc_request__get_packed_size(&env)) == 0,
		 "alloc");
	parley__v1__rpc_request__pack(&env, nng_msg_body(m));
	c->receiving = false;
	rpc_tsan_release(c); /* storm_cb runs on nng's thread */
	nng_aio_set_msg(c->aio, m);
	nng_ctx_send(c->ctx, c->aio);
}

/* Tallies one storm reply; every one must be a failed login or a refusal
 * that says when to come back. */
static void
storm_tally(nng_msg *m)
{
	Parley__V1__RpcResponse *r =
	    parley__v1__rpc_response__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
	const char *msg = r && r->status && r->status->message ? r->status->message : "";
	int code = r && r->status ? (int)r->status->code : -1;
	uint32_t retry = r && r->status ? r->status->retry_after_ms : 0;

	pthread_mutex_lock(&storm.mtx);
	if (code == RPC_UNAUTHENTICATED && strcmp(msg, "invalid user id or password") == 0)
		storm.unauthenticated++;
	else if (code == RPC_RESOURCE_EXHAUSTED && retry > 0 &&
		 strstr(msg, "too many password checks in progress") != NULL)
		storm.queue_full++;
	else if (code == RPC_RESOURCE_EXHAUSTED && retry > 0 &&
		 strstr(msg, "from your address; try again in ") != NULL)
		storm.address_limited++;
	else if (storm.other++ == 0)
		snprintf(storm.other_msg, sizeof(storm.other_msg), "%s: %s (retry %u)",
			 rpc_code_name((rpc_code)code), msg, retry);
	pthread_cond_broadcast(&storm.cv);
	pthread_mutex_unlock(&storm.mtx);
	if (r != NULL)
		parley__v1__rpc_response__free_unpacked(r, NULL);
}

/* On nng's threads: a send done starts the receive, a reply starts the
 * next Login, until the storm stops. */
static void
storm_cb(void *arg)
{
	struct storm_call *c = arg;
	bool stop;

	rpc_tsan_acquire(c); /* from whoever started the operation, through nng */
	if (nng_aio_result(c->aio) != 0) {
		if (!c->receiving)
			nng_msg_free(nng_aio_get_msg(c->aio));
		pthread_mutex_lock(&storm.mtx);
		if (!storm.stop && storm.other++ == 0)
			snprintf(storm.other_msg, sizeof(storm.other_msg), "transport: %s",
				 nng_strerror(nng_aio_result(c->aio)));
		storm.running--;
		pthread_cond_broadcast(&storm.cv);
		pthread_mutex_unlock(&storm.mtx);
		return;
	}
	if (!c->receiving) {
		c->receiving = true;
		rpc_tsan_release(c);
		nng_ctx_recv(c->ctx, c->aio);
		return;
	}
	storm_tally(nng_aio_get_msg(c->aio));
	nng_msg_free(nng_aio_get_msg(c->aio));
	pthread_mutex_lock(&storm.mtx);
	stop = storm.stop;
	if (stop) {
		storm.running--;
		pthread_cond_broadcast(&storm.cv);
	}
	pthread_mutex_unlock(&storm.mtx);
	if (!stop)
		storm_send(c);
}

static void
storm_start(void)
{
	char url[128];

	for (int i = 0; i < STORM_ADDRS * STORM_CONNS; i++) {
		snprintf(url, sizeof(url), "tcp://127.0.2.%d;%.64s", 1 + i / STORM_CONNS,
			 d.auth + strlen("tcp://"));
		TH_CHECK(nng_req0_open(&socks[i]) == 0, "req socket");
		nng_socket_set_ms(socks[i], NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
		TH_CHECK(nng_dial(socks[i], url, NULL, 0) == 0, "dial %s", url);
	}
	storm.running = STORM_CALLS;
	for (int i = 0; i < STORM_CALLS; i++) {
		struct storm_call *c = &calls[i];

		c->id = i;
		TH_CHECK(nng_ctx_open(&c->ctx, socks[i / STORM_CTXS]) == 0 &&
			     nng_aio_alloc(&c->aio, storm_cb, c) == 0,
			 "context");
		storm_send(c);
	}
}

/* Stops sending and waits until every storm call has had its answer. */
static void
storm_stop(void)
{
	pthread_mutex_lock(&storm.mtx);
	storm.stop = true;
	while (storm.running > 0)
		pthread_cond_wait(&storm.cv, &storm.mtx);
	pthread_mutex_unlock(&storm.mtx);
	for (int i = 0; i < STORM_CALLS; i++) {
		nng_aio_free(calls[i].aio);
		nng_ctx_close(calls[i].ctx);
	}
	for (int i = 0; i < STORM_ADDRS * STORM_CONNS; i++)
		nng_close(socks[i]);
}

static rpc_code
validate(rpc_client *cli, const char *token, char *user, size_t len, rpc_status *st)
{
	Parley__V1__ValidateRequest req = PARLEY__V1__VALIDATE_REQUEST__INIT;
	Parley__V1__ValidateResponse *resp;
	rpc_call_opts o = {.timeout_ms = CHEAP_TIMEOUT_MS};
	rpc_code code;

	req.token = (char *)token;
	code = rpc_client_call(cli, &parley__v1__auth__descriptor, "Validate", &req.base,
			       (ProtobufCMessage **)&resp, &o, st);
	if (code == RPC_OK) {
		snprintf(user, len, "%s", resp->user_id);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

static rpc_code
health(rpc_client *cli, rpc_status *st)
{
	Parley__V1__HealthCheckRequest req = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	Parley__V1__HealthCheckResponse *resp;
	rpc_call_opts o = {.timeout_ms = CHEAP_TIMEOUT_MS};
	rpc_code code;

	code = rpc_client_call(cli, &parley__v1__health__descriptor, "Check", &req.base,
			       (ProtobufCMessage **)&resp, &o, st);
	if (code == RPC_OK) {
		TH_CHECK(resp->status ==
			     PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING,
			 "serving");
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

int
main(void)
{
	rpc_client *cli;
	char token[64], user[64];
	rpc_status st;
	long seen;

	TH_CHECK(th_start(&d, "auth"), "start parleyd");
	cli = th_client(d.auth);
	th_register_login(cli, "owner", token, sizeof(token));

	storm_start();
	/* Every storm call is sent again as soon as it is answered: once a
	 * hundred answers are back, the endpoint is saturated for good. */
	pthread_mutex_lock(&storm.mtx);
	while (storm.unauthenticated + storm.queue_full + storm.address_limited < 100 &&
	       storm.other == 0)
		pthread_cond_wait(&storm.cv, &storm.mtx);
	pthread_mutex_unlock(&storm.mtx);

	/* Meanwhile the cheap calls find a call slot and answer in time. */
	for (int i = 0; i < 20; i++) {
		TH_CODE(validate(cli, token, user, sizeof(user), &st), RPC_OK, &st);
		TH_CHECK(strcmp(user, "owner") == 0, "validate names the owner, got %s", user);
		TH_CODE(health(cli, &st), RPC_OK, &st);
	}
	pthread_mutex_lock(&storm.mtx);
	seen = storm.queue_full + storm.address_limited + storm.unauthenticated;
	pthread_mutex_unlock(&storm.mtx);
	printf("ok Validate and Health answer during a storm of %d logins (%ld answered so "
	       "far)\n",
	       STORM_CALLS, seen);

	storm_stop();
	TH_CHECK(storm.other == 0, "%ld storm replies were neither a failed login nor a refusal "
				   "with a retry hint; first: %s",
		 storm.other, storm.other_msg);
	TH_CHECK(storm.unauthenticated > 0, "some storm logins were checked");
	/* More Logins were in flight than the queue holds: the rest were
	 * refused at once rather than kept waiting in call slots. */
	TH_CHECK(storm.queue_full > 0, "the storm filled the hash queue");
	printf("ok the storm got %ld failed logins, %ld queue-full and %ld address refusals, "
	       "nothing else\n",
	       storm.unauthenticated, storm.queue_full, storm.address_limited);

	/* The owner, elsewhere, is not locked out by any of it. */
	TH_CODE(validate(cli, token, user, sizeof(user), &st), RPC_OK, &st);
	th_register_login(cli, "owner2", token, sizeof(token));
	rpc_client_close(cli);
	TH_CHECK(th_stop(&d) == 0, "parleyd exits 0 on SIGTERM");
	th_cleanup(&d);
	return 0;
}

/*
 * badinput_test.c — hostile and careless frames against a real parleyd, sent
 * on a raw nng REQ socket so nothing of ours shapes them first. Each gets
 * the right status, and the service keeps answering valid requests.
 */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <sodium.h>

#include "harness.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/health.pb-c.h"
#include "parley/v1/rpc.pb-c.h"

static th_daemon d;
static nng_socket raw;

/* Sends one frame; returns the decoded reply, or NULL if none came. */
static Parley__V1__RpcResponse *
send_frame(const void *data, size_t len)
{
	nng_msg *m;
	Parley__V1__RpcResponse *r;

	TH_CHECK(nng_msg_alloc(&m, len) == 0, "alloc");
	if (len)
		memcpy(nng_msg_body(m), data, len);
	TH_CHECK(nng_sendmsg(raw, m, 0) == 0, "send");
	if (nng_recvmsg(raw, &m, 0) != 0)
		return NULL;
	r = parley__v1__rpc_response__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
	nng_msg_free(m);
	TH_CHECK(r != NULL, "the server's reply is itself well-formed");
	return r;
}

static rpc_code
code_of(Parley__V1__RpcResponse *r, char *msg, size_t len)
{
	rpc_code c;

	TH_CHECK(r != NULL, "a reply came");
	c = r->status ? (rpc_code)r->status->code : RPC_OK;
	if (msg)
		snprintf(msg, len, "%s", r->status && r->status->message ? r->status->message : "");
	parley__v1__rpc_response__free_unpacked(r, NULL);
	return c;
}

/* Packs an envelope for method with body; returns its length in buf. */
static size_t
envelope(uint8_t *buf, size_t cap, const char *method, const void *body, size_t blen,
	 const char *auth, uint32_t timeout_ms, uint64_t id)
{
	Parley__V1__RpcRequest env = PARLEY__V1__RPC_REQUEST__INIT;
	Parley__V1__RpcRequest__MetadataEntry md = PARLEY__V1__RPC_REQUEST__METADATA_ENTRY__INIT;
	Parley__V1__RpcRequest__MetadataEntry *mds[1] = {&md};

	env.method = (char *)method;
	env.body.data = (uint8_t *)body;
	env.body.len = blen;
	env.timeout_ms = timeout_ms;
	env.request_id = id;
	if (auth) {
		md.key = "authorization";
		md.value = (char *)auth;
		env.metadata = mds;
		env.n_metadata = 1;
	}
	TH_CHECK(parley__v1__rpc_request__get_packed_size(&env) <= cap, "fits");
	return parley__v1__rpc_request__pack(&env, buf);
}

static rpc_code
call_raw(const char *method, const void *body, size_t blen, const char *auth, char *msg,
	 size_t mlen)
{
	static uint8_t buf[256 * 1024];
	size_t n = envelope(buf, sizeof(buf), method, body, blen, auth, 0, 7);

	return code_of(send_frame(buf, n), msg, mlen);
}

static void
assert_still_serving(void)
{
	Parley__V1__HealthCheckRequest h = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	uint8_t body[16];
	size_t n = parley__v1__health_check_request__pack(&h, body);

	TH_CHECK(call_raw("/parley.v1.Health/Check", body, n, NULL, NULL, 0) == RPC_OK,
		 "still serving");
}

static void
test_malformed_frames(void)
{
	uint8_t buf[512], junk[300];
	Parley__V1__RpcResponse *r;
	char msg[256];
	size_t n;

	TH_CHECK(code_of(send_frame("", 0), msg, sizeof(msg)) == RPC_INVALID_ARGUMENT,
		 "empty frame");
	assert_still_serving();

	for (int i = 0; i < 200; i++) {
		size_t len = 1 + randombytes_uniform(sizeof(junk));
		rpc_code c;

		randombytes_buf(junk, len);
		c = code_of(send_frame(junk, len), msg, sizeof(msg));
		TH_CHECK(c == RPC_INVALID_ARGUMENT || c == RPC_UNIMPLEMENTED,
			 "random bytes #%d: %s %s", i, rpc_code_name(c), msg);
	}
	assert_still_serving();

	n = envelope(buf, sizeof(buf), "/parley.v1.Health/Check", "", 0, NULL, 0, 1);
	for (size_t cut = 1; cut < n; cut++) {
		rpc_code c = code_of(send_frame(buf, cut), msg, sizeof(msg));
		TH_CHECK(c == RPC_INVALID_ARGUMENT || c == RPC_UNIMPLEMENTED ||
			     c == RPC_OK /* a prefix can be a complete, valid message */,
			 "truncated at %zu: %s", cut, rpc_code_name(c));
	}
	n = envelope(buf, sizeof(buf), "/parley.v1.Health/Check", "", 0, NULL, 0, 1);
	TH_CHECK(code_of(send_frame(buf, n - 3), msg, sizeof(msg)) == RPC_INVALID_ARGUMENT,
		 "truncated inside the method string: %s", msg);

	/* The request id comes back. */
	n = envelope(buf, sizeof(buf), "/parley.v1.Nope/Nope", "", 0, NULL, 0, 424242);
	r = send_frame(buf, n);
	TH_CHECK(r && r->request_id == 424242, "request id echoed");
	TH_CHECK(code_of(r, msg, sizeof(msg)) == RPC_UNIMPLEMENTED, "unknown service");
	printf("ok empty, random and truncated frames\n");
}

static void
test_size_limits(void)
{
	static uint8_t big[1024 * 1024 + 64];
	char msg[256];
	size_t n;

	/* Over the 64 KiB request limit but under the frame cap: an answer. */
	memset(big, 'x', sizeof(big));
	n = envelope(big, sizeof(big), "/parley.v1.Health/Check", big + 300000, 100 * 1024, NULL,
		     0, 1);
	TH_CHECK(code_of(send_frame(big, n), msg, sizeof(msg)) == RPC_RESOURCE_EXHAUSTED,
		 "100 KiB request: %s", msg);
	TH_CHECK(strstr(msg, "65536") != NULL, "says the limit: %s", msg);

	/* Over the frame cap: nng drops the connection before allocating it
	 * all; we get no answer, and the server is still there for others. */
	nng_socket_set_ms(raw, NNG_OPT_RECVTIMEO, 2000);
	memset(big, 'y', sizeof(big));
	TH_CHECK(send_frame(big, sizeof(big)) == NULL, "1 MiB frame gets no reply");
	nng_socket_set_ms(raw, NNG_OPT_RECVTIMEO, 10000);
	TH_CHECK(th_wait_serving(d.auth, 10000), "server up after an oversized frame");
	assert_still_serving();
	printf("ok size limits\n");
}

static void
test_methods_bodies_strings(void)
{
	Parley__V1__LoginRequest login = PARLEY__V1__LOGIN_REQUEST__INIT;
	Parley__V1__RegisterRequest reg = PARLEY__V1__REGISTER_REQUEST__INIT;
	Parley__V1__HealthCheckResponse wrong = PARLEY__V1__HEALTH_CHECK_RESPONSE__INIT;
	static uint8_t body[128 * 1024];
	static char huge[60000];
	uint8_t buf[64];
	char msg[256];
	size_t n;

	TH_CHECK(call_raw("/parley.v1.Auth/Nope", "", 0, NULL, msg, sizeof(msg)) ==
		     RPC_UNIMPLEMENTED, "unknown method");
	TH_CHECK(call_raw("garbage", "", 0, NULL, msg, sizeof(msg)) == RPC_UNIMPLEMENTED,
		 "not a method path");
	TH_CHECK(call_raw("/parley.v1.Rooms/ListRooms", "", 0, NULL, msg, sizeof(msg)) ==
		     RPC_UNIMPLEMENTED, "a service this endpoint does not serve");

	/* Wrong body type: field 1 as a varint where Login expects a string. */
	wrong.status = 1;
	n = parley__v1__health_check_response__pack(&wrong, buf);
	TH_CHECK(call_raw("/parley.v1.Auth/Login", buf, n, NULL, msg, sizeof(msg)) ==
		     RPC_INVALID_ARGUMENT, "wrong body type: %s", msg);
	TH_CHECK(call_raw("/parley.v1.Auth/Login", "\xff\xff\xff", 3, NULL, msg, sizeof(msg)) ==
		     RPC_INVALID_ARGUMENT, "garbage body: %s", msg);

	/* Invalid UTF-8 in a body string and in the envelope. */
	login.user_id = "al\xffice";
	login.password = "whatever-password";
	n = parley__v1__login_request__pack(&login, body);
	TH_CHECK(call_raw("/parley.v1.Auth/Login", body, n, NULL, msg, sizeof(msg)) ==
		     RPC_INVALID_ARGUMENT, "invalid utf-8 body");
	TH_CHECK(strstr(msg, "user_id") != NULL, "names the field: %s", msg);
	TH_CHECK(call_raw("/parley.v1.Auth/\xc0\xafLogin", "", 0, NULL, msg, sizeof(msg)) ==
		     RPC_INVALID_ARGUMENT, "invalid utf-8 method");
	/* A NUL inside a string would silently shorten it in C: refused. */
	{
		static const uint8_t nul_user[] = {0x0a, 0x0b, 'a', 'l', 'i', 'c', 'e', 0x00,
						   'e', 'v', 'i', 'l', '!', 0x12, 0x08, 'p', 'a',
						   's', 's', 'w', 'o', 'r', 'd'};
		TH_CHECK(call_raw("/parley.v1.Auth/Login", nul_user, sizeof(nul_user), NULL, msg,
				  sizeof(msg)) == RPC_INVALID_ARGUMENT, "NUL in a string");
		TH_CHECK(strstr(msg, "NUL") != NULL, "says so: %s", msg);
	}

	/* Oversized fields within the frame limit. */
	memset(huge, 'a', sizeof(huge) - 1);
	reg.user_id = "mallory";
	reg.password = "mallory-password";
	reg.display_name = huge;
	n = parley__v1__register_request__pack(&reg, body);
	TH_CHECK(call_raw("/parley.v1.Auth/Register", body, n, NULL, msg, sizeof(msg)) ==
		     RPC_INVALID_ARGUMENT, "huge display name: %s", msg);
	reg.display_name = "Mallory";
	reg.user_id = huge;
	n = parley__v1__register_request__pack(&reg, body);
	TH_CHECK(call_raw("/parley.v1.Auth/Register", body, n, NULL, msg, sizeof(msg)) ==
		     RPC_INVALID_ARGUMENT, "huge user id");
	reg.user_id = "mallory";
	reg.email = huge;
	n = parley__v1__register_request__pack(&reg, body);
	TH_CHECK(call_raw("/parley.v1.Auth/Register", body, n, NULL, msg, sizeof(msg)) ==
		     RPC_INVALID_ARGUMENT, "huge email");
	login.user_id = huge;
	n = parley__v1__login_request__pack(&login, body);
	TH_CHECK(call_raw("/parley.v1.Auth/Login", body, n, NULL, msg, sizeof(msg)) ==
		     RPC_INVALID_ARGUMENT, "huge login user id");
	assert_still_serving();
	printf("ok unknown methods, wrong bodies, bad strings, oversized fields\n");
}

static void
test_tokens(void)
{
	char msg[256];

	TH_CHECK(call_raw("/parley.v1.Auth/Logout", "", 0, NULL, msg, sizeof(msg)) ==
		     RPC_UNAUTHENTICATED, "missing token");
	TH_CHECK(call_raw("/parley.v1.Auth/Logout", "", 0, "Bearer forged", msg, sizeof(msg)) ==
		     RPC_UNAUTHENTICATED, "forged token");
	TH_CHECK(call_raw("/parley.v1.Auth/Logout", "", 0,
			  "Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", msg,
			  sizeof(msg)) == RPC_UNAUTHENTICATED,
		 "well-formed but unknown token");
	TH_CHECK(call_raw("/parley.v1.Auth/Logout", "", 0, "Basic dXNlcjpwYXNz", msg,
			  sizeof(msg)) == RPC_UNAUTHENTICATED, "not a bearer token");
	TH_CHECK(call_raw("/parley.v1.Auth/Logout", "", 0, "Bearer ", msg, sizeof(msg)) ==
		     RPC_UNAUTHENTICATED, "empty bearer");
	printf("ok missing and forged tokens\n");
}

#define SLOW_CALLS 8 /* the password checks one address may have in flight */

struct slow_call {
	nng_ctx ctx;
	nng_aio *send, *recv;
};

static int replies_in; /* login replies received so far, counted on nng's threads */
static int replies_at_health;

static void
login_replied(void *arg)
{
	(void)arg;
	__atomic_add_fetch(&replies_in, 1, __ATOMIC_SEQ_CST);
}

static void
health_replied(void *arg)
{
	(void)arg;
	__atomic_store_n(&replies_at_health, __atomic_load_n(&replies_in, __ATOMIC_SEQ_CST),
			 __ATOMIC_SEQ_CST);
}

static void
slow_send(struct slow_call *c, const char *method, const void *body, size_t blen)
{
	uint8_t buf[512];
	size_t n = envelope(buf, sizeof(buf), method, body, blen, NULL, 30000, 11);
	nng_msg *m;

	TH_CHECK(nng_msg_alloc(&m, n) == 0, "alloc");
	memcpy(nng_msg_body(m), buf, n);
	nng_aio_set_msg(c->send, m);
	nng_ctx_send(c->ctx, c->send);
	nng_aio_wait(c->send);
	TH_CHECK(nng_aio_result(c->send) == 0, "send");
	/* A hang guard, not a measure: the socket's 10 s would cut the last
	 * of eight Argon2id checks queued behind each other in a sanitizer
	 * build on a busy machine (seen: 9 s for the fourth). */
	nng_aio_set_timeout(c->recv, 120000);
	nng_ctx_recv(c->ctx, c->recv);
}

static rpc_code
slow_reply(struct slow_call *c, char *msg, size_t len)
{
	rpc_code code;

	nng_aio_wait(c->recv);
	TH_CHECK(nng_aio_result(c->recv) == 0, "reply");
	code = code_of(parley__v1__rpc_response__unpack(NULL, nng_msg_len(nng_aio_get_msg(c->recv)),
							nng_msg_body(nng_aio_get_msg(c->recv))),
		       msg, len);
	nng_msg_free(nng_aio_get_msg(c->recv));
	nng_aio_free(c->send);
	nng_aio_free(c->recv);
	nng_ctx_close(c->ctx);
	return code;
}

/* A slow call (an Argon2id verification) does not hold up a fast one: a
 * health check sent behind SLOW_CALLS logins on the same connection is
 * answered before the last of them. Which reply came first is recorded
 * as the replies arrive, so a slow test thread cannot change the answer. */
static void
test_slow_does_not_block_fast(void)
{
	Parley__V1__LoginRequest login = PARLEY__V1__LOGIN_REQUEST__INIT;
	Parley__V1__HealthCheckRequest h = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	struct slow_call calls[SLOW_CALLS + 1];
	uint8_t body[128];
	char user[32], msg[256];
	size_t n;

	for (int i = 0; i <= SLOW_CALLS; i++)
		TH_CHECK(nng_ctx_open(&calls[i].ctx, raw) == 0 &&
			     nng_aio_alloc(&calls[i].send, NULL, NULL) == 0 &&
			     nng_aio_alloc(&calls[i].recv,
					   i < SLOW_CALLS ? login_replied : health_replied,
					   NULL) == 0,
			 "ctx");
	for (int i = 0; i < SLOW_CALLS; i++) {
		snprintf(user, sizeof(user), "slow-%d", i);
		login.user_id = user;
		login.password = "some-password";
		n = parley__v1__login_request__pack(&login, body);
		slow_send(&calls[i], "/parley.v1.Auth/Login", body, n);
	}
	n = parley__v1__health_check_request__pack(&h, body);
	slow_send(&calls[SLOW_CALLS], "/parley.v1.Health/Check", body, n);
	TH_CHECK(slow_reply(&calls[SLOW_CALLS], msg, sizeof(msg)) == RPC_OK, "health: %s", msg);
	for (int i = 0; i < SLOW_CALLS; i++)
		TH_CHECK(slow_reply(&calls[i], msg, sizeof(msg)) == RPC_UNAUTHENTICATED,
			 "login %d: %s", i, msg);
	n = (size_t)__atomic_load_n(&replies_at_health, __ATOMIC_SEQ_CST); /* nng's thread set it */
	TH_CHECK(n < SLOW_CALLS,
		 "health answered while password checks were still running (%zu of %d done)", n,
		 SLOW_CALLS);
	printf("ok a slow call does not block a fast one (%zu of %d logins done before it)\n", n,
	       SLOW_CALLS);
}

struct blocked_arg {
	const char *url;
	rpc_code code;
};

/* A rooms call whose token check waits for an auth service that is not
 * there: it holds the rooms server's only worker for the connect grace. */
static void *
blocked_call(void *p)
{
	struct blocked_arg *a = p;
	rpc_client *c = th_client(a->url);
	rpc_call_opts o = {.timeout_ms = 10000, .token = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
	void *reply;
	size_t len;
	rpc_status st;

	a->code = rpc_client_call_raw(c, "/parley.v1.Rooms/ListRooms", "", 0, &reply, &len, &o,
				      &st);
	free(reply);
	rpc_client_close(c);
	return NULL;
}

/* With the only worker busy, a call with a 5 ms deadline is not run. */
static void
test_deadline(void)
{
	th_daemon one = {0};
	struct blocked_arg a = {0};
	char dead_auth[64];
	pthread_t t;
	nng_socket s;
	nng_msg *m;
	uint8_t buf[128];
	size_t n;
	char msg[256];
	Parley__V1__RpcResponse *r;

	snprintf(dead_auth, sizeof(dead_auth), "tcp://127.0.0.1:%d", th_free_port());
	one.extra[0] = "--workers";
	one.extra[1] = "1";
	one.extra[2] = "--auth";
	one.extra[3] = dead_auth;
	TH_CHECK(th_start(&one, "rooms"), "start one-worker rooms daemon");
	a.url = one.rooms;
	pthread_create(&t, NULL, blocked_call, &a);
	usleep(100000);

	TH_CHECK(nng_req0_open(&s) == 0 && nng_dial(s, one.rooms, NULL, 0) == 0, "dial");
	n = envelope(buf, sizeof(buf), "/parley.v1.Health/Check", "", 0, NULL, 5, 9);
	TH_CHECK(nng_msg_alloc(&m, n) == 0, "alloc");
	memcpy(nng_msg_body(m), buf, n);
	TH_CHECK(nng_sendmsg(s, m, 0) == 0 && nng_recvmsg(s, &m, 0) == 0, "round trip");
	r = parley__v1__rpc_response__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
	nng_msg_free(m);
	pthread_join(t, NULL);
	TH_CHECK(a.code == RPC_UNAVAILABLE, "the blocking call: %s", rpc_code_name(a.code));
	TH_CHECK(code_of(r, msg, sizeof(msg)) == RPC_DEADLINE_EXCEEDED, "expired call: %s", msg);
	nng_close(s);
	TH_CHECK(th_stop(&one) == 0, "stop");
	th_cleanup(&one);
	printf("ok a call past its deadline is not executed\n");
}

int
main(void)
{
	TH_CHECK(sodium_init() >= 0, "sodium");
	TH_CHECK(th_start(&d, "auth"), "start parleyd");
	TH_CHECK(nng_req0_open(&raw) == 0, "req socket");
	nng_socket_set_ms(raw, NNG_OPT_RECVTIMEO, 10000);
	nng_socket_set_ms(raw, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	TH_CHECK(nng_dial(raw, d.auth, NULL, 0) == 0, "dial");

	test_malformed_frames();
	test_size_limits();
	test_methods_bodies_strings();
	test_tokens();
	test_slow_does_not_block_fast();
	test_deadline();

	nng_close(raw);
	TH_CHECK(th_stop(&d) == 0, "parleyd exits 0");
	th_cleanup(&d);
	return 0;
}

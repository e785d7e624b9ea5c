/*
 * client_lib_test.c — libparley-client against a real parleyd running auth
 * alone, and against a hostile fake server whose replies must be refused.
 */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "harness.h"
#include "parley.h"
#include "parley/v1/rpc.pb-c.h"

static th_daemon d;

static parley_conn *
connect_to(const char *auth, const char *others)
{
	parley_endpoints ep;
	parley_conn *c;
	rpc_status st;

	for (int s = 0; s < PARLEY_NSERVICES; s++)
		TH_CHECK(parley_endpoints_set(&ep, s, s == PARLEY_AUTH ? auth : others, &st) ==
			     RPC_OK, "%s", st.message);
	TH_CODE(parley_connect(&c, &ep, &st), RPC_OK, &st);
	return c;
}

static void *
hammer(void *arg)
{
	parley_conn *c = arg;

	for (int i = 0; i < 20; i++) {
		Parley__V1__HealthCheckResponse__ServingStatus s;
		rpc_status st;

		TH_CODE(parley_health(c, PARLEY_AUTH, 5000, &s, &st), RPC_OK, &st);
		TH_CHECK(s == PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING, "serving");
	}
	return NULL;
}

static void
test_auth(void)
{
	char dead[TH_ADDR_MAX];
	Parley__V1__LoginResponse *login;
	Parley__V1__RegisterResponse *reg;
	Parley__V1__HealthCheckResponse__ServingStatus serving;
	parley_conn *c;
	pthread_t t[4];
	rpc_status st;
	int64_t start;

	snprintf(dead, sizeof(dead), "tcp://127.0.0.1:%d", th_free_port());
	c = connect_to(d.auth, dead);
	TH_CHECK(strcmp(parley_endpoint(c, PARLEY_AUTH), d.auth) == 0, "endpoint kept");

	TH_CODE(parley_register(c, "libuser", "libuser-password", NULL, NULL, &reg, &st), RPC_OK, &st);
	TH_CHECK(strcmp(reg->user->user_id, "libuser") == 0, "user echoed");
	TH_CHECK(strcmp(reg->user->display_name, "libuser") == 0, "display name defaults to id");
	parley_free(reg);
	TH_CODE(parley_register(c, "libuser", "libuser-password", "L", NULL, NULL, &st),
		RPC_ALREADY_EXISTS, &st);
	TH_CODE(parley_register(c, "x", "libuser-password", NULL, NULL, NULL, &st),
		RPC_INVALID_ARGUMENT, &st);

	TH_CODE(parley_login(c, "libuser", "wrong-password", &login, &st), RPC_UNAUTHENTICATED, &st);
	TH_CHECK(login == NULL && !parley_has_token(c), "no token after a failed login");
	TH_CODE(parley_login(c, "libuser", "libuser-password", &login, &st), RPC_OK, &st);
	TH_CHECK(parley_has_token(c), "token kept");
	TH_CHECK(login->expires_at_ms > rpc_wall_ms(), "expiry");
	parley_free(login);

	/* Many threads on one connection. */
	for (int i = 0; i < 4; i++)
		TH_CHECK(pthread_create(&t[i], NULL, hammer, c) == 0, "thread");
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);

	TH_CODE(parley_logout(c, &st), RPC_OK, &st);
	TH_CHECK(!parley_has_token(c), "token forgotten on logout");
	TH_CODE(parley_logout(c, &st), RPC_UNAUTHENTICATED, &st);
	TH_CODE(parley_set_token(c, "not a token", &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(parley_set_token(c, "revoked-or-made-up", &st), RPC_OK, &st);
	TH_CODE(parley_logout(c, &st), RPC_UNAUTHENTICATED, &st);
	TH_CHECK(!parley_has_token(c), "a token the server refuses is forgotten");

	/* Services that cannot be reached fail within the timeout. */
	TH_CODE(parley_health(c, PARLEY_AUTH, 2000, &serving, &st), RPC_OK, &st);
	TH_CODE(parley_health(c, PARLEY_ROOMS, 300, &serving, &st), RPC_UNAVAILABLE, &st);
	parley_set_timeout(c, 400);
	TH_CHECK(parley_timeout(c) == 400, "timeout set");
	start = rpc_now_ms();
	TH_CODE(parley_rooms_list(c, 0, NULL, NULL, &st), RPC_UNAVAILABLE, &st);
	TH_CODE(parley_history(c, "r", 0, 0, 0, NULL, &st), RPC_UNAVAILABLE, &st);
	/* Send retries transient failures, but only until its timeout. */
	{
		rpc_code code = parley_send(c, "r", "hi", NULL, NULL, &st);
		TH_CHECK(code == RPC_UNAVAILABLE || code == RPC_DEADLINE_EXCEEDED, "send: %s",
			 rpc_code_name(code));
	}
	TH_CHECK(rpc_now_ms() - start < 3000, "failures took %lld ms",
		 (long long)(rpc_now_ms() - start));

	/* The connection survives a restart of the server. */
	th_kill9(&d);
	TH_CHECK(th_restart(&d), "restart");
	parley_set_timeout(c, 0);
	TH_CODE(parley_login(c, "libuser", "libuser-password", NULL, &st), RPC_OK, &st);
	TH_CHECK(parley_has_token(c), "logged in again after the restart");
	parley_disconnect(c);
	printf("ok auth through the library\n");
}

/* A server that answers every call with what `reply` says: the library
 * must refuse what does not make sense. */
static nng_socket fake_sock;
/* Set by the test's thread, read by fake_server's: atomic, since only
 * the request sent over TCP after the store orders them. */
static const char *fake_mode;

static const char *
fake_mode_now(void)
{
	return __atomic_load_n(&fake_mode, __ATOMIC_ACQUIRE);
}

static void
fake_answer(const Parley__V1__RpcRequest *req, ProtobufCMessage **body)
{
	static Parley__V1__LoginResponse login;
	static Parley__V1__User user;
	static Parley__V1__GetHistoryResponse hist;
	static Parley__V1__Event e1, e2, *evs[2];
	static Parley__V1__OpenResponse open;
	static Parley__V1__ListRoomsResponse rooms;

	parley__v1__login_response__init(&login);
	parley__v1__user__init(&user);
	login.user = &user;
	user.user_id = "fake";
	login.token = "good-token";
	parley__v1__get_history_response__init(&hist);
	parley__v1__event__init(&e1);
	parley__v1__event__init(&e2);
	e1.room_id = e2.room_id = "r";
	e1.seq = 2;
	e2.seq = 3;
	evs[0] = &e1;
	evs[1] = &e2;
	hist.events = evs;
	hist.n_events = 2;
	hist.head_seq = 3;
	parley__v1__open_response__init(&open);
	parley__v1__list_rooms_response__init(&rooms);
	*body = NULL;

	if (strstr(req->method, "/Login")) {
		if (strcmp(fake_mode_now(), "bad-token") == 0)
			login.token = "has spaces\x1b";
		else if (strcmp(fake_mode_now(), "bad-utf8") == 0)
			user.user_id = "fa\xffke";
		else if (strcmp(fake_mode_now(), "other-user") == 0)
			user.user_id = "someone-else";
		else if (strcmp(fake_mode_now(), "nul") == 0)
			user.user_id = "fake\x01tail"; /* \x01 becomes NUL on the wire */
		*body = &login.base;
	} else if (strstr(req->method, "/GetHistory")) {
		if (strcmp(fake_mode_now(), "out-of-order") == 0)
			e2.seq = 1;
		else if (strcmp(fake_mode_now(), "other-room") == 0)
			e2.room_id = "elsewhere";
		else if (strcmp(fake_mode_now(), "past-head") == 0)
			hist.head_seq = 2;
		*body = &hist.base;
	} else if (strstr(req->method, "/Open")) {
		open.session_id = "";
		*body = &open.base;
	} else if (strstr(req->method, "/ListRooms")) {
		rooms.next_page_token = "same";
		*body = &rooms.base;
	}
}

static void *
fake_server(void *arg)
{
	for (;;) {
		Parley__V1__RpcRequest *req;
		Parley__V1__RpcResponse resp = PARLEY__V1__RPC_RESPONSE__INIT;
		ProtobufCMessage *body;
		uint8_t bodybuf[4096], out[8192];
		nng_msg *m;
		size_t len;

		if (nng_recvmsg(fake_sock, &m, 0) != 0)
			return NULL;
		req = parley__v1__rpc_request__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
		nng_msg_free(m);
		if (req == NULL)
			continue;
		fake_answer(req, &body);
		resp.request_id = req->request_id;
		if (body != NULL) {
			resp.body.len = protobuf_c_message_pack(body, bodybuf);
			resp.body.data = bodybuf;
			for (size_t i = 0; i + 9 <= resp.body.len; i++)
				if (memcmp(bodybuf + i, "fake\x01tail", 9) == 0)
					bodybuf[i + 4] = 0; /* a NUL inside a string */
		}
		parley__v1__rpc_request__free_unpacked(req, NULL);
		len = parley__v1__rpc_response__pack(&resp, out);
		nng_send(fake_sock, out, len, 0);
	}
}

static void
expect_refused(parley_conn *c, const char *mode, const char *what)
{
	rpc_status st;
	rpc_code code;

	__atomic_store_n(&fake_mode, mode, __ATOMIC_RELEASE);
	if (strcmp(what, "login") == 0) {
		Parley__V1__LoginResponse *r;
		code = parley_login(c, "fake", "password", &r, &st);
		TH_CHECK(code != RPC_OK || strcmp(mode, "good") == 0, "%s accepted", mode);
		if (code == RPC_OK)
			parley_free(r);
		else
			TH_CHECK(!parley_has_token(c), "%s: token kept", mode);
	} else if (strcmp(what, "history") == 0) {
		Parley__V1__GetHistoryResponse *h;
		code = parley_history(c, "r", 0, 1, 0, &h, &st);
		TH_CHECK(code != RPC_OK || strcmp(mode, "good") == 0, "%s accepted", mode);
		if (code == RPC_OK)
			parley_free(h);
	} else if (strcmp(what, "open") == 0) {
		parley_cursor cur = {.room_id = "r"};
		code = parley_session_open(c, &cur, 1, NULL, &st);
	} else {
		code = parley_rooms_list(c, 0, "same", NULL, &st);
	}
	if (strcmp(mode, "good") == 0) {
		TH_CODE(code, RPC_OK, &st);
		return;
	}
	TH_CHECK(code == RPC_INTERNAL, "%s/%s: got %s (%s)", what, mode, rpc_code_name(code),
		 st.message);
}

static void
test_hostile_server(void)
{
	char url[TH_ADDR_MAX];
	pthread_t t;
	parley_conn *c;

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", th_free_port());
	TH_CHECK(nng_rep0_open(&fake_sock) == 0, "rep");
	TH_CHECK(nng_listen(fake_sock, url, NULL, 0) == 0, "listen %s", url);
	TH_CHECK(pthread_create(&t, NULL, fake_server, NULL) == 0, "thread");
	c = connect_to(url, url);
	parley_set_timeout(c, 3000);

	expect_refused(c, "good", "login");
	parley_set_token(c, NULL, NULL);
	expect_refused(c, "bad-token", "login");
	expect_refused(c, "bad-utf8", "login");
	expect_refused(c, "other-user", "login");
	expect_refused(c, "nul", "login");
	expect_refused(c, "good", "history");
	expect_refused(c, "out-of-order", "history");
	expect_refused(c, "other-room", "history");
	expect_refused(c, "past-head", "history");
	expect_refused(c, "empty-session", "open");
	expect_refused(c, "looping-pages", "rooms");
	parley_disconnect(c);
	nng_close(fake_sock);
	pthread_join(t, NULL);
	printf("ok hostile replies refused\n");
}

int
main(void)
{
	TH_CHECK(th_start(&d, "auth"), "parleyd did not start");
	test_auth();
	test_hostile_server();
	th_cleanup(&d);
	printf("ok client lib test\n");
	return 0;
}

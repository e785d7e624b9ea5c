/*
 * client_resend_test.c — libparley-client never runs a call twice because a
 * connection dropped. A fake server closes the connection on the first copy
 * of each request it is told to drop, without answering: a read (ListRooms)
 * must come through on the next connection, sent again; Register,
 * CreateRoom, JoinRoom and Login must fail UNAVAILABLE with a message that
 * says why, and the server must never see their second copy; a Send is sent
 * again with the same client_msg_id, which the server stores once.
 *
 * "Never" is checked by construction, not by waiting: after each call the
 * test makes a Health/Check on the same connection, and a resent copy would
 * have reached the server (one socket, in order) before that Check.
 */
#include <pthread.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "harness.h"
#include "parley.h"
#include "parley/v1/rpc.pb-c.h"

#define LOG_MAX 64

static nng_socket sock;
static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static char seen[LOG_MAX][64];	  /* method of each request received, in order */
static char seen_id[LOG_MAX][40]; /* client_msg_id of each Send */
static int nseen;
static char drop[64];		  /* method whose next copy is dropped */

static int
count(const char *method)
{
	int n = 0;

	pthread_mutex_lock(&mtx);
	for (int i = 0; i < nseen; i++)
		n += strcmp(seen[i], method) == 0;
	pthread_mutex_unlock(&mtx);
	return n;
}

static void
drop_next(const char *method)
{
	pthread_mutex_lock(&mtx);
	snprintf(drop, sizeof(drop), "%s", method);
	pthread_mutex_unlock(&mtx);
}

/* A body each method's caller accepts. */
static size_t
answer(const char *method, uint8_t *buf)
{
	Parley__V1__User user = PARLEY__V1__USER__INIT;
	Parley__V1__Room room = PARLEY__V1__ROOM__INIT;
	Parley__V1__RegisterResponse reg = PARLEY__V1__REGISTER_RESPONSE__INIT;
	Parley__V1__LoginResponse login = PARLEY__V1__LOGIN_RESPONSE__INIT;
	Parley__V1__CreateRoomResponse create = PARLEY__V1__CREATE_ROOM_RESPONSE__INIT;
	Parley__V1__JoinRoomResponse join = PARLEY__V1__JOIN_ROOM_RESPONSE__INIT;
	Parley__V1__ListRoomsResponse list = PARLEY__V1__LIST_ROOMS_RESPONSE__INIT;
	Parley__V1__SendResponse send = PARLEY__V1__SEND_RESPONSE__INIT;
	Parley__V1__HealthCheckResponse health = PARLEY__V1__HEALTH_CHECK_RESPONSE__INIT;
	ProtobufCMessage *body = &health.base;

	user.user_id = "ann";
	room.room_id = "den";
	reg.user = &user;
	login.user = &user;
	login.token = "token";
	create.room = &room;
	join.room = &room;
	send.seq = 7;
	health.status = PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	if (strcmp(method, "Register") == 0)
		body = &reg.base;
	else if (strcmp(method, "Login") == 0)
		body = &login.base;
	else if (strcmp(method, "CreateRoom") == 0)
		body = &create.base;
	else if (strcmp(method, "JoinRoom") == 0)
		body = &join.base;
	else if (strcmp(method, "ListRooms") == 0)
		body = &list.base;
	else if (strcmp(method, "Send") == 0)
		body = &send.base;
	return protobuf_c_message_pack(body, buf);
}

static void *
server_main(void *arg)
{
	for (;;) {
		Parley__V1__RpcResponse resp = PARLEY__V1__RPC_RESPONSE__INIT;
		Parley__V1__RpcRequest *req;
		uint8_t body[1024], out[2048];
		const char *method;
		bool dropping;
		nng_msg *m;

		if (nng_recvmsg(sock, &m, 0) != 0)
			return NULL;
		req = parley__v1__rpc_request__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
		TH_CHECK(req != NULL, "request unpacks");
		method = strrchr(req->method, '/') + 1;
		pthread_mutex_lock(&mtx);
		TH_CHECK(nseen < LOG_MAX, "too many requests");
		snprintf(seen[nseen], sizeof(seen[0]), "%s", method);
		if (strcmp(method, "Send") == 0) {
			Parley__V1__SendRequest *s = parley__v1__send_request__unpack(
				NULL, req->body.len, req->body.data);
			TH_CHECK(s != NULL, "send unpacks");
			snprintf(seen_id[nseen], sizeof(seen_id[0]), "%s", s->client_msg_id);
			parley__v1__send_request__free_unpacked(s, NULL);
		}
		nseen++;
		dropping = strcmp(drop, method) == 0;
		if (dropping)
			drop[0] = '\0';
		pthread_mutex_unlock(&mtx);
		if (dropping) {
			/* As a server that died mid-call: no answer, connection gone. */
			nng_pipe_close(nng_msg_get_pipe(m));
			nng_msg_free(m);
		} else {
			nng_msg_free(m);
			resp.request_id = req->request_id;
			resp.body.len = answer(method, body);
			resp.body.data = body;
			TH_CHECK(nng_send(sock, out, parley__v1__rpc_response__pack(&resp, out), 0) ==
					 0,
				 "reply");
		}
		parley__v1__rpc_request__free_unpacked(req, NULL);
	}
}

/* Everything sent before this Check has reached the server by its answer. */
static void
fence(parley_conn *c, parley_service s)
{
	Parley__V1__HealthCheckResponse__ServingStatus serving;
	rpc_status st;

	TH_CODE(parley_health(c, s, 5000, &serving, &st), RPC_OK, &st);
}

static void
expect_once(parley_conn *c, const char *method, rpc_code code, const rpc_status *st,
	    parley_service s)
{
	TH_CHECK(code == RPC_UNAVAILABLE, "%s after a dropped connection: got %s (%s)", method,
		 rpc_code_name(code), st->message);
	TH_CHECK(strstr(st->message, "not sent again") != NULL &&
			 strstr(st->message, "may already have taken effect") != NULL,
		 "%s: the message says why: %s", method, st->message);
	fence(c, s);
	TH_CHECK(count(method) == 1, "%s reached the server %d times", method, count(method));
	printf("ok %s not sent twice: %s\n", method, st->message);
}

int
main(void)
{
	char url[TH_ADDR_MAX];
	parley_endpoints ep;
	parley_conn *c;
	pthread_t t;
	rpc_status st;
	rpc_code code;

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", th_free_port());
	TH_CHECK(nng_rep0_open(&sock) == 0, "rep");
	TH_CHECK(nng_listen(sock, url, NULL, 0) == 0, "listen %s", url);
	TH_CHECK(pthread_create(&t, NULL, server_main, NULL) == 0, "thread");
	for (int s = 0; s < PARLEY_NSERVICES; s++)
		TH_CHECK(parley_endpoints_set(&ep, s, url, &st) == RPC_OK, "%s", st.message);
	TH_CODE(parley_connect(&c, &ep, &st), RPC_OK, &st);
	parley_set_timeout(c, 5000);
	fence(c, PARLEY_AUTH);
	fence(c, PARLEY_ROOMS);
	fence(c, PARLEY_MESSAGING);

	/* A read is sent again on the next connection and answered. */
	drop_next("ListRooms");
	TH_CODE(parley_rooms_list(c, 0, NULL, NULL, &st), RPC_OK, &st);
	TH_CHECK(count("ListRooms") == 2, "ListRooms sent %d times", count("ListRooms"));
	printf("ok a read is sent again after a dropped connection\n");

	drop_next("Register");
	code = parley_register(c, "ann", "ann-password", NULL, NULL, NULL, &st);
	expect_once(c, "Register", code, &st, PARLEY_AUTH);

	drop_next("Login");
	code = parley_login(c, "ann", "ann-password", NULL, &st);
	expect_once(c, "Login", code, &st, PARLEY_AUTH);

	drop_next("CreateRoom");
	code = parley_room_create(c, "den", NULL, NULL, NULL, &st);
	expect_once(c, "CreateRoom", code, &st, PARLEY_ROOMS);

	drop_next("JoinRoom");
	code = parley_room_join(c, "den", NULL, &st);
	expect_once(c, "JoinRoom", code, &st, PARLEY_ROOMS);

	/* The connection is usable afterwards. */
	TH_CODE(parley_room_create(c, "den", NULL, NULL, NULL, &st), RPC_OK, &st);

	/* A Send carries its client_msg_id: every copy the same one. */
	drop_next("Send");
	TH_CODE(parley_send(c, "den", "hello", NULL, NULL, &st), RPC_OK, &st);
	fence(c, PARLEY_MESSAGING);
	TH_CHECK(count("Send") >= 2, "Send sent %d times", count("Send"));
	pthread_mutex_lock(&mtx);
	for (int i = 0, first = -1; i < nseen; i++) {
		if (strcmp(seen[i], "Send") != 0)
			continue;
		if (first < 0)
			first = i;
		TH_CHECK(strlen(seen_id[i]) == PARLEY_CLIENT_MSG_ID_LEN &&
				 strcmp(seen_id[i], seen_id[first]) == 0,
			 "copy %d of the Send has id '%s', the first '%s'", i, seen_id[i],
			 seen_id[first]);
	}
	pthread_mutex_unlock(&mtx);
	printf("ok a Send is sent again with its client_msg_id\n");

	parley_disconnect(c);
	nng_close(sock);
	pthread_join(t, NULL);
	printf("ok client resend test\n");
	return 0;
}

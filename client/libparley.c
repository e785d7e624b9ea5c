/* libparley.c — connection, endpoints and typed calls; see parley.h. */
#include "parley.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <nng/nng.h>

#include "libparley_int.h"
#include "secret.h"
#include "tls.h"

struct parley_conn {
	parley_endpoints ep;
	uint32_t timeout_ms;
	pthread_mutex_t mtx; /* guards cli and token */
	/* Opened on first use: a command that needs one service does not dial
	 * the other three (nor leave them half-connected when it exits). */
	rpc_client *cli[PARLEY_NSERVICES];
	char token[PARLEY_TOKEN_MAX];
};

static const char *const service_names[PARLEY_NSERVICES] = {
	[PARLEY_AUTH] = "auth",
	[PARLEY_ROOMS] = "rooms",
	[PARLEY_HISTORY] = "history",
	[PARLEY_MESSAGING] = "messaging",
};

const char *
parley_service_name(parley_service s)
{
	return (unsigned)s < PARLEY_NSERVICES ? service_names[s] : "unknown";
}

void
parley_free(void *reply)
{
	/* A reply may hold a session token (Login): wiped before freed. */
	rpc_secret_free_message(reply);
}

bool
parley_code_transient(rpc_code code)
{
	return code == RPC_UNAVAILABLE || code == RPC_DEADLINE_EXCEEDED || code == RPC_ABORTED ||
	       code == RPC_RESOURCE_EXHAUSTED;
}

/* Connection ------------------------------------------------------------- */

rpc_code
parley_connect(parley_conn **cp, const parley_endpoints *ep, rpc_status *st)
{
	parley_conn *c = calloc(1, sizeof(*c));
	rpc_code code = RPC_OK;

	*cp = NULL;
	if (c == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	pthread_mutex_init(&c->mtx, NULL);
	c->ep = *ep;
	c->timeout_ms = PARLEY_DEFAULT_TIMEOUT_MS;
	for (int s = 0; s < PARLEY_NSERVICES; s++) {
		nng_url *u;
		int rv;

		c->ep.url[s][PARLEY_URL_MAX - 1] = '\0';
		if ((rv = nng_url_parse(&u, c->ep.url[s])) != 0) {
			code = rpc_status_set(st, RPC_INVALID_ARGUMENT, "%s address '%s': %s",
					      service_names[s], c->ep.url[s], nng_strerror(rv));
			parley_disconnect(c);
			return code;
		}
		nng_url_free(u);
	}
	*cp = c;
	return rpc_status_set(st, RPC_OK, NULL);
}

rpc_code
parley_tls_configure(const char *ca_file, const char *cert_file, const char *key_file,
		     rpc_status *st)
{
	rpc_tls_opts o = {.cert_file = cert_file, .key_file = key_file, .ca_file = ca_file};

	return rpc_tls_configure(&o, st);
}

/* The client of service s, opened on first use. */
static rpc_code
client_for(parley_conn *c, parley_service s, rpc_client **cli, rpc_status *st)
{
	rpc_code code = RPC_OK;

	pthread_mutex_lock(&c->mtx);
	if (c->cli[s] == NULL)
		code = rpc_client_open(&c->cli[s], c->ep.url[s], st);
	*cli = c->cli[s];
	pthread_mutex_unlock(&c->mtx);
	return code;
}

void
parley_disconnect(parley_conn *c)
{
	if (c == NULL)
		return;
	for (int s = 0; s < PARLEY_NSERVICES; s++)
		rpc_client_close(c->cli[s]);
	pthread_mutex_destroy(&c->mtx);
	explicit_bzero(c->token, sizeof(c->token));
	free(c);
}

void
parley_set_timeout(parley_conn *c, uint32_t timeout_ms)
{
	c->timeout_ms = timeout_ms ? timeout_ms : PARLEY_DEFAULT_TIMEOUT_MS;
}

uint32_t
parley_timeout(const parley_conn *c)
{
	return c->timeout_ms;
}

/* A token is what Login hands out: URL-safe base64, nothing that could
 * break the metadata it travels in or the file it is saved to. */
static bool
token_valid(const char *t)
{
	size_t n = strlen(t);

	if (n == 0 || n >= PARLEY_TOKEN_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = t[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '='))
			return false;
	}
	return true;
}

rpc_code
parley_set_token(parley_conn *c, const char *token, rpc_status *st)
{
	if (token != NULL && token[0] != '\0' && !token_valid(token))
		return rpc_status_set(st, RPC_INVALID_ARGUMENT, "malformed session token");
	pthread_mutex_lock(&c->mtx);
	explicit_bzero(c->token, sizeof(c->token));
	if (token != NULL)
		snprintf(c->token, sizeof(c->token), "%s", token);
	pthread_mutex_unlock(&c->mtx);
	return rpc_status_set(st, RPC_OK, NULL);
}

bool
parley_has_token(parley_conn *c)
{
	bool has;

	pthread_mutex_lock(&c->mtx);
	has = c->token[0] != '\0';
	pthread_mutex_unlock(&c->mtx);
	return has;
}

const char *
parley_endpoint(const parley_conn *c, parley_service s)
{
	return (unsigned)s < PARLEY_NSERVICES ? c->ep.url[s] : "";
}

/*
 * Whether a call may be sent again after the connection carrying it
 * dropped (rpc_call_opts.resend). Only when running it twice is the same
 * as once: reads, Close, and a Send that
 * carries a client_msg_id (the server stores that message once). Anything
 * else (Register, Login, CreateRoom, JoinRoom, an Open that would leave a
 * second session, ...) runs at most once: a dropped connection fails it
 * UNAVAILABLE ("... may already have taken effect"), and the caller
 * decides. Unknown methods are not resent.
 */
static bool
resendable(const ProtobufCServiceDescriptor *svc, const char *method, const ProtobufCMessage *req)
{
	static const char *const idempotent[] = {
		"parley.v1.Health/Check",	"parley.v1.Rooms/ListRooms",
		"parley.v1.Rooms/GetRoom",	"parley.v1.Rooms/ListMyRooms",
		"parley.v1.History/GetHistory", "parley.v1.Messaging/Close",
		"parley.v1.Auth/GetUsers",	"parley.v1.Rooms/ListMembers",
		"parley.v1.Messaging/GetUnread", "parley.v1.Messaging/MarkRead",
		"parley.v1.Messaging/SetTyping",
	};
	char name[128];

	snprintf(name, sizeof(name), "%s/%s", svc->name, method);
	if (strcmp(name, "parley.v1.Messaging/Send") == 0) {
		const Parley__V1__SendRequest *send = (const void *)req;
		return send->client_msg_id != NULL && send->client_msg_id[0] != '\0';
	}
	if (strcmp(name, "parley.v1.Messaging/SendBatch") == 0) {
		const Parley__V1__SendBatchRequest *batch = (const void *)req;

		for (size_t i = 0; i < batch->n_messages; i++)
			if (batch->messages[i]->client_msg_id == NULL ||
			    batch->messages[i]->client_msg_id[0] == '\0')
				return false;
		return true;
	}
	if (strcmp(name, "parley.v1.Messaging/Edit") == 0) {
		const Parley__V1__EditRequest *edit = (const void *)req;
		return edit->client_msg_id != NULL && edit->client_msg_id[0] != '\0';
	}
	if (strcmp(name, "parley.v1.Messaging/Delete") == 0) {
		const Parley__V1__DeleteRequest *del = (const void *)req;
		return del->client_msg_id != NULL && del->client_msg_id[0] != '\0';
	}
	for (size_t i = 0; i < sizeof(idempotent) / sizeof(idempotent[0]); i++)
		if (strcmp(name, idempotent[i]) == 0)
			return true;
	return false;
}

/* One call: attaches the token, waits at most timeout_ms (0 = the
 * connection's), and checks the reply's bytes (every string valid UTF-8
 * without NUL) before unpacking them. */
static rpc_code
call(parley_conn *c, parley_service s, const ProtobufCServiceDescriptor *svc,
     const char *method, const ProtobufCMessage *req, ProtobufCMessage **resp,
     uint32_t timeout_ms, rpc_status *st)
{
	const ProtobufCMethodDescriptor *m;
	char token[PARLEY_TOKEN_MAX], full[256], msg[RPC_STATUS_MESSAGE_MAX];
	rpc_call_opts o = {.timeout_ms = timeout_ms ? timeout_ms : c->timeout_ms,
			   .resend = resendable(svc, method, req)};
	uint8_t stackbuf[1024], *body = stackbuf;
	void *reply;
	size_t len, reply_len;
	rpc_client *cli;
	rpc_code code;

	*resp = NULL;
	m = protobuf_c_service_descriptor_get_method_by_name(svc, method);
	if (m == NULL || req->descriptor != m->input)
		return rpc_status_set(st, RPC_INTERNAL, "no method %s taking %s in %s", method,
				      req->descriptor->name, svc->name);
	if ((code = client_for(c, s, &cli, st)) != RPC_OK)
		return code;
	rpc_full_method(full, sizeof(full), svc, m);
	len = protobuf_c_message_get_packed_size(req);
	if (len > sizeof(stackbuf) && (body = malloc(len)) == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	protobuf_c_message_pack(req, body);
	pthread_mutex_lock(&c->mtx);
	memcpy(token, c->token, sizeof(token));
	pthread_mutex_unlock(&c->mtx);
	if (token[0] != '\0')
		o.token = token;
	code = rpc_client_call_raw(cli, full, body, len, &reply, &reply_len, &o, st);
	explicit_bzero(token, sizeof(token));
	explicit_bzero(body, len); /* a password (Login, Register, ChangePassword) */
	if (body != stackbuf)
		free(body);
	if (code != RPC_OK)
		return code;
	if (rpc_check_wire(m->output, reply, reply_len, st) != RPC_OK) {
		snprintf(msg, sizeof(msg), "%s", st ? st->message : "");
		free(reply);
		return rpc_status_set(st, RPC_INTERNAL, "%s server sent a bad %s reply: %s",
				      service_names[s], method, msg);
	}
	*resp = protobuf_c_message_unpack(m->output, NULL, reply_len, reply);
	explicit_bzero(reply, reply_len); /* a token (Login) */
	free(reply);
	if (*resp == NULL)
		return rpc_status_set(st, RPC_INTERNAL, "%s server sent a malformed %s reply",
				      service_names[s], method);
	return RPC_OK;
}

/* Hands reply to the caller if it asked for it, frees it otherwise. */
static rpc_code
deliver(void *reply, void *out, rpc_status *st)
{
	if (out != NULL)
		*(void **)out = reply;
	else
		parley_free(reply);
	return rpc_status_set(st, RPC_OK, NULL);
}

static rpc_code
bad_reply(void *reply, parley_service s, const char *what, rpc_status *st)
{
	parley_free(reply);
	return rpc_status_set(st, RPC_INTERNAL, "%s server sent a bad reply: %s", service_names[s],
			      what);
}

static void
clear_out(void *out)
{
	if (out != NULL)
		*(void **)out = NULL;
}

rpc_code
parley_health(parley_conn *c, parley_service s, uint32_t timeout_ms,
	      Parley__V1__HealthCheckResponse__ServingStatus *serving, rpc_status *st)
{
	Parley__V1__HealthCheckRequest req = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	Parley__V1__HealthCheckResponse *resp;
	rpc_code code;

	*serving = PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__UNKNOWN;
	if ((unsigned)s >= PARLEY_NSERVICES)
		return rpc_status_set(st, RPC_INVALID_ARGUMENT, "no such service");
	code = call(c, s, &parley__v1__health__descriptor, "Check", &req.base,
		    (ProtobufCMessage **)&resp, timeout_ms, st);
	if (code != RPC_OK)
		return code;
	*serving = resp->status;
	parley_free(resp);
	return RPC_OK;
}

/* Auth ------------------------------------------------------------------- */

rpc_code
parley_register(parley_conn *c, const char *user_id, const char *password,
		const char *display_name, const char *email, Parley__V1__RegisterResponse **out,
		rpc_status *st)
{
	Parley__V1__RegisterRequest req = PARLEY__V1__REGISTER_REQUEST__INIT;
	Parley__V1__RegisterResponse *resp;
	rpc_code code;

	clear_out(out);
	req.user_id = (char *)user_id;
	req.password = (char *)password;
	req.display_name = (char *)(display_name && display_name[0] ? display_name : user_id);
	req.email = (char *)(email ? email : "");
	code = call(c, PARLEY_AUTH, &parley__v1__auth__descriptor, "Register", &req.base,
		    (ProtobufCMessage **)&resp, 0, st);
	if (code != RPC_OK)
		return code;
	if (resp->user == NULL)
		return bad_reply(resp, PARLEY_AUTH, "Register without the user", st);
	return deliver(resp, out, st);
}

rpc_code
parley_login(parley_conn *c, const char *user_id, const char *password,
	     Parley__V1__LoginResponse **out, rpc_status *st)
{
	Parley__V1__LoginRequest req = PARLEY__V1__LOGIN_REQUEST__INIT;
	Parley__V1__LoginResponse *resp;
	rpc_code code;

	clear_out(out);
	req.user_id = (char *)user_id;
	req.password = (char *)password;
	code = call(c, PARLEY_AUTH, &parley__v1__auth__descriptor, "Login", &req.base,
		    (ProtobufCMessage **)&resp, 0, st);
	if (code != RPC_OK)
		return code;
	if (!token_valid(resp->token))
		return bad_reply(resp, PARLEY_AUTH, "Login without a well-formed token", st);
	if (resp->user == NULL || strcmp(resp->user->user_id, user_id) != 0)
		return bad_reply(resp, PARLEY_AUTH, "Login for another user", st);
	parley_set_token(c, resp->token, NULL);
	return deliver(resp, out, st);
}

rpc_code
parley_logout(parley_conn *c, rpc_status *st)
{
	Parley__V1__LogoutRequest req = PARLEY__V1__LOGOUT_REQUEST__INIT;
	ProtobufCMessage *resp;
	rpc_code code;

	if (!parley_has_token(c))
		return rpc_status_set(st, RPC_UNAUTHENTICATED, "not logged in");
	code = call(c, PARLEY_AUTH, &parley__v1__auth__descriptor, "Logout", &req.base, &resp, 0,
		    st);
	if (code == RPC_OK || code == RPC_UNAUTHENTICATED)
		parley_set_token(c, NULL, NULL);
	parley_free(resp);
	return code;
}

/* Rooms ------------------------------------------------------------------ */

static bool
rooms_valid(Parley__V1__Room *const *rooms, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (rooms[i] == NULL || rooms[i]->room_id[0] == '\0')
			return false;
	return true;
}

rpc_code
parley_rooms_list(parley_conn *c, uint32_t page_size, const char *page_token,
		  Parley__V1__ListRoomsResponse **out, rpc_status *st)
{
	Parley__V1__ListRoomsRequest req = PARLEY__V1__LIST_ROOMS_REQUEST__INIT;
	Parley__V1__ListRoomsResponse *resp;
	rpc_code code;

	clear_out(out);
	req.page_size = page_size;
	req.page_token = (char *)(page_token ? page_token : "");
	code = call(c, PARLEY_ROOMS, &parley__v1__rooms__descriptor, "ListRooms", &req.base,
		    (ProtobufCMessage **)&resp, 0, st);
	if (code != RPC_OK)
		return code;
	if (!rooms_valid(resp->rooms, resp->n_rooms))
		return bad_reply(resp, PARLEY_ROOMS, "ListRooms with a room without an id", st);
	if (page_token != NULL && page_token[0] != '\0' &&
	    strcmp(resp->next_page_token, page_token) == 0)
		return bad_reply(resp, PARLEY_ROOMS, "ListRooms that pages in a circle", st);
	return deliver(resp, out, st);
}

rpc_code
parley_room_create(parley_conn *c, const char *room_id, const char *name, const char *topic,
		   Parley__V1__CreateRoomResponse **out, rpc_status *st)
{
	Parley__V1__CreateRoomRequest req = PARLEY__V1__CREATE_ROOM_REQUEST__INIT;
	Parley__V1__CreateRoomResponse *resp;
	rpc_code code;

	clear_out(out);
	req.room_id = (char *)room_id;
	req.name = (char *)(name ? name : "");
	req.topic = (char *)(topic ? topic : "");
	code = call(c, PARLEY_ROOMS, &parley__v1__rooms__descriptor, "CreateRoom", &req.base,
		    (ProtobufCMessage **)&resp, 0, st);
	if (code != RPC_OK)
		return code;
	if (resp->room == NULL || !rooms_valid(&resp->room, 1))
		return bad_reply(resp, PARLEY_ROOMS, "CreateRoom without the room", st);
	return deliver(resp, out, st);
}

rpc_code
parley_room_get(parley_conn *c, const char *room_id, Parley__V1__GetRoomResponse **out,
		rpc_status *st)
{
	Parley__V1__GetRoomRequest req = PARLEY__V1__GET_ROOM_REQUEST__INIT;
	Parley__V1__GetRoomResponse *resp;
	rpc_code code;

	clear_out(out);
	req.room_id = (char *)room_id;
	code = call(c, PARLEY_ROOMS, &parley__v1__rooms__descriptor, "GetRoom", &req.base,
		    (ProtobufCMessage **)&resp, 0, st);
	if (code != RPC_OK)
		return code;
	if (resp->room == NULL || !rooms_valid(&resp->room, 1))
		return bad_reply(resp, PARLEY_ROOMS, "GetRoom without the room", st);
	return deliver(resp, out, st);
}

rpc_code
parley_room_join(parley_conn *c, const char *room_id, Parley__V1__JoinRoomResponse **out,
		 rpc_status *st)
{
	Parley__V1__JoinRoomRequest req = PARLEY__V1__JOIN_ROOM_REQUEST__INIT;
	Parley__V1__JoinRoomResponse *resp;
	rpc_code code;

	clear_out(out);
	req.room_id = (char *)room_id;
	code = call(c, PARLEY_ROOMS, &parley__v1__rooms__descriptor, "JoinRoom", &req.base,
		    (ProtobufCMessage **)&resp, 0, st);
	if (code != RPC_OK)
		return code;
	if (resp->room != NULL && !rooms_valid(&resp->room, 1))
		return bad_reply(resp, PARLEY_ROOMS, "JoinRoom with a room without an id", st);
	return deliver(resp, out, st);
}

rpc_code
parley_room_leave(parley_conn *c, const char *room_id, rpc_status *st)
{
	Parley__V1__LeaveRoomRequest req = PARLEY__V1__LEAVE_ROOM_REQUEST__INIT;
	ProtobufCMessage *resp;
	rpc_code code;

	req.room_id = (char *)room_id;
	code = call(c, PARLEY_ROOMS, &parley__v1__rooms__descriptor, "LeaveRoom", &req.base, &resp,
		    0, st);
	parley_free(resp);
	return code;
}

rpc_code
parley_rooms_mine(parley_conn *c, Parley__V1__ListMyRoomsResponse **out, rpc_status *st)
{
	Parley__V1__ListMyRoomsRequest req = PARLEY__V1__LIST_MY_ROOMS_REQUEST__INIT;
	Parley__V1__ListMyRoomsResponse *resp;
	rpc_code code;

	clear_out(out);
	code = call(c, PARLEY_ROOMS, &parley__v1__rooms__descriptor, "ListMyRooms", &req.base,
		    (ProtobufCMessage **)&resp, 0, st);
	if (code != RPC_OK)
		return code;
	if (!rooms_valid(resp->rooms, resp->n_rooms))
		return bad_reply(resp, PARLEY_ROOMS, "ListMyRooms with a room without an id", st);
	return deliver(resp, out, st);
}

/* Messages --------------------------------------------------------------- */

void
parley_new_client_msg_id(char id[PARLEY_CLIENT_MSG_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t raw[PARLEY_CLIENT_MSG_ID_LEN / 2];
	size_t got = 0;

	while (got < sizeof(raw)) {
		ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
		if (n > 0) {
			got += (size_t)n;
		} else if (n < 0 && errno != EINTR) {
			/* No kernel randomness (pre-3.17 kernel or seccomp): an id
			 * unique enough for idempotency from the clock and a
			 * counter; it is not a secret. */
			static unsigned counter;
			struct timespec ts;
			uint64_t mix;

			clock_gettime(CLOCK_REALTIME, &ts);
			mix = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^
			      ((uint64_t)__atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) << 40);
			for (size_t i = 0; i < sizeof(raw); i++)
				raw[i] = (uint8_t)(mix >> ((i % 8) * 8)) ^ (uint8_t)(i * 37);
			got = sizeof(raw);
		}
	}
	for (size_t i = 0; i < sizeof(raw); i++) {
		id[2 * i] = hex[raw[i] >> 4];
		id[2 * i + 1] = hex[raw[i] & 15];
	}
	id[PARLEY_CLIENT_MSG_ID_LEN] = '\0';
}

/* Sleeps ms on the monotonic clock (the one timed-wait helper). */
static void
sleep_ms(int64_t ms)
{
	pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cv;
	int64_t until = rpc_now_ms() + ms;

	rpc_cond_init(&cv);
	pthread_mutex_lock(&mtx);
	while (rpc_now_ms() < until)
		rpc_cond_wait_until(&cv, &mtx, until);
	pthread_mutex_unlock(&mtx);
	pthread_cond_destroy(&cv);
	pthread_mutex_destroy(&mtx);
}

/* Calls a Send-like method until it succeeds, fails for good, the
 * deadline passes or *cancel is set: a transient failure is tried again
 * with the same request (its client_msg_ids make that safe), after a
 * backoff. */
static rpc_code
send_retrying(parley_conn *c, const char *method, const ProtobufCMessage *req,
	      ProtobufCMessage **resp, int64_t deadline, const bool *cancel, rpc_status *st)
{
	int64_t backoff = 50;
	rpc_code code;

	for (;;) {
		int64_t left = deadline - rpc_now_ms();

		if (cancel != NULL && __atomic_load_n(cancel, __ATOMIC_ACQUIRE))
			return rpc_status_set(st, RPC_CANCELLED, "sending stopped");
		if (left <= 0)
			return rpc_status_set(st, RPC_DEADLINE_EXCEEDED, "send not acknowledged in time");
		code = call(c, PARLEY_MESSAGING, &parley__v1__messaging__descriptor, method, req,
			    resp, (uint32_t)(left < PARLEY_SEND_TRY_MS ? left : PARLEY_SEND_TRY_MS),
			    st);
		if (code == RPC_OK || !parley_code_transient(code))
			return code;
		/* The same client_msg_id again: the server answers a retry of a
		 * message it already stored with the original seq. */
		left = deadline - rpc_now_ms();
		if (left <= 0)
			return code;
		if (code == RPC_RESOURCE_EXHAUSTED && st != NULL && st->retry_after_ms > backoff)
			backoff = st->retry_after_ms;
		sleep_ms(backoff < left ? backoff : left);
		backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
	}
}

rpc_code
parley_send_until(parley_conn *c, const char *room_id, const char *text,
		  const char *client_msg_id, int64_t deadline, const bool *cancel,
		  Parley__V1__SendResponse **out, rpc_status *st)
{
	Parley__V1__SendRequest req = PARLEY__V1__SEND_REQUEST__INIT;
	Parley__V1__SendResponse *resp;
	char id[PARLEY_CLIENT_MSG_ID_LEN + 1];
	rpc_code code;

	clear_out(out);
	if (client_msg_id == NULL) {
		parley_new_client_msg_id(id);
		client_msg_id = id;
	}
	req.room_id = (char *)room_id;
	req.text = (char *)text;
	req.client_msg_id = (char *)client_msg_id;
	code = send_retrying(c, "Send", &req.base, (ProtobufCMessage **)&resp, deadline, cancel,
			     st);
	if (code != RPC_OK)
		return code;
	if (resp->seq == 0)
		return bad_reply(resp, PARLEY_MESSAGING, "Send without a seq", st);
	return deliver(resp, out, st);
}

rpc_code
parley_send_batch(parley_conn *c, size_t n, const char *const *room_ids,
		  const char *const *texts, const char *const *client_msg_ids,
		  Parley__V1__SendBatchResponse **out, rpc_status *st)
{
	Parley__V1__SendBatchRequest req = PARLEY__V1__SEND_BATCH_REQUEST__INIT;
	Parley__V1__SendRequest *msgs = calloc(n + 1, sizeof(*msgs));
	Parley__V1__SendRequest **ptrs = calloc(n + 1, sizeof(*ptrs));
	Parley__V1__SendBatchResponse *resp = NULL;
	rpc_code code;

	clear_out(out);
	if (msgs == NULL || ptrs == NULL) {
		free(msgs);
		free(ptrs);
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		parley__v1__send_request__init(&msgs[i]);
		msgs[i].room_id = (char *)room_ids[i];
		msgs[i].text = (char *)texts[i];
		msgs[i].client_msg_id = (char *)client_msg_ids[i];
		ptrs[i] = &msgs[i];
	}
	req.messages = ptrs;
	req.n_messages = n;
	code = send_retrying(c, "SendBatch", &req.base, (ProtobufCMessage **)&resp,
			     rpc_now_ms() + c->timeout_ms, NULL, st);
	free(ptrs);
	free(msgs);
	if (code != RPC_OK)
		return code;
	if (resp->n_results != n)
		return bad_reply(resp, PARLEY_MESSAGING, "SendBatch with a result per message missing",
				 st);
	for (size_t i = 0; i < n; i++)
		if (resp->results[i]->seq == 0)
			return bad_reply(resp, PARLEY_MESSAGING, "SendBatch without a seq", st);
	return deliver(resp, out, st);
}

rpc_code
parley_send(parley_conn *c, const char *room_id, const char *text, const char *client_msg_id,
	    Parley__V1__SendResponse **out, rpc_status *st)
{
	return parley_send_until(c, room_id, text, client_msg_id, rpc_now_ms() + c->timeout_ms,
				 NULL, out, st);
}

bool
parley_user_id_valid(const char *s)
{
	size_t n = strlen(s);

	if (n < 3 || n > 32 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		      s[i] == '.' || s[i] == '-'))
			return false;
	return true;
}

rpc_code
parley_history(parley_conn *c, const char *room_id, uint64_t before_seq, uint64_t after_seq,
	       uint32_t limit, Parley__V1__GetHistoryResponse **out, rpc_status *st)
{
	Parley__V1__GetHistoryRequest req = PARLEY__V1__GET_HISTORY_REQUEST__INIT;
	Parley__V1__GetHistoryResponse *resp;
	uint64_t prev;
	rpc_code code;

	clear_out(out);
	req.room_id = (char *)room_id;
	req.before_seq = before_seq;
	req.after_seq = after_seq;
	req.limit = limit;
	code = call(c, PARLEY_HISTORY, &parley__v1__history__descriptor, "GetHistory", &req.base,
		    (ProtobufCMessage **)&resp, 0, st);
	if (code != RPC_OK)
		return code;
	prev = after_seq;
	for (size_t i = 0; i < resp->n_events; i++) {
		const Parley__V1__Event *ev = resp->events[i];

		if (ev == NULL || strcmp(ev->room_id, room_id) != 0)
			return bad_reply(resp, PARLEY_HISTORY, "an event of another room", st);
		if (ev->seq <= prev || (before_seq != 0 && ev->seq >= before_seq) ||
		    ev->seq > resp->head_seq)
			return bad_reply(resp, PARLEY_HISTORY, "events out of order or range", st);
		prev = ev->seq;
	}
	return deliver(resp, out, st);
}

rpc_code
parley_session_open(parley_conn *c, const parley_cursor *rooms, size_t n,
		    Parley__V1__OpenResponse **out, rpc_status *st)
{
	Parley__V1__OpenRequest req = PARLEY__V1__OPEN_REQUEST__INIT;
	Parley__V1__RoomCursor *cursors, **ptrs;
	Parley__V1__OpenResponse *resp;
	rpc_code code;

	clear_out(out);
	if (n == 0)
		return rpc_status_set(st, RPC_INVALID_ARGUMENT, "a session needs at least one room");
	cursors = calloc(n, sizeof(*cursors));
	ptrs = calloc(n, sizeof(*ptrs));
	if (cursors == NULL || ptrs == NULL) {
		free(cursors);
		free(ptrs);
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		parley__v1__room_cursor__init(&cursors[i]);
		cursors[i].room_id = (char *)rooms[i].room_id;
		cursors[i].since_seq = rooms[i].since_seq;
		ptrs[i] = &cursors[i];
	}
	req.rooms = ptrs;
	req.n_rooms = n;
	code = call(c, PARLEY_MESSAGING, &parley__v1__messaging__descriptor, "Open", &req.base,
		    (ProtobufCMessage **)&resp, 0, st);
	free(cursors);
	free(ptrs);
	if (code != RPC_OK)
		return code;
	if (resp->session_id[0] == '\0' || strlen(resp->session_id) >= PARLEY_SESSION_ID_MAX)
		return bad_reply(resp, PARLEY_MESSAGING, "Open without a usable session id", st);
	return deliver(resp, out, st);
}

rpc_code
parley_session_poll(parley_conn *c, const char *session_id, uint32_t wait_ms,
		    uint32_t max_events, Parley__V1__PollResponse **out, rpc_status *st)
{
	Parley__V1__PollRequest req = PARLEY__V1__POLL_REQUEST__INIT;
	Parley__V1__PollResponse *resp;
	rpc_code code;

	clear_out(out);
	if (wait_ms > 30000)
		wait_ms = 30000;
	req.session_id = (char *)session_id;
	req.wait_ms = wait_ms;
	req.max_events = max_events;
	/* The long poll itself plus the connection's allowance for the trip. */
	code = call(c, PARLEY_MESSAGING, &parley__v1__messaging__descriptor, "Poll", &req.base,
		    (ProtobufCMessage **)&resp, wait_ms + c->timeout_ms, st);
	if (code != RPC_OK)
		return code;
	for (size_t i = 0; i < resp->n_events; i++)
		if (resp->events[i] == NULL || resp->events[i]->room_id[0] == '\0')
			return bad_reply(resp, PARLEY_MESSAGING, "an event without a room", st);
	return deliver(resp, out, st);
}

rpc_code
parley_session_close(parley_conn *c, const char *session_id, uint32_t timeout_ms, rpc_status *st)
{
	Parley__V1__CloseRequest req = PARLEY__V1__CLOSE_REQUEST__INIT;
	ProtobufCMessage *resp;
	rpc_code code;

	req.session_id = (char *)session_id;
	code = call(c, PARLEY_MESSAGING, &parley__v1__messaging__descriptor, "Close", &req.base,
		    &resp, timeout_ms, st);
	parley_free(resp);
	return code;
}

/* For the other files of the library (libparley_int.h). */
rpc_code
parley__call(parley_conn *c, parley_service s, const ProtobufCServiceDescriptor *svc,
	     const char *method, const ProtobufCMessage *req, ProtobufCMessage **resp,
	     uint32_t timeout_ms, rpc_status *st)
{
	return call(c, s, svc, method, req, resp, timeout_ms, st);
}

rpc_code
parley__deliver(void *reply, void *out, rpc_status *st)
{
	return deliver(reply, out, st);
}

rpc_code
parley__bad_reply(void *reply, parley_service s, const char *what, rpc_status *st)
{
	return bad_reply(reply, s, what, st);
}

/*
 * trust_test.c — services trust each other's replies only as far as they
 * check them, and quote each other's errors once.
 *
 * A fake auth service in this process (a real rpc server over tcp) answers
 * Validate with user ids a real one never gives: empty, too long, not an
 * id. A real parleyd running only rooms authenticates through it: those
 * calls fail INTERNAL with a message saying so, and rooms keeps serving.
 * Then the fake goes away: the caller sees "auth service unavailable: "
 * once, followed by the reason, not the garbled repetition that
 * formatting a status message from itself produced. members_check, the
 * rooms gate of messaging and history, is held to the same rule.
 */
#include <signal.h>
#include <string.h>

#include "harness.h"
#include "members.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/rooms.pb-c.h"
#include "server.h"

static rpc_code
fake_validate(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	const Parley__V1__ValidateRequest *req = (const void *)reqm;
	Parley__V1__ValidateResponse *resp = (void *)respm;

	if (strcmp(req->token, "tok-empty") == 0)
		resp->user_id = "";
	else if (strcmp(req->token, "tok-long") == 0)
		resp->user_id = "a-user-id-far-too-long-to-be-one-that-auth-would-ever-issue-xxxxxxxx";
	else if (strcmp(req->token, "tok-odd") == 0)
		resp->user_id = "Not A User!";
	else if (strcmp(req->token, "tok-good") == 0)
		resp->user_id = "alice";
	else
		return rpc_call_fail(call, RPC_UNAUTHENTICATED, "unknown token");
	return RPC_OK;
}

static rpc_server *
fake_auth(const char *url)
{
	const ProtobufCServiceDescriptor *d = &parley__v1__auth__descriptor;
	static rpc_method methods[16];
	rpc_server_opts opts = {.name = "fake-auth", .workers = 2, .contexts = 8};
	rpc_server *srv;
	rpc_status st;

	TH_CHECK(d->n_methods <= 16, "method table");
	for (unsigned i = 0; i < d->n_methods; i++)
		if (strcmp(d->methods[i].name, "Validate") == 0)
			methods[i].fn = fake_validate;
	TH_CHECK(rpc_server_open(&srv, url, &opts, &st) == RPC_OK, "fake auth: %s", st.message);
	rpc_server_add_service(srv, d, methods, NULL);
	TH_CHECK(rpc_server_start(srv, &st) == RPC_OK, "fake auth start: %s", st.message);
	return srv;
}

static rpc_code
list_my_rooms(rpc_client *rooms, const char *token, rpc_status *st)
{
	Parley__V1__ListMyRoomsRequest req = PARLEY__V1__LIST_MY_ROOMS_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	rpc_call_opts opts = {.token = token, .timeout_ms = 10000};
	rpc_code code;

	code = rpc_client_call(rooms, &parley__v1__rooms__descriptor, "ListMyRooms", &req.base,
			       &resp, &opts, st);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

static int
count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

static void
test_invalid_user_ids(th_daemon *d, rpc_client *rooms)
{
	static const char *const bad[] = {"tok-empty", "tok-long", "tok-odd"};
	rpc_status st;

	TH_CODE(list_my_rooms(rooms, "tok-good", &st), RPC_OK, &st);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		TH_CODE(list_my_rooms(rooms, bad[i], &st), RPC_INTERNAL, &st);
		TH_CHECK(strcmp(st.message, "auth service answered Validate without a valid "
					    "user id") == 0,
			 "%s: message says what was wrong: '%s'", bad[i], st.message);
	}
	TH_CODE(list_my_rooms(rooms, "tok-good", &st), RPC_OK, &st);
	TH_CHECK(d->pid > 0 && kill(d->pid, 0) == 0, "rooms still running");
	TH_CHECK(th_log_has(d, "answered Validate without a valid user id"),
		 "the fault is logged for the operator");
	printf("ok empty, overlong and malformed user ids from Validate are refused\n");
}

static void
test_unavailable_message(rpc_client *rooms, const char *auth_url)
{
	char reason[128];
	rpc_status st;

	TH_CODE(list_my_rooms(rooms, "tok-good", &st), RPC_UNAVAILABLE, &st);
	snprintf(reason, sizeof(reason), "cannot reach %s", auth_url);
	TH_CHECK(count(st.message, "auth service unavailable") == 1 &&
			 strncmp(st.message, "auth service unavailable: ", 26) == 0 &&
			 strstr(st.message, reason) != NULL,
		 "one prefix, then the reason: '%s'", st.message);
	printf("ok an unreachable auth service is reported once, with the reason\n");
}

static void
test_members_message(void)
{
	char url[64], reason[128];
	rpc_client *rooms;
	rpc_status st;
	bool member = true;

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", th_free_port());
	rooms = th_client(url);
	TH_CODE(members_check(rooms, "lobby", "alice", "tok", 0, &member, &st), RPC_UNAVAILABLE,
		&st);
	snprintf(reason, sizeof(reason), "cannot reach %s", url);
	TH_CHECK(count(st.message, "rooms service unavailable") == 1 &&
			 strncmp(st.message, "rooms service unavailable: ", 27) == 0 &&
			 strstr(st.message, reason) != NULL,
		 "one prefix, then the reason: '%s'", st.message);
	TH_CHECK(!member, "not a member when unknown");
	TH_CODE(members_check(rooms, "lobby", NULL, "tok", 0, &member, &st), RPC_INTERNAL, &st);
	TH_CHECK(strstr(st.message, "without a user id") != NULL, "says why: '%s'", st.message);
	rpc_client_close(rooms);
	printf("ok the rooms gate quotes its reason once and refuses a missing user\n");
}

static void
test_status_self_format(void)
{
	rpc_status st;

	rpc_status_set(&st, RPC_UNAVAILABLE, "%s", "cannot reach tcp://127.0.0.1:1");
	rpc_status_set(&st, RPC_UNAVAILABLE, "auth service unavailable: %s", st.message);
	TH_CHECK(strcmp(st.message, "auth service unavailable: cannot reach tcp://127.0.0.1:1") ==
			 0,
		 "rpc_status_set may quote its own message: '%s'", st.message);
	printf("ok rpc_status_set quoting its own message\n");
}

int
main(void)
{
	th_daemon d = {0};
	char auth_url[64];
	rpc_server *auth;
	rpc_client *rooms;

	test_status_self_format();
	test_members_message();

	snprintf(auth_url, sizeof(auth_url), "tcp://127.0.0.1:%d", th_free_port());
	auth = fake_auth(auth_url);
	d.extra[0] = "--auth";
	d.extra[1] = auth_url;
	TH_CHECK(th_start(&d, "rooms"), "start parleyd (rooms only)");
	rooms = th_client(d.rooms);

	test_invalid_user_ids(&d, rooms);
	rpc_server_close(auth, 1000);
	test_unavailable_message(rooms, auth_url);

	rpc_client_close(rooms);
	TH_CHECK(th_stop(&d) == 0, "parleyd exits 0");
	th_cleanup(&d);
	return 0;
}

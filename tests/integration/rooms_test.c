/*
 * rooms_test.c — the Rooms service end to end: real parleyd processes on
 * real tcp sockets (auth and rooms in one process, and in two for the
 * auth-down case), called through the rpc client; the membership change
 * feed read through RoomsFeed/ListChanges and an nng SUB socket.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "harness.h"
#include "parley/internal/v1/feed.pb-c.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/events.pb-c.h"
#include "parley/v1/rooms.pb-c.h"

#define TIMEOUT_MS 10000
#define JOINED PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED
#define LEFT PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT

static th_daemon d;
static rpc_client *auth, *rooms, *feed;
static char alice[64], bob[64];

/* ---- calls -------------------------------------------------------------------- */

static rpc_code
rcall_on(rpc_client *c, const char *method, const ProtobufCMessage *req,
	 ProtobufCMessage **resp, const char *token, rpc_status *st)
{
	rpc_call_opts o = {.timeout_ms = TIMEOUT_MS, .token = token};
	ProtobufCMessage *tmp = NULL;
	rpc_code code;

	code = rpc_client_call(c, &parley__v1__rooms__descriptor, method, req,
			       resp ? resp : &tmp, &o, st);
	if (tmp != NULL)
		protobuf_c_message_free_unpacked(tmp, NULL);
	return code;
}

static rpc_code
rcall(const char *method, const ProtobufCMessage *req, ProtobufCMessage **resp,
      const char *token, rpc_status *st)
{
	return rcall_on(rooms, method, req, resp, token, st);
}

static rpc_code
create_room(const char *token, const char *id, const char *name, const char *topic,
	    Parley__V1__CreateRoomResponse **resp, rpc_status *st)
{
	Parley__V1__CreateRoomRequest r = PARLEY__V1__CREATE_ROOM_REQUEST__INIT;

	r.room_id = (char *)id;
	r.name = (char *)(name ? name : "");
	r.topic = (char *)(topic ? topic : "");
	return rcall("CreateRoom", &r.base, (ProtobufCMessage **)resp, token, st);
}

static rpc_code
get_room(const char *token, const char *id, Parley__V1__GetRoomResponse **resp, rpc_status *st)
{
	Parley__V1__GetRoomRequest r = PARLEY__V1__GET_ROOM_REQUEST__INIT;

	r.room_id = (char *)id;
	return rcall("GetRoom", &r.base, (ProtobufCMessage **)resp, token, st);
}

static rpc_code
join_room(const char *token, const char *id, Parley__V1__JoinRoomResponse **resp,
	  rpc_status *st)
{
	Parley__V1__JoinRoomRequest r = PARLEY__V1__JOIN_ROOM_REQUEST__INIT;

	r.room_id = (char *)id;
	return rcall("JoinRoom", &r.base, (ProtobufCMessage **)resp, token, st);
}

static rpc_code
leave_room(const char *token, const char *id, rpc_status *st)
{
	Parley__V1__LeaveRoomRequest r = PARLEY__V1__LEAVE_ROOM_REQUEST__INIT;

	r.room_id = (char *)id;
	return rcall("LeaveRoom", &r.base, NULL, token, st);
}

static rpc_code
is_member(const char *token, const char *room, const char *user, bool *member, rpc_status *st)
{
	Parley__V1__IsMemberRequest r = PARLEY__V1__IS_MEMBER_REQUEST__INIT;
	Parley__V1__IsMemberResponse *resp;
	rpc_code code;

	r.room_id = (char *)room;
	r.user_id = (char *)user;
	code = rcall("IsMember", &r.base, (ProtobufCMessage **)&resp, token, st);
	if (code == RPC_OK) {
		*member = resp->member;
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

static rpc_code
list_rooms(const char *token, uint32_t size, const char *page_token,
	   Parley__V1__ListRoomsResponse **resp, rpc_status *st)
{
	Parley__V1__ListRoomsRequest r = PARLEY__V1__LIST_ROOMS_REQUEST__INIT;

	r.page_size = size;
	r.page_token = (char *)(page_token ? page_token : "");
	return rcall("ListRooms", &r.base, (ProtobufCMessage **)resp, token, st);
}

static rpc_code
list_my_rooms(const char *token, Parley__V1__ListMyRoomsResponse **resp, rpc_status *st)
{
	Parley__V1__ListMyRoomsRequest r = PARLEY__V1__LIST_MY_ROOMS_REQUEST__INIT;

	return rcall("ListMyRooms", &r.base, (ProtobufCMessage **)resp, token, st);
}

static rpc_code
list_changes(uint64_t after, uint32_t limit, Parley__Internal__V1__ListChangesResponse **resp,
	     rpc_status *st)
{
	Parley__Internal__V1__ListChangesRequest r = PARLEY__INTERNAL__V1__LIST_CHANGES_REQUEST__INIT;
	rpc_call_opts o = {.timeout_ms = TIMEOUT_MS};

	r.after_seq = after;
	r.limit = limit;
	return rpc_client_call(feed, &parley__internal__v1__rooms_feed__descriptor, "ListChanges",
			       &r.base, (ProtobufCMessage **)resp, &o, st);
}

static uint64_t
change_head(void)
{
	Parley__Internal__V1__ListChangesResponse *resp;
	rpc_status st;
	uint64_t head;

	TH_CODE(list_changes(UINT64_MAX, 1, &resp, &st), RPC_OK, &st);
	TH_CHECK(resp->n_changes == 0, "nothing after the last seq");
	head = resp->head_seq;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return head;
}

static void
free_msg(void *m)
{
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
}

static void
logout(const char *token)
{
	Parley__V1__LogoutRequest r = PARLEY__V1__LOGOUT_REQUEST__INIT;
	rpc_call_opts o = {.timeout_ms = TIMEOUT_MS, .token = token};
	ProtobufCMessage *resp;
	rpc_status st;

	TH_CODE(rpc_client_call(auth, &parley__v1__auth__descriptor, "Logout", &r.base, &resp, &o,
				&st),
		RPC_OK, &st);
	free_msg(resp);
}

/* ---- tests ---------------------------------------------------------------------- */

static void
test_general_on_fresh_dir(void)
{
	Parley__V1__GetRoomResponse *g;
	Parley__V1__ListRoomsResponse *l;
	Parley__Internal__V1__ListChangesResponse *c;
	rpc_status st;

	TH_CODE(get_room(alice, "general", &g, &st), RPC_OK, &st);
	TH_CHECK(strcmp(g->room->room_id, "general") == 0 && strcmp(g->room->name, "general") == 0,
		 "general named general");
	TH_CHECK(strcmp(g->room->created_by, "parley") == 0, "created by %s", g->room->created_by);
	TH_CHECK(g->room->member_count == 0 && g->n_members == 0, "general starts empty");
	free_msg(g);

	TH_CODE(list_rooms(alice, 0, NULL, &l, &st), RPC_OK, &st);
	TH_CHECK(l->n_rooms == 1 && strcmp(l->rooms[0]->room_id, "general") == 0,
		 "a fresh directory has exactly general (%zu rooms)", l->n_rooms);
	TH_CHECK(l->next_page_token[0] == '\0', "one page only");
	free_msg(l);

	TH_CODE(list_changes(0, 0, &c, &st), RPC_OK, &st);
	TH_CHECK(c->head_seq == 0 && c->n_changes == 0, "no changes yet");
	free_msg(c);
	TH_CHECK(th_wait_serving(d.rooms_internal, 2000), "feed endpoint answers Health/Check");
	printf("ok general exists on a fresh data directory\n");
}

static void
test_room_lifecycle(void)
{
	Parley__V1__CreateRoomResponse *cr;
	Parley__V1__GetRoomResponse *g;
	Parley__V1__JoinRoomResponse *j;
	Parley__V1__ListMyRoomsResponse *my;
	rpc_status st;
	bool member;
	uint64_t before = rpc_wall_ms();

	TH_CODE(create_room(alice, "lobby", "Lobby ☕", "say hello", &cr, &st), RPC_OK, &st);
	TH_CHECK(strcmp(cr->room->room_id, "lobby") == 0 && strcmp(cr->room->name, "Lobby ☕") == 0 &&
			 strcmp(cr->room->topic, "say hello") == 0,
		 "fields echoed");
	TH_CHECK(strcmp(cr->room->created_by, "alice") == 0, "creator %s", cr->room->created_by);
	TH_CHECK(cr->room->member_count == 1, "creator is the first member");
	TH_CHECK(cr->room->created_at_ms >= before && cr->room->created_at_ms <= rpc_wall_ms() + 1,
		 "created_at_ms is now");
	free_msg(cr);

	TH_CODE(create_room(bob, "plain", NULL, NULL, &cr, &st), RPC_OK, &st);
	TH_CHECK(strcmp(cr->room->name, "plain") == 0, "name defaults to room_id, got %s",
		 cr->room->name);
	free_msg(cr);

	TH_CODE(create_room(bob, "lobby", NULL, NULL, NULL, &st), RPC_ALREADY_EXISTS, &st);
	TH_CODE(create_room(bob, "general", NULL, NULL, NULL, &st), RPC_ALREADY_EXISTS, &st);

	TH_CODE(get_room(alice, "lobby", &g, &st), RPC_OK, &st);
	TH_CHECK(g->n_members == 1 && strcmp(g->members[0], "alice") == 0, "alice alone");
	TH_CHECK(g->room->member_count == 1, "count 1");
	free_msg(g);
	/* Who is in it is for members only: bob sees what ListRooms shows. */
	TH_CODE(get_room(bob, "lobby", &g, &st), RPC_OK, &st);
	TH_CHECK(g->n_members == 0 && g->room->member_count == 1 &&
			 strcmp(g->room->name, "Lobby ☕") == 0,
		 "a non-member gets the room without members (%zu)", g->n_members);
	free_msg(g);
	TH_CODE(is_member(bob, "lobby", "alice", &member, &st), RPC_PERMISSION_DENIED, &st);
	TH_CHECK(strcmp(st.message, "only members of room 'lobby' may ask whether others are in "
				    "it") == 0,
		 "%s", st.message);
	TH_CODE(is_member(bob, "lobby", "bob", &member, &st), RPC_OK, &st);
	TH_CHECK(!member, "bob may ask about himself: not a member");

	TH_CODE(join_room(bob, "lobby", &j, &st), RPC_OK, &st);
	TH_CHECK(j->room->member_count == 2, "count 2 after bob joins, got %u",
		 j->room->member_count);
	free_msg(j);
	TH_CODE(join_room(bob, "lobby", &j, &st), RPC_OK, &st);
	TH_CHECK(j->room->member_count == 2, "joining twice changes nothing, got %u",
		 j->room->member_count);
	free_msg(j);
	TH_CODE(get_room(bob, "lobby", &g, &st), RPC_OK, &st);
	TH_CHECK(g->n_members == 2 && strcmp(g->members[0], "alice") == 0 &&
			 strcmp(g->members[1], "bob") == 0,
		 "members in user_id order");
	free_msg(g);

	TH_CODE(is_member(alice, "lobby", "bob", &member, &st), RPC_OK, &st);
	TH_CHECK(member, "bob is a member");
	TH_CODE(is_member(alice, "lobby", "carol", &member, &st), RPC_OK, &st);
	TH_CHECK(!member, "carol is not");

	TH_CODE(leave_room(bob, "lobby", &st), RPC_OK, &st);
	TH_CODE(is_member(alice, "lobby", "bob", &member, &st), RPC_OK, &st);
	TH_CHECK(!member, "after LeaveRoom returns, IsMember answers false");
	TH_CODE(leave_room(bob, "lobby", &st), RPC_OK, &st);
	TH_CODE(leave_room(bob, "general", &st), RPC_OK, &st);
	TH_CODE(get_room(alice, "lobby", &g, &st), RPC_OK, &st);
	TH_CHECK(g->room->member_count == 1 && g->n_members == 1, "count back to 1");
	free_msg(g);
	TH_CODE(get_room(bob, "lobby", &g, &st), RPC_OK, &st);
	TH_CHECK(g->room->member_count == 1 && g->n_members == 0,
		 "having left, bob no longer sees the members");
	free_msg(g);
	TH_CODE(is_member(bob, "lobby", "alice", &member, &st), RPC_PERMISSION_DENIED, &st);

	TH_CODE(get_room(bob, "nosuchroom", NULL, &st), RPC_NOT_FOUND, &st);
	TH_CODE(join_room(bob, "nosuchroom", NULL, &st), RPC_NOT_FOUND, &st);
	TH_CODE(leave_room(bob, "nosuchroom", &st), RPC_NOT_FOUND, &st);
	TH_CODE(is_member(bob, "nosuchroom", "bob", &member, &st), RPC_NOT_FOUND, &st);

	TH_CODE(join_room(bob, "general", NULL, &st), RPC_OK, &st);
	TH_CODE(join_room(bob, "lobby", NULL, &st), RPC_OK, &st);
	TH_CODE(list_my_rooms(bob, &my, &st), RPC_OK, &st);
	TH_CHECK(my->n_rooms == 3 && strcmp(my->rooms[0]->room_id, "general") == 0 &&
			 strcmp(my->rooms[1]->room_id, "lobby") == 0 &&
			 strcmp(my->rooms[2]->room_id, "plain") == 0,
		 "bob's rooms in room_id order (%zu)", my->n_rooms);
	TH_CHECK(my->rooms[1]->member_count == 2 && my->rooms[0]->member_count == 1,
		 "member counts in ListMyRooms");
	free_msg(my);
	TH_CODE(leave_room(bob, "plain", &st), RPC_OK, &st);
	TH_CODE(list_my_rooms(bob, &my, &st), RPC_OK, &st);
	TH_CHECK(my->n_rooms == 2, "plain is gone from bob's rooms");
	free_msg(my);
	/* A room whose members all left stays, empty. */
	TH_CODE(get_room(bob, "plain", &g, &st), RPC_OK, &st);
	TH_CHECK(g->room->member_count == 0 && g->n_members == 0, "plain is empty");
	free_msg(g);
	printf("ok create, get, join, leave, is-member, list-my-rooms\n");
}

/* Sends body raw to method with token; returns the status code. */
static rpc_code
raw_call(const char *method, const uint8_t *body, size_t len, const char *token,
	 rpc_status *st)
{
	rpc_call_opts o = {.timeout_ms = TIMEOUT_MS, .token = token};
	void *reply;
	size_t rlen;
	rpc_code code;

	code = rpc_client_call_raw(rooms, method, body, len, &reply, &rlen, &o, st);
	free(reply);
	return code;
}

static void
test_bad_input(void)
{
	char big[700], name[500], id65[66];
	Parley__V1__ListRoomsResponse *l;
	rpc_status st;
	bool member;

	memset(id65, 'a', 65);
	id65[65] = '\0';
	TH_CODE(create_room(alice, id65, NULL, NULL, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(get_room(alice, id65, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(join_room(alice, id65, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(leave_room(alice, id65, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(is_member(alice, id65, "alice", &member, &st), RPC_INVALID_ARGUMENT, &st);
	id65[64] = '\0';
	TH_CODE(create_room(alice, id65, NULL, NULL, NULL, &st), RPC_OK, &st);
	TH_CODE(create_room(alice, "", NULL, NULL, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(create_room(alice, "Upper", NULL, NULL, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(create_room(alice, "_under", NULL, NULL, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(create_room(alice, "sp ace", NULL, NULL, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(create_room(alice, "slash/x", NULL, NULL, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(create_room(alice, "9.ok_-x", NULL, NULL, NULL, &st), RPC_OK, &st);

	/* name: 1-100 characters, counted as characters, no controls. */
	name[0] = '\0';
	for (int i = 0; i < 100; i++)
		strcat(name, "é");
	TH_CODE(create_room(alice, "name100", name, NULL, NULL, &st), RPC_OK, &st);
	strcat(name, "x");
	TH_CODE(create_room(alice, "name101", name, NULL, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(create_room(alice, "namectl", "tab\there", NULL, NULL, &st), RPC_INVALID_ARGUMENT,
		&st);
	TH_CODE(create_room(alice, "namec1", "c1\xc2\x85", NULL, NULL, &st), RPC_INVALID_ARGUMENT,
		&st);
	/* topic: at most 500 characters. */
	memset(big, 't', 500);
	big[500] = '\0';
	TH_CODE(create_room(alice, "topic500", NULL, big, NULL, &st), RPC_OK, &st);
	big[500] = 't';
	big[501] = '\0';
	TH_CODE(create_room(alice, "topic501", NULL, big, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(get_room(alice, "topic501", NULL, &st), RPC_NOT_FOUND, &st);

	TH_CODE(is_member(alice, "general", "", &member, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(is_member(alice, "general", "Alice", &member, &st), RPC_INVALID_ARGUMENT, &st);

	/* page_size: 0 is the default, above 500 is refused. */
	TH_CODE(list_rooms(alice, 501, NULL, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(list_rooms(alice, UINT32_MAX, NULL, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CODE(list_rooms(alice, 500, NULL, &l, &st), RPC_OK, &st);
	free_msg(l);

	/* Forged, edited and malformed page tokens. */
	{
		static const char *forged[] = {
			"garbage",
			"AWdlbmVyYWw",			     /* version 1 + "general", no MAC */
			"AWdlbmVyYWwAAAAAAAAAAAAAAAAAAAAA",  /* + a zero MAC */
			"!!!!",
			"AWdlbmVyYWwAAAAAAAAAAAAAAAAAAAAA==",
		};
		char token[200], edited[220];

		for (size_t i = 0; i < sizeof(forged) / sizeof(forged[0]); i++)
			TH_CODE(list_rooms(alice, 2, forged[i], NULL, &st), RPC_INVALID_ARGUMENT,
				&st);
		memset(big, 'A', 600);
		big[600] = '\0';
		TH_CODE(list_rooms(alice, 2, big, NULL, &st), RPC_INVALID_ARGUMENT, &st);

		TH_CODE(list_rooms(alice, 2, NULL, &l, &st), RPC_OK, &st);
		TH_CHECK(l->next_page_token[0] != '\0', "more than 2 rooms exist");
		snprintf(token, sizeof(token), "%s", l->next_page_token);
		free_msg(l);
		TH_CODE(list_rooms(alice, 2, token, &l, &st), RPC_OK, &st);
		free_msg(l);
		/* Flip each character in turn: every edit is refused. */
		for (size_t i = 0; token[i] != '\0'; i++) {
			snprintf(edited, sizeof(edited), "%s", token);
			edited[i] = edited[i] == 'B' ? 'C' : 'B';
			TH_CODE(list_rooms(alice, 2, edited, NULL, &st), RPC_INVALID_ARGUMENT, &st);
		}
		snprintf(edited, sizeof(edited), "%sA", token);
		TH_CODE(list_rooms(alice, 2, edited, NULL, &st), RPC_INVALID_ARGUMENT, &st);
		token[strlen(token) - 1] = '\0';
		TH_CODE(list_rooms(alice, 2, token, NULL, &st), RPC_INVALID_ARGUMENT, &st);
	}

	/* Invalid UTF-8 in string fields, hand-packed (protobuf-c would pack
	 * it without complaint, but the point is the wire). */
	{
		/* CreateRoomRequest{room_id: "utf", name: "\xff\xfe"} */
		static const uint8_t bad_name[] = {0x0a, 3, 'u', 't', 'f', 0x12, 2, 0xff, 0xfe};
		/* CreateRoomRequest{room_id: "a\xc3"} (truncated sequence) */
		static const uint8_t bad_id[] = {0x0a, 2, 'a', 0xc3};
		/* GetRoomRequest{room_id: "\xed\xa0\x80"} (a surrogate) */
		static const uint8_t bad_get[] = {0x0a, 3, 0xed, 0xa0, 0x80};
		/* IsMemberRequest{room_id: "general", user_id: "\xc0\xaf"} (overlong) */
		static const uint8_t bad_user[] = {0x0a, 7, 'g', 'e', 'n', 'e', 'r', 'a', 'l',
						   0x12, 2, 0xc0, 0xaf};
		/* A length running past the end of the body. */
		static const uint8_t truncated[] = {0x0a, 50, 'a'};

		TH_CODE(raw_call("/parley.v1.Rooms/CreateRoom", bad_name, sizeof(bad_name), alice,
				 &st),
			RPC_INVALID_ARGUMENT, &st);
		TH_CODE(raw_call("/parley.v1.Rooms/CreateRoom", bad_id, sizeof(bad_id), alice,
				 &st),
			RPC_INVALID_ARGUMENT, &st);
		TH_CODE(raw_call("/parley.v1.Rooms/GetRoom", bad_get, sizeof(bad_get), alice, &st),
			RPC_INVALID_ARGUMENT, &st);
		TH_CODE(raw_call("/parley.v1.Rooms/IsMember", bad_user, sizeof(bad_user), alice,
				 &st),
			RPC_INVALID_ARGUMENT, &st);
		TH_CODE(raw_call("/parley.v1.Rooms/JoinRoom", truncated, sizeof(truncated), alice,
				 &st),
			RPC_INVALID_ARGUMENT, &st);
		TH_CODE(get_room(alice, "utf", NULL, &st), RPC_NOT_FOUND, &st);
		TH_CODE(raw_call("/parley.v1.Rooms/NoSuchMethod", NULL, 0, alice, &st),
			RPC_UNIMPLEMENTED, &st);
	}
	printf("ok bad input is INVALID_ARGUMENT\n");
}

static void
test_authentication(void)
{
	char token[64];
	rpc_status st;

	TH_CODE(create_room(NULL, "noauth", NULL, NULL, NULL, &st), RPC_UNAUTHENTICATED, &st);
	TH_CODE(get_room(NULL, "general", NULL, &st), RPC_UNAUTHENTICATED, &st);
	TH_CODE(get_room("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "general", NULL, &st),
		RPC_UNAUTHENTICATED, &st);
	TH_CODE(get_room("not a token", "general", NULL, &st), RPC_UNAUTHENTICATED, &st);
	TH_CODE(list_my_rooms("", NULL, &st), RPC_UNAUTHENTICATED, &st);

	/* A token revoked by Logout is refused at once. */
	th_register_login(auth, "revoker", token, sizeof(token));
	TH_CODE(join_room(token, "general", NULL, &st), RPC_OK, &st);
	logout(token);
	TH_CODE(get_room(token, "general", NULL, &st), RPC_UNAUTHENTICATED, &st);
	TH_CODE(leave_room(token, "general", &st), RPC_UNAUTHENTICATED, &st);
	TH_CODE(create_room(token, "revoked", NULL, NULL, NULL, &st), RPC_UNAUTHENTICATED, &st);
	printf("ok missing, forged and revoked tokens are UNAUTHENTICATED\n");
}

/* Receives one frame on sub within ms; returns the Event (caller frees)
 * after checking the topic prefix, or NULL on timeout. */
/* Changes in this room only prove a SUB socket's pipe is up (see
 * prime_sub); recv_frame skips its frames unless asked for them. */
#define PRIME_ROOM "feedprime"

static Parley__V1__Event *
recv_frame(nng_socket sub, const char *room, int ms)
{
	Parley__V1__Event *ev;
	size_t rlen = strlen(room);
	char *buf;
	size_t len;
	int rv;

	nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, ms);
	for (;;) {
		rv = nng_recv(sub, &buf, &len, NNG_FLAG_ALLOC);
		if (rv == NNG_ETIMEDOUT)
			return NULL;
		TH_CHECK(rv == 0, "recv: %s", nng_strerror(rv));
		if (strcmp(room, PRIME_ROOM) == 0 || len < sizeof(PRIME_ROOM) ||
		    memcmp(buf, PRIME_ROOM, sizeof(PRIME_ROOM)) != 0)
			break;
		nng_free(buf, len); /* a late frame of the priming room */
	}
	TH_CHECK(len > rlen + 1 && memcmp(buf, room, rlen) == 0 && buf[rlen] == '\0',
		 "frame starts with the room id and a zero byte");
	ev = parley__v1__event__unpack(NULL, len - rlen - 1, (uint8_t *)buf + rlen + 1);
	TH_CHECK(ev != NULL, "frame carries an Event");
	nng_free(buf, len);
	return ev;
}

/* PUB drops frames until the subscriber's pipe is added, which happens
 * some time after nng_dial returns. Makes changes in PRIME_ROOM until one
 * of its frames arrives: from then on, nothing published is missed. */
static void
prime_sub(nng_socket sub)
{
	Parley__V1__Event *ev = NULL;
	rpc_status st;

	TH_CHECK(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, PRIME_ROOM, sizeof(PRIME_ROOM)) == 0,
		 "subscribe to the priming room");
	TH_CODE(create_room(alice, PRIME_ROOM, NULL, NULL, NULL, &st), RPC_OK, &st);
	for (int i = 0; ev == NULL; i++) {
		TH_CHECK(i < 300, "no frame of the priming room within 300 changes");
		if (i % 2 == 0)
			TH_CODE(join_room(bob, PRIME_ROOM, NULL, &st), RPC_OK, &st);
		else
			TH_CODE(leave_room(bob, PRIME_ROOM, &st), RPC_OK, &st);
		ev = recv_frame(sub, PRIME_ROOM, 100);
	}
	parley__v1__event__free_unpacked(ev, NULL);
}

static void
check_change(const Parley__V1__Event *ev, uint64_t seq, const char *room, const char *user,
	     int kind)
{
	TH_CHECK(ev->seq == seq, "seq %llu, want %llu", (unsigned long long)ev->seq,
		 (unsigned long long)seq);
	TH_CHECK(strcmp(ev->room_id, room) == 0, "room %s, want %s", ev->room_id, room);
	TH_CHECK(strcmp(ev->sender, user) == 0, "sender %s, want %s", ev->sender, user);
	TH_CHECK(ev->body_case == PARLEY__V1__EVENT__BODY_MEMBERSHIP && ev->membership != NULL &&
			 (int)ev->membership->kind == kind,
		 "kind at seq %llu", (unsigned long long)seq);
	TH_CHECK(ev->ts_ms > 0 && ev->ts_ms <= rpc_wall_ms(), "ts_ms set");
}

static void
test_change_feed(void)
{
	static const struct {
		const char *room, *user;
		int kind;
	} want[] = {
		{"feedroom", "alice", JOINED}, {"feedroom", "bob", JOINED},
		{"feedroom", "bob", LEFT},     {"feedroom2", "alice", JOINED},
		{"feedroom", "alice", LEFT},
	};
	const size_t nwant = sizeof(want) / sizeof(want[0]);
	Parley__Internal__V1__ListChangesResponse *c;
	nng_socket sub;
	uint64_t head0, after;
	size_t got = 0;
	rpc_status st;
	int rv;

	TH_CHECK(nng_sub0_open(&sub) == 0, "sub socket");
	TH_CHECK(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "feedroom", sizeof("feedroom")) == 0,
		 "subscribe to 'feedroom\\0'");
	rv = nng_dial(sub, d.room_events, NULL, 0);
	TH_CHECK(rv == 0, "dial %s: %s", d.room_events, nng_strerror(rv));
	prime_sub(sub);
	head0 = change_head();

	TH_CODE(create_room(alice, "feedroom", NULL, NULL, NULL, &st), RPC_OK, &st);
	TH_CODE(join_room(bob, "feedroom", NULL, &st), RPC_OK, &st);
	TH_CODE(join_room(bob, "feedroom", NULL, &st), RPC_OK, &st);   /* no change */
	TH_CODE(leave_room(bob, "feedroom", &st), RPC_OK, &st);
	TH_CODE(leave_room(bob, "feedroom", &st), RPC_OK, &st);	       /* no change */
	TH_CODE(create_room(alice, "feedroom2", NULL, NULL, NULL, &st), RPC_OK, &st);
	TH_CODE(join_room(alice, "feedroom2", NULL, &st), RPC_OK, &st); /* no change */
	TH_CODE(leave_room(alice, "feedroom", &st), RPC_OK, &st);

	/* The log: exactly these changes, gap-free, in order. */
	TH_CODE(list_changes(head0, 0, &c, &st), RPC_OK, &st);
	TH_CHECK(c->head_seq == head0 + nwant, "head %llu, want %llu",
		 (unsigned long long)c->head_seq, (unsigned long long)(head0 + nwant));
	TH_CHECK(c->n_changes == nwant, "%zu changes, want %zu", c->n_changes, nwant);
	for (size_t i = 0; i < nwant; i++)
		check_change(c->changes[i], head0 + 1 + i, want[i].room, want[i].user,
			     want[i].kind);
	free_msg(c);

	/* The same through pages of two. */
	for (after = head0; after < head0 + nwant;) {
		TH_CODE(list_changes(after, 2, &c, &st), RPC_OK, &st);
		TH_CHECK(c->n_changes >= 1 && c->n_changes <= 2, "pages of at most 2");
		for (size_t i = 0; i < c->n_changes; i++, got++)
			check_change(c->changes[i], head0 + 1 + got, want[got].room,
				     want[got].user, want[got].kind);
		after = c->changes[c->n_changes - 1]->seq;
		free_msg(c);
	}
	TH_CHECK(got == nwant, "paged through all changes");
	TH_CODE(list_changes(head0 + nwant, 0, &c, &st), RPC_OK, &st);
	TH_CHECK(c->n_changes == 0 && c->head_seq == head0 + nwant, "nothing after head");
	free_msg(c);
	TH_CODE(list_changes(0, 5000, &c, &st), RPC_OK, &st);
	TH_CHECK(c->n_changes == head0 + nwant && c->n_changes <= 1000, "limit above max served");
	for (size_t i = 0; i < c->n_changes; i++)
		TH_CHECK(c->changes[i]->seq == i + 1, "the whole log is gap-free from 1");
	free_msg(c);

	/* PUB: the feedroom changes, in order, and nothing of feedroom2 (the
	 * zero byte ends the topic). */
	got = 0;
	for (size_t i = 0; i < nwant; i++) {
		Parley__V1__Event *ev;

		if (strcmp(want[i].room, "feedroom") != 0)
			continue;
		ev = recv_frame(sub, "feedroom", 3000);
		TH_CHECK(ev != NULL, "frame for change %zu arrived", i);
		check_change(ev, head0 + 1 + i, want[i].room, want[i].user, want[i].kind);
		parley__v1__event__free_unpacked(ev, NULL);
		got++;
	}
	TH_CHECK(got == 4, "four feedroom frames");
	TH_CHECK(recv_frame(sub, "feedroom", 300) == NULL, "no frame of feedroom2 or extra ones");
	nng_close(sub);
	printf("ok change log (gap-free, paged) and PUB frames 'room\\0Event'\n");
}

/* ---- paging through 1,234 rooms ---------------------------------------------------- */

#define PAGED_ROOMS 1234
#define CREATOR_THREADS 4

struct creator {
	const char *token;
	int first;
};

static void *
create_stripe(void *arg)
{
	struct creator *c = arg;
	char id[32];
	rpc_status st;

	for (int i = c->first; i < PAGED_ROOMS; i += CREATOR_THREADS) {
		snprintf(id, sizeof(id), "pg%04d", i);
		TH_CODE(create_room(c->token, id, NULL, NULL, NULL, &st), RPC_OK, &st);
	}
	return NULL;
}

static void
test_paging(void)
{
	static unsigned char seen[PAGED_ROOMS];
	struct creator cs[CREATOR_THREADS];
	pthread_t th[CREATOR_THREADS];
	Parley__V1__ListRoomsResponse *l;
	Parley__V1__ListMyRoomsResponse *my;
	char pager[64], token[200] = "", last[80] = "";
	int pages = 0, total = 0, late_seen = 0;
	rpc_status st;

	th_register_login(auth, "pager", pager, sizeof(pager));
	for (int i = 0; i < CREATOR_THREADS; i++) {
		cs[i] = (struct creator){.token = pager, .first = i};
		TH_CHECK(pthread_create(&th[i], NULL, create_stripe, &cs[i]) == 0, "thread");
	}
	for (int i = 0; i < CREATOR_THREADS; i++)
		pthread_join(th[i], NULL);

	/* Default page size. */
	TH_CODE(list_rooms(pager, 0, NULL, &l, &st), RPC_OK, &st);
	TH_CHECK(l->n_rooms == 50 && l->next_page_token[0] != '\0', "page_size 0 means 50");
	free_msg(l);
	TH_CODE(list_rooms(pager, 500, NULL, &l, &st), RPC_OK, &st);
	TH_CHECK(l->n_rooms == 500, "page_size 500 is served");
	free_msg(l);

	/* Every room exactly once, in order, while rooms are created behind and
	 * ahead of the cursor. */
	do {
		TH_CODE(list_rooms(pager, 97, token[0] ? token : NULL, &l, &st), RPC_OK, &st);
		TH_CHECK(l->n_rooms <= 97, "page within size");
		for (size_t i = 0; i < l->n_rooms; i++) {
			const char *id = l->rooms[i]->room_id;

			TH_CHECK(strcmp(last, id) < 0, "order: %s after %s", id, last);
			snprintf(last, sizeof(last), "%s", id);
			total++;
			if (strcmp(id, "pz-late") == 0)
				late_seen++;
			TH_CHECK(strcmp(id, "pa-late") != 0, "a room created behind the cursor");
			if (strncmp(id, "pg", 2) == 0 && strlen(id) == 6) {
				int n = atoi(id + 2);
				TH_CHECK(n >= 0 && n < PAGED_ROOMS && seen[n] == 0,
					 "%s seen once", id);
				seen[n] = 1;
				TH_CHECK(l->rooms[i]->member_count == 1 &&
						 strcmp(l->rooms[i]->created_by, "pager") == 0,
					 "member_count and creator of %s", id);
			}
		}
		TH_CHECK(l->next_page_token[0] == '\0' || l->n_rooms == 97,
			 "only the last page is short");
		snprintf(token, sizeof(token), "%s", l->next_page_token);
		free_msg(l);
		if (++pages == 3) {
			TH_CODE(create_room(pager, "pa-late", NULL, NULL, NULL, &st), RPC_OK, &st);
			TH_CODE(create_room(pager, "pz-late", NULL, NULL, NULL, &st), RPC_OK, &st);
		}
		TH_CHECK(pages < 100, "paging ends");
	} while (token[0] != '\0');
	for (int i = 0; i < PAGED_ROOMS; i++)
		TH_CHECK(seen[i] == 1, "pg%04d listed", i);
	TH_CHECK(late_seen == 1, "a room created ahead of the cursor is listed once");
	TH_CHECK(total >= PAGED_ROOMS + 2, "%d rooms listed", total);

	/* ListMyRooms is capped at the first 1000 in room_id order. */
	TH_CODE(list_my_rooms(pager, &my, &st), RPC_OK, &st);
	TH_CHECK(my->n_rooms == 1000, "capped at 1000, got %zu", my->n_rooms);
	TH_CHECK(strcmp(my->rooms[0]->room_id, "pa-late") == 0 &&
			 strcmp(my->rooms[1]->room_id, "pg0000") == 0 &&
			 strcmp(my->rooms[999]->room_id, "pg0998") == 0,
		 "the first 1000 in order");
	free_msg(my);
	printf("ok paging through %d rooms returns each exactly once (%d pages)\n", PAGED_ROOMS,
	       pages);
}

/* ---- 50 concurrent members ------------------------------------------------------------ */

#define MEMBERS 50
#define ROUNDS 6

struct member {
	int index;
	char user[40];
	char token[64];
};

static void *
member_main(void *arg)
{
	struct member *m = arg;
	Parley__V1__JoinRoomResponse *j;
	rpc_status st;
	bool in;

	snprintf(m->user, sizeof(m->user), "crowd%02d", m->index);
	th_register_login(auth, m->user, m->token, sizeof(m->token));
	for (int r = 0; r < ROUNDS; r++) {
		TH_CODE(join_room(m->token, "busy", &j, &st), RPC_OK, &st);
		TH_CHECK(j->room->member_count >= 1 && j->room->member_count <= MEMBERS + 1,
			 "count %u in range", j->room->member_count);
		free_msg(j);
		if (r == ROUNDS - 1 && m->index % 2 == 0)
			break; /* even members stay */
		TH_CODE(leave_room(m->token, "busy", &st), RPC_OK, &st);
		TH_CODE(is_member(m->token, "busy", m->user, &in, &st), RPC_OK, &st);
		TH_CHECK(!in, "%s still a member after LeaveRoom returned", m->user);
	}
	return NULL;
}

static void
test_concurrent_members(void)
{
	static struct member ms[MEMBERS];
	pthread_t th[MEMBERS];
	Parley__V1__GetRoomResponse *g;
	Parley__Internal__V1__ListChangesResponse *c;
	int state[MEMBERS] = {0};
	uint64_t head0 = change_head(), after;
	size_t changes = 0;
	rpc_status st;

	TH_CODE(create_room(alice, "busy", NULL, NULL, NULL, &st), RPC_OK, &st);
	for (int i = 0; i < MEMBERS; i++) {
		ms[i].index = i;
		TH_CHECK(pthread_create(&th[i], NULL, member_main, &ms[i]) == 0, "thread");
	}
	for (int i = 0; i < MEMBERS; i++)
		pthread_join(th[i], NULL);

	TH_CODE(get_room(alice, "busy", &g, &st), RPC_OK, &st);
	TH_CHECK(g->room->member_count == 1 + MEMBERS / 2, "member_count %u, want %d",
		 g->room->member_count, 1 + MEMBERS / 2);
	TH_CHECK(g->n_members == g->room->member_count, "%zu members listed, count %u",
		 g->n_members, g->room->member_count);
	for (size_t i = 0; i < g->n_members; i++) {
		const char *u = g->members[i];
		TH_CHECK(strcmp(u, "alice") == 0 ||
				 (strncmp(u, "crowd", 5) == 0 && atoi(u + 5) % 2 == 0),
			 "%s should not be a member", u);
		TH_CHECK(i == 0 || strcmp(g->members[i - 1], u) < 0, "members sorted, unique");
	}
	free_msg(g);

	/* The log agrees: per user, joins and leaves alternate, starting with a
	 * join, and the ones left joined are the members. */
	for (after = head0;;) {
		TH_CODE(list_changes(after, 1000, &c, &st), RPC_OK, &st);
		if (c->n_changes == 0) {
			free_msg(c);
			break;
		}
		for (size_t i = 0; i < c->n_changes; i++) {
			const Parley__V1__Event *ev = c->changes[i];
			int u;

			TH_CHECK(ev->seq == after + 1 + i, "gap-free seq");
			TH_CHECK(strcmp(ev->room_id, "busy") == 0, "only busy changed");
			changes++;
			if (strcmp(ev->sender, "alice") == 0)
				continue;
			u = atoi(ev->sender + 5);
			TH_CHECK(u >= 0 && u < MEMBERS, "sender %s", ev->sender);
			TH_CHECK((int)ev->membership->kind == (state[u] ? LEFT : JOINED),
				 "%s: %s twice in a row", ev->sender, state[u] ? "left" : "joined");
			state[u] = !state[u];
		}
		after = c->changes[c->n_changes - 1]->seq;
		free_msg(c);
	}
	for (int i = 0; i < MEMBERS; i++)
		TH_CHECK(state[i] == (i % 2 == 0), "crowd%02d ends %s", i,
			 i % 2 == 0 ? "joined" : "left");
	TH_CHECK(changes == 1 + MEMBERS * ROUNDS * 2 - MEMBERS / 2, "%zu changes", changes);
	printf("ok %d concurrent members: member_count, members and the log agree\n", MEMBERS);
}

/* ---- restart, and auth in another process going away ---------------------------------- */

static void
test_restart(void)
{
	Parley__V1__ListRoomsResponse *l;
	Parley__V1__GetRoomResponse *g;
	uint64_t head = change_head();
	char token[200];
	rpc_status st;

	TH_CODE(list_rooms(alice, 3, NULL, &l, &st), RPC_OK, &st);
	snprintf(token, sizeof(token), "%s", l->next_page_token);
	free_msg(l);
	TH_CHECK(th_stop(&d) == 0, "parleyd exits 0 on SIGTERM");
	TH_CHECK(th_restart(&d), "restart");
	TH_CHECK(change_head() == head, "the log survives a restart");
	TH_CODE(list_rooms(alice, 3, token, &l, &st), RPC_OK, &st);
	TH_CHECK(l->n_rooms == 3, "a page token outlives a restart");
	free_msg(l);
	TH_CODE(get_room(alice, "lobby", &g, &st), RPC_OK, &st);
	TH_CHECK(g->room->member_count == 2 && g->n_members == 2, "lobby kept its members");
	free_msg(g);
	TH_CODE(get_room(alice, "general", &g, &st), RPC_OK, &st);
	TH_CHECK(strcmp(g->room->created_by, "parley") == 0, "general not recreated");
	free_msg(g);
	printf("ok rooms, members, log and page tokens survive a restart\n");
}

static void
test_auth_down(void)
{
	th_daemon a = {0}, r = {0};
	rpc_client *saved_auth = auth, *saved_rooms = rooms;
	char token[64];
	rpc_status st;
	int64_t t0, took;

	TH_CHECK(th_start(&a, "auth"), "start auth alone");
	r.extra[0] = "--auth";
	r.extra[1] = a.auth;
	TH_CHECK(th_start(&r, "rooms"), "start rooms alone, pointed at auth");
	auth = th_client(a.auth);
	rooms = th_client(r.rooms);

	th_register_login(auth, "remote", token, sizeof(token));
	TH_CODE(join_room(token, "general", NULL, &st), RPC_OK, &st);

	TH_CHECK(th_stop(&a) == 0, "auth exits");
	t0 = rpc_now_ms();
	TH_CODE(get_room(token, "general", NULL, &st), RPC_UNAVAILABLE, &st);
	took = rpc_now_ms() - t0;
	TH_CHECK(took < 3000, "UNAVAILABLE after %lld ms of a %d ms timeout",
		 (long long)took, TIMEOUT_MS);

	TH_CHECK(th_restart(&a), "auth back");
	TH_CODE(get_room(token, "general", NULL, &st), RPC_OK, &st);

	rpc_client_close(rooms);
	rpc_client_close(auth);
	auth = saved_auth;
	rooms = saved_rooms;
	TH_CHECK(th_stop(&r) == 0, "rooms exits 0");
	TH_CHECK(th_stop(&a) == 0, "auth exits 0");
	th_cleanup(&r);
	th_cleanup(&a);
	printf("ok auth down: UNAVAILABLE in %lld ms; back when auth is\n", (long long)took);
}

int
main(void)
{
	TH_CHECK(th_start(&d, "auth,rooms"), "start parleyd");
	auth = th_client(d.auth);
	rooms = th_client(d.rooms);
	feed = th_client(d.rooms_internal);
	th_register_login(auth, "alice", alice, sizeof(alice));
	th_register_login(auth, "bob", bob, sizeof(bob));

	test_general_on_fresh_dir();
	test_room_lifecycle();
	test_bad_input();
	test_authentication();
	test_change_feed();
	test_paging();
	test_concurrent_members();
	test_restart();
	test_auth_down();

	rpc_client_close(feed);
	rpc_client_close(rooms);
	rpc_client_close(auth);
	TH_CHECK(th_stop(&d) == 0, "parleyd exits 0 on SIGTERM");
	th_cleanup(&d);
	return 0;
}

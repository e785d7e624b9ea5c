/* members.c — see members.h. */
#include "members.h"

#include <stdio.h>

#include "parley/v1/rooms.pb-c.h"

rpc_code
members_check(rpc_client *rooms, const char *room, const char *user, const char *token,
	      int64_t deadline_ms, bool *member, rpc_status *st)
{
	int role;

	return members_check_role(rooms, room, user, token, deadline_ms, member, &role, st);
}

rpc_code
members_check_role(rpc_client *rooms, const char *room, const char *user, const char *token,
		   int64_t deadline_ms, bool *member, int *role, rpc_status *st)
{
	Parley__V1__IsMemberRequest req = PARLEY__V1__IS_MEMBER_REQUEST__INIT;
	Parley__V1__IsMemberResponse *resp;
	int64_t cap = rpc_now_ms() + MEMBERS_TIMEOUT_MS;
	rpc_call_opts opts = {.token = token};
	char why[RPC_STATUS_MESSAGE_MAX];
	rpc_code code;

	*member = false;
	*role = 0;
	if (user == NULL || user[0] == '\0')
		return rpc_status_set(st, RPC_INTERNAL, "membership check without a user id");
	opts.deadline_ms = deadline_ms != 0 && deadline_ms < cap ? deadline_ms : cap;
	req.room_id = (char *)room;
	req.user_id = (char *)user;
	code = rpc_client_call(rooms, &parley__v1__rooms__descriptor, "IsMember", &req.base,
			       (ProtobufCMessage **)&resp, &opts, st);
	switch (code) {
	case RPC_OK:
		*member = resp->member;
		*role = resp->member ? (int)resp->role : 0;
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		return RPC_OK;
	case RPC_NOT_FOUND:
		return rpc_status_set(st, RPC_NOT_FOUND, "room '%s' does not exist", room);
	case RPC_UNAUTHENTICATED:
		return code;
	case RPC_PERMISSION_DENIED:
		/* The rooms service refused to answer for this user: the
		 * same as not being a member. */
		return RPC_OK;
	case RPC_DEADLINE_EXCEEDED:
	case RPC_UNAVAILABLE:
		/* st->message is the reason: quoted, never formatted from itself. */
		snprintf(why, sizeof(why), "%s", st->message);
		return rpc_status_set(st, RPC_UNAVAILABLE, "rooms service unavailable: %s", why);
	default:
		snprintf(why, sizeof(why), "%s", st->message);
		return rpc_status_set(st, RPC_INTERNAL, "rooms service error: %s %s",
				      rpc_code_name(code), why);
	}
}

rpc_code
members_require(rpc_call *call, rpc_client *rooms, const char *room)
{
	rpc_status st = {0};
	bool member;

	if (members_check(rooms, room, rpc_call_caller(call), rpc_call_token(call),
			  rpc_call_deadline(call), &member, &st) != RPC_OK)
		return rpc_call_fail_status(call, &st);
	if (!member)
		return rpc_call_fail(call, RPC_PERMISSION_DENIED,
				     "you are not a member of room '%s'", room);
	return RPC_OK;
}

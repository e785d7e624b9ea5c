/*
 * social.c — the calls for profiles, moderation, direct rooms, edits,
 * typing and unread counts; see parley.h. Each call fills its request,
 * makes it through parley__call and checks what the reply must carry.
 */
#include "libparley_int.h"

#include <stdlib.h>
#include <string.h>

#define AUTH PARLEY_AUTH, &parley__v1__auth__descriptor
#define ROOMS PARLEY_ROOMS, &parley__v1__rooms__descriptor
#define MESSAGING PARLEY_MESSAGING, &parley__v1__messaging__descriptor

static void
clear_out(void *out)
{
	if (out != NULL)
		*(void **)out = NULL;
}

/* A call whose reply the caller does not want. */
static rpc_code
call_plain(parley_conn *c, parley_service s, const ProtobufCServiceDescriptor *svc,
	   const char *method, const ProtobufCMessage *req, uint32_t timeout_ms, rpc_status *st)
{
	ProtobufCMessage *resp;
	rpc_code code = parley__call(c, s, svc, method, req, &resp, timeout_ms, st);

	parley_free(resp);
	return code;
}

static char *
or_empty(const char *s)
{
	return (char *)(s != NULL ? s : "");
}

/* Auth ------------------------------------------------------------------- */

rpc_code
parley_update_profile(parley_conn *c, const char *display_name, const char *email,
		      Parley__V1__UpdateProfileResponse **out, rpc_status *st)
{
	Parley__V1__UpdateProfileRequest req = PARLEY__V1__UPDATE_PROFILE_REQUEST__INIT;
	Parley__V1__UpdateProfileResponse *resp;
	rpc_code code;

	clear_out(out);
	req.display_name = or_empty(display_name);
	req.email = or_empty(email);
	code = parley__call(c, AUTH, "UpdateProfile", &req.base, (ProtobufCMessage **)&resp, 0, st);
	if (code != RPC_OK)
		return code;
	if (resp->user == NULL)
		return parley__bad_reply(resp, PARLEY_AUTH, "UpdateProfile without the user", st);
	return parley__deliver(resp, out, st);
}

rpc_code
parley_change_password(parley_conn *c, const char *old_password, const char *new_password,
		       rpc_status *st)
{
	Parley__V1__ChangePasswordRequest req = PARLEY__V1__CHANGE_PASSWORD_REQUEST__INIT;

	req.old_password = (char *)old_password;
	req.new_password = (char *)new_password;
	return call_plain(c, AUTH, "ChangePassword", &req.base, 0, st);
}

rpc_code
parley_delete_account(parley_conn *c, const char *password, rpc_status *st)
{
	Parley__V1__DeleteAccountRequest req = PARLEY__V1__DELETE_ACCOUNT_REQUEST__INIT;
	rpc_code code;

	req.password = (char *)password;
	code = call_plain(c, AUTH, "DeleteAccount", &req.base, 0, st);
	if (code == RPC_OK)
		parley_set_token(c, NULL, NULL);
	return code;
}

rpc_code
parley_get_users(parley_conn *c, const char *const *user_ids, size_t n, uint32_t timeout_ms,
		 Parley__V1__GetUsersResponse **out, rpc_status *st)
{
	Parley__V1__GetUsersRequest req = PARLEY__V1__GET_USERS_REQUEST__INIT;
	Parley__V1__GetUsersResponse *resp;
	rpc_code code;

	clear_out(out);
	if (n > PARLEY_GET_USERS_MAX)
		return rpc_status_set(st, RPC_INVALID_ARGUMENT, "at most 100 users at a time");
	req.user_ids = (char **)user_ids;
	req.n_user_ids = n;
	code = parley__call(c, AUTH, "GetUsers", &req.base, (ProtobufCMessage **)&resp, timeout_ms,
			    st);
	if (code != RPC_OK)
		return code;
	if (resp->n_users > n)
		return parley__bad_reply(resp, PARLEY_AUTH, "GetUsers with users not asked for", st);
	for (size_t i = 0; i < resp->n_users; i++)
		if (resp->users[i] == NULL || resp->users[i]->user_id[0] == '\0')
			return parley__bad_reply(resp, PARLEY_AUTH, "GetUsers with a user without an id",
						 st);
	return parley__deliver(resp, out, st);
}

/* Rooms ------------------------------------------------------------------ */

rpc_code
parley_members_list(parley_conn *c, const char *room_id, uint32_t page_size,
		    const char *page_token, Parley__V1__ListMembersResponse **out, rpc_status *st)
{
	Parley__V1__ListMembersRequest req = PARLEY__V1__LIST_MEMBERS_REQUEST__INIT;
	Parley__V1__ListMembersResponse *resp;
	rpc_code code;

	clear_out(out);
	req.room_id = (char *)room_id;
	req.page_size = page_size;
	req.page_token = or_empty(page_token);
	code = parley__call(c, ROOMS, "ListMembers", &req.base, (ProtobufCMessage **)&resp, 0, st);
	if (code != RPC_OK)
		return code;
	for (size_t i = 0; i < resp->n_members; i++)
		if (resp->members[i] == NULL || resp->members[i]->user_id[0] == '\0')
			return parley__bad_reply(resp, PARLEY_ROOMS,
						 "ListMembers with a member without an id", st);
	if (page_token != NULL && page_token[0] != '\0' &&
	    strcmp(resp->next_page_token, page_token) == 0)
		return parley__bad_reply(resp, PARLEY_ROOMS, "ListMembers that pages in a circle", st);
	return parley__deliver(resp, out, st);
}

rpc_code
parley_room_update(parley_conn *c, const char *room_id, const char *name, const char *topic,
		   Parley__V1__UpdateRoomResponse **out, rpc_status *st)
{
	Parley__V1__UpdateRoomRequest req = PARLEY__V1__UPDATE_ROOM_REQUEST__INIT;
	Parley__V1__UpdateRoomResponse *resp;
	rpc_code code;

	clear_out(out);
	req.room_id = (char *)room_id;
	req.name = or_empty(name);
	req.topic = or_empty(topic);
	code = parley__call(c, ROOMS, "UpdateRoom", &req.base, (ProtobufCMessage **)&resp, 0, st);
	if (code != RPC_OK)
		return code;
	if (resp->room == NULL)
		return parley__bad_reply(resp, PARLEY_ROOMS, "UpdateRoom without the room", st);
	return parley__deliver(resp, out, st);
}

rpc_code
parley_set_role(parley_conn *c, const char *room_id, const char *user_id, Parley__V1__Role role,
		rpc_status *st)
{
	Parley__V1__SetRoleRequest req = PARLEY__V1__SET_ROLE_REQUEST__INIT;

	req.room_id = (char *)room_id;
	req.user_id = (char *)user_id;
	req.role = role;
	return call_plain(c, ROOMS, "SetRole", &req.base, 0, st);
}

rpc_code
parley_kick(parley_conn *c, const char *room_id, const char *user_id, const char *reason,
	    rpc_status *st)
{
	Parley__V1__KickRequest req = PARLEY__V1__KICK_REQUEST__INIT;

	req.room_id = (char *)room_id;
	req.user_id = (char *)user_id;
	req.reason = or_empty(reason);
	return call_plain(c, ROOMS, "Kick", &req.base, 0, st);
}

rpc_code
parley_ban(parley_conn *c, const char *room_id, const char *user_id, const char *reason,
	   rpc_status *st)
{
	Parley__V1__BanRequest req = PARLEY__V1__BAN_REQUEST__INIT;

	req.room_id = (char *)room_id;
	req.user_id = (char *)user_id;
	req.reason = or_empty(reason);
	return call_plain(c, ROOMS, "Ban", &req.base, 0, st);
}

rpc_code
parley_unban(parley_conn *c, const char *room_id, const char *user_id, rpc_status *st)
{
	Parley__V1__UnbanRequest req = PARLEY__V1__UNBAN_REQUEST__INIT;

	req.room_id = (char *)room_id;
	req.user_id = (char *)user_id;
	return call_plain(c, ROOMS, "Unban", &req.base, 0, st);
}

rpc_code
parley_invite(parley_conn *c, const char *room_id, const char *user_id, rpc_status *st)
{
	Parley__V1__InviteRequest req = PARLEY__V1__INVITE_REQUEST__INIT;

	req.room_id = (char *)room_id;
	req.user_id = (char *)user_id;
	return call_plain(c, ROOMS, "Invite", &req.base, 0, st);
}

rpc_code
parley_open_direct(parley_conn *c, const char *user_id, Parley__V1__OpenDirectResponse **out,
		   rpc_status *st)
{
	Parley__V1__OpenDirectRequest req = PARLEY__V1__OPEN_DIRECT_REQUEST__INIT;
	Parley__V1__OpenDirectResponse *resp;
	rpc_code code;

	clear_out(out);
	req.user_id = (char *)user_id;
	code = parley__call(c, ROOMS, "OpenDirect", &req.base, (ProtobufCMessage **)&resp, 0, st);
	if (code != RPC_OK)
		return code;
	if (resp->room == NULL || resp->room->room_id[0] == '\0')
		return parley__bad_reply(resp, PARLEY_ROOMS, "OpenDirect without the room", st);
	return parley__deliver(resp, out, st);
}

/* Messaging -------------------------------------------------------------- */

rpc_code
parley_edit(parley_conn *c, const char *room_id, uint64_t seq, const char *text,
	    Parley__V1__EditResponse **out, rpc_status *st)
{
	Parley__V1__EditRequest req = PARLEY__V1__EDIT_REQUEST__INIT;
	Parley__V1__EditResponse *resp;
	char id[PARLEY_CLIENT_MSG_ID_LEN + 1];
	rpc_code code;

	clear_out(out);
	parley_new_client_msg_id(id);
	req.room_id = (char *)room_id;
	req.seq = seq;
	req.text = (char *)text;
	req.client_msg_id = id;
	code = parley__call(c, MESSAGING, "Edit", &req.base, (ProtobufCMessage **)&resp, 0, st);
	if (code != RPC_OK)
		return code;
	return parley__deliver(resp, out, st);
}

rpc_code
parley_delete(parley_conn *c, const char *room_id, uint64_t seq, Parley__V1__DeleteResponse **out,
	      rpc_status *st)
{
	Parley__V1__DeleteRequest req = PARLEY__V1__DELETE_REQUEST__INIT;
	Parley__V1__DeleteResponse *resp;
	char id[PARLEY_CLIENT_MSG_ID_LEN + 1];
	rpc_code code;

	clear_out(out);
	parley_new_client_msg_id(id);
	req.room_id = (char *)room_id;
	req.seq = seq;
	req.client_msg_id = id;
	code = parley__call(c, MESSAGING, "Delete", &req.base, (ProtobufCMessage **)&resp, 0, st);
	if (code != RPC_OK)
		return code;
	return parley__deliver(resp, out, st);
}

rpc_code
parley_set_typing(parley_conn *c, const char *room_id, bool typing, uint32_t timeout_ms,
		  rpc_status *st)
{
	Parley__V1__SetTypingRequest req = PARLEY__V1__SET_TYPING_REQUEST__INIT;

	req.room_id = (char *)room_id;
	req.typing = typing;
	return call_plain(c, MESSAGING, "SetTyping", &req.base, timeout_ms, st);
}

rpc_code
parley_mark_read(parley_conn *c, const char *room_id, uint64_t seq, uint32_t timeout_ms,
		 rpc_status *st)
{
	Parley__V1__MarkReadRequest req = PARLEY__V1__MARK_READ_REQUEST__INIT;

	req.room_id = (char *)room_id;
	req.seq = seq;
	return call_plain(c, MESSAGING, "MarkRead", &req.base, timeout_ms, st);
}

rpc_code
parley_get_unread(parley_conn *c, const char *const *room_ids, size_t n, uint32_t timeout_ms,
		  Parley__V1__GetUnreadResponse **out, rpc_status *st)
{
	Parley__V1__GetUnreadRequest req = PARLEY__V1__GET_UNREAD_REQUEST__INIT;
	Parley__V1__GetUnreadResponse *resp;
	rpc_code code;

	clear_out(out);
	req.room_ids = (char **)room_ids;
	req.n_room_ids = n;
	code = parley__call(c, MESSAGING, "GetUnread", &req.base, (ProtobufCMessage **)&resp,
			    timeout_ms, st);
	if (code != RPC_OK)
		return code;
	for (size_t i = 0; i < resp->n_rooms; i++)
		if (resp->rooms[i] == NULL || resp->rooms[i]->room_id[0] == '\0')
			return parley__bad_reply(resp, PARLEY_MESSAGING,
						 "GetUnread with a room without an id", st);
	return parley__deliver(resp, out, st);
}

/*
 * moderation.c — UpdateRoom, SetRole, Kick, Ban, Unban, Invite.
 *
 * Who may do what (roles: MEMBER < MODERATOR < ADMIN):
 *   UpdateRoom, Invite   MODERATOR or ADMIN
 *   Kick, Ban, Unban     MODERATOR or ADMIN, over a user whose role is
 *                        strictly lower (a non-member has none)
 *   SetRole              ADMIN; the room keeps at least one ADMIN
 * A caller who is not a member is PERMISSION_DENIED "you are not a member
 * of room 'x'", or NOT_FOUND "no room 'x'" when the room is PRIVATE or
 * DIRECT and hidden from the caller (rooms_hidden_from_caller); a DIRECT
 * room has no moderation (FAILED_PRECONDITION).
 * Every change is logged in the room's timeline (changes.h) in the same
 * write transaction: KICKED, BANNED, UNBANNED, INVITED with actor and
 * reason, RoomUpdate. A call that changes nothing (a ban of the banned, an
 * update to the same name) succeeds and logs nothing. SetRole is not
 * logged: the timeline has no event for a role (ListMembers shows roles).
 *
 * Locking: each call is one write transaction between changes_write_begin
 * and changes_write_end; an Auth call (Invite) is made before it begins.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "rooms_int.h"

/* One moderation call's transaction. */
struct mod {
	rooms_service *r;
	rpc_call *call;
	store_txn *txn;
	room_rec *rec;
	rooms_member me;
	rooms_frames fr;
};

/*
 * Begins the write transaction of a call on room_id that needs role need.
 * RPC_OK with the transaction open; otherwise the call is failed and the
 * transaction ended.
 */
static rpc_code
mod_begin(struct mod *m, rpc_call *call, rooms_service *r, const char *room_id,
	  Parley__V1__Role need, const char *action)
{
	const char *caller = rpc_call_caller(call);
	store_err err;

	*m = (struct mod){.r = r, .call = call};
	if ((err = changes_write_begin(r->log, &m->txn)) != STORE_OK)
		return svc_fail_store(call, err, action);
	err = rooms_read_room(r, m->txn, call, room_id, &m->rec);
	if (err == STORE_OK)
		err = rooms_member_get(r, m->txn, m->rec, caller, &m->me);
	/* A stranger to a room it may not know of: "no room". */
	if (err == STORE_OK && m->me.role == PARLEY__V1__ROLE__ROLE_UNSPECIFIED)
		err = rooms_hidden_from_caller(r, m->txn, call, m->rec);
	if (err != STORE_OK) {
		(void)changes_write_end(r->log, m->txn, ROOMS_ABORT, NULL);
		if (err == STORE_NOTFOUND)
			return rooms_fail_no_room(call, room_id);
		return svc_fail_store(call, err, action);
	}
	if (rooms_visibility(m->rec) == PARLEY__V1__VISIBILITY__DIRECT) {
		(void)changes_write_end(r->log, m->txn, ROOMS_ABORT, NULL);
		return rpc_call_fail(call, RPC_FAILED_PRECONDITION,
				     "room '%s' is a direct conversation: it has no moderation",
				     room_id);
	}
	if (m->me.role == PARLEY__V1__ROLE__ROLE_UNSPECIFIED) {
		(void)changes_write_end(r->log, m->txn, ROOMS_ABORT, NULL);
		return rpc_call_fail(call, RPC_PERMISSION_DENIED,
				     "you are not a member of room '%s'", room_id);
	}
	if (m->me.role < need) {
		(void)changes_write_end(r->log, m->txn, ROOMS_ABORT, NULL);
		return rpc_call_fail(call, RPC_PERMISSION_DENIED,
				     "%s in room '%s' needs the %s role%s; you are %s", action,
				     room_id, rooms_role_name(need),
				     need == PARLEY__V1__ROLE__ADMIN ? "" : " or above",
				     rooms_role_name(m->me.role));
	}
	return RPC_OK;
}

/* Fails the call with code and message and ends the transaction unwritten. */
static rpc_code __attribute__((format(printf, 3, 4)))
mod_refuse(struct mod *m, rpc_code code, const char *fmt, ...)
{
	char message[RPC_STATUS_MESSAGE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	(void)changes_write_end(m->r->log, m->txn, ROOMS_ABORT, NULL);
	return rpc_call_fail(m->call, code, "%s", message);
}

/* Commits err's outcome (STORE_OK: commit) and answers. */
static rpc_code
mod_end(struct mod *m, store_err err, const char *action)
{
	err = changes_write_end(m->r->log, m->txn, err, m->fr.first);
	if (err != STORE_OK)
		return svc_fail_store(m->call, err, action);
	return RPC_OK;
}

/* The target's role must be strictly below the caller's. */
static bool
outranks(const struct mod *m, const rooms_member *target)
{
	return target->role < m->me.role;
}

/* PERMISSION_DENIED for acting on user_id, whose role (target) is not
 * below the caller's; what says which act, on whom ("kick only members"). */
static rpc_code
refuse_outranked(struct mod *m, const char *what, const char *user_id, const rooms_member *target)
{
	return mod_refuse(m, RPC_PERMISSION_DENIED,
			  "you (%s) may %s whose role is below yours; '%s' is %s",
			  rooms_role_name(m->me.role), what, user_id,
			  rooms_role_name(target->role));
}

static rpc_code
check_reason(rpc_call *call, const char *reason)
{
	if (svc_valid_text(reason, 0, REASON_MAX_CHARS))
		return RPC_OK;
	return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
			     "reason must be at most %d characters without control characters",
			     REASON_MAX_CHARS);
}

/* The arguments of Kick and Ban: a room, the user to remove, a reason. */
static rpc_code
check_removal(rpc_call *call, const char *room_id, const char *user_id, const char *reason)
{
	rpc_code code;

	if ((code = rooms_check_room_id(call, room_id)) != RPC_OK ||
	    (code = rooms_check_user_id(call, "user_id", user_id)) != RPC_OK ||
	    (code = check_reason(call, reason)) != RPC_OK)
		return code;
	return RPC_OK;
}

/* ---- UpdateRoom ---------------------------------------------------------------- */

ROOMS_HANDLER(rooms_handle_update_room)
{
	const Parley__V1__UpdateRoomRequest *req = (const void *)reqm;
	Parley__V1__UpdateRoomResponse *resp = (void *)respm;
	Parley__V1__Event ev = PARLEY__V1__EVENT__INIT;
	Parley__V1__RoomUpdate ru = PARLEY__V1__ROOM_UPDATE__INIT;
	struct mod m;
	bool same;
	store_err err;
	rpc_code code;

	if ((code = rooms_check_room_id(call, req->room_id)) != RPC_OK)
		return code;
	if ((code = rooms_check_name_topic(call, req->name, req->topic)) != RPC_OK)
		return code;
	if ((code = mod_begin(&m, call, ctx, req->room_id, PARLEY__V1__ROLE__MODERATOR,
			      "updating the room")) != RPC_OK)
		return code;
	same = (req->name[0] == '\0' || strcmp(req->name, m.rec->name) == 0) &&
	       (req->topic[0] == '\0' || strcmp(req->topic, m.rec->topic) == 0);
	if (req->name[0] != '\0')
		m.rec->name = req->name;
	if (req->topic[0] != '\0')
		m.rec->topic = req->topic;
	resp->room = rooms_room_to_wire(call, m.rec);
	if (same)
		return mod_end(&m, STORE_OK, "update room"); /* nothing to log */
	err = rooms_write_room(m.r, m.txn, call, m.rec, 0);
	if (err == STORE_OK) {
		ru.name = m.rec->name;
		ru.topic = m.rec->topic;
		ev.room_id = m.rec->room_id;
		ev.sender = (char *)rpc_call_caller(call);
		ev.body_case = PARLEY__V1__EVENT__BODY_ROOM_UPDATE;
		ev.room_update = &ru;
		err = rooms_log_event(m.r, m.txn, call, &ev, &m.fr);
	}
	return mod_end(&m, err, "update room");
}

/* ---- SetRole ---------------------------------------------------------------------- */

ROOMS_HANDLER(rooms_handle_set_role)
{
	const Parley__V1__SetRoleRequest *req = (const void *)reqm;
	rooms_member target;
	struct mod m;
	bool other_admin = true;
	store_err err;
	rpc_code code;

	if ((code = rooms_check_room_id(call, req->room_id)) != RPC_OK ||
	    (code = rooms_check_user_id(call, "user_id", req->user_id)) != RPC_OK)
		return code;
	if (req->role != PARLEY__V1__ROLE__MEMBER && req->role != PARLEY__V1__ROLE__MODERATOR &&
	    req->role != PARLEY__V1__ROLE__ADMIN)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "role must be MEMBER, MODERATOR or ADMIN (got %d)",
				     (int)req->role);
	if ((code = mod_begin(&m, call, ctx, req->room_id, PARLEY__V1__ROLE__ADMIN,
			      "setting roles")) != RPC_OK)
		return code;
	err = rooms_member_get(m.r, m.txn, m.rec, req->user_id, &target);
	if (err == STORE_OK && target.role == PARLEY__V1__ROLE__ROLE_UNSPECIFIED)
		return mod_refuse(&m, RPC_FAILED_PRECONDITION,
				  "user '%s' is not a member of room '%s'", req->user_id,
				  req->room_id);
	if (err != STORE_OK || target.role == req->role)
		return mod_end(&m, err, "set role");
	if (target.role == PARLEY__V1__ROLE__ADMIN)
		err = rooms_other_admin(m.r, m.txn, m.rec, req->user_id, &other_admin);
	if (err == STORE_OK && !other_admin)
		return mod_refuse(&m, RPC_FAILED_PRECONDITION,
				  "room '%s' must keep at least one ADMIN: make another member "
				  "ADMIN first",
				  req->room_id);
	target.role = req->role;
	if (err == STORE_OK)
		err = rooms_member_set_role(m.r, m.txn, m.rec, req->user_id, &target);
	if (err == STORE_OK)
		plog_info("rooms", "%s made %s %s of %s", rpc_call_caller(call), req->user_id,
			  rooms_role_name(req->role), req->room_id);
	return mod_end(&m, err, "set role");
}

/* ---- Kick, Ban, Unban ------------------------------------------------------------- */

ROOMS_HANDLER(rooms_handle_kick)
{
	const Parley__V1__KickRequest *req = (const void *)reqm;
	rooms_member target;
	struct mod m;
	store_err err;
	rpc_code code;

	if ((code = check_removal(call, req->room_id, req->user_id, req->reason)) != RPC_OK)
		return code;
	if ((code = mod_begin(&m, call, ctx, req->room_id, PARLEY__V1__ROLE__MODERATOR,
			      "kicking")) != RPC_OK)
		return code;
	err = rooms_member_get(m.r, m.txn, m.rec, req->user_id, &target);
	if (err != STORE_OK)
		return mod_end(&m, err, "kick");
	if (target.role == PARLEY__V1__ROLE__ROLE_UNSPECIFIED)
		return mod_refuse(&m, RPC_FAILED_PRECONDITION,
				  "user '%s' is not a member of room '%s'", req->user_id,
				  req->room_id);
	if (!outranks(&m, &target))
		return refuse_outranked(&m, "kick only members", req->user_id, &target);
	err = rooms_member_remove(m.r, m.txn, call, m.rec, req->user_id, target.role);
	if (err == STORE_OK)
		err = rooms_write_room(m.r, m.txn, call, m.rec, 0);
	if (err == STORE_OK)
		err = rooms_log_membership(m.r, m.txn, call, req->room_id, req->user_id,
					   rpc_call_caller(call),
					   PARLEY__V1__MEMBERSHIP_CHANGE__KIND__KICKED, req->reason,
					   &m.fr);
	return mod_end(&m, err, "kick");
}

ROOMS_HANDLER(rooms_handle_ban)
{
	const Parley__V1__BanRequest *req = (const void *)reqm;
	Parley__Store__V1__BanRecord ban = PARLEY__STORE__V1__BAN_RECORD__INIT;
	uint8_t key[PAIR_KEY_MAX], *buf;
	rooms_member target;
	struct mod m;
	size_t klen;
	bool banned = false;
	store_err err;
	rpc_code code;

	if ((code = check_removal(call, req->room_id, req->user_id, req->reason)) != RPC_OK)
		return code;
	if ((code = mod_begin(&m, call, ctx, req->room_id, PARLEY__V1__ROLE__MODERATOR,
			      "banning")) != RPC_OK)
		return code;
	err = rooms_member_get(m.r, m.txn, m.rec, req->user_id, &target);
	if (err == STORE_OK)
		err = rooms_is_banned(m.r, m.txn, req->room_id, req->user_id, &banned);
	if (err != STORE_OK)
		return mod_end(&m, err, "ban");
	if (!outranks(&m, &target))
		return refuse_outranked(&m, "ban only users", req->user_id, &target);
	if (banned)
		return mod_end(&m, STORE_OK, "ban"); /* already: nothing to log */

	ban.actor = (char *)rpc_call_caller(call);
	ban.reason = req->reason;
	ban.banned_at_ms = rpc_wall_ms();
	klen = rooms_pair_key(key, req->room_id, req->user_id);
	buf = rpc_call_alloc(call, parley__store__v1__ban_record__get_packed_size(&ban) + 1);
	err = store_put(m.txn, m.r->bans, key, klen, buf,
			parley__store__v1__ban_record__pack(&ban, buf), 0);
	if (err == STORE_OK) {
		err = store_del(m.txn, m.r->invites, key, klen);
		if (err == STORE_NOTFOUND)
			err = STORE_OK;
	}
	if (err == STORE_OK && target.role != PARLEY__V1__ROLE__ROLE_UNSPECIFIED) {
		err = rooms_member_remove(m.r, m.txn, call, m.rec, req->user_id, target.role);
		if (err == STORE_OK)
			err = rooms_write_room(m.r, m.txn, call, m.rec, 0);
	}
	if (err == STORE_OK)
		err = rooms_log_membership(m.r, m.txn, call, req->room_id, req->user_id,
					   ban.actor, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__BANNED,
					   req->reason, &m.fr);
	return mod_end(&m, err, "ban");
}

ROOMS_HANDLER(rooms_handle_unban)
{
	const Parley__V1__UnbanRequest *req = (const void *)reqm;
	uint8_t key[PAIR_KEY_MAX];
	struct mod m;
	store_err err;
	rpc_code code;

	if ((code = rooms_check_room_id(call, req->room_id)) != RPC_OK ||
	    (code = rooms_check_user_id(call, "user_id", req->user_id)) != RPC_OK)
		return code;
	/* A banned user is no member: any MODERATOR outranks them. */
	if ((code = mod_begin(&m, call, ctx, req->room_id, PARLEY__V1__ROLE__MODERATOR,
			      "unbanning")) != RPC_OK)
		return code;
	err = store_del(m.txn, m.r->bans, key, rooms_pair_key(key, req->room_id, req->user_id));
	if (err == STORE_NOTFOUND)
		return mod_refuse(&m, RPC_FAILED_PRECONDITION, "user '%s' is not banned from room '%s'",
				  req->user_id, req->room_id);
	if (err == STORE_OK)
		err = rooms_log_membership(m.r, m.txn, call, req->room_id, req->user_id,
					   rpc_call_caller(call),
					   PARLEY__V1__MEMBERSHIP_CHANGE__KIND__UNBANNED, "", &m.fr);
	return mod_end(&m, err, "unban");
}

/* ---- Invite ------------------------------------------------------------------------ */

ROOMS_HANDLER(rooms_handle_invite)
{
	const Parley__V1__InviteRequest *req = (const void *)reqm;
	Parley__Store__V1__InviteRecord inv = PARLEY__STORE__V1__INVITE_RECORD__INIT;
	uint8_t key[PAIR_KEY_MAX], buf[64];
	rooms_member target;
	struct mod m;
	bool banned = false, invited = false;
	store_err err;
	rpc_code code;

	if ((code = rooms_check_room_id(call, req->room_id)) != RPC_OK ||
	    (code = rooms_check_user_id(call, "user_id", req->user_id)) != RPC_OK)
		return code;
	if ((code = rooms_require_user(ctx, call, req->user_id)) != RPC_OK)
		return code;
	if ((code = mod_begin(&m, call, ctx, req->room_id, PARLEY__V1__ROLE__MODERATOR,
			      "inviting")) != RPC_OK)
		return code;
	err = rooms_member_get(m.r, m.txn, m.rec, req->user_id, &target);
	if (err == STORE_OK)
		err = rooms_is_banned(m.r, m.txn, req->room_id, req->user_id, &banned);
	if (err == STORE_OK)
		err = rooms_is_invited(m.r, m.txn, req->room_id, req->user_id, &invited);
	if (err != STORE_OK)
		return mod_end(&m, err, "invite");
	if (target.role != PARLEY__V1__ROLE__ROLE_UNSPECIFIED)
		return mod_refuse(&m, RPC_ALREADY_EXISTS, "user '%s' is already a member of room '%s'",
				  req->user_id, req->room_id);
	if (banned)
		return mod_refuse(&m, RPC_FAILED_PRECONDITION,
				  "user '%s' is banned from room '%s': unban them first",
				  req->user_id, req->room_id);
	if (invited)
		return mod_end(&m, STORE_OK, "invite"); /* already: nothing to log */
	inv.actor = (char *)rpc_call_caller(call);
	inv.invited_at_ms = rpc_wall_ms();
	err = store_put(m.txn, m.r->invites, key, rooms_pair_key(key, req->room_id, req->user_id),
			buf, parley__store__v1__invite_record__pack(&inv, buf), 0);
	if (err == STORE_OK)
		err = rooms_log_membership(m.r, m.txn, call, req->room_id, req->user_id, inv.actor,
					   PARLEY__V1__MEMBERSHIP_CHANGE__KIND__INVITED, "", &m.fr);
	return mod_end(&m, err, "invite");
}

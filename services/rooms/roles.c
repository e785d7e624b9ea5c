/*
 * roles.c — who is in a room and with which role (see rooms_int.h).
 *
 * rooms.members holds a MemberRecord per member. Older data holds "": such
 * a member is the room's ADMIN if they created it, else a MEMBER; the
 * creator "parley" (the service itself, for "general") is no one's ADMIN.
 * Both members of a DIRECT room are MEMBERs.
 *
 * Locking: none here; every function works in its caller's transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rooms_int.h"

#define ROLE_MAX PARLEY__V1__ROLE__ADMIN

const char *
rooms_role_name(Parley__V1__Role role)
{
	switch (role) {
	case PARLEY__V1__ROLE__MEMBER:
		return "MEMBER";
	case PARLEY__V1__ROLE__MODERATOR:
		return "MODERATOR";
	case PARLEY__V1__ROLE__ADMIN:
		return "ADMIN";
	default:
		return "no role";
	}
}

bool
rooms_member_decode(const room_rec *rec, const char *user, store_val v, rooms_member *m)
{
	Parley__Store__V1__MemberRecord *mr;

	m->role = PARLEY__V1__ROLE__ROLE_UNSPECIFIED;
	m->joined_at_ms = 0;
	if (v.len > 0) {
		mr = parley__store__v1__member_record__unpack(NULL, v.len, v.data);
		if (mr == NULL)
			return false;
		m->role = mr->role;
		m->joined_at_ms = mr->joined_at_ms;
		parley__store__v1__member_record__free_unpacked(mr, NULL);
		if ((unsigned)m->role > ROLE_MAX)
			return false;
	}
	if (m->role == PARLEY__V1__ROLE__ROLE_UNSPECIFIED)
		m->role = strcmp(user, rec->created_by) == 0 &&
				  strcmp(rec->created_by, ROOMS_SYSTEM_USER) != 0 &&
				  rooms_visibility(rec) != PARLEY__V1__VISIBILITY__DIRECT
			      ? PARLEY__V1__ROLE__ADMIN
			      : PARLEY__V1__ROLE__MEMBER;
	return true;
}

store_err
rooms_member_get(rooms_service *r, store_txn *txn, const room_rec *rec, const char *user,
		 rooms_member *m)
{
	uint8_t key[PAIR_KEY_MAX];
	store_val v;
	store_err err;

	m->role = PARLEY__V1__ROLE__ROLE_UNSPECIFIED;
	m->joined_at_ms = 0;
	err = store_get(txn, r->members, key, rooms_pair_key(key, rec->room_id, user), &v);
	if (err == STORE_NOTFOUND)
		return STORE_OK;
	if (err != STORE_OK)
		return err;
	return rooms_member_decode(rec, user, v, m) ? STORE_OK : STORE_CORRUPT;
}

store_err
rooms_member_set_role(rooms_service *r, store_txn *txn, const room_rec *rec, const char *user,
		      const rooms_member *m)
{
	Parley__Store__V1__MemberRecord mr = PARLEY__STORE__V1__MEMBER_RECORD__INIT;
	uint8_t key[PAIR_KEY_MAX], buf[32];
	size_t len;

	mr.role = m->role;
	mr.joined_at_ms = m->joined_at_ms;
	len = parley__store__v1__member_record__pack(&mr, buf); /* two varints: fits */
	return store_put(txn, r->members, key, rooms_pair_key(key, rec->room_id, user), buf, len,
			 0);
}

store_err
rooms_member_add(rooms_service *r, store_txn *txn, room_rec *rec, const char *user,
		 Parley__V1__Role role)
{
	rooms_member m = {.role = role, .joined_at_ms = rpc_wall_ms()};
	uint8_t key[PAIR_KEY_MAX];
	store_err err;

	if (rec->member_count == UINT32_MAX)
		return STORE_FULL;
	err = rooms_member_set_role(r, txn, rec, user, &m);
	if (err == STORE_OK)
		err = store_put(txn, r->user_rooms, key, rooms_pair_key(key, user, rec->room_id), "",
				0, 0);
	if (err == STORE_OK) {
		/* An invitation is spent by joining. */
		err = store_del(txn, r->invites, key, rooms_pair_key(key, rec->room_id, user));
		if (err == STORE_NOTFOUND)
			err = STORE_OK;
	}
	if (err == STORE_OK)
		rec->member_count++;
	return err;
}

/* Looking for an ADMIN, or else the best heir. */
struct heir_scan {
	const room_rec *rec;
	const uint8_t *prefix;
	size_t prefix_len;
	const char *skip;	/* a member not to count, or NULL */
	bool has_admin, damaged;
	rooms_member best;
	char best_user[RPC_USER_ID_MAX];
};

static bool
find_heir(void *arg, store_val key, store_val val)
{
	struct heir_scan *s = arg;
	size_t n = key.len - s->prefix_len;
	char user[RPC_USER_ID_MAX];
	rooms_member m;

	if (key.len <= s->prefix_len || memcmp(key.data, s->prefix, s->prefix_len) != 0)
		return false;
	if (n >= sizeof(user)) {
		s->damaged = true;
		return false;
	}
	memcpy(user, (const uint8_t *)key.data + s->prefix_len, n);
	user[n] = '\0';
	if (s->skip != NULL && strcmp(user, s->skip) == 0)
		return true;
	if (!rooms_member_decode(s->rec, user, val, &m)) {
		s->damaged = true;
		return false;
	}
	if (m.role == PARLEY__V1__ROLE__ADMIN) {
		s->has_admin = true;
		return false;
	}
	/* Highest role first, then who joined first (0: before this was
	 * kept, so earliest), then key order. */
	if (s->best_user[0] == '\0' || m.role > s->best.role ||
	    (m.role == s->best.role && m.joined_at_ms < s->best.joined_at_ms)) {
		s->best = m;
		memcpy(s->best_user, user, n + 1);
	}
	return true;
}

/* In txn: walks rec's members into s (stops at the first ADMIN). */
static store_err
walk_members(rooms_service *r, store_txn *txn, const room_rec *rec, struct heir_scan *s)
{
	uint8_t prefix[ROOM_ID_MAX + 1];
	store_err err;

	s->rec = rec;
	s->prefix = prefix;
	s->prefix_len = strlen(rec->room_id) + 1;
	memcpy(prefix, rec->room_id, s->prefix_len);
	err = store_scan(txn, r->members, prefix, s->prefix_len, false, find_heir, s);
	return err == STORE_OK && s->damaged ? STORE_CORRUPT : err;
}

store_err
rooms_other_admin(rooms_service *r, store_txn *txn, const room_rec *rec, const char *user,
		  bool *found)
{
	struct heir_scan s = {.skip = user};
	store_err err = walk_members(r, txn, rec, &s);

	*found = s.has_admin;
	return err;
}

store_err
rooms_member_remove(rooms_service *r, store_txn *txn, rpc_call *call, room_rec *rec,
		    const char *user, Parley__V1__Role was)
{
	uint8_t key[PAIR_KEY_MAX];
	struct heir_scan s = {.skip = NULL};
	store_err err;

	err = store_del(txn, r->members, key, rooms_pair_key(key, rec->room_id, user));
	if (err == STORE_OK)
		err = store_del(txn, r->user_rooms, key, rooms_pair_key(key, user, rec->room_id));
	if (err == STORE_NOTFOUND)
		err = STORE_CORRUPT; /* members and user_rooms disagree */
	if (err != STORE_OK)
		return err;
	if (rec->member_count > 0)
		rec->member_count--;
	if (was != PARLEY__V1__ROLE__ADMIN)
		return STORE_OK;

	/* The room keeps an ADMIN: costs a walk over its members, only when
	 * an ADMIN goes. */
	err = walk_members(r, txn, rec, &s);
	if (err != STORE_OK || s.has_admin || s.best_user[0] == '\0')
		return err;
	s.best.role = PARLEY__V1__ROLE__ADMIN;
	err = rooms_member_set_role(r, txn, rec, s.best_user, &s.best);
	if (err == STORE_OK)
		plog_info("rooms", "%s is ADMIN of %s: its last ADMIN %s left", s.best_user,
			  rec->room_id, user);
	return err;
}

static store_err
pair_exists(store_txn *txn, store_table t, const char *room_id, const char *user, bool *yes)
{
	uint8_t key[PAIR_KEY_MAX];
	store_val v;
	store_err err = store_get(txn, t, key, rooms_pair_key(key, room_id, user), &v);

	*yes = err == STORE_OK;
	return err == STORE_NOTFOUND ? STORE_OK : err;
}

store_err
rooms_is_banned(rooms_service *r, store_txn *txn, const char *room_id, const char *user,
		bool *banned)
{
	return pair_exists(txn, r->bans, room_id, user, banned);
}

store_err
rooms_is_invited(rooms_service *r, store_txn *txn, const char *room_id, const char *user,
		 bool *invited)
{
	return pair_exists(txn, r->invites, room_id, user, invited);
}

store_err
rooms_log_event(rooms_service *r, store_txn *txn, rpc_call *call, Parley__V1__Event *ev,
		rooms_frames *fr)
{
	change_frame *f = rpc_call_alloc(call, sizeof(*f));
	store_err err = changes_append_event(r->log, txn, call, ev, f);

	if (err != STORE_OK)
		return err;
	if (fr->last != NULL)
		fr->last->next = f;
	else
		fr->first = f;
	fr->last = f;
	return STORE_OK;
}

store_err
rooms_log_membership(rooms_service *r, store_txn *txn, rpc_call *call, const char *room_id,
		     const char *user, const char *actor, Parley__V1__MembershipChange__Kind kind,
		     const char *reason, rooms_frames *fr)
{
	Parley__V1__Event ev = PARLEY__V1__EVENT__INIT;
	Parley__V1__MembershipChange mc = PARLEY__V1__MEMBERSHIP_CHANGE__INIT;

	mc.kind = kind;
	mc.actor = (char *)actor;
	mc.reason = (char *)(reason != NULL ? reason : "");
	ev.room_id = (char *)room_id;
	ev.sender = (char *)user;
	ev.body_case = PARLEY__V1__EVENT__BODY_MEMBERSHIP;
	ev.membership = &mc;
	return rooms_log_event(r, txn, call, &ev, fr);
}

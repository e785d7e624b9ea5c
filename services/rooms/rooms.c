/*
 * rooms.c — the Rooms service (see rooms.h for its behaviour, changes.h
 * for the membership change log).
 *
 * Tables (records in proto/parley/store/v1/rooms_records.proto):
 *   rooms.rooms       room_id             -> RoomRecord (with member_count)
 *   rooms.members     room_id \0 user_id  -> ""
 *   rooms.user_rooms  user_id \0 room_id  -> ""
 *   rooms.meta        "page_token_key"    -> ListRooms token MAC key
 *   (rooms.changes and "changes.head" in rooms.meta belong to changes.c)
 *
 * Locking: handlers run concurrently on the rpc workers. Reads use their
 * own LMDB read transactions. Writes run between changes_write_begin and
 * changes_write_end (see changes.h). member_count is read, changed and
 * written inside the same write transaction as rooms.members, so it cannot
 * drift from it. Nothing else here is shared and mutable.
 */
#include "rooms.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "log.h"
#include "records.h"
#include "rooms_int.h"

#define NAME_MAX_CHARS 100
#define TOPIC_MAX_CHARS 500
#define PAGE_SIZE_DEFAULT 50
#define PAGE_SIZE_MAX 500
#define ROOM_MEMBERS_MAX 1000	/* GetRoom */
#define MY_ROOMS_MAX 1000	/* ListMyRooms */
#define FEED_WORKERS_MAX 4	/* one consumer (messaging): a small endpoint */
#define FEED_CONTEXTS_MAX 64

static const char page_key_name[] = "page_token_key";
static const char direct_key_name[] = "direct_id_key";
static const char general_room[] = "general";
static const char system_user[] = ROOMS_SYSTEM_USER;

/* ---- records in the call's arena ------------------------------------------ */

static void *
arena_alloc(void *call, size_t size)
{
	return rpc_call_alloc(call, size);
}

static void
arena_free(void *call, void *p)
{
	/* The arena goes away with the call. */
}

/* Unpacks (and checks: records.h) with every allocation in call's arena:
 * nothing to free, and the result outlives the LMDB transaction the bytes
 * came from. */
static store_err
read_room(rooms_service *r, store_txn *txn, rpc_call *call, const char *room_id,
	  Parley__Store__V1__RoomRecord **out)
{
	ProtobufCAllocator a = {.alloc = arena_alloc, .free = arena_free, .allocator_data = call};
	store_val v;
	store_err err = store_get(txn, r->rooms, room_id, strlen(room_id), &v);

	if (err != STORE_OK)
		return err;
	*out = records_room(&a, room_id, v.data, v.len);
	return *out != NULL ? STORE_OK : STORE_CORRUPT;
}

static store_err
write_room(rooms_service *r, store_txn *txn, rpc_call *call,
	   const Parley__Store__V1__RoomRecord *rec, unsigned flags)
{
	size_t len = parley__store__v1__room_record__get_packed_size(rec);
	uint8_t *buf = rpc_call_alloc(call, len ? len : 1);

	parley__store__v1__room_record__pack(rec, buf);
	return store_put(txn, r->rooms, rec->room_id, strlen(rec->room_id), buf, len, flags);
}

static Parley__V1__Room *
room_to_wire(rpc_call *call, const Parley__Store__V1__RoomRecord *rec)
{
	Parley__V1__Room *room = rpc_call_alloc(call, sizeof(*room));

	parley__v1__room__init(room);
	room->room_id = rec->room_id;
	room->name = rec->name;
	room->topic = rec->topic;
	room->created_by = rec->created_by;
	room->created_at_ms = rec->created_at_ms;
	room->member_count = rec->member_count;
	room->visibility = rooms_visibility(rec);
	return room;
}

/* Writes a \0 b into key; both are at most ROOM_ID_MAX / RPC_USER_ID_MAX
 * bytes (checked by the callers). Returns the key's length. */
static size_t
pair_key(uint8_t key[PAIR_KEY_MAX], const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);

	memcpy(key, a, na);
	key[na] = '\0';
	memcpy(key + na + 1, b, nb);
	return na + 1 + nb;
}

/* A copy of key bytes [off, len) as a string in the call's arena. */
static char *
key_suffix(rpc_call *call, store_val key, size_t off)
{
	size_t n = key.len - off;
	char *s = rpc_call_alloc(call, n + 1);

	memcpy(s, (const uint8_t *)key.data + off, n);
	return s;
}

/* ---- argument checks ------------------------------------------------------------ */

static rpc_code
check_room_id(rpc_call *call, const char *room_id)
{
	return svc_check_room_id(call, room_id);
}

rpc_code
rooms_check_name_topic(rpc_call *call, const char *name, const char *topic)
{
	if (name[0] != '\0' && !svc_valid_text(name, 1, NAME_MAX_CHARS))
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "name must be 1 to %d characters without control characters",
				     NAME_MAX_CHARS);
	if (!svc_valid_text(topic, 0, TOPIC_MAX_CHARS))
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "topic must be at most %d characters without control "
				     "characters",
				     TOPIC_MAX_CHARS);
	return RPC_OK;
}

static rpc_code
fail_no_room(rpc_call *call, const char *room_id)
{
	return rpc_call_fail(call, RPC_NOT_FOUND, "no room '%s'", room_id);
}

/* ---- parley.v1.Rooms ----------------------------------------------------------- */

static rpc_code
handle_create_room(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		   void *ctx)
{
	const Parley__V1__CreateRoomRequest *req = (const void *)reqm;
	Parley__V1__CreateRoomResponse *resp = (void *)respm;
	Parley__Store__V1__RoomRecord rec = PARLEY__STORE__V1__ROOM_RECORD__INIT;
	rooms_service *r = ctx;
	const char *caller = rpc_call_caller(call);
	change_frame f = {0};
	store_txn *txn;
	store_err err;
	rpc_code code;

	if ((code = check_room_id(call, req->room_id)) != RPC_OK)
		return code;
	if (rooms_direct_reserved(req->room_id))
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "room ids starting with '%s' are reserved for direct "
				     "conversations (OpenDirect)",
				     DIRECT_PREFIX);
	if (req->visibility == PARLEY__V1__VISIBILITY__DIRECT)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "visibility DIRECT: direct conversations are opened with "
				     "OpenDirect");
	if (req->visibility != PARLEY__V1__VISIBILITY__VISIBILITY_UNSPECIFIED &&
	    req->visibility != PARLEY__V1__VISIBILITY__PUBLIC &&
	    req->visibility != PARLEY__V1__VISIBILITY__PRIVATE)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "visibility must be PUBLIC or PRIVATE (got %d)",
				     (int)req->visibility);
	if ((code = rooms_check_name_topic(call, req->name, req->topic)) != RPC_OK)
		return code;

	rec.room_id = req->room_id;
	rec.name = req->name[0] != '\0' ? req->name : req->room_id;
	rec.topic = req->topic;
	rec.created_by = (char *)caller;
	rec.created_at_ms = rpc_wall_ms();
	rec.member_count = 0;
	rec.visibility = req->visibility == PARLEY__V1__VISIBILITY__PRIVATE
				 ? PARLEY__V1__VISIBILITY__PRIVATE
				 : PARLEY__V1__VISIBILITY__PUBLIC;

	if ((err = changes_write_begin(r->log, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "create room");
	/* The creator is the room's ADMIN. The write below refuses a room
	 * that exists, and the whole transaction goes with it. */
	err = rooms_member_add(r, txn, &rec, caller, PARLEY__V1__ROLE__ADMIN);
	if (err == STORE_OK)
		err = write_room(r, txn, call, &rec, STORE_NOOVERWRITE);
	if (err == STORE_OK)
		err = changes_append(r->log, txn, call, rec.room_id, caller,
				    PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED, &f);
	err = changes_write_end(r->log, txn, err, &f);
	if (err == STORE_EXISTS)
		return rpc_call_fail(call, RPC_ALREADY_EXISTS, "room '%s' already exists",
				     req->room_id);
	if (err != STORE_OK)
		return svc_fail_store(call, err, "create room");
	resp->room = room_to_wire(call, &rec);
	plog_info("rooms", "room %s created by %s", rec.room_id, caller);
	return RPC_OK;
}

struct list_scan {
	rpc_call *call;
	Parley__V1__Room **rooms;
	size_t n, want;	/* want = page size + 1, to learn whether more follow */
	bool damaged;
};

static bool
collect_room(void *arg, store_val key, store_val val)
{
	struct list_scan *s = arg;
	ProtobufCAllocator a = {.alloc = arena_alloc, .free = arena_free, .allocator_data = s->call};
	char id[ROOM_ID_MAX + 1];
	Parley__Store__V1__RoomRecord *rec = NULL;

	if (key.len <= ROOM_ID_MAX) {
		memcpy(id, key.data, key.len);
		id[key.len] = '\0';
		rec = records_room(&a, id, val.data, val.len);
	}
	if (rec == NULL) {
		s->damaged = true;
		return false;
	}
	if (rooms_visibility(rec) != PARLEY__V1__VISIBILITY__PUBLIC)
		return true; /* PRIVATE and DIRECT rooms are not listed */
	s->rooms[s->n++] = room_to_wire(s->call, rec);
	return s->n < s->want;
}

static rpc_code
handle_list_rooms(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		  void *ctx)
{
	const Parley__V1__ListRoomsRequest *req = (const void *)reqm;
	Parley__V1__ListRoomsResponse *resp = (void *)respm;
	rooms_service *r = ctx;
	char after[PAGETOKEN_ROOM_ID_MAX + 2];
	size_t page = req->page_size ? req->page_size : PAGE_SIZE_DEFAULT;
	struct list_scan s = {.call = call};
	size_t from_len = 0;
	store_txn *txn;
	store_err err;

	if (req->page_size > PAGE_SIZE_MAX)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "page_size must be at most %d (0 means %d)", PAGE_SIZE_MAX,
				     PAGE_SIZE_DEFAULT);
	if (req->page_token[0] != '\0') {
		if (!pagetoken_decode(r->page_key, req->page_token, after))
			return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
					     "page_token is not one this service issued");
		/* Room ids hold no NUL, so id \0 is the first key after id. */
		from_len = strlen(after) + 1;
	}

	s.want = page + 1;
	s.rooms = rpc_call_alloc(call, s.want * sizeof(*s.rooms));
	if ((err = store_begin(r->env, false, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "list rooms");
	err = store_scan(txn, r->rooms, from_len ? after : NULL, from_len, false, collect_room,
			 &s);
	store_abort(txn);
	if (err == STORE_OK && s.damaged)
		err = STORE_CORRUPT;
	if (err != STORE_OK)
		return svc_fail_store(call, err, "list rooms");

	if (s.n > page) {
		char *token = rpc_call_alloc(call, PAGETOKEN_TEXT_MAX);

		s.n = page;
		pagetoken_encode(r->page_key, s.rooms[page - 1]->room_id, token);
		resp->next_page_token = token;
	}
	resp->rooms = s.rooms;
	resp->n_rooms = s.n;
	return RPC_OK;
}

struct member_scan {
	rpc_call *call;
	const uint8_t *prefix;	/* id \0 */
	size_t prefix_len;
	char **ids;
	size_t n, max;
};

static bool
collect_suffix(void *arg, store_val key, store_val val)
{
	struct member_scan *s = arg;

	if (key.len <= s->prefix_len || memcmp(key.data, s->prefix, s->prefix_len) != 0)
		return false;
	s->ids[s->n++] = key_suffix(s->call, key, s->prefix_len);
	return s->n < s->max;
}

/* In txn: the first max ids under "id \0" in table t, in key order. */
static store_err
list_suffixes(store_txn *txn, store_table t, rpc_call *call, const char *id, size_t max,
	      char ***ids, size_t *n)
{
	uint8_t prefix[PAIR_KEY_MAX];
	struct member_scan s = {.call = call, .prefix = prefix, .max = max};
	store_err err;

	s.prefix_len = strlen(id) + 1;
	memcpy(prefix, id, s.prefix_len);
	s.ids = rpc_call_alloc(call, max * sizeof(*s.ids));
	err = store_scan(txn, t, prefix, s.prefix_len, false, collect_suffix, &s);
	*ids = s.ids;
	*n = s.n;
	return err;
}

/* In txn: whether user belongs to room_id (which the caller checked).
 * STORE_OK with *member set, or the store's error. */
static __attribute__((warn_unused_result)) store_err
is_member(rooms_service *r, store_txn *txn, const char *room_id, const char *user,
	  bool *member)
{
	uint8_t key[PAIR_KEY_MAX];
	store_val v;
	store_err err = store_get(txn, r->members, key, pair_key(key, room_id, user), &v);

	*member = err == STORE_OK;
	return err == STORE_NOTFOUND ? STORE_OK : err;
}

/* In txn: whether the authenticated caller belongs to room_id. */
static __attribute__((warn_unused_result)) store_err
caller_is_member(rooms_service *r, store_txn *txn, rpc_call *call, const char *room_id,
		 bool *member)
{
	return is_member(r, txn, room_id, rpc_call_caller(call), member);
}

/* Whether user is one of the two users of a DIRECT room. */
static bool
direct_party(const room_rec *rec, const char *user)
{
	for (size_t i = 0; i < rec->n_direct_users; i++)
		if (strcmp(rec->direct_users[i], user) == 0)
			return true;
	return false;
}

/*
 * In txn: STORE_NOTFOUND when the caller may not know of the room: a
 * PRIVATE room is seen by its members and the users invited to it, a
 * DIRECT room by its two users; a PUBLIC room by everyone.
 */
static __attribute__((warn_unused_result)) store_err
hidden_from_caller(rooms_service *r, store_txn *txn, rpc_call *call, const room_rec *rec)
{
	const char *caller = rpc_call_caller(call);
	rooms_member m;
	bool invited;
	store_err err;

	switch (rooms_visibility(rec)) {
	case PARLEY__V1__VISIBILITY__PUBLIC:
		return STORE_OK;
	case PARLEY__V1__VISIBILITY__DIRECT:
		return direct_party(rec, caller) ? STORE_OK : STORE_NOTFOUND;
	default:
		if ((err = rooms_member_get(r, txn, rec, caller, &m)) != STORE_OK)
			return err;
		if (m.role != PARLEY__V1__ROLE__ROLE_UNSPECIFIED)
			return STORE_OK;
		if ((err = rooms_is_invited(r, txn, rec->room_id, caller, &invited)) != STORE_OK)
			return err;
		return invited ? STORE_OK : STORE_NOTFOUND;
	}
}

static rpc_code
handle_get_room(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		void *ctx)
{
	const Parley__V1__GetRoomRequest *req = (const void *)reqm;
	Parley__V1__GetRoomResponse *resp = (void *)respm;
	Parley__Store__V1__RoomRecord *rec;
	rooms_service *r = ctx;
	store_txn *txn;
	store_err err;
	rpc_code code;
	bool member = false;

	if ((code = check_room_id(call, req->room_id)) != RPC_OK)
		return code;
	if ((err = store_begin(r->env, false, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "get room");
	err = read_room(r, txn, call, req->room_id, &rec);
	if (err == STORE_OK)
		err = hidden_from_caller(r, txn, call, rec);
	/* Who is in a room is for its members; others see what ListRooms
	 * shows (the count included). */
	if (err == STORE_OK && (err = caller_is_member(r, txn, call, req->room_id, &member)) ==
				   STORE_OK && member)
		err = list_suffixes(txn, r->members, call, req->room_id, ROOM_MEMBERS_MAX,
				    &resp->members, &resp->n_members);
	store_abort(txn);
	if (err == STORE_NOTFOUND)
		return fail_no_room(call, req->room_id);
	if (err != STORE_OK)
		return svc_fail_store(call, err, "get room");
	resp->room = room_to_wire(call, rec);
	return RPC_OK;
}

/*
 * In txn: may the caller join rec's room? RPC_OK, or PERMISSION_DENIED
 * with call failed: banned; a PRIVATE room without an invitation; a DIRECT
 * room of two other users.
 */
static rpc_code
may_join(rooms_service *r, store_txn *txn, rpc_call *call, const room_rec *rec,
	 store_err *err)
{
	const char *caller = rpc_call_caller(call);
	bool banned = false, invited = false;

	*err = rooms_is_banned(r, txn, rec->room_id, caller, &banned);
	if (*err != STORE_OK)
		return RPC_INTERNAL;
	if (banned)
		return rpc_call_fail(call, RPC_PERMISSION_DENIED,
				     "you are banned from room '%s'", rec->room_id);
	switch (rooms_visibility(rec)) {
	case PARLEY__V1__VISIBILITY__DIRECT:
		if (direct_party(rec, caller))
			return RPC_OK;
		return rpc_call_fail(call, RPC_PERMISSION_DENIED,
				     "room '%s' is a direct conversation of two other users",
				     rec->room_id);
	case PARLEY__V1__VISIBILITY__PRIVATE:
		*err = rooms_is_invited(r, txn, rec->room_id, caller, &invited);
		if (*err != STORE_OK)
			return RPC_INTERNAL;
		if (invited)
			return RPC_OK;
		return rpc_call_fail(call, RPC_PERMISSION_DENIED,
				     "room '%s' is private: it is joined by invitation only",
				     rec->room_id);
	default:
		return RPC_OK;
	}
}

/*
 * Makes the caller a member of room_id (join) or not (!join), in one
 * transaction with its change-log entry. Idempotent: when nothing changes,
 * nothing is logged. On RPC_OK *recp is the room as it is now. Who may
 * join: may_join.
 */
static rpc_code
set_membership(rpc_call *call, rooms_service *r, const char *room_id, bool join,
	       Parley__Store__V1__RoomRecord **recp)
{
	const char *caller = rpc_call_caller(call);
	const char *what = join ? "join room" : "leave room";
	change_frame f = {0};
	rooms_member m;
	store_txn *txn;
	store_err err;
	rpc_code code;

	*recp = NULL;
	if ((code = check_room_id(call, room_id)) != RPC_OK)
		return code;

	if ((err = changes_write_begin(r->log, &txn)) != STORE_OK)
		return svc_fail_store(call, err, what);
	err = read_room(r, txn, call, room_id, recp);
	if (err == STORE_OK)
		err = rooms_member_get(r, txn, *recp, caller, &m);
	/* A room the caller may not know of is answered as one that does
	 * not exist, for a join as for a leave. */
	if (err == STORE_OK && m.role == PARLEY__V1__ROLE__ROLE_UNSPECIFIED)
		err = hidden_from_caller(r, txn, call, *recp);
	if (err == STORE_OK &&
	    (m.role != PARLEY__V1__ROLE__ROLE_UNSPECIFIED) == join) {
		/* Already so: nothing changes, nothing is logged. */
		err = changes_write_end(r->log, txn, STORE_OK, NULL);
		goto done;
	}
	if (err == STORE_OK && join && (code = may_join(r, txn, call, *recp, &err)) != RPC_OK) {
		(void)changes_write_end(r->log, txn, ROOMS_ABORT, NULL);
		if (err != STORE_OK)
			return svc_fail_store(call, err, what);
		return code;
	}
	if (err == STORE_OK && join)
		err = rooms_member_add(r, txn, *recp, caller, PARLEY__V1__ROLE__MEMBER);
	else if (err == STORE_OK)
		err = rooms_member_remove(r, txn, call, *recp, caller, m.role);
	if (err == STORE_OK)
		err = write_room(r, txn, call, *recp, 0);
	if (err == STORE_OK)
		err = changes_append(r->log, txn, call, room_id, caller,
				    join ? PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED
					 : PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT,
				    &f);
	err = changes_write_end(r->log, txn, err, &f);
done:
	if (err == STORE_NOTFOUND)
		return fail_no_room(call, room_id);
	if (err != STORE_OK)
		return svc_fail_store(call, err, what);
	return RPC_OK;
}

static rpc_code
handle_join_room(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		 void *ctx)
{
	const Parley__V1__JoinRoomRequest *req = (const void *)reqm;
	Parley__V1__JoinRoomResponse *resp = (void *)respm;
	Parley__Store__V1__RoomRecord *rec;
	rpc_code code;

	if ((code = set_membership(call, ctx, req->room_id, true, &rec)) != RPC_OK)
		return code;
	resp->room = room_to_wire(call, rec);
	return RPC_OK;
}

static rpc_code
handle_leave_room(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		  void *ctx)
{
	const Parley__V1__LeaveRoomRequest *req = (const void *)reqm;
	Parley__Store__V1__RoomRecord *rec;

	return set_membership(call, ctx, req->room_id, false, &rec);
}

static rpc_code
handle_list_my_rooms(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		     void *ctx)
{
	Parley__V1__ListMyRoomsResponse *resp = (void *)respm;
	rooms_service *r = ctx;
	char **ids;
	size_t n, kept = 0;
	store_txn *txn;
	store_err err;

	if ((err = store_begin(r->env, false, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "list my rooms");
	err = list_suffixes(txn, r->user_rooms, call, rpc_call_caller(call), MY_ROOMS_MAX, &ids,
			    &n);
	resp->rooms = rpc_call_alloc(call, (n ? n : 1) * sizeof(*resp->rooms));
	for (size_t i = 0; err == STORE_OK && i < n; i++) {
		Parley__Store__V1__RoomRecord *rec;

		err = read_room(r, txn, call, ids[i], &rec);
		if (err == STORE_OK)
			resp->rooms[kept++] = room_to_wire(call, rec);
		else if (err == STORE_NOTFOUND)
			err = STORE_CORRUPT; /* user_rooms names a room that is gone */
	}
	store_abort(txn);
	if (err != STORE_OK)
		return svc_fail_store(call, err, "list my rooms");
	resp->n_rooms = kept;
	return RPC_OK;
}

static rpc_code
handle_is_member(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		 void *ctx)
{
	const Parley__V1__IsMemberRequest *req = (const void *)reqm;
	Parley__V1__IsMemberResponse *resp = (void *)respm;
	rooms_service *r = ctx;
	bool asker_in = false, member = false;
	room_rec *rec;
	store_txn *txn;
	store_err err;
	rpc_code code;

	if ((code = check_room_id(call, req->room_id)) != RPC_OK)
		return code;
	if (!svc_valid_user_id(req->user_id))
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "user_id must be 3 to 32 characters of a-z 0-9 _ . - "
				     "starting with a letter or digit");
	if ((err = store_begin(r->env, false, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "is member");
	/* A room the caller may not know of is NOT_FOUND, as if it did not
	 * exist: "member: false" would tell a stranger that it does. */
	err = read_room(r, txn, call, req->room_id, &rec);
	if (err == STORE_OK)
		err = hidden_from_caller(r, txn, call, rec);
	/* Anyone may ask about themselves (messaging and history ask for
	 * the user whose token they carry); only members may ask about
	 * others, as only they may see the member list. */
	if (err == STORE_OK && strcmp(req->user_id, rpc_call_caller(call)) != 0)
		err = caller_is_member(r, txn, call, req->room_id, &asker_in);
	else
		asker_in = true;
	if (err == STORE_OK && asker_in)
		err = is_member(r, txn, req->room_id, req->user_id, &member);
	if (err == STORE_OK && member) {
		/* Services ask for the role to authorise moderation (a
		 * moderator's Delete of another user's message). */
		rooms_member m;

		if ((err = rooms_member_get(r, txn, rec, req->user_id, &m)) == STORE_OK)
			resp->role = m.role;
	}
	store_abort(txn);
	if (err == STORE_NOTFOUND)
		return fail_no_room(call, req->room_id);
	if (err != STORE_OK)
		return svc_fail_store(call, err, "is member");
	if (!asker_in)
		return rpc_call_fail(call, RPC_PERMISSION_DENIED,
				     "only members of room '%s' may ask whether others are in it",
				     req->room_id);
	resp->member = member;
	return RPC_OK;
}

static const rpc_method rooms_methods[] = {
	{.fn = handle_create_room, .auth = RPC_AUTH_REQUIRED},
	{.fn = handle_list_rooms, .auth = RPC_AUTH_REQUIRED},
	{.fn = handle_get_room, .auth = RPC_AUTH_REQUIRED},
	{.fn = handle_join_room, .auth = RPC_AUTH_REQUIRED},
	{.fn = handle_leave_room, .auth = RPC_AUTH_REQUIRED},
	{.fn = handle_list_my_rooms, .auth = RPC_AUTH_REQUIRED},
	{.fn = handle_is_member, .auth = RPC_AUTH_REQUIRED},
	{.fn = rooms_handle_list_members, .auth = RPC_AUTH_REQUIRED},
	{.fn = rooms_handle_update_room, .auth = RPC_AUTH_REQUIRED},
	{.fn = rooms_handle_set_role, .auth = RPC_AUTH_REQUIRED},
	{.fn = rooms_handle_kick, .auth = RPC_AUTH_REQUIRED},
	{.fn = rooms_handle_ban, .auth = RPC_AUTH_REQUIRED},
	{.fn = rooms_handle_unban, .auth = RPC_AUTH_REQUIRED},
	{.fn = rooms_handle_invite, .auth = RPC_AUTH_REQUIRED},
	{.fn = rooms_handle_open_direct, .auth = RPC_AUTH_REQUIRED},
};

/* The table above follows the descriptor's method order; check it. */
static bool
methods_match_descriptor(void)
{
	static const char *const names[] = {
	    "CreateRoom", "ListRooms", "GetRoom", "JoinRoom", "LeaveRoom",  "ListMyRooms",
	    "IsMember",	  "ListMembers", "UpdateRoom", "SetRole", "Kick", "Ban",
	    "Unban",	  "Invite",	 "OpenDirect"};
	const ProtobufCServiceDescriptor *d = &parley__v1__rooms__descriptor;

	if (d->n_methods != sizeof(rooms_methods) / sizeof(rooms_methods[0]) ||
	    d->n_methods != sizeof(names) / sizeof(names[0]))
		return false;
	for (unsigned i = 0; i < d->n_methods; i++)
		if (strcmp(d->methods[i].name, names[i]) != 0)
			return false;
	return true;
}

/* ---- lifecycle -------------------------------------------------------------------- */

/* In txn: the key stored under name, made on first use. */
static store_err
load_key(rooms_service *r, store_txn *txn, const char *name, unsigned char *key, size_t len)
{
	store_val v;
	store_err err = store_get(txn, r->meta, name, strlen(name), &v);

	if (err == STORE_OK && v.len != len)
		return STORE_CORRUPT;
	if (err == STORE_OK) {
		memcpy(key, v.data, len);
		return STORE_OK;
	}
	if (err != STORE_NOTFOUND)
		return err;
	randombytes_buf(key, len);
	return store_put(txn, r->meta, name, strlen(name), key, len, 0);
}

/*
 * One write transaction at start: loads (or creates) the page-token key and,
 * on a fresh data directory, creates the room "general".
 */
static rpc_code
init_data(rooms_service *r, rpc_status *st)
{
	Parley__Store__V1__RoomRecord rec = PARLEY__STORE__V1__ROOM_RECORD__INIT;
	uint8_t buf[256];
	store_txn *txn;
	store_val v;
	store_err err;
	size_t len;

	if ((err = store_begin(r->env, true, &txn)) != STORE_OK)
		goto fail;
	err = store_get(txn, r->meta, page_key_name, sizeof(page_key_name) - 1, &v);
	if (err == STORE_OK && v.len == sizeof(r->page_key)) {
		memcpy(r->page_key, v.data, sizeof(r->page_key));
	} else if (err == STORE_NOTFOUND) {
		randombytes_buf(r->page_key, sizeof(r->page_key));
		err = store_put(txn, r->meta, page_key_name, sizeof(page_key_name) - 1,
				r->page_key, sizeof(r->page_key), 0);
	} else if (err == STORE_OK) {
		err = STORE_CORRUPT;
	}
	if (err == STORE_OK)
		err = load_key(r, txn, direct_key_name, r->direct_key, sizeof(r->direct_key));

	if (err == STORE_OK) {
		rec.room_id = (char *)general_room;
		rec.name = (char *)general_room;
		rec.created_by = (char *)system_user;
		rec.created_at_ms = rpc_wall_ms();
		len = parley__store__v1__room_record__pack(&rec, buf);
		err = store_put(txn, r->rooms, general_room, sizeof(general_room) - 1, buf, len,
				STORE_NOOVERWRITE);
		if (err == STORE_OK)
			plog_info("rooms", "created room %s", general_room);
		else if (err == STORE_EXISTS)
			err = STORE_OK;
	}
	if (err != STORE_OK) {
		store_abort(txn);
		goto fail;
	}
	if ((err = store_commit(txn)) != STORE_OK)
		goto fail;
	return RPC_OK;

fail:
	return rpc_status_set(st, err == STORE_FULL ? RPC_RESOURCE_EXHAUSTED : RPC_INTERNAL,
			      "rooms: cannot initialise storage: %s", store_strerror(err));
}

int
rooms_service_start(const parley_config *cfg, rooms_service **out, rpc_status *st)
{
	rpc_server_opts opts = {.contexts = cfg->contexts, .workers = cfg->workers,
				.name = "rooms"};
	rpc_server_opts feed_opts = {.name = "rooms-feed"};
	rooms_service *r;

	if (!methods_match_descriptor())
		return rpc_status_set(st, RPC_INTERNAL, "rooms method table out of date");
	if (sodium_init() < 0)
		return rpc_status_set(st, RPC_INTERNAL, "libsodium failed to initialise");
	if (cfg->room_events_listen == NULL || cfg->rooms_internal_listen == NULL ||
	    cfg->auth_addr == NULL)
		return rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "rooms needs auth, room events and internal addresses");
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	r->env = cfg->env;
	feed_opts.workers = cfg->workers < FEED_WORKERS_MAX ? cfg->workers : FEED_WORKERS_MAX;
	feed_opts.contexts = cfg->contexts < FEED_CONTEXTS_MAX ? cfg->contexts
							       : FEED_CONTEXTS_MAX;

	if (!svc_open_table(r->env, "rooms.rooms", &r->rooms, st) ||
	    !svc_open_table(r->env, "rooms.members", &r->members, st) ||
	    !svc_open_table(r->env, "rooms.user_rooms", &r->user_rooms, st) ||
	    !svc_open_table(r->env, "rooms.meta", &r->meta, st) ||
	    !svc_open_table(r->env, "rooms.bans", &r->bans, st) ||
	    !svc_open_table(r->env, "rooms.invites", &r->invites, st))
		goto fail;
	if (init_data(r, st) != RPC_OK)
		goto fail;
	if (changes_open(r->env, cfg->room_events_listen, &r->log, st) != RPC_OK)
		goto fail;
	if (svc_authn_open(&r->authn, cfg->auth_addr, st) != RPC_OK)
		goto fail;
	if (rpc_client_open(&r->auth, cfg->auth_addr, st) != RPC_OK)
		goto fail;
	if (cfg->messaging_addr != NULL &&
	    rpc_client_open(&r->messaging, cfg->messaging_addr, st) != RPC_OK)
		goto fail;

	/* Each server starts right after it opens: rpc_server_close expects a
	 * started server. */
	if (rpc_server_open(&r->srv, cfg->rooms_listen, &opts, st) != RPC_OK)
		goto fail;
	rpc_server_add_service(r->srv, &parley__v1__rooms__descriptor, rooms_methods, r);
	rpc_server_set_authenticator(r->srv, svc_authn_validate, r->authn);
	if (rpc_server_start(r->srv, st) != RPC_OK)
		goto fail;
	if (changes_serve(r->log, cfg->rooms_internal_listen, &feed_opts, st) != RPC_OK)
		goto fail;
	*out = r;
	return RPC_OK;

fail:
	rooms_service_shutdown(r);
	rooms_service_stop(r);
	return st->code;
}

void
rooms_service_shutdown(rooms_service *r)
{
	if (r == NULL)
		return;
	if (r->srv != NULL)
		rpc_server_shutdown(r->srv);
	changes_shutdown(r->log);
}

void
rooms_service_stop(rooms_service *r)
{
	if (r == NULL)
		return;
	/* Handlers use the authenticator and the log: close the server first. */
	if (r->srv != NULL)
		rpc_server_close(r->srv, 5000);
	changes_close(r->log);
	svc_authn_close(r->authn);
	if (r->auth != NULL)
		rpc_client_close(r->auth);
	if (r->messaging != NULL)
		rpc_client_close(r->messaging);
	sodium_memzero(r->page_key, sizeof(r->page_key));
	sodium_memzero(r->direct_key, sizeof(r->direct_key));
	free(r);
}

/* ---- for the other files of the service (rooms_int.h) ------------------------------ */

store_err
rooms_read_room(rooms_service *r, store_txn *txn, rpc_call *call, const char *room_id,
		room_rec **out)
{
	return read_room(r, txn, call, room_id, out);
}

store_err
rooms_write_room(rooms_service *r, store_txn *txn, rpc_call *call, const room_rec *rec,
		 unsigned flags)
{
	return write_room(r, txn, call, rec, flags);
}

Parley__V1__Room *
rooms_room_to_wire(rpc_call *call, const room_rec *rec)
{
	return room_to_wire(call, rec);
}

size_t
rooms_pair_key(uint8_t key[PAIR_KEY_MAX], const char *a, const char *b)
{
	return pair_key(key, a, b);
}

rpc_code
rooms_check_room_id(rpc_call *call, const char *room_id)
{
	return check_room_id(call, room_id);
}

rpc_code
rooms_check_user_id(rpc_call *call, const char *field, const char *user_id)
{
	if (svc_valid_user_id(user_id))
		return RPC_OK;
	return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
			     "%s must be 3 to 32 characters of a-z 0-9 _ . - starting with a "
			     "letter or digit",
			     field);
}

rpc_code
rooms_fail_no_room(rpc_call *call, const char *room_id)
{
	return fail_no_room(call, room_id);
}

store_err
rooms_hidden_from_caller(rooms_service *r, store_txn *txn, rpc_call *call, const room_rec *rec)
{
	return hidden_from_caller(r, txn, call, rec);
}

Parley__V1__Visibility
rooms_visibility(const room_rec *rec)
{
	return rec->visibility == PARLEY__V1__VISIBILITY__VISIBILITY_UNSPECIFIED
		   ? PARLEY__V1__VISIBILITY__PUBLIC
		   : rec->visibility;
}

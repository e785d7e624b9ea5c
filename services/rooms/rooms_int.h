/*
 * rooms_int.h — what the files of the Rooms service share. Not for other
 * services.
 *
 *   rooms.c       lifecycle, the method table, CreateRoom, ListRooms,
 *                 GetRoom, JoinRoom, LeaveRoom, ListMyRooms, IsMember
 *   roles.c       members and their roles: reading, adding, removing
 *                 (an ADMIN always stays), the checks of who may do what
 *   moderation.c  UpdateRoom, SetRole, Kick, Ban, Unban, Invite
 *   direct.c      OpenDirect and the ids of DIRECT rooms
 *   listmembers.c ListMembers (profiles from Auth, presence from Messaging)
 *
 * Locking: as rooms.c says. Functions taking a store_txn work inside the
 * caller's transaction; every write transaction runs between
 * changes_write_begin and changes_write_end (changes.h).
 */
#ifndef PARLEY_ROOMS_INT_H
#define PARLEY_ROOMS_INT_H

#include "changes.h"
#include "pagetoken.h"
#include "rooms.h"

#include "parley/store/v1/rooms_records.pb-c.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/rooms.pb-c.h"

#define ROOM_ID_MAX 64
#define PAIR_KEY_MAX (ROOM_ID_MAX + 1 + RPC_USER_ID_MAX)
#define REASON_MAX_CHARS 500
#define DIRECT_KEY_BYTES 32
/* DIRECT room ids: this prefix and 32 hex digits; CreateRoom refuses ids
 * with the prefix (see direct.c). */
#define DIRECT_PREFIX "dm."
#define ROOMS_SYSTEM_USER "parley"	/* creator of "general"; never its ADMIN */

/* Given to changes_write_end: abort, the caller has answered the call. */
#define ROOMS_ABORT STORE_INVALID

typedef Parley__Store__V1__RoomRecord room_rec;

struct rooms_service {
	rpc_server *srv;	/* parley.v1.Rooms */
	svc_authn *authn;
	changes *log;		/* the change log, its PUB and RoomsFeed */
	store_env *env;
	store_table rooms, members, user_rooms, meta;
	store_table bans, invites;
	rpc_client *auth;	/* parley.v1.Auth: GetUsers */
	rpc_client *messaging;	/* parley.internal.v1.Presence: Online (NULL: none) */
	unsigned char page_key[PAGETOKEN_KEY_BYTES];
	unsigned char direct_key[DIRECT_KEY_BYTES];
};

/* ---- rooms.c: records and checks ---------------------------------------------- */

/* In txn: the room's record in call's arena. STORE_NOTFOUND, STORE_CORRUPT,
 * or the store's error. */
store_err rooms_read_room(rooms_service *r, store_txn *txn, rpc_call *call,
			  const char *room_id, room_rec **out);
store_err rooms_write_room(rooms_service *r, store_txn *txn, rpc_call *call,
			   const room_rec *rec, unsigned flags);
/* The wire form, sharing rec's strings. */
Parley__V1__Room *rooms_room_to_wire(rpc_call *call, const room_rec *rec);
/* a \0 b into key; both valid ids. Returns the length. */
size_t rooms_pair_key(uint8_t key[PAIR_KEY_MAX], const char *a, const char *b);
/* INVALID_ARGUMENT (call failed) unless room_id is a valid room id. */
rpc_code rooms_check_room_id(rpc_call *call, const char *room_id);
/* INVALID_ARGUMENT (call failed) unless user_id is a valid user id. */
rpc_code rooms_check_user_id(rpc_call *call, const char *field, const char *user_id);
/* INVALID_ARGUMENT (call failed) unless name ("" = none given) and topic
 * are text a room may carry (CreateRoom, UpdateRoom). */
rpc_code rooms_check_name_topic(rpc_call *call, const char *name, const char *topic);
/* NOT_FOUND "no room 'x'". */
rpc_code rooms_fail_no_room(rpc_call *call, const char *room_id);
/* In txn: STORE_NOTFOUND when the caller may not know that rec's room
 * exists (a PRIVATE room to all but its members and invited users, a
 * DIRECT room to all but its two users): such a caller is answered "no
 * room", exactly as for a room that does not exist. STORE_OK when the room
 * is visible, or the store's error. */
__attribute__((warn_unused_result)) store_err
rooms_hidden_from_caller(rooms_service *r, store_txn *txn, rpc_call *call,
			 const room_rec *rec);
/* The room's visibility, older records (UNSPECIFIED) read as PUBLIC. */
Parley__V1__Visibility rooms_visibility(const room_rec *rec);

/* ---- roles.c ---------------------------------------------------------------------- */

/* A user's place in a room: role ROLE_UNSPECIFIED = not a member. */
typedef struct rooms_member {
	Parley__V1__Role role;
	uint64_t joined_at_ms;
} rooms_member;

/* Decodes a rooms.members value of user in rec's room. false if damaged. */
bool rooms_member_decode(const room_rec *rec, const char *user, store_val v, rooms_member *m);

/* In txn: user's place in rec's room. STORE_OK (role UNSPECIFIED when not a
 * member), STORE_CORRUPT, or the store's error. */
__attribute__((warn_unused_result)) store_err rooms_member_get(rooms_service *r, store_txn *txn, const room_rec *rec,
			   const char *user, rooms_member *m);

/* In txn: makes user a member of rec's room with role (rec->member_count
 * counted; rec not written) and drops an invitation. The caller logs. */
store_err rooms_member_add(rooms_service *r, store_txn *txn, room_rec *rec, const char *user,
			   Parley__V1__Role role);

/* In txn: writes user's role (user is a member). */
store_err rooms_member_set_role(rooms_service *r, store_txn *txn, const room_rec *rec,
				const char *user, const rooms_member *m);

/* In txn: removes user (a member, with role was) from rec's room
 * (member_count counted; rec not written). When the last ADMIN goes and
 * members stay, the one with the highest role who joined first becomes
 * ADMIN: a room always keeps an ADMIN. The caller logs. */
store_err rooms_member_remove(rooms_service *r, store_txn *txn, rpc_call *call,
			      room_rec *rec, const char *user, Parley__V1__Role was);

/* In txn: whether rec's room has an ADMIN other than user. */
store_err rooms_other_admin(rooms_service *r, store_txn *txn, const room_rec *rec,
			    const char *user, bool *found);

/* In txn: whether user is banned from room_id. */
__attribute__((warn_unused_result)) store_err rooms_is_banned(rooms_service *r, store_txn *txn, const char *room_id,
			  const char *user, bool *banned);
/* In txn: whether user holds an invitation to room_id. */
__attribute__((warn_unused_result)) store_err rooms_is_invited(rooms_service *r, store_txn *txn, const char *room_id,
			   const char *user, bool *invited);

/* The frames of one write transaction's changes, in order, in the call's
 * memory; changes_write_end(log, txn, err, frames.first) sends them. */
typedef struct rooms_frames {
	change_frame *first, *last;
} rooms_frames;

/* Appends ev (room_id, sender, body set) to the change log. */
store_err rooms_log_event(rooms_service *r, store_txn *txn, rpc_call *call,
			  Parley__V1__Event *ev, rooms_frames *fr);

/* Appends the membership change of user in room_id made by actor. */
store_err rooms_log_membership(rooms_service *r, store_txn *txn, rpc_call *call,
			       const char *room_id, const char *user, const char *actor,
			       Parley__V1__MembershipChange__Kind kind, const char *reason,
			       rooms_frames *fr);

/* The role's name, for messages. */
const char *rooms_role_name(Parley__V1__Role role);

/* ---- handlers (method table in rooms.c) ------------------------------------------- */

#define ROOMS_HANDLER(name)                                                           \
	rpc_code name(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm, \
		      void *ctx)
ROOMS_HANDLER(rooms_handle_list_members);
ROOMS_HANDLER(rooms_handle_update_room);
ROOMS_HANDLER(rooms_handle_set_role);
ROOMS_HANDLER(rooms_handle_kick);
ROOMS_HANDLER(rooms_handle_ban);
ROOMS_HANDLER(rooms_handle_unban);
ROOMS_HANDLER(rooms_handle_invite);
ROOMS_HANDLER(rooms_handle_open_direct);

/* direct.c: whether room_id has the DIRECT prefix (reserved). */
bool rooms_direct_reserved(const char *room_id);

/* listmembers.c: Auth.GetUsers for ids (at most 100) with the caller's token: *resp owned
 * by the caller (protobuf_c_message_free_unpacked), or st says why. */
rpc_code rooms_get_users(rooms_service *r, rpc_call *call, char **ids, size_t n,
			 Parley__V1__GetUsersResponse **resp, rpc_status *st);
/* RPC_OK when user_id is a registered user; else the call is failed
 * (NOT_FOUND "no user 'x'", or Auth's unavailability). */
rpc_code rooms_require_user(rooms_service *r, rpc_call *call, const char *user_id);

#endif

/*
 * direct.c — OpenDirect: the one DIRECT room of two users.
 *
 * Its id is "dm." and 32 hex digits: keyed BLAKE2b-128, under the service's
 * direct_id_key (32 random bytes in rooms.meta, made on first start), of
 * the two user ids in byte order joined by a zero byte. So both users get
 * the same room whoever opens it first, the id fits the room id rules
 * (35 characters of [a-z0-9.]), and nobody else can compute which two
 * users an id belongs to. CreateRoom refuses every id starting with "dm.",
 * so no other room can take one.
 *
 * The room: visibility DIRECT, name "<a>, <b>", both users MEMBERs (no
 * moderation), direct_users = the two. Nobody else can join it, be invited
 * to it or see it (JoinRoom, Invite refused; GetRoom NOT_FOUND); it is in
 * both users' ListMyRooms and never in ListRooms. A user who left it comes
 * back by OpenDirect or JoinRoom; opening it does not bring back the other
 * user if they left.
 *
 * Locking: one write transaction (changes.h); the Auth call comes first.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "log.h"
#include "rooms_int.h"

#define DIRECT_HASH_BYTES 16
#define DIRECT_ID_LEN (sizeof(DIRECT_PREFIX) - 1 + 2 * DIRECT_HASH_BYTES)

bool
rooms_direct_reserved(const char *room_id)
{
	return strncmp(room_id, DIRECT_PREFIX, sizeof(DIRECT_PREFIX) - 1) == 0;
}

/* The id of the DIRECT room of users a < b (byte order). */
static void
direct_id(const rooms_service *r, const char *a, const char *b, char out[DIRECT_ID_LEN + 1])
{
	unsigned char hash[DIRECT_HASH_BYTES];
	crypto_generichash_state st;

	crypto_generichash_init(&st, r->direct_key, sizeof(r->direct_key), sizeof(hash));
	crypto_generichash_update(&st, (const unsigned char *)a, strlen(a) + 1);
	crypto_generichash_update(&st, (const unsigned char *)b, strlen(b));
	crypto_generichash_final(&st, hash, sizeof(hash));
	memcpy(out, DIRECT_PREFIX, sizeof(DIRECT_PREFIX) - 1);
	sodium_bin2hex(out + sizeof(DIRECT_PREFIX) - 1, 2 * DIRECT_HASH_BYTES + 1, hash,
		       sizeof(hash));
}

/* In txn: makes the DIRECT room of users[0] < users[1], both members. */
static store_err
create_direct(rooms_service *r, store_txn *txn, rpc_call *call, const char *id,
	      char **users, room_rec **out, rooms_frames *fr)
{
	room_rec *rec = rpc_call_alloc(call, sizeof(*rec));
	const char *caller = rpc_call_caller(call);
	size_t nlen = strlen(users[0]) + 2 + strlen(users[1]) + 1;
	store_err err = STORE_OK;

	parley__store__v1__room_record__init(rec);
	rec->room_id = rpc_call_strdup(call, id);
	rec->name = rpc_call_alloc(call, nlen);
	snprintf(rec->name, nlen, "%s, %s", users[0], users[1]);
	rec->topic = (char *)"";
	rec->created_by = (char *)caller;
	rec->created_at_ms = rpc_wall_ms();
	rec->visibility = PARLEY__V1__VISIBILITY__DIRECT;
	rec->direct_users = users;
	rec->n_direct_users = 2;
	for (int i = 0; err == STORE_OK && i < 2; i++)
		err = rooms_member_add(r, txn, rec, users[i], PARLEY__V1__ROLE__MEMBER);
	if (err == STORE_OK)
		err = rooms_write_room(r, txn, call, rec, STORE_NOOVERWRITE);
	for (int i = 0; err == STORE_OK && i < 2; i++)
		err = rooms_log_membership(r, txn, call, id, users[i], caller,
					   PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED, "", fr);
	*out = rec;
	return err;
}

ROOMS_HANDLER(rooms_handle_open_direct)
{
	const Parley__V1__OpenDirectRequest *req = (const void *)reqm;
	Parley__V1__OpenDirectResponse *resp = (void *)respm;
	rooms_service *r = ctx;
	const char *caller = rpc_call_caller(call);
	char id[DIRECT_ID_LEN + 1], **users;
	rooms_frames fr = {0};
	rooms_member me;
	room_rec *rec = NULL;
	store_txn *txn;
	store_err err;
	rpc_code code;

	if ((code = rooms_check_user_id(call, "user_id", req->user_id)) != RPC_OK)
		return code;
	if (strcmp(req->user_id, caller) == 0)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "a direct conversation needs another user than yourself");
	if ((code = rooms_require_user(r, call, req->user_id)) != RPC_OK)
		return code;
	users = rpc_call_alloc(call, 2 * sizeof(*users));
	users[0] = (char *)(strcmp(caller, req->user_id) < 0 ? caller : req->user_id);
	users[1] = (char *)(users[0] == caller ? req->user_id : caller);
	direct_id(r, users[0], users[1], id);

	if ((err = changes_write_begin(r->log, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "open direct");
	err = rooms_read_room(r, txn, call, id, &rec);
	if (err == STORE_NOTFOUND) {
		err = create_direct(r, txn, call, id, users, &rec, &fr);
		if (err == STORE_OK)
			plog_info("rooms", "direct room %s of %s and %s opened by %s", id,
				  users[0], users[1], caller);
	} else if (err == STORE_OK) {
		if (rooms_visibility(rec) != PARLEY__V1__VISIBILITY__DIRECT ||
		    rec->n_direct_users != 2 || strcmp(rec->direct_users[0], users[0]) != 0 ||
		    strcmp(rec->direct_users[1], users[1]) != 0)
			err = STORE_CORRUPT; /* only OpenDirect makes "dm." rooms */
		if (err == STORE_OK)
			err = rooms_member_get(r, txn, rec, caller, &me);
		if (err == STORE_OK && me.role == PARLEY__V1__ROLE__ROLE_UNSPECIFIED) {
			/* The caller left it: back in. */
			err = rooms_member_add(r, txn, rec, caller, PARLEY__V1__ROLE__MEMBER);
			if (err == STORE_OK)
				err = rooms_write_room(r, txn, call, rec, 0);
			if (err == STORE_OK)
				err = rooms_log_membership(
				    r, txn, call, id, caller, caller,
				    PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED, "", &fr);
		}
	}
	err = changes_write_end(r->log, txn, err, fr.first);
	if (err != STORE_OK)
		return svc_fail_store(call, err, "open direct");
	resp->room = rooms_room_to_wire(call, rec);
	return RPC_OK;
}

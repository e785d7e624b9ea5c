/*
 * account.c — profiles and the end of an account: UpdateProfile, GetUsers,
 * DeleteAccount (see auth.h for the rules, auth_int.h for what is shared).
 *
 * DeleteAccount proves the password like Login does (the same limits in
 * guard.h, the same hashing pool), then in one write transaction replaces
 * the record with a tombstone (user_id and deleted_at_ms only: the id is
 * never free again, Login treats it as unknown), revokes every session and
 * notes the id in auth.deleting. Then it leaves every room through the
 * rooms service's own API (ListMyRooms, LeaveRoom), so each leave is an
 * ordinary LEFT change in that room's timeline. It does so with a session
 * issued for that purpose alone and revoked right after: the user holds no
 * token any more, so nothing can join a room behind the leaving. When the
 * rooms service cannot be reached the account stays deleted and the
 * sweeper thread tries again (auth_retry_deletions) until every room is
 * left.
 *
 * Locking: none of its own (LMDB, guard and workpool lock themselves).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_int.h"
#include "log.h"
#include "parley/v1/rooms.pb-c.h"
#include "records.h"

#define GET_USERS_MAX 100
#define PASSWORD_MAX 1024
#define LEAVE_CALL_TIMEOUT_MS 5000
#define LEAVE_ROUNDS_MAX 1000	/* ListMyRooms gives 1000 rooms a round */
#define RETRY_BATCH 64		/* deleted accounts retried per sweep */

static const char bad_display_name[] =
    "display_name must be 1 to 64 characters without control characters";

/* ---- UpdateProfile ---------------------------------------------------------- */

rpc_code
auth_handle_update_profile(rpc_call *call, const ProtobufCMessage *reqm,
			   ProtobufCMessage *respm, void *ctx)
{
	const Parley__V1__UpdateProfileRequest *req = (const void *)reqm;
	Parley__V1__UpdateProfileResponse *resp = (void *)respm;
	Parley__Store__V1__UserRecord *rec = NULL;
	auth_service *a = ctx;
	const char *user_id = rpc_call_caller(call);
	char *old_name, *old_email;
	store_txn *txn;
	store_val v;
	store_err err;

	_Static_assert(DISPLAY_NAME_MAX == 64, "bad_display_name's text");
	if (req->display_name[0] != '\0' && !svc_valid_text(req->display_name, 1, DISPLAY_NAME_MAX))
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT, "%s", bad_display_name);
	if (!auth_valid_email(req->email))
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "email must be at most %d bytes with exactly one '@'",
				     EMAIL_MAX);

	/* Read and write in one write transaction: a concurrent change of
	 * the same record is never overwritten with old values. */
	if ((err = store_begin(a->env, true, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "update profile");
	err = store_get(txn, a->users, user_id, strlen(user_id), &v);
	if (err == STORE_OK) {
		rec = records_user(NULL, user_id, v.data, v.len);
		err = rec == NULL ? STORE_CORRUPT : rec->deleted_at_ms != 0 ? STORE_NOTFOUND
									   : STORE_OK;
	}
	if (err == STORE_OK) {
		old_name = rec->display_name;
		old_email = rec->email;
		if (req->display_name[0] != '\0')
			rec->display_name = req->display_name;
		if (req->email[0] != '\0')
			rec->email = req->email;
		err = auth_put_record(txn, a->users, user_id, strlen(user_id), &rec->base, 0);
		if (err == STORE_OK)
			resp->user = auth_user_to_wire(call, rec);
		rec->display_name = old_name;
		rec->email = old_email;
	}
	if (err == STORE_OK)
		err = store_commit(txn);
	else
		store_abort(txn);
	if (rec != NULL)
		parley__store__v1__user_record__free_unpacked(rec, NULL);
	if (err == STORE_NOTFOUND)
		return rpc_call_fail(call, RPC_NOT_FOUND, "no user '%s'", user_id);
	if (err != STORE_OK)
		return svc_fail_store(call, err, "update profile");
	return RPC_OK;
}

/* ---- GetUsers ------------------------------------------------------------------- */

rpc_code
auth_handle_get_users(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		      void *ctx)
{
	const Parley__V1__GetUsersRequest *req = (const void *)reqm;
	Parley__V1__GetUsersResponse *resp = (void *)respm;
	auth_service *a = ctx;
	const char *caller = rpc_call_caller(call);
	store_txn *txn;
	store_err err = STORE_OK;
	rpc_code code;

	if (req->n_user_ids > GET_USERS_MAX)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "user_ids holds %zu ids; at most %d per call",
				     req->n_user_ids, GET_USERS_MAX);
	if ((code = svc_check_user_ids(call, "user_ids", req->user_ids, req->n_user_ids)) != RPC_OK)
		return code;
	resp->users = rpc_call_alloc(call, (req->n_user_ids ? req->n_user_ids : 1) *
						   sizeof(*resp->users));
	if (req->n_user_ids == 0)
		return RPC_OK;
	if ((err = store_begin(a->env, false, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "get users");
	for (size_t i = 0; err == STORE_OK && i < req->n_user_ids; i++) {
		const char *id = req->user_ids[i];
		Parley__Store__V1__UserRecord *rec;
		Parley__V1__User *u;
		bool seen = false;
		store_val v;

		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(req->user_ids[j], id) == 0;
		if (seen)
			continue; /* each user once */
		err = store_get(txn, a->users, id, strlen(id), &v);
		if (err == STORE_NOTFOUND) {
			err = STORE_OK; /* unknown ids are left out */
			continue;
		}
		if (err != STORE_OK)
			break;
		rec = records_user(NULL, id, v.data, v.len);
		if (rec == NULL) {
			err = STORE_CORRUPT;
			break;
		}
		if (rec->deleted_at_ms == 0) {
			u = auth_user_to_wire(call, rec);
			if (strcmp(id, caller) != 0)
				u->email = (char *)""; /* an email is its owner's alone */
			resp->users[resp->n_users++] = u;
		}
		parley__store__v1__user_record__free_unpacked(rec, NULL);
	}
	store_abort(txn);
	if (err != STORE_OK)
		return svc_fail_store(call, err, "get users");
	return RPC_OK;
}

/* ---- leaving a deleted account's rooms ------------------------------------------ */

static rpc_code
rooms_call(auth_service *a, const char *method, const ProtobufCMessage *req,
	   ProtobufCMessage **resp, const char *token, rpc_status *st)
{
	rpc_call_opts o = {.timeout_ms = LEAVE_CALL_TIMEOUT_MS, .token = token};

	if (a->rooms == NULL)
		return rpc_status_set(st, RPC_UNAVAILABLE, "no rooms service address");
	return rpc_client_call(a->rooms, &parley__v1__rooms__descriptor, method, req, resp, &o,
			       st);
}

/* Leaves every room of user_id with token; RPC_OK once ListMyRooms is empty. */
static rpc_code
leave_all(auth_service *a, const char *user_id, const char *token, rpc_status *st)
{
	Parley__V1__ListMyRoomsRequest lreq = PARLEY__V1__LIST_MY_ROOMS_REQUEST__INIT;
	Parley__V1__ListMyRoomsResponse *mine;
	size_t left = 0;
	rpc_code code;

	for (int round = 0; round < LEAVE_ROUNDS_MAX; round++) {
		code = rooms_call(a, "ListMyRooms", &lreq.base, (ProtobufCMessage **)&mine, token,
				  st);
		if (code != RPC_OK)
			return code;
		if (mine->n_rooms == 0) {
			protobuf_c_message_free_unpacked(&mine->base, NULL);
			if (left > 0)
				plog_info("auth", "deleted account %s left %zu room%s", user_id,
					  left, left == 1 ? "" : "s");
			return RPC_OK;
		}
		for (size_t i = 0; code == RPC_OK && i < mine->n_rooms; i++) {
			Parley__V1__LeaveRoomRequest req = PARLEY__V1__LEAVE_ROOM_REQUEST__INIT;
			ProtobufCMessage *resp = NULL;

			if (auth_sweeper_stopping(a)) {
				/* Shutting down: the account stays in auth.deleting
				 * and its rooms are left after the next start. */
				code = rpc_status_set(st, RPC_UNAVAILABLE, "auth is stopping");
				break;
			}
			req.room_id = mine->rooms[i]->room_id;
			code = rooms_call(a, "LeaveRoom", &req.base, &resp, token, st);
			if (resp != NULL)
				protobuf_c_message_free_unpacked(resp, NULL);
			left += code == RPC_OK;
		}
		protobuf_c_message_free_unpacked(&mine->base, NULL);
		if (code != RPC_OK)
			return code;
	}
	return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "rooms keep coming");
}

/* Leaves every room of the deleted account user_id with a session made for
 * it and revoked after; then forgets it in auth.deleting. true when done. */
static bool
leave_rooms(auth_service *a, const char *user_id)
{
	char wire[AUTH_TOKEN_WIRE_BYTES];
	rpc_status st = {0};
	uint64_t expires;
	store_txn *txn;
	store_err err;
	rpc_code code;

	if ((err = auth_issue_token(a, user_id, wire, &expires)) != STORE_OK) {
		plog_error("auth", "deleted account %s: no session to leave its rooms: %s",
			   user_id, store_strerror(err));
		return false;
	}
	code = leave_all(a, user_id, wire, &st);
	err = auth_revoke_wire_token(a, user_id, wire);
	sodium_memzero(wire, sizeof(wire));
	if (err != STORE_OK)
		plog_error("auth", "deleted account %s: its leaving session stays until it "
			   "expires: %s", user_id, store_strerror(err));
	if (code != RPC_OK) {
		plog_error("auth", "deleted account %s: cannot leave its rooms now (%s: %s); "
			   "tried again later", user_id, rpc_code_name(code), st.message);
		return false;
	}
	if ((err = store_begin(a->env, true, &txn)) == STORE_OK) {
		err = store_del(txn, a->deleting, user_id, strlen(user_id));
		if (err == STORE_OK || err == STORE_NOTFOUND)
			err = store_commit(txn);
		else
			store_abort(txn);
	}
	if (err != STORE_OK)
		plog_error("auth", "deleted account %s: rooms left, mark stays: %s", user_id,
			   store_strerror(err));
	return true;
}

struct pending_scan {
	char ids[RETRY_BATCH][RPC_USER_ID_MAX];
	size_t n;
};

static bool
collect_pending(void *arg, store_val key, store_val val)
{
	struct pending_scan *s = arg;

	if (key.len == 0 || key.len >= RPC_USER_ID_MAX)
		return true; /* not an id we wrote */
	memcpy(s->ids[s->n], key.data, key.len);
	s->ids[s->n][key.len] = '\0';
	return ++s->n < RETRY_BATCH;
}

void
auth_retry_deletions(auth_service *a)
{
	struct pending_scan s = {.n = 0};
	store_txn *txn;

	if (store_begin(a->env, false, &txn) != STORE_OK)
		return;
	store_scan(txn, a->deleting, NULL, 0, false, collect_pending, &s);
	store_abort(txn);
	for (size_t i = 0; i < s.n && !auth_sweeper_stopping(a); i++)
		if (!leave_rooms(a, s.ids[i]))
			break; /* rooms is still away: next sweep */
}

/* ---- DeleteAccount ------------------------------------------------------------------ */

static rpc_code
delete_account_job(rpc_call *call, void *arg)
{
	struct pw_job *j = arg;
	const Parley__V1__DeleteAccountRequest *req = j->req;
	Parley__Store__V1__UserRecord tomb = PARLEY__STORE__V1__USER_RECORD__INIT;
	const char *user_id = rpc_call_caller(call);
	store_txn *txn;
	store_err err;

	if (!auth_verify_password(j->a, j->rec->password_hash, req->password)) {
		guard_fail(&j->account);
		guard_fail(&j->address);
		return rpc_call_fail(call, RPC_PERMISSION_DENIED, "password is wrong");
	}
	guard_release(&j->account);
	guard_release(&j->address);

	tomb.user_id = (char *)user_id;
	tomb.deleted_at_ms = rpc_wall_ms();
	if ((err = store_begin(j->a->env, true, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "delete account");
	err = auth_put_record(txn, j->a->users, user_id, strlen(user_id), &tomb.base, 0);
	if (err == STORE_OK)
		err = auth_revoke_user_tokens(j->a, txn, user_id, NULL);
	if (err == STORE_OK)
		err = store_put(txn, j->a->deleting, user_id, strlen(user_id), "", 0, 0);
	if (err == STORE_OK)
		err = store_commit(txn);
	else
		store_abort(txn);
	svc_tokens_revoked();
	if (err != STORE_OK)
		return svc_fail_store(call, err, "delete account");
	plog_info("auth", "deleted account %s", user_id);
	/* The account is gone whatever happens next: a failure to leave
	 * the rooms now is retried by the sweeper, not reported. */
	leave_rooms(j->a, user_id);
	return RPC_OK;
}

rpc_code
auth_handle_delete_account(rpc_call *call, const ProtobufCMessage *reqm,
			   ProtobufCMessage *respm, void *ctx)
{
	const Parley__V1__DeleteAccountRequest *req = (const void *)reqm;
	Parley__Store__V1__UserRecord *rec = NULL;
	auth_service *a = ctx;
	const char *user_id = rpc_call_caller(call);
	guard_hold account, address;
	store_err err;
	rpc_code code;

	if (req->password[0] == '\0')
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "password is required to delete an account");
	if (strlen(req->password) > PASSWORD_MAX)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT, "password is too long");
	/* The same limits as Login: a stolen token does not buy unlimited
	 * password guesses. */
	if ((code = guard_reserve_login(a->guard, call, user_id, &account, &address)) != RPC_OK)
		return code;
	err = auth_get_user(a, user_id, &rec);
	if (err == STORE_OK && rec->deleted_at_ms != 0)
		err = STORE_NOTFOUND;
	if (err != STORE_OK) {
		if (rec != NULL)
			parley__store__v1__user_record__free_unpacked(rec, NULL);
		guard_release(&account);
		guard_release(&address);
		if (err == STORE_NOTFOUND)
			return rpc_call_fail(call, RPC_NOT_FOUND, "no user '%s'", user_id);
		return svc_fail_store(call, err, "delete account");
	}
	return auth_defer_to_hashers(a, call, delete_account_job, req, rec, &account,
				     &address);
}

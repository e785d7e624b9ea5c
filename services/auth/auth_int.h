/*
 * auth_int.h — what the files of the Auth service share. Not for other
 * services.
 *
 *   auth.c     lifecycle, the method table, Register, Login, Logout,
 *              Validate, ChangePassword
 *   tokens.c   the session tokens: key, issue, look-up, revoke, the
 *              session sweeper (tokens.h)
 *   account.c  UpdateProfile, GetUsers, DeleteAccount and the leaving of
 *              a deleted account's rooms
 *
 * Locking: as auth.c says (LMDB locks itself; guard and workpool lock
 * themselves; sweep_mtx guards the sweeper's flags). The functions below
 * that take a store_txn work inside the caller's transaction.
 */
#ifndef PARLEY_AUTH_INT_H
#define PARLEY_AUTH_INT_H

#include <pthread.h>

#include <sodium.h>

#include "auth.h"
#include "client.h"
#include "guard.h"
#include "tokens.h"
#include "workpool.h"

#include "parley/store/v1/auth_records.pb-c.h"
#include "parley/v1/auth.pb-c.h"

#define EMAIL_MAX 254
#define DISPLAY_NAME_MAX 64
/* The rooms service names this user as the creator of the rooms it makes
 * itself ("general"): nobody may register it and so become their ADMIN. */
#define AUTH_SYSTEM_USER "parley"

struct auth_service {
	rpc_server *srv;
	store_env *env;
	store_table users, tokens, user_tokens;
	store_table deleting;	/* deleted accounts with rooms still to leave */
	unsigned char token_key[crypto_generichash_KEYBYTES];
	char *dummy_hash;	/* verified against when the user does not exist */
	workpool *hashers;
	guard *guard;		/* limits on password checks */
	uint64_t token_ttl_ms;
	rpc_client *rooms;	/* parley.v1.Rooms: a deleted account leaves its rooms */

	/* The sweeper: deletes expired sessions nobody presents again. */
	pthread_t sweeper;
	bool sweeper_running;
	bool sweeper_stop;	/* sweep_mtx guards */
	pthread_mutex_t sweep_mtx;
	pthread_cond_t sweep_cv;
};

/*
 * What a handler hands to the pool: the request (alive until the call is
 * finished), for Login, ChangePassword and DeleteAccount the user's record
 * (owned), and the limit reservations the check holds (guard.h). It is
 * freed after the call is finished.
 */
struct pw_job {
	auth_service *a;
	workpool_fn fn;		/* the check itself (run_pw_job runs it) */
	const void *req;
	Parley__Store__V1__UserRecord *rec;
	guard_hold account, address;
};

/* Queues fn on the hashing pool in the caller's address's turn; takes
 * ownership of rec and of the holds in every case (holds may be NULL).
 * RPC_DEFERRED, or the call's failure code. */
rpc_code auth_defer_to_hashers(auth_service *a, rpc_call *call, workpool_fn fn,
			       const void *req, Parley__Store__V1__UserRecord *rec,
			       guard_hold *account, guard_hold *address);

/* Pool threads only. */
__attribute__((warn_unused_result)) bool auth_verify_password(auth_service *a,
							      const char *hash,
							      const char *pw);

/* Reads user_id's record (tombstones included); *out is freed by the caller
 * with parley__store__v1__user_record__free_unpacked. STORE_NOTFOUND,
 * STORE_CORRUPT or the store's error. */
store_err auth_get_user(auth_service *a, const char *user_id,
			Parley__Store__V1__UserRecord **out);

/* In txn: packs rec and stores it under key. */
store_err auth_put_record(store_txn *txn, store_table t, const void *key, size_t klen,
			  const ProtobufCMessage *rec, unsigned flags);

/* The record as the wire shows it, email included, in call's arena. */
Parley__V1__User *auth_user_to_wire(rpc_call *call, const Parley__Store__V1__UserRecord *r);

/* "" or at most EMAIL_MAX bytes with one '@' and no spaces or controls. */
bool auth_valid_email(const char *s);

/* account.c: handlers (method table in auth.c). */
rpc_code auth_handle_update_profile(rpc_call *call, const ProtobufCMessage *reqm,
				    ProtobufCMessage *respm, void *ctx);
rpc_code auth_handle_get_users(rpc_call *call, const ProtobufCMessage *reqm,
			       ProtobufCMessage *respm, void *ctx);
rpc_code auth_handle_delete_account(rpc_call *call, const ProtobufCMessage *reqm,
				    ProtobufCMessage *respm, void *ctx);

/* account.c: for the sweeper thread: leaves the rooms of every deleted
 * account whose leaving failed before (rooms was down). */
void auth_retry_deletions(auth_service *a);

#endif

/*
 * tokens.h — the session tokens of the Auth service: the key they are
 * hashed with, issuing, looking up (Validate and the endpoint's own
 * authenticator), revoking, and the sweeper thread that deletes expired
 * sessions nobody presents again. A token is 32 random bytes that only
 * the client holds, as URL-safe base64; the store keeps a keyed BLAKE2b of
 * it. Not for other services (auth_int.h includes it).
 *
 * Locking: LMDB locks itself; the sweeper's flags are guarded by
 * a->sweep_mtx. The functions that take a store_txn work inside the
 * caller's transaction. A wire token is a secret: whoever holds one in a
 * buffer wipes it (sodium_memzero).
 */
#ifndef PARLEY_AUTH_TOKENS_H
#define PARLEY_AUTH_TOKENS_H

#include <sodium.h>

#include "auth.h"

#define AUTH_TOKEN_HASH_BYTES 32
#define AUTH_TOKEN_WIRE_BYTES 44 /* URL-safe base64 of 32 bytes and a NUL */

/* Reads the token key from dir/auth.key, or creates it there on first start
 * (0600, written beside, synced and renamed into place). RPC_OK, or
 * DATA_LOSS (a damaged key) or INTERNAL, with st set. */
int auth_load_token_key(const char *dir, unsigned char key[crypto_generichash_KEYBYTES],
			rpc_status *st);

/* Decodes a wire token into its hash; false if it cannot be one of ours. */
__attribute__((warn_unused_result)) bool
auth_decode_token(auth_service *a, const char *wire, unsigned char hash[AUTH_TOKEN_HASH_BYTES]);

/* Stores a new session of user_id and writes its wire token into wire
 * (AUTH_TOKEN_WIRE_BYTES); secret: the caller wipes it. STORE_OK or the
 * store's error. */
__attribute__((warn_unused_result)) store_err
auth_issue_token(auth_service *a, const char *user_id, char *wire, uint64_t *expires);

/*
 * Resolves a wire token: RPC_OK with user_id, its expiry and its hash, or
 * UNAUTHENTICATED ("invalid or expired token"), INTERNAL (the store
 * failed) or DATA_LOSS (a damaged record), with st set. An expired token
 * is deleted on the way.
 */
__attribute__((warn_unused_result)) rpc_code
auth_lookup_token(auth_service *a, const char *wire, char user_id[RPC_USER_ID_MAX],
		  uint64_t *expires, unsigned char hash[AUTH_TOKEN_HASH_BYTES], rpc_status *st);

/* Deletes one session of user_id, durably. STORE_OK (also when it was
 * gone already), or the store's error: the session may still be valid. */
__attribute__((warn_unused_result)) store_err
auth_revoke_token(auth_service *a, const char *user_id,
		  const unsigned char hash[AUTH_TOKEN_HASH_BYTES]);

/* Deletes the session of the wire token; STORE_OK also when it was gone. */
__attribute__((warn_unused_result)) store_err
auth_revoke_wire_token(auth_service *a, const char *user_id, const char *wire);

/* In txn: deletes every session of user_id except keep (NULL: all).
 * STORE_OK or the store's error. */
__attribute__((warn_unused_result)) store_err
auth_revoke_user_tokens(auth_service *a, store_txn *txn, const char *user_id,
			const unsigned char *keep);

/* Starts the sweeper thread: every token lifetime (at most every 10
 * minutes) it deletes the expired sessions, then retries the leaving of
 * deleted accounts' rooms (auth_retry_deletions). false when no thread
 * can be made. a->sweep_mtx and a->sweep_cv are initialised first. */
bool auth_start_sweeper(auth_service *a);

/* Stops and joins the sweeper; nothing when it is not running. */
void auth_stop_sweeper(auth_service *a);

/* True once auth_stop_sweeper has begun: long work (an account's rooms
 * left one call at a time) stops there and is taken up at the next start. */
bool auth_sweeper_stopping(auth_service *a);

#endif

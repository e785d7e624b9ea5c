/*
 * tokens.c — the session tokens of the Auth service (see tokens.h).
 *
 * Tables (auth.c opens them):
 *   auth.tokens       BLAKE2b(key, token)      -> TokenRecord
 *   auth.user_tokens  user_id \0 BLAKE2b(...)  -> "" (to revoke a user's sessions)
 * Expired sessions go when presented, or at the latest when the sweeper
 * thread passes (every token lifetime, at most every 10 minutes).
 *
 * Locking: LMDB locks itself; sweep_mtx guards the sweeper's flags.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "auth_int.h"
#include "records.h"

#define TOKEN_BYTES 32
#define TOKEN_B64_LEN 43 /* URL-safe base64 of 32 bytes, no padding */
_Static_assert(TOKEN_B64_LEN + 1 == AUTH_TOKEN_WIRE_BYTES, "tokens.h's wire size");
#define SWEEP_BATCH 512			/* expired sessions deleted per transaction */
#define SWEEP_INTERVAL_MAX_MS 600000	/* sweep at least every 10 minutes */

/* ---- the token key ------------------------------------------------------ */

int
auth_load_token_key(const char *dir, unsigned char key[crypto_generichash_KEYBYTES],
		    rpc_status *st)
{
	char path[4096], tmp[4200];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/auth.key", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, key, crypto_generichash_KEYBYTES);
		close(fd);
		if (n != crypto_generichash_KEYBYTES)
			return rpc_status_set(st, RPC_DATA_LOSS, "%s is damaged (%zd bytes)", path,
					      n);
		return RPC_OK;
	}
	if (errno != ENOENT)
		return rpc_status_set(st, RPC_INTERNAL, "cannot read %s: %s", path,
				      strerror(errno));

	/* First start: write a fresh key beside, sync, then rename into place,
	 * so a crash never leaves a half-written key. */
	crypto_generichash_keygen(key);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return rpc_status_set(st, RPC_INTERNAL, "cannot create %s: %s", tmp,
				      strerror(errno));
	n = write(fd, key, crypto_generichash_KEYBYTES);
	if (n != crypto_generichash_KEYBYTES || fsync(fd) != 0) {
		close(fd);
		unlink(tmp);
		return rpc_status_set(st, RPC_INTERNAL, "cannot write %s", tmp);
	}
	close(fd);
	if (rename(tmp, path) != 0)
		return rpc_status_set(st, RPC_INTERNAL, "cannot rename %s: %s", tmp,
				      strerror(errno));
	/* The rename is durable only once the directory is synced: a crash
	 * before would lose the key, and with it every session. */
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0) {
		int err = errno;

		if (fd >= 0)
			close(fd);
		return rpc_status_set(st, RPC_INTERNAL, "cannot sync %s: %s", dir, strerror(err));
	}
	close(fd);
	plog_info("auth", "created token key %s", path);
	return RPC_OK;
}

/* ---- tokens ------------------------------------------------------------------- */

static void
token_hash(auth_service *a, const unsigned char token[TOKEN_BYTES],
	   unsigned char out[AUTH_TOKEN_HASH_BYTES])
{
	crypto_generichash(out, AUTH_TOKEN_HASH_BYTES, token, TOKEN_BYTES, a->token_key,
			   sizeof(a->token_key));
}

bool
auth_decode_token(auth_service *a, const char *wire, unsigned char hash[AUTH_TOKEN_HASH_BYTES])
{
	unsigned char raw[TOKEN_BYTES];
	size_t len = 0;

	if (strlen(wire) != TOKEN_B64_LEN)
		return false;
	if (sodium_base642bin(raw, sizeof(raw), wire, TOKEN_B64_LEN, NULL, &len, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    len != TOKEN_BYTES)
		return false;
	token_hash(a, raw, hash);
	sodium_memzero(raw, sizeof(raw));
	return true;
}

static void
user_token_key(uint8_t *key, size_t *klen, const char *user_id,
	       const unsigned char hash[AUTH_TOKEN_HASH_BYTES])
{
	size_t n = strlen(user_id);

	memcpy(key, user_id, n);
	key[n] = '\0';
	memcpy(key + n + 1, hash, AUTH_TOKEN_HASH_BYTES);
	*klen = n + 1 + AUTH_TOKEN_HASH_BYTES;
}

store_err
auth_issue_token(auth_service *a, const char *user_id, char *wire, uint64_t *expires)
{
	uint64_t now = rpc_wall_ms();
	Parley__Store__V1__TokenRecord rec = PARLEY__STORE__V1__TOKEN_RECORD__INIT;
	unsigned char raw[TOKEN_BYTES], hash[AUTH_TOKEN_HASH_BYTES];
	uint8_t ukey[RPC_USER_ID_MAX + 1 + AUTH_TOKEN_HASH_BYTES];
	size_t uklen;
	store_txn *txn;
	store_err err;

	randombytes_buf(raw, sizeof(raw));
	token_hash(a, raw, hash);
	sodium_bin2base64(wire, TOKEN_B64_LEN + 1, raw, sizeof(raw),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof(raw));

	rec.user_id = (char *)user_id;
	rec.created_at_ms = now;
	rec.expires_at_ms = *expires = now + a->token_ttl_ms;
	rec.token_hash.data = hash;
	rec.token_hash.len = sizeof(hash);
	user_token_key(ukey, &uklen, user_id, hash);

	if ((err = store_begin(a->env, true, &txn)) != STORE_OK)
		return err;
	if ((err = auth_put_record(txn, a->tokens, hash, sizeof(hash), &rec.base, 0)) != STORE_OK ||
	    (err = store_put(txn, a->user_tokens, ukey, uklen, "", 0, 0)) != STORE_OK) {
		store_abort(txn);
		return err;
	}
	return store_commit(txn);
}

store_err
auth_revoke_token(auth_service *a, const char *user_id,
		  const unsigned char hash[AUTH_TOKEN_HASH_BYTES])
{
	uint8_t ukey[RPC_USER_ID_MAX + 1 + AUTH_TOKEN_HASH_BYTES];
	size_t uklen;
	store_txn *txn;
	store_err err;

	user_token_key(ukey, &uklen, user_id, hash);
	if ((err = store_begin(a->env, true, &txn)) != STORE_OK)
		return err;
	err = store_del(txn, a->tokens, hash, AUTH_TOKEN_HASH_BYTES);
	if (err == STORE_OK || err == STORE_NOTFOUND)
		err = store_del(txn, a->user_tokens, ukey, uklen);
	if (err != STORE_OK && err != STORE_NOTFOUND) {
		store_abort(txn);
		return err;
	}
	err = store_commit(txn);
	svc_tokens_revoked(); /* after the commit: see svc.h */
	return err;
}

store_err
auth_revoke_wire_token(auth_service *a, const char *user_id, const char *wire)
{
	unsigned char hash[AUTH_TOKEN_HASH_BYTES];

	if (!auth_decode_token(a, wire, hash))
		return STORE_OK; /* cannot be one of ours: nothing to revoke */
	return auth_revoke_token(a, user_id, hash);
}

rpc_code
auth_lookup_token(auth_service *a, const char *wire, char user_id[RPC_USER_ID_MAX],
		  uint64_t *expires, unsigned char hash[AUTH_TOKEN_HASH_BYTES], rpc_status *st)
{
	Parley__Store__V1__TokenRecord *rec;
	void *buf;
	size_t len;
	store_err err;
	bool ok;

	if (!auth_decode_token(a, wire, hash))
		return rpc_status_set(st, RPC_UNAUTHENTICATED, "invalid or expired token");
	err = store_get_copy(a->env, a->tokens, hash, AUTH_TOKEN_HASH_BYTES, &buf, &len);
	if (err == STORE_NOTFOUND)
		return rpc_status_set(st, RPC_UNAUTHENTICATED, "invalid or expired token");
	if (err != STORE_OK)
		return rpc_status_set(st, RPC_INTERNAL, "token store: %s", store_strerror(err));
	rec = records_token(NULL, buf, len);
	free(buf);
	if (rec == NULL) {
		plog_error("auth", "a token record is damaged"); /* for `parleyd check` */
		return rpc_status_set(st, RPC_DATA_LOSS, "token record is damaged");
	}
	ok = rec->token_hash.len == AUTH_TOKEN_HASH_BYTES &&
	     sodium_memcmp(rec->token_hash.data, hash, AUTH_TOKEN_HASH_BYTES) == 0;
	snprintf(user_id, RPC_USER_ID_MAX, "%s", rec->user_id);
	*expires = rec->expires_at_ms;
	parley__store__v1__token_record__free_unpacked(rec, NULL);
	if (!ok)
		return rpc_status_set(st, RPC_UNAUTHENTICATED, "invalid or expired token");
	if (*expires <= rpc_wall_ms()) {
		/* Expired whether or not this delete succeeds; the sweeper
		 * takes what is left. */
		if (auth_revoke_token(a, user_id, hash) != STORE_OK)
			plog_error("auth", "cannot delete an expired session of %s", user_id);
		return rpc_status_set(st, RPC_UNAUTHENTICATED, "invalid or expired token");
	}
	return RPC_OK;
}

struct revoke_scan {
	const char *user_id;
	size_t prefix_len;
	const unsigned char *keep; /* hash of the session to keep, or NULL */
	unsigned char (*hashes)[AUTH_TOKEN_HASH_BYTES];
	size_t n, cap;
	bool nomem;	/* stopped early: a revocation must not pass for complete */
};

static bool
collect_user_tokens(void *arg, store_val key, store_val val)
{
	struct revoke_scan *s = arg;
	const uint8_t *k = key.data;

	if (key.len != s->prefix_len + AUTH_TOKEN_HASH_BYTES ||
	    memcmp(k, s->user_id, s->prefix_len) != 0)
		return false;
	if (s->keep != NULL && memcmp(k + s->prefix_len, s->keep, AUTH_TOKEN_HASH_BYTES) == 0)
		return true;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		void *p = realloc(s->hashes, cap * AUTH_TOKEN_HASH_BYTES);
		if (p == NULL) {
			s->nomem = true;
			return false;
		}
		s->hashes = p;
		s->cap = cap;
	}
	memcpy(s->hashes[s->n++], k + s->prefix_len, AUTH_TOKEN_HASH_BYTES);
	return true;
}

store_err
auth_revoke_user_tokens(auth_service *a, store_txn *txn, const char *user_id,
			const unsigned char *keep)
{
	struct revoke_scan s = {.user_id = user_id, .prefix_len = strlen(user_id) + 1, .keep = keep};
	uint8_t ukey[RPC_USER_ID_MAX + 1 + AUTH_TOKEN_HASH_BYTES];
	size_t uklen;
	store_err err;

	err = store_scan(txn, a->user_tokens, user_id, s.prefix_len, false, collect_user_tokens,
			 &s);
	if (err == STORE_OK && s.nomem)
		err = STORE_NOMEM; /* ChangePassword and DeleteAccount fail, nothing half done */
	for (size_t i = 0; err == STORE_OK && i < s.n; i++) {
		user_token_key(ukey, &uklen, user_id, s.hashes[i]);
		err = store_del(txn, a->user_tokens, ukey, uklen);
		if (err == STORE_OK || err == STORE_NOTFOUND)
			err = store_del(txn, a->tokens, s.hashes[i], AUTH_TOKEN_HASH_BYTES);
		if (err == STORE_NOTFOUND)
			err = STORE_OK;
	}
	free(s.hashes);
	return err;
}

/* ---- the sweeper ------------------------------------------------------------------ */

/* An expired token is deleted when it is next presented; one never seen
 * again would stay forever. The sweeper thread deletes those, a batch per
 * write transaction, every token lifetime (at most every 10 minutes). */

struct sweep_scan {
	uint64_t now;
	size_t n;
	unsigned char hashes[SWEEP_BATCH][AUTH_TOKEN_HASH_BYTES];
	char users[SWEEP_BATCH][RPC_USER_ID_MAX];
	unsigned char next[AUTH_TOKEN_HASH_BYTES]; /* where the next batch starts */
	bool more;
};

static bool
collect_expired(void *arg, store_val key, store_val val)
{
	struct sweep_scan *s = arg;
	Parley__Store__V1__TokenRecord *rec;

	if (key.len != AUTH_TOKEN_HASH_BYTES)
		return true;
	if (s->n == SWEEP_BATCH) {
		memcpy(s->next, key.data, AUTH_TOKEN_HASH_BYTES);
		s->more = true;
		return false;
	}
	rec = records_token(NULL, val.data, val.len);
	if (rec == NULL)
		return true; /* damaged: Validate reports it, the sweeper leaves it */
	if (rec->expires_at_ms <= s->now && strlen(rec->user_id) < RPC_USER_ID_MAX) {
		memcpy(s->hashes[s->n], key.data, AUTH_TOKEN_HASH_BYTES);
		snprintf(s->users[s->n], RPC_USER_ID_MAX, "%s", rec->user_id);
		s->n++;
	}
	parley__store__v1__token_record__free_unpacked(rec, NULL);
	return true;
}

/* Deletes every session expired by now; returns how many went. */
static size_t
sweep_expired(auth_service *a, struct sweep_scan *s)
{
	uint8_t ukey[RPC_USER_ID_MAX + 1 + AUTH_TOKEN_HASH_BYTES];
	bool first = true;
	size_t uklen, total = 0;
	store_txn *txn;

	s->now = rpc_wall_ms();
	do {
		s->n = 0;
		s->more = false;
		if (store_begin(a->env, false, &txn) != STORE_OK)
			break;
		store_scan(txn, a->tokens, first ? NULL : s->next,
			   first ? 0 : AUTH_TOKEN_HASH_BYTES, false, collect_expired, s);
		store_abort(txn);
		first = false;
		if (s->n == 0)
			continue;
		if (store_begin(a->env, true, &txn) != STORE_OK)
			break;
		for (size_t i = 0; i < s->n; i++) {
			user_token_key(ukey, &uklen, s->users[i], s->hashes[i]);
			store_del(txn, a->tokens, s->hashes[i], AUTH_TOKEN_HASH_BYTES);
			store_del(txn, a->user_tokens, ukey, uklen);
		}
		if (store_commit(txn) != STORE_OK)
			break;
		/* Expired ones are refused by their expiry anyway; this also
		 * covers a wall clock set back after the sweep. */
		svc_tokens_revoked();
		total += s->n;
	} while (s->more);
	return total;
}

static void *
sweeper_main(void *arg)
{
	auth_service *a = arg;
	uint64_t every = a->token_ttl_ms < SWEEP_INTERVAL_MAX_MS ? a->token_ttl_ms
								 : SWEEP_INTERVAL_MAX_MS;
	struct sweep_scan *s = malloc(sizeof(*s));

	if (s == NULL) {
		plog_error("auth", "no memory for the session sweeper; expired sessions stay");
		return NULL;
	}
	pthread_mutex_lock(&a->sweep_mtx);
	while (!a->sweeper_stop) {
		rpc_cond_wait_until(&a->sweep_cv, &a->sweep_mtx, rpc_now_ms() + (int64_t)every);
		if (a->sweeper_stop)
			break;
		pthread_mutex_unlock(&a->sweep_mtx);
		size_t n = sweep_expired(a, s);
		if (n > 0)
			plog_info("auth", "deleted %zu expired session%s", n, n == 1 ? "" : "s");
		auth_retry_deletions(a);
		pthread_mutex_lock(&a->sweep_mtx);
	}
	pthread_mutex_unlock(&a->sweep_mtx);
	free(s);
	return NULL;
}

bool
auth_start_sweeper(auth_service *a)
{
	if (pthread_create(&a->sweeper, NULL, sweeper_main, a) != 0)
		return false;
	a->sweeper_running = true;
	return true;
}

bool
auth_sweeper_stopping(auth_service *a)
{
	bool stop;

	pthread_mutex_lock(&a->sweep_mtx);
	stop = a->sweeper_stop;
	pthread_mutex_unlock(&a->sweep_mtx);
	return stop;
}

void
auth_stop_sweeper(auth_service *a)
{
	if (!a->sweeper_running)
		return;
	pthread_mutex_lock(&a->sweep_mtx);
	a->sweeper_stop = true;
	pthread_cond_signal(&a->sweep_cv);
	pthread_mutex_unlock(&a->sweep_mtx);
	pthread_join(a->sweeper, NULL);
	a->sweeper_running = false;
}

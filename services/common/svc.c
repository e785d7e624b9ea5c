/* svc.c — see svc.h. */
#include "svc.h"

#include <pthread.h>
#include <sodium.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "parley/v1/auth.pb-c.h"

static bool
valid_id(const char *s, size_t min, size_t max)
{
	size_t n = strlen(s);

	if (n < min || n > max)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return false;
	for (size_t i = 1; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == '-'))
			return false;
	}
	return true;
}

bool
svc_valid_user_id(const char *s)
{
	return valid_id(s, 3, 32);
}

bool
svc_valid_room_id(const char *s)
{
	return valid_id(s, 1, 64);
}

rpc_code
svc_check_room_id(rpc_call *call, const char *room_id)
{
	if (svc_valid_room_id(room_id))
		return RPC_OK;
	return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
			     "room_id must be 1 to 64 characters of a-z 0-9 _ . - "
			     "starting with a letter or digit");
}

rpc_code
svc_check_user_ids(rpc_call *call, const char *field, char *const *ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!svc_valid_user_id(ids[i]))
			return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
					     "%s[%zu] is not a user id (3 to 32 characters of a-z "
					     "0-9 _ . - starting with a letter or digit)",
					     field, i);
	return RPC_OK;
}

bool
svc_valid_text(const char *s, size_t min_chars, size_t max_chars)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t chars = 0;

	for (; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return false;
		/* C1 controls U+0080..U+009F are encoded C2 80..C2 9F. */
		if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
			return false;
		if ((*p & 0xc0) != 0x80)
			chars++;
	}
	return chars >= min_chars && chars <= max_chars;
}

rpc_code
svc_fail_store(rpc_call *call, store_err err, const char *what)
{
	switch (err) {
	case STORE_OK:
		return RPC_OK;
	case STORE_NOTFOUND:
		return rpc_call_fail(call, RPC_NOT_FOUND, "%s: not found", what);
	case STORE_EXISTS:
		return rpc_call_fail(call, RPC_ALREADY_EXISTS, "%s: already exists", what);
	case STORE_FULL:
		plog_error("store", "%s: storage is full", what);
		return rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED,
				     "%s: storage is full; the operator must raise the map size",
				     what);
	case STORE_BUSY:
		return rpc_call_fail(call, RPC_UNAVAILABLE, "%s: storage is busy, try again",
				     what);
	case STORE_NOSPACE:
		plog_error("store", "%s: %s", what, store_strerror(err));
		return rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED, "%s: the server's disk is full",
				     what);
	case STORE_CORRUPT:
		plog_error("store", "%s: %s", what, store_strerror(err));
		return rpc_call_fail(call, RPC_DATA_LOSS, "%s: stored data is damaged", what);
	case STORE_NOMEM:
		plog_error("store", "%s: out of memory", what);
		return rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED, "%s: the server is out of memory",
				     what);
	default:
		plog_error("store", "%s: %s", what, store_strerror(err));
		return rpc_call_fail(call, RPC_INTERNAL, "%s: %s", what, store_strerror(err));
	}
}

bool
svc_open_table(store_env *env, const char *name, store_table *t, rpc_status *st)
{
	store_err err = store_table_open(env, name, t);

	if (err != STORE_OK) {
		rpc_status_set(st, RPC_INTERNAL, "cannot open table %s: %s", name,
			       store_strerror(err));
		return false;
	}
	return true;
}

/* The rooms service of this process: its change log's committed head,
 * and whether a write is under way (its outcome not yet in the head). */
static uint64_t rooms_head;
static unsigned rooms_instances, rooms_writing;

static void
raise_rooms_head(uint64_t head)
{
	uint64_t was = __atomic_load_n(&rooms_head, __ATOMIC_SEQ_CST);

	while (was < head &&
	       !__atomic_compare_exchange_n(&rooms_head, &was, head, false, __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST))
		;
}

void
svc_rooms_log_opened(uint64_t head)
{
	__atomic_add_fetch(&rooms_instances, 1, __ATOMIC_SEQ_CST);
	raise_rooms_head(head);
}

void
svc_rooms_log_write_begin(void)
{
	__atomic_add_fetch(&rooms_writing, 1, __ATOMIC_SEQ_CST);
}

void
svc_rooms_log_write_end(uint64_t committed)
{
	raise_rooms_head(committed);
	__atomic_sub_fetch(&rooms_writing, 1, __ATOMIC_SEQ_CST);
}

bool
svc_rooms_log_head(uint64_t *head)
{
	if (__atomic_load_n(&rooms_instances, __ATOMIC_SEQ_CST) != 1 ||
	    __atomic_load_n(&rooms_writing, __ATOMIC_SEQ_CST) != 0)
		return false;
	*head = __atomic_load_n(&rooms_head, __ATOMIC_SEQ_CST);
	return true;
}

/*
 * The validation cache. Only when the auth service runs in this process:
 * its revocations (Logout, ChangePassword, DeleteAccount, an expired token
 * found) bump `revocations` once committed, and an entry counts only while
 * that number is what it was before the validation that made it began. So
 * a revoked token is refused at once, as without the cache, and the cache
 * saves the call for every other one (a Poll, its reply's check, a Send).
 * With auth in another process nothing is cached. Entries hold a hash of
 * the token, never the token.
 */
#define AUTHN_CACHE_SLOTS 1024

static uint64_t revocations;

void
svc_tokens_revoked(void)
{
	__atomic_add_fetch(&revocations, 1, __ATOMIC_SEQ_CST);
}

struct authn_entry {
	unsigned char key[crypto_generichash_BYTES];
	char user_id[RPC_USER_ID_MAX];
	uint64_t expires_ms;	/* wall clock */
	uint64_t revocations;	/* as read before the validation */
	bool used;
};

struct svc_authn {
	rpc_client *auth;
	pthread_mutex_t mtx;	/* guards cache */
	struct authn_entry *cache;
};

static unsigned
cache_slot(const unsigned char key[crypto_generichash_BYTES])
{
	return ((unsigned)key[0] | (unsigned)key[1] << 8) % AUTHN_CACHE_SLOTS;
}

static bool
cache_get(svc_authn *a, const unsigned char *key, char user_id[RPC_USER_ID_MAX])
{
	struct authn_entry *e = &a->cache[cache_slot(key)];
	bool hit;

	pthread_mutex_lock(&a->mtx);
	hit = e->used && sodium_memcmp(e->key, key, sizeof(e->key)) == 0 &&
	      e->revocations == __atomic_load_n(&revocations, __ATOMIC_SEQ_CST) &&
	      rpc_wall_ms() < e->expires_ms;
	if (hit)
		memcpy(user_id, e->user_id, RPC_USER_ID_MAX);
	pthread_mutex_unlock(&a->mtx);
	return hit;
}

static void
cache_put(svc_authn *a, const unsigned char *key, const char *user_id, uint64_t expires_ms,
	  uint64_t seen)
{
	struct authn_entry *e = &a->cache[cache_slot(key)];

	pthread_mutex_lock(&a->mtx);
	memcpy(e->key, key, sizeof(e->key));
	snprintf(e->user_id, sizeof(e->user_id), "%s", user_id);
	e->expires_ms = expires_ms;
	e->revocations = seen;
	e->used = true;
	pthread_mutex_unlock(&a->mtx);
}

int
svc_authn_open(svc_authn **ap, const char *auth_addr, rpc_status *st)
{
	svc_authn *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	if ((a->cache = calloc(AUTHN_CACHE_SLOTS, sizeof(*a->cache))) == NULL) {
		free(a);
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	if (rpc_client_open(&a->auth, auth_addr, st) != RPC_OK) {
		free(a->cache);
		free(a);
		return st->code;
	}
	pthread_mutex_init(&a->mtx, NULL);
	*ap = a;
	return RPC_OK;
}

void
svc_authn_close(svc_authn *a)
{
	if (a == NULL)
		return;
	rpc_client_close(a->auth);
	sodium_memzero(a->cache, AUTHN_CACHE_SLOTS * sizeof(*a->cache));
	free(a->cache);
	pthread_mutex_destroy(&a->mtx);
	free(a);
}

rpc_code
svc_authn_validate(void *arg, const char *token, int64_t deadline_ms,
		   char user_id[RPC_USER_ID_MAX], rpc_status *st)
{
	svc_authn *a = arg;
	Parley__V1__ValidateRequest req = PARLEY__V1__VALIDATE_REQUEST__INIT;
	Parley__V1__ValidateResponse *resp;
	rpc_call_opts opts = {.deadline_ms = deadline_ms};
	char why[RPC_STATUS_MESSAGE_MAX];
	unsigned char key[crypto_generichash_BYTES];
	bool local = rpc_client_is_local(a->auth);
	uint64_t seen = __atomic_load_n(&revocations, __ATOMIC_SEQ_CST);
	rpc_code code;

	if (local) {
		crypto_generichash(key, sizeof(key), (const unsigned char *)token, strlen(token),
				   NULL, 0);
		if (cache_get(a, key, user_id))
			return RPC_OK;
	}
	req.token = (char *)token;
	code = rpc_client_call(a->auth, &parley__v1__auth__descriptor, "Validate", &req.base,
			       (ProtobufCMessage **)&resp, &opts, st);
	if (code == RPC_OK) {
		/* Services trust no reply blindly: a user id that is not one
		 * (empty, too long, odd characters) would become the caller
		 * of every handler, so the call fails instead. */
		bool valid = resp->user_id != NULL && svc_valid_user_id(resp->user_id);

		if (valid)
			snprintf(user_id, RPC_USER_ID_MAX, "%s", resp->user_id);
		if (valid && local)
			cache_put(a, key, user_id, resp->expires_at_ms, seen);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		if (!valid) {
			user_id[0] = '\0';
			plog_error("authn", "auth service at %s answered Validate without a "
			           "valid user id", rpc_client_url(a->auth));
			return rpc_status_set(st, RPC_INTERNAL,
					      "auth service answered Validate without a valid "
					      "user id");
		}
		return RPC_OK;
	}
	if (code == RPC_UNAUTHENTICATED)
		return code; /* auth's own message says why */
	/* st->message is the reason; it is quoted, never formatted from itself. */
	snprintf(why, sizeof(why), "%s", st->message);
	if (code == RPC_DEADLINE_EXCEEDED || code == RPC_UNAVAILABLE)
		return rpc_status_set(st, RPC_UNAVAILABLE, "auth service unavailable: %s", why);
	return rpc_status_set(st, RPC_INTERNAL, "auth service error: %s %s",
			      rpc_code_name(code), why);
}

int
svc_pub_conns_open(nng_socket sock, const char *name, rpc_conns **out, rpc_status *st)
{
	rpc_limits lim;

	rpc_get_limits(&lim);
	lim.idle_ms = -1; /* a subscriber never sends: silence says nothing */
	if (conns_open(out, sock, &lim, name, st) != RPC_OK)
		return st->code;
	conns_keep_local(*out);
	return RPC_OK;
}

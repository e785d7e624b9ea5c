/*
 * auth.c — the Auth service (see auth.h).
 *
 * Tables:
 *   auth.users        user_id                  -> UserRecord
 *   auth.deleting     deleted accounts with rooms still to leave (account.c)
 *   auth.tokens, auth.user_tokens: the sessions (tokens.c)
 *
 * Password hashing is the expensive part. Register, Login and ChangePassword
 * do their cheap checks on the rpc worker thread, then hand the call to a
 * work pool of one thread per core (workpool.h) and answer from there: at
 * most one Argon2id hash per core runs at a time, a login storm queues (up
 * to a bound well below the call slots, then RESOURCE_EXHAUSTED) instead of
 * exhausting memory or slots, the queue serves callers' addresses in turn,
 * and the rpc workers stay free for Validate, which every other service
 * calls. A password check takes its place in the limits (guard.h: per
 * account and address, per address) before it is queued, so a burst of
 * calls gets no more checks than the limits allow.
 * Shared mutable state: LMDB (its own locking), the limits (lock
 * themselves) and the pool (locks itself).
 */
#include "auth.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "metrics.h"
#include "records.h"
#include "parley/store/v1/auth_records.pb-c.h"
#include "parley/v1/auth.pb-c.h"
#include "guard.h"
#include "workpool.h"
#include "auth_int.h"

#define PASSWORD_MIN 8
#define PASSWORD_MAX 1024
#define HASH_QUEUE_MAX 64	/* password checks waiting, at most ... */
#define HASH_QUEUE_SHARE 4	/* ... and at most 1/4 of the call slots */

/* Identical for an unknown user and a wrong password: same status, same
 * bytes. */
static const char login_failed[] = "invalid user id or password";

/* ---- passwords ------------------------------------------------------------ */

/* Password hashing runs on the pool threads only (and once at start). */
static __attribute__((warn_unused_result)) bool
hash_password(auth_service *a, const char *pw, char out[crypto_pwhash_STRBYTES])
{
	return crypto_pwhash_str(out, pw, strlen(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
				 crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0;
}

static __attribute__((warn_unused_result)) bool
verify_password(auth_service *a, const char *hash, const char *pw)
{
	return crypto_pwhash_str_verify(hash, pw, strlen(pw)) == 0;
}

static __attribute__((warn_unused_result)) bool
valid_email(const char *s)
{
	size_t n = strlen(s);
	const char *at = strchr(s, '@');

	if (n == 0)
		return true; /* optional */
	if (n > EMAIL_MAX || at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@'))
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* ---- records ---------------------------------------------------------------- */

/* Reads user_id's record; *out is freed by the caller with
 * parley__store__v1__user_record__free_unpacked. */
static __attribute__((warn_unused_result)) store_err
get_user(auth_service *a, const char *user_id, Parley__Store__V1__UserRecord **out)
{
	void *buf;
	size_t len;
	store_err err;

	err = store_get_copy(a->env, a->users, user_id, strlen(user_id), &buf, &len);
	if (err != STORE_OK)
		return err;
	*out = records_user(NULL, user_id, buf, len);
	free(buf);
	return *out != NULL ? STORE_OK : STORE_CORRUPT;
}

static Parley__V1__User *
user_to_wire(rpc_call *call, const Parley__Store__V1__UserRecord *r)
{
	Parley__V1__User *u = rpc_call_alloc(call, sizeof(*u));

	parley__v1__user__init(u);
	u->user_id = rpc_call_strdup(call, r->user_id);
	u->display_name = rpc_call_strdup(call, r->display_name);
	u->email = rpc_call_strdup(call, r->email);
	u->created_at_ms = r->created_at_ms;
	return u;
}

static store_err
put_record(store_txn *txn, store_table t, const void *key, size_t klen,
	   const ProtobufCMessage *rec, unsigned flags)
{
	size_t len = protobuf_c_message_get_packed_size(rec);
	uint8_t *buf = malloc(len ? len : 1);
	store_err err;

	if (buf == NULL)
		return STORE_IO;
	protobuf_c_message_pack(rec, buf);
	err = store_put(txn, t, key, klen, buf, len, flags);
	free(buf);
	return err;
}

/* ---- handlers -------------------------------------------------------------------- */

/* The auth endpoint's own authenticator: a local lookup. */
static rpc_code
authn_local(void *ctx, const char *token, int64_t deadline_ms, char user_id[RPC_USER_ID_MAX],
	    rpc_status *st)
{
	unsigned char hash[AUTH_TOKEN_HASH_BYTES];
	uint64_t expires;

	return auth_lookup_token(ctx, token, user_id, &expires, hash, st);
}

static __attribute__((warn_unused_result)) rpc_code
check_password_size(rpc_call *call, const char *field, const char *pw)
{
	size_t n = strlen(pw);

	if (n < PASSWORD_MIN || n > PASSWORD_MAX)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "%s must be %d to %d bytes long", field, PASSWORD_MIN,
				     PASSWORD_MAX);
	return RPC_OK;
}

/* A job that never ran, or ended without judging a password, gives its
 * reservations back here: none is ever leaked. */
static void
pw_job_free(void *arg)
{
	struct pw_job *j = arg;

	guard_release(&j->account);
	guard_release(&j->address);
	if (j->rec != NULL)
		parley__store__v1__user_record__free_unpacked(j->rec, NULL);
	free(j);
}

/* Zeroes the passwords of an unpacked Register, Login, ChangePassword or
 * DeleteAccount request before the runtime frees it (the runtime wipes the frame and the
 * reply: rpc_call_wipe_after_reply). */
static void
wipe_passwords(const ProtobufCMessage *req)
{
	char *pw[2] = {NULL, NULL};

	if (req->descriptor == &parley__v1__login_request__descriptor) {
		pw[0] = ((Parley__V1__LoginRequest *)req)->password;
	} else if (req->descriptor == &parley__v1__register_request__descriptor) {
		pw[0] = ((Parley__V1__RegisterRequest *)req)->password;
	} else if (req->descriptor == &parley__v1__change_password_request__descriptor) {
		pw[0] = ((Parley__V1__ChangePasswordRequest *)req)->old_password;
		pw[1] = ((Parley__V1__ChangePasswordRequest *)req)->new_password;
	} else if (req->descriptor == &parley__v1__delete_account_request__descriptor) {
		pw[0] = ((Parley__V1__DeleteAccountRequest *)req)->password;
	}
	for (int i = 0; i < 2; i++)
		if (pw[i] != NULL)
			sodium_memzero(pw[i], strlen(pw[i]));
}

/* Every password job: the check, then the passwords go, while the call
 * (and its request) is still this thread's. */
static rpc_code
run_pw_job(rpc_call *call, void *arg)
{
	struct pw_job *j = arg;
	rpc_code code = j->fn(call, j);

	wipe_passwords(j->req);
	return code;
}

/*
 * Queues fn on the hashing pool, in the caller's address's turn; takes
 * ownership of rec and of the reservations in every case (holds may be
 * NULL: none).
 */
rpc_code
auth_defer_to_hashers(auth_service *a, rpc_call *call, workpool_fn fn, const void *req,
		 Parley__Store__V1__UserRecord *rec, guard_hold *account, guard_hold *address)
{
	struct pw_job *j = calloc(1, sizeof(*j));
	char flow[GUARD_PEER_MAX];

	if (j == NULL) {
		if (account != NULL)
			guard_release(account);
		if (address != NULL)
			guard_release(address);
		if (rec != NULL)
			parley__store__v1__user_record__free_unpacked(rec, NULL);
		return rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	*j = (struct pw_job){.a = a, .fn = fn, .req = req, .rec = rec};
	if (account != NULL)
		j->account = *account;
	if (address != NULL)
		j->address = *address;
	guard_peer(call, flow);
	return workpool_defer(a->hashers, call, flow, run_pw_job, j, pw_job_free);
}

static rpc_code
register_job(rpc_call *call, void *arg)
{
	struct pw_job *j = arg;
	const Parley__V1__RegisterRequest *req = j->req;
	Parley__V1__RegisterResponse *resp = (void *)rpc_call_response(call);
	Parley__Store__V1__UserRecord rec = PARLEY__STORE__V1__USER_RECORD__INIT;
	char hash[crypto_pwhash_STRBYTES];
	store_txn *txn;
	store_err err;

	if (!hash_password(j->a, req->password, hash))
		return rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED, "cannot hash password now");
	rec.user_id = req->user_id;
	rec.display_name = req->display_name;
	rec.email = req->email;
	rec.created_at_ms = rpc_wall_ms();
	rec.password_hash = hash;
	if ((err = store_begin(j->a->env, true, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "register");
	err = put_record(txn, j->a->users, req->user_id, strlen(req->user_id), &rec.base,
			 STORE_NOOVERWRITE);
	if (err != STORE_OK) {
		store_abort(txn);
		if (err == STORE_EXISTS) {
			guard_fail(&j->address);
			return rpc_call_fail(call, RPC_ALREADY_EXISTS, "user '%s' already exists",
					     req->user_id);
		}
		return svc_fail_store(call, err, "register");
	}
	if ((err = store_commit(txn)) != STORE_OK)
		return svc_fail_store(call, err, "register");
	guard_release(&j->address);
	resp->user = user_to_wire(call, &rec);
	plog_info("auth", "registered user %s", req->user_id);
	return RPC_OK;
}

static rpc_code
start_register(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		void *ctx)
{
	const Parley__V1__RegisterRequest *req = (const void *)reqm;
	auth_service *a = ctx;
	guard_hold address;
	void *buf;
	size_t len;
	store_err err;
	rpc_code code;

	if (!svc_valid_user_id(req->user_id))
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "user_id must be 3 to 32 characters of a-z 0-9 _ . - "
				     "starting with a letter or digit");
	if (strcmp(req->user_id, AUTH_SYSTEM_USER) == 0)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "user_id '%s' is reserved for the server itself",
				     AUTH_SYSTEM_USER);
	if ((code = check_password_size(call, "password", req->password)) != RPC_OK)
		return code;
	if (!svc_valid_text(req->display_name, 1, DISPLAY_NAME_MAX))
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "display_name must be 1 to %d characters without control "
				     "characters",
				     DISPLAY_NAME_MAX);
	if (!valid_email(req->email))
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "email must be at most %d bytes with exactly one '@'",
				     EMAIL_MAX);
	/* Every try that gets this far says whether a name is taken: each
	 * taken one counts against the caller's address, so listing accounts
	 * is slow. */
	if ((code = guard_reserve_register(a->guard, call, &address)) != RPC_OK)
		return code;

	/* Cheap check first so a taken name costs no hash; the insert in
	 * register_job is the authority. */
	err = store_get_copy(a->env, a->users, req->user_id, strlen(req->user_id), &buf, &len);
	free(buf);
	if (err == STORE_OK) {
		guard_fail(&address);
		return rpc_call_fail(call, RPC_ALREADY_EXISTS, "user '%s' already exists",
				     req->user_id);
	}
	return auth_defer_to_hashers(a, call, register_job, req, NULL, NULL, &address);
}

/* Counts a failed login and answers the one failure reply. */
static rpc_code
fail_login(rpc_call *call, struct pw_job *j)
{
	static rpc_metric *failures;

	rpc_counter_add(rpc_metrics_counter_cached(&failures, "parley_auth_login_failures_total",
						   "Logins refused: wrong user id or password.",
						   NULL),
			1);
	guard_fail(&j->account);
	guard_fail(&j->address);
	return rpc_call_fail(call, RPC_UNAUTHENTICATED, "%s", login_failed);
}

/* Upgrades a hash made with older parameters; best effort. */
static void
maybe_rehash(auth_service *a, Parley__Store__V1__UserRecord *rec, const char *pw)
{
	char hash[crypto_pwhash_STRBYTES];
	store_txn *txn;
	char *old = rec->password_hash;
	store_err err;

	if (crypto_pwhash_str_needs_rehash(rec->password_hash, crypto_pwhash_OPSLIMIT_INTERACTIVE,
					   crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0)
		return;
	if (!hash_password(a, pw, hash))
		return;
	if (store_begin(a->env, true, &txn) != STORE_OK)
		return;
	rec->password_hash = hash;
	err = put_record(txn, a->users, rec->user_id, strlen(rec->user_id), &rec->base, 0);
	rec->password_hash = old;
	if (err == STORE_OK && store_commit(txn) == STORE_OK)
		plog_info("auth", "rehashed password of %s", rec->user_id);
	else if (err != STORE_OK)
		store_abort(txn);
}

static rpc_code
login_job(rpc_call *call, void *arg)
{
	struct pw_job *j = arg;
	const Parley__V1__LoginRequest *req = j->req;
	Parley__V1__LoginResponse *resp = (void *)rpc_call_response(call);
	char wire[AUTH_TOKEN_WIRE_BYTES];
	uint64_t expires;
	store_err err;

	if (j->rec == NULL) {
		/* Same work as a wrong password, so timing tells nothing. */
		if (verify_password(j->a, j->a->dummy_hash, req->password))
			plog_error("auth", "dummy hash matched a password");
		return fail_login(call, j);
	}
	if (!verify_password(j->a, j->rec->password_hash, req->password))
		return fail_login(call, j);
	guard_succeed(&j->account);
	guard_succeed(&j->address);
	maybe_rehash(j->a, j->rec, req->password);

	err = auth_issue_token(j->a, j->rec->user_id, wire, &expires);
	if (err == STORE_OK)
		resp->token = rpc_call_strdup(call, wire); /* the arena is wiped too */
	sodium_memzero(wire, sizeof(wire));
	if (err != STORE_OK)
		return svc_fail_store(call, err, "login");
	resp->expires_at_ms = expires;
	resp->user = user_to_wire(call, j->rec);
	return RPC_OK;
}

static rpc_code
start_login(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	const Parley__V1__LoginRequest *req = (const void *)reqm;
	Parley__Store__V1__UserRecord *rec = NULL;
	auth_service *a = ctx;
	guard_hold account, address;
	store_err err;
	rpc_code code;

	if (strlen(req->user_id) > 32 || strlen(req->password) > PASSWORD_MAX)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "user_id or password is too long");
	/* Any user_id, "" included, takes its turn: an unknown account is
	 * limited exactly like a known one. */
	if ((code = guard_reserve_login(a->guard, call, req->user_id, &account, &address)) !=
	    RPC_OK)
		return code;
	err = svc_valid_user_id(req->user_id) ? get_user(a, req->user_id, &rec) : STORE_NOTFOUND;
	if (err == STORE_OK && rec->deleted_at_ms != 0) {
		/* A deleted account is an unknown one (the dummy hash is
		 * checked: same work, same answer). */
		parley__store__v1__user_record__free_unpacked(rec, NULL);
		rec = NULL;
		err = STORE_NOTFOUND;
	}
	if (err != STORE_OK && err != STORE_NOTFOUND) {
		guard_release(&account);
		guard_release(&address);
		return svc_fail_store(call, err, "login");
	}
	return auth_defer_to_hashers(a, call, login_job, req, rec, &account, &address);
}

static rpc_code
handle_logout(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	auth_service *a = ctx;
	unsigned char hash[AUTH_TOKEN_HASH_BYTES];
	store_err err;

	/* The runtime has validated the token; it decodes. */
	if (!auth_decode_token(a, rpc_call_token(call), hash))
		return rpc_call_fail(call, RPC_UNAUTHENTICATED, "invalid or expired token");
	/* OK only once the session is gone for good: a client told OK
	 * forgets its token, and must not leave a live one behind. */
	if ((err = auth_revoke_token(a, rpc_call_caller(call), hash)) != STORE_OK)
		return svc_fail_store(call, err, "logout");
	return RPC_OK;
}

static rpc_code
handle_validate(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		void *ctx)
{
	const Parley__V1__ValidateRequest *req = (const void *)reqm;
	Parley__V1__ValidateResponse *resp = (void *)respm;
	unsigned char hash[AUTH_TOKEN_HASH_BYTES];
	char user_id[RPC_USER_ID_MAX];
	rpc_status st;
	uint64_t expires;

	if (auth_lookup_token(ctx, req->token, user_id, &expires, hash, &st) != RPC_OK)
		return rpc_call_fail_status(call, &st);
	resp->user_id = rpc_call_strdup(call, user_id);
	resp->expires_at_ms = expires;
	return RPC_OK;
}

static rpc_code
change_password_job(rpc_call *call, void *arg)
{
	struct pw_job *j = arg;
	const Parley__V1__ChangePasswordRequest *req = j->req;
	const char *user_id = rpc_call_caller(call);
	unsigned char keep[AUTH_TOKEN_HASH_BYTES];
	char hash[crypto_pwhash_STRBYTES];
	char *old_hash;
	store_txn *txn;
	store_err err;

	if (!verify_password(j->a, j->rec->password_hash, req->old_password)) {
		guard_fail(&j->account);
		guard_fail(&j->address);
		return rpc_call_fail(call, RPC_PERMISSION_DENIED, "old password is wrong");
	}
	/* Right: give the reservations back now (failures stay: proving the
	 * password to change it is not a login). */
	guard_release(&j->account);
	guard_release(&j->address);
	if (!hash_password(j->a, req->new_password, hash))
		return rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED, "cannot hash password now");
	if (!auth_decode_token(j->a, rpc_call_token(call), keep))
		return rpc_call_fail(call, RPC_UNAUTHENTICATED, "invalid or expired token");

	old_hash = j->rec->password_hash;
	j->rec->password_hash = hash;
	err = store_begin(j->a->env, true, &txn);
	if (err == STORE_OK) {
		err = put_record(txn, j->a->users, user_id, strlen(user_id), &j->rec->base, 0);
		if (err == STORE_OK)
			err = auth_revoke_user_tokens(j->a, txn, user_id, keep);
		if (err == STORE_OK)
			err = store_commit(txn);
		else
			store_abort(txn);
		svc_tokens_revoked();
	}
	j->rec->password_hash = old_hash;
	if (err != STORE_OK)
		return svc_fail_store(call, err, "change password");
	plog_info("auth", "password changed for %s; other sessions revoked", user_id);
	return RPC_OK;
}

static rpc_code
start_change_password(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		       void *ctx)
{
	const Parley__V1__ChangePasswordRequest *req = (const void *)reqm;
	auth_service *a = ctx;
	const char *user_id = rpc_call_caller(call);
	Parley__Store__V1__UserRecord *rec = NULL;
	guard_hold account, address;
	store_err err;
	rpc_code code;

	if ((code = check_password_size(call, "new_password", req->new_password)) != RPC_OK)
		return code;
	if (strlen(req->old_password) > PASSWORD_MAX)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT, "old_password is too long");
	if ((code = guard_reserve_login(a->guard, call, user_id, &account, &address)) != RPC_OK)
		return code;
	if ((err = get_user(a, user_id, &rec)) != STORE_OK) {
		guard_release(&account);
		guard_release(&address);
		return svc_fail_store(call, err, "change password");
	}
	return auth_defer_to_hashers(a, call, change_password_job, req, rec, &account, &address);
}

/*
 * The password methods: the call carries secrets from the start. A call
 * handed to the pool is the pool's at once (its job wipes the passwords);
 * any other outcome is answered from here, so wipe them here.
 */
static rpc_code
with_secrets(rpc_handler_fn start, rpc_call *call, const ProtobufCMessage *req,
	     ProtobufCMessage *resp, void *ctx)
{
	rpc_code code;

	rpc_call_wipe_after_reply(call);
	code = start(call, req, resp, ctx);
	if (code != RPC_DEFERRED)
		wipe_passwords(req);
	return code;
}

static rpc_code
handle_register(rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage *resp, void *ctx)
{
	return with_secrets(start_register, call, req, resp, ctx);
}

static rpc_code
handle_login(rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage *resp, void *ctx)
{
	return with_secrets(start_login, call, req, resp, ctx);
}

static rpc_code
handle_change_password(rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage *resp,
		       void *ctx)
{
	return with_secrets(start_change_password, call, req, resp, ctx);
}

static rpc_code
handle_delete_account(rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage *resp,
		      void *ctx)
{
	return with_secrets(auth_handle_delete_account, call, req, resp, ctx);
}

static const rpc_method auth_methods[] = {
	{.fn = handle_register, .auth = RPC_AUTH_NONE},
	{.fn = handle_login, .auth = RPC_AUTH_NONE},
	{.fn = handle_logout, .auth = RPC_AUTH_REQUIRED},
	{.fn = handle_validate, .auth = RPC_AUTH_NONE},
	{.fn = handle_change_password, .auth = RPC_AUTH_REQUIRED},
	{.fn = auth_handle_update_profile, .auth = RPC_AUTH_REQUIRED},
	{.fn = auth_handle_get_users, .auth = RPC_AUTH_REQUIRED},
	{.fn = handle_delete_account, .auth = RPC_AUTH_REQUIRED},
};

/* The table above follows the descriptor's method order; check it. */
static bool
methods_match_descriptor(void)
{
	static const char *const names[] = {"Register",	   "Login",    "Logout",
					    "Validate",	   "ChangePassword", "UpdateProfile",
					    "GetUsers",	   "DeleteAccount"};
	const ProtobufCServiceDescriptor *d = &parley__v1__auth__descriptor;

	if (d->n_methods != sizeof(auth_methods) / sizeof(auth_methods[0]))
		return false;
	for (unsigned i = 0; i < d->n_methods; i++)
		if (strcmp(d->methods[i].name, names[i]) != 0)
			return false;
	return true;
}

/* ---- lifecycle ------------------------------------------------------------------- */

/*
 * A queued password check keeps its call slot until it is answered. The
 * queue stays well below the slots, so that Validate, Health and the rest
 * always find one during a login storm; beyond it Login, Register and
 * ChangePassword answer RESOURCE_EXHAUSTED with retry_after_ms at once.
 */
static int
hash_queue_max(const parley_config *cfg)
{
	int slots = cfg->contexts > 0 ? cfg->contexts : 256;
	int n = slots / HASH_QUEUE_SHARE;

	return n < 1 ? 1 : n > HASH_QUEUE_MAX ? HASH_QUEUE_MAX : n;
}

int
auth_service_start(const parley_config *cfg, auth_service **out, rpc_status *st)
{
	rpc_server_opts opts = {.contexts = cfg->contexts, .workers = cfg->workers,
				.name = "auth"};
	auth_service *a;
	char dummy_pw[32];
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	if (!methods_match_descriptor())
		return rpc_status_set(st, RPC_INTERNAL, "auth method table out of date");
	if (sodium_init() < 0)
		return rpc_status_set(st, RPC_INTERNAL, "libsodium failed to initialise");
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	a->env = cfg->env;
	a->token_ttl_ms = (uint64_t)(cfg->token_ttl_s ? cfg->token_ttl_s : 86400) * 1000;
	pthread_mutex_init(&a->sweep_mtx, NULL);
	rpc_cond_init(&a->sweep_cv);

	if (auth_load_token_key(cfg->data_dir, a->token_key, st) != RPC_OK)
		goto fail;
	if (!svc_open_table(a->env, "auth.users", &a->users, st) ||
	    !svc_open_table(a->env, "auth.tokens", &a->tokens, st) ||
	    !svc_open_table(a->env, "auth.user_tokens", &a->user_tokens, st) ||
	    !svc_open_table(a->env, "auth.deleting", &a->deleting, st))
		goto fail;
	if (cfg->rooms_addr != NULL && rpc_client_open(&a->rooms, cfg->rooms_addr, st) != RPC_OK)
		goto fail;
	a->guard = guard_new();
	a->dummy_hash = malloc(crypto_pwhash_STRBYTES);
	a->hashers = workpool_new(cores > 0 ? (int)cores : 1, hash_queue_max(cfg));
	if (a->guard == NULL || a->dummy_hash == NULL || a->hashers == NULL) {
		rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
		goto fail;
	}
	randombytes_buf(dummy_pw, sizeof(dummy_pw));
	dummy_pw[sizeof(dummy_pw) - 1] = '\0';
	for (size_t i = 0; i + 1 < sizeof(dummy_pw); i++)
		dummy_pw[i] = (char)('a' + ((unsigned char)dummy_pw[i] % 26));
	if (!hash_password(a, dummy_pw, a->dummy_hash)) {
		sodium_memzero(dummy_pw, sizeof(dummy_pw));
		rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "cannot compute the dummy hash");
		goto fail;
	}
	sodium_memzero(dummy_pw, sizeof(dummy_pw));

	if (rpc_server_open(&a->srv, cfg->auth_listen, &opts, st) != RPC_OK)
		goto fail;
	rpc_server_add_service(a->srv, &parley__v1__auth__descriptor, auth_methods, a);
	rpc_server_set_authenticator(a->srv, authn_local, a);
	if (rpc_server_start(a->srv, st) != RPC_OK)
		goto fail;
	svc_tokens_revoked(); /* nothing remembered from an earlier instance */
	if (!auth_start_sweeper(a)) {
		rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "cannot start the session sweeper");
		goto fail;
	}
	*out = a;
	return RPC_OK;

fail:
	if (a->srv != NULL)
		rpc_server_close(a->srv, 0);
	a->srv = NULL;
	auth_service_stop(a);
	return st->code;
}

void
auth_service_shutdown(auth_service *a)
{
	if (a == NULL)
		return;
	/* No new calls; then the queued password checks run to the end and
	 * answer their calls. */
	if (a->srv != NULL)
		rpc_server_shutdown(a->srv);
	workpool_stop(a->hashers);
	a->hashers = NULL;
	auth_stop_sweeper(a);
}

void
auth_service_stop(auth_service *a)
{
	if (a == NULL)
		return;
	if (a->srv != NULL)
		rpc_server_close(a->srv, 5000);
	svc_tokens_revoked(); /* what other services remember of it goes too */
	workpool_stop(a->hashers);
	auth_stop_sweeper(a);
	pthread_cond_destroy(&a->sweep_cv);
	pthread_mutex_destroy(&a->sweep_mtx);
	guard_free(a->guard);
	if (a->rooms != NULL)
		rpc_client_close(a->rooms);
	free(a->dummy_hash);
	sodium_memzero(a->token_key, sizeof(a->token_key));
	free(a);
}

/* ---- for account.c (auth_int.h) ------------------------------------------------ */

bool
auth_verify_password(auth_service *a, const char *hash, const char *pw)
{
	return verify_password(a, hash, pw);
}

store_err
auth_get_user(auth_service *a, const char *user_id, Parley__Store__V1__UserRecord **out)
{
	return get_user(a, user_id, out);
}

store_err
auth_put_record(store_txn *txn, store_table t, const void *key, size_t klen,
		const ProtobufCMessage *rec, unsigned flags)
{
	return put_record(txn, t, key, klen, rec, flags);
}

Parley__V1__User *
auth_user_to_wire(rpc_call *call, const Parley__Store__V1__UserRecord *r)
{
	return user_to_wire(call, r);
}

bool
auth_valid_email(const char *s)
{
	return valid_email(s);
}

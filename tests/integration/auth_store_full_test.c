/*
 * auth_store_full_test.c — Logout answers OK only once the session is gone:
 * when the store cannot delete it (its map is full), Logout fails with the
 * store's status and the token stays valid, so the client knows; after the
 * operator makes room (a bigger map), Logout works.
 *
 * The map is filled from this process, which LMDB allows beside the daemon
 * (one writer at a time, across processes), until not even a tiny write
 * fits.
 */
#include <string.h>

#include "harness.h"
#include "parley/v1/auth.pb-c.h"
#include "store.h"

static rpc_client *auth;

static rpc_code
logout(const char *token, rpc_status *st)
{
	Parley__V1__LogoutRequest r = PARLEY__V1__LOGOUT_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	rpc_call_opts o = {.timeout_ms = 10000, .token = token};
	rpc_code code;

	code = rpc_client_call(auth, &parley__v1__auth__descriptor, "Logout", &r.base, &resp, &o,
			       st);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

static rpc_code
validate(const char *token, rpc_status *st)
{
	Parley__V1__ValidateRequest r = PARLEY__V1__VALIDATE_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	rpc_call_opts o = {.timeout_ms = 10000};
	rpc_code code;

	r.token = (char *)token;
	code = rpc_client_call(auth, &parley__v1__auth__descriptor, "Validate", &r.base, &resp,
			       &o, st);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

/* One write transaction putting n values of len bytes under keys
 * prefix-i into table; the store's answer. */
static store_err
put_some(store_env *env, store_table t, const char *prefix, int *next, int n, size_t len)
{
	static char val[1024];
	store_txn *txn;
	store_err err;
	char key[64];

	if ((err = store_begin(env, true, &txn)) != STORE_OK)
		return err;
	for (int i = 0; i < n && err == STORE_OK; i++) {
		snprintf(key, sizeof(key), "%s-%08d", prefix, (*next)++);
		err = store_put(txn, t, key, strlen(key), val, len, 0);
	}
	if (err != STORE_OK) {
		store_abort(txn);
		return err;
	}
	return store_commit(txn);
}

/*
 * Fills the map of the store in dir (map_mb MiB) until a write of a few
 * bytes into a one-page table fails: STORE_FULL. A read transaction opened
 * first and kept until full_store_free pins every page freed meanwhile
 * (LMDB reuses a page only once no reader can see it), so no later write
 * finds room either. Returns the env.
 */
static store_env *
fill_store(const char *dir, size_t map_mb, store_txn **pin)
{
	store_opts o = {.map_size = map_mb << 20};
	store_table big, tiny;
	store_env *env;
	store_err err;
	char detail[256] = "";
	int next = 0, tries;

	TH_CHECK(store_open(&env, dir, &o, detail, sizeof(detail)) == STORE_OK, "open %s: %s",
		 dir, detail);
	TH_CHECK(store_table_open(env, "test.ballast", &big) == STORE_OK &&
		     store_table_open(env, "test.tiny", &tiny) == STORE_OK,
		 "ballast tables");
	TH_CHECK(store_begin(env, false, pin) == STORE_OK, "pinning reader");
	for (tries = 0; (err = put_some(env, big, "big", &next, 16, 1000)) == STORE_OK; tries++)
		TH_CHECK(tries < 100000, "the map never filled");
	TH_CHECK(err == STORE_FULL, "filling: %s", store_strerror(err));
	for (tries = 0; (err = put_some(env, tiny, "t", &next, 1, 8)) == STORE_OK; tries++)
		TH_CHECK(tries < 100000, "tiny writes never filled the map");
	TH_CHECK(err == STORE_FULL, "filling: %s", store_strerror(err));
	return env;
}

int
main(void)
{
	th_daemon d = {0};
	store_txn *pin;
	store_env *env;
	char token[64];
	rpc_status st;

	d.extra[0] = "--map-size";
	d.extra[1] = "1";
	TH_CHECK(th_start(&d, "auth"), "start parleyd with a 1 MiB map");
	auth = th_client(d.auth);
	th_register_login(auth, "leaver", token, sizeof(token));

	env = fill_store(d.dir, 1, &pin);
	TH_CODE(logout(token, &st), RPC_RESOURCE_EXHAUSTED, &st);
	TH_CHECK(strstr(st.message, "logout: ") == st.message && strstr(st.message, "full"),
		 "says logout failed for want of space: %s", st.message);
	TH_CODE(validate(token, &st), RPC_OK, &st);
	printf("ok a Logout the store cannot record fails, and the session stays valid\n");

	/* The operator gives the store room: Logout now works, for good. */
	store_abort(pin);
	store_close(env);
	rpc_client_close(auth);
	TH_CHECK(th_stop(&d) == 0, "clean exit");
	d.extra[1] = "4";
	TH_CHECK(th_restart(&d), "restart with a 4 MiB map");
	auth = th_client(d.auth);
	TH_CODE(validate(token, &st), RPC_OK, &st);
	TH_CODE(logout(token, &st), RPC_OK, &st);
	TH_CODE(validate(token, &st), RPC_UNAUTHENTICATED, &st);
	TH_CHECK(strcmp(st.message, "invalid or expired token") == 0, "%s", st.message);
	printf("ok with room again, Logout ends the session\n");

	rpc_client_close(auth);
	TH_CHECK(th_stop(&d) == 0, "clean exit");
	th_cleanup(&d);
	return 0;
}

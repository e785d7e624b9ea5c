/* store_test.c — storage/: tables, key order, scans, copies, map full,
 * read-only environments. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "store.h"

static char dir[256];

static void
make_dir(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/parley-store-XXXXXX", tmp ? tmp : "/tmp");
	TH_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
}

static void
remove_dir(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	TH_CHECK(system(cmd) == 0, "rm");
}

static void
test_be_encoding(void)
{
	uint8_t a[8], b[8];

	store_be64_put(a, 255);
	store_be64_put(b, 256);
	TH_CHECK(memcmp(a, b, 8) < 0, "byte order is numeric order");
	TH_CHECK(store_be64_get(b) == 256, "round trip");
	store_be64_put(a, UINT64_MAX);
	TH_CHECK(store_be64_get(a) == UINT64_MAX, "max round trip");
	store_be32_put(a, 0x01020304);
	TH_CHECK(a[0] == 1 && a[3] == 4 && store_be32_get(a) == 0x01020304, "be32");
	printf("ok big-endian keys\n");
}

struct collect {
	uint64_t keys[64];
	int n;
	int stop_after;
};

static bool
collect_key(void *arg, store_val k, store_val v)
{
	struct collect *c = arg;

	TH_CHECK(k.len == 8 && v.len == 3, "sizes");
	c->keys[c->n++] = store_be64_get(k.data);
	return c->stop_after == 0 || c->n < c->stop_after;
}

static void
test_put_get_scan(void)
{
	store_env *env;
	store_table t, other;
	store_txn *txn;
	store_val v;
	uint8_t k[8];
	void *copy;
	size_t len;
	struct collect c = {0};

	TH_CHECK(store_open(&env, dir, NULL, NULL, 0) == STORE_OK, "open");
	TH_CHECK(store_map_size(env) == STORE_DEFAULT_MAP_SIZE, "default map 1 GiB");
	TH_CHECK(store_table_open(env, "t", &t) == STORE_OK, "table");
	TH_CHECK(store_table_open(env, "other", &other) == STORE_OK, "table 2");

	TH_CHECK(store_begin(env, true, &txn) == STORE_OK, "begin");
	for (uint64_t i = 10; i >= 1; i--) {
		store_be64_put(k, i * 10);
		TH_CHECK(store_put(txn, t, k, 8, "abc", 3, 0) == STORE_OK, "put");
	}
	TH_CHECK(store_commit(txn) == STORE_OK, "commit");

	store_be64_put(k, 50);
	TH_CHECK(store_put1(env, t, k, 8, "xyz", 3, STORE_NOOVERWRITE) == STORE_EXISTS,
		 "no overwrite");
	TH_CHECK(store_get_copy(env, t, k, 8, &copy, &len) == STORE_OK && len == 3 &&
		     memcmp(copy, "abc", 3) == 0,
		 "copy out");
	free(copy);
	TH_CHECK(store_get_copy(env, other, k, 8, &copy, &len) == STORE_NOTFOUND,
		 "tables are separate");
	TH_CHECK(store_get_copy(env, t, "", 0, &copy, &len) == STORE_INVALID, "empty key");

	TH_CHECK(store_begin(env, false, &txn) == STORE_OK, "read txn");
	store_be64_put(k, 35);
	TH_CHECK(store_scan(txn, t, k, 8, false, collect_key, &c) == STORE_OK, "scan");
	TH_CHECK(c.n == 7 && c.keys[0] == 40 && c.keys[6] == 100, "forward from 35: n=%d", c.n);
	memset(&c, 0, sizeof(c));
	TH_CHECK(store_scan(txn, t, k, 8, true, collect_key, &c) == STORE_OK, "rscan");
	TH_CHECK(c.n == 3 && c.keys[0] == 30 && c.keys[2] == 10, "reverse from 35: n=%d", c.n);
	memset(&c, 0, sizeof(c));
	store_be64_put(k, 40);
	TH_CHECK(store_scan(txn, t, k, 8, true, collect_key, &c) == STORE_OK, "rscan exact");
	TH_CHECK(c.n == 4 && c.keys[0] == 40, "reverse from an existing key includes it");
	memset(&c, 0, sizeof(c));
	c.stop_after = 2;
	TH_CHECK(store_scan(txn, t, NULL, 0, true, collect_key, &c) == STORE_OK, "last");
	TH_CHECK(c.n == 2 && c.keys[0] == 100 && c.keys[1] == 90, "reverse from the end, stop");
	store_be64_put(k, 10);
	TH_CHECK(store_get(txn, t, k, 8, &v) == STORE_OK && v.len == 3, "get in txn");
	store_abort(txn);

	store_be64_put(k, 10);
	TH_CHECK(store_del1(env, t, k, 8) == STORE_OK, "del");
	TH_CHECK(store_del1(env, t, k, 8) == STORE_NOTFOUND, "del again");
	store_close(env);

	/* Reopen: data is still there. */
	TH_CHECK(store_open(&env, dir, NULL, NULL, 0) == STORE_OK, "reopen");
	TH_CHECK(store_table_open(env, "t", &t) == STORE_OK, "table again");
	store_be64_put(k, 100);
	TH_CHECK(store_get_copy(env, t, k, 8, &copy, &len) == STORE_OK, "persisted");
	free(copy);
	store_close(env);
	printf("ok put/get/scan/del and persistence\n");
}

static void
test_read_only(void)
{
	store_opts ro = {.read_only = true};
	store_env *env;
	store_table t;
	uint8_t k[8];
	char detail[256];

	TH_CHECK(store_open(&env, dir, &ro, NULL, 0) == STORE_OK, "open read-only");
	TH_CHECK(store_read_only(env), "flag");
	TH_CHECK(store_table_open(env, "t", &t) == STORE_OK, "existing table");
	TH_CHECK(store_table_open(env, "missing", &t) == STORE_NOTFOUND, "missing table");
	TH_CHECK(store_table_open(env, "t", &t) == STORE_OK, "t");
	store_be64_put(k, 1);
	TH_CHECK(store_put1(env, t, k, 8, "a", 1, 0) == STORE_READONLY, "no writes");
	store_close(env);
	TH_CHECK(store_open(&env, "/nonexistent/parley", &ro, detail, sizeof(detail)) != STORE_OK,
		 "missing dir read-only");
	TH_CHECK(strstr(detail, "/nonexistent/parley") != NULL, "detail names the dir: %s",
		 detail);
	printf("ok read-only environment\n");
}

static void
test_map_full(void)
{
	store_opts small = {.map_size = 256 * 1024};
	char sub[300];
	store_env *env;
	store_table t;
	uint8_t k[8], val[1000];
	store_err err = STORE_OK;
	uint64_t i;
	void *copy;
	size_t len;

	snprintf(sub, sizeof(sub), "%s/small", dir);
	memset(val, 'v', sizeof(val));
	TH_CHECK(store_open(&env, sub, &small, NULL, 0) == STORE_OK, "open small");
	TH_CHECK(store_table_open(env, "t", &t) == STORE_OK, "table");
	for (i = 0; i < 10000 && err == STORE_OK; i++) {
		store_be64_put(k, i);
		err = store_put1(env, t, k, 8, val, sizeof(val), 0);
	}
	TH_CHECK(err == STORE_FULL, "fills up: %s after %llu", store_strerror(err),
		 (unsigned long long)i);
	TH_CHECK(strstr(store_strerror(err), "map size") != NULL, "clear message");
	/* Still usable: reads work, writes keep failing cleanly (in LMDB even
	 * a delete needs free pages once the map is full)... */
	store_be64_put(k, 0);
	TH_CHECK(store_get_copy(env, t, k, 8, &copy, &len) == STORE_OK, "read after full");
	free(copy);
	store_be64_put(k, 999999);
	TH_CHECK(store_put1(env, t, k, 8, val, sizeof(val), 0) == STORE_FULL, "still full");
	store_close(env);
	/* ...and reopening with a larger map, the operator's fix, takes
	 * writes again with every earlier record intact. */
	small.map_size = 1024 * 1024;
	TH_CHECK(store_open(&env, sub, &small, NULL, 0) == STORE_OK, "reopen bigger");
	TH_CHECK(store_table_open(env, "t", &t) == STORE_OK, "table");
	TH_CHECK(store_put1(env, t, k, 8, val, sizeof(val), 0) == STORE_OK, "write again");
	for (uint64_t j = 0; j + 1 < i; j++) {
		store_be64_put(k, j);
		TH_CHECK(store_get_copy(env, t, k, 8, &copy, &len) == STORE_OK, "kept %llu",
			 (unsigned long long)j);
		free(copy);
	}
	store_close(env);
	printf("ok map full is reported and survivable\n");
}

int
main(void)
{
	make_dir();
	test_be_encoding();
	test_put_get_scan();
	test_read_only();
	test_map_full();
	remove_dir();
	return 0;
}

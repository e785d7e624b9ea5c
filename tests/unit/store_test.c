/* store_test.c — storage/: tables, key order, scans, copies, map full,
 * read-only environments. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

/* The child of test_map_grown_elsewhere: another process that opens the
 * environment with a larger map and fills it past the parent's map. */
static int
grow_child(const char *where)
{
	store_opts big = {.map_size = 16 * 1024 * 1024};
	store_env *env;
	store_table t;
	uint8_t k[8], val[4000];
	store_txn *txn;
	store_err err;

	memset(val, 'g', sizeof(val));
	if ((err = store_open(&env, where, &big, NULL, 0)) != STORE_OK ||
	    (err = store_table_open(env, "t", &t)) != STORE_OK) {
		fprintf(stderr, "grow: open: %s\n", store_strerror(err));
		return 1;
	}
	/* One transaction: the parent's open reader pins every older page. */
	if ((err = store_begin(env, true, &txn)) != STORE_OK)
		return 1;
	for (uint64_t i = 0; i < 1000 && err == STORE_OK; i++) {
		store_be64_put(k, 1000 + i);
		err = store_put(txn, t, k, 8, val, sizeof(val), 0);
	}
	if (err != STORE_OK || (err = store_commit(txn)) != STORE_OK) {
		fprintf(stderr, "grow: %s\n", store_strerror(err));
		return 1;
	}
	store_close(env);
	return 0;
}

struct begin_arg {
	store_env *env;
	store_err err;
	bool done; /* atomic */
};

static void *
begin_thread(void *arg)
{
	struct begin_arg *b = arg;
	store_txn *txn;

	b->err = store_begin(b->env, false, &txn);
	if (b->err == STORE_OK)
		store_abort(txn);
	__atomic_store_n(&b->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * Another process grows the map past ours while a thread here holds a
 * read transaction and a value pointing into the map. The next transaction
 * begun here must wait until that one ends before the map is replaced
 * (LMDB: mdb_env_set_mapsize only with no transaction open in the process);
 * replacing it under the open one left its pointers dangling.
 */
static void
test_map_grown_elsewhere(const char *self)
{
	store_opts small = {.map_size = 1024 * 1024};
	struct begin_arg b = {0};
	char sub[300];
	store_env *env;
	store_table t;
	store_txn *held;
	store_val v;
	store_info info;
	uint8_t k[8];
	pthread_t th;
	pid_t pid;
	int status;

	snprintf(sub, sizeof(sub), "%s/grow", dir);
	TH_CHECK(store_open(&env, sub, &small, NULL, 0) == STORE_OK, "open");
	TH_CHECK(store_table_open(env, "t", &t) == STORE_OK, "table");
	store_be64_put(k, 1);
	TH_CHECK(store_put1(env, t, k, 8, "held", 4, 0) == STORE_OK, "put");
	TH_CHECK(store_begin(env, false, &held) == STORE_OK, "held txn");
	TH_CHECK(store_get(held, t, k, 8, &v) == STORE_OK && v.len == 4, "held value");

	pid = fork();
	TH_CHECK(pid >= 0, "fork");
	if (pid == 0) {
		execl(self, self, "--grow", sub, (char *)NULL);
		_exit(127);
	}
	TH_CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
			 WEXITSTATUS(status) == 0,
		 "the other process filled the store past our map");

	b.env = env;
	TH_CHECK(pthread_create(&th, NULL, begin_thread, &b) == 0, "thread");
	/* Either the begin waits at the gate for `held` to end, or (the bug)
	 * it replaced the map under `held` and returned. */
	for (;;) {
		store_get_info(env, &info);
		if (info.resize_waiting || __atomic_load_n(&b.done, __ATOMIC_ACQUIRE))
			break;
		usleep(1000);
	}
	TH_CHECK(!__atomic_load_n(&b.done, __ATOMIC_ACQUIRE),
		 "a transaction began on a map replaced while another was open (%s)",
		 store_strerror(b.err));
	TH_CHECK(info.map_size == small.map_size && info.txns_open == 1,
		 "map %zu, %u open while the resize waits", info.map_size, info.txns_open);
	TH_CHECK(memcmp(v.data, "held", 4) == 0, "the held value is intact");
	store_abort(held);
	pthread_join(th, NULL);
	TH_CHECK(b.err == STORE_OK, "begin after the resize: %s", store_strerror(b.err));
	store_get_info(env, &info);
	TH_CHECK(info.map_size == 16 * 1024 * 1024 && info.txns_open == 0 && !info.resize_waiting,
		 "adopted map %zu, %u open", info.map_size, info.txns_open);
	store_be64_put(k, 1999);
	{
		void *copy;
		size_t len;

		TH_CHECK(store_get_copy(env, t, k, 8, &copy, &len) == STORE_OK && len == 4000,
			 "reads what the other process wrote");
		free(copy);
	}
	store_close(env);
	printf("ok a map grown by another process is adopted with no transaction open\n");
}

/* A data file cut short is refused at open with a message, not mapped. */
static void
test_truncated(void)
{
	char sub[300], file[400], detail[512] = "";
	store_env *env;
	store_table t;
	uint8_t k[8], val[2000];
	struct stat st;

	snprintf(sub, sizeof(sub), "%s/trunc", dir);
	memset(val, 'x', sizeof(val));
	TH_CHECK(store_open(&env, sub, NULL, NULL, 0) == STORE_OK, "open");
	TH_CHECK(store_table_open(env, "t", &t) == STORE_OK, "table");
	for (uint64_t i = 0; i < 200; i++) {
		store_be64_put(k, i);
		TH_CHECK(store_put1(env, t, k, 8, val, sizeof(val), 0) == STORE_OK, "put");
	}
	store_close(env);
	snprintf(file, sizeof(file), "%s/data.mdb", sub);
	TH_CHECK(stat(file, &st) == 0, "stat");
	TH_CHECK(truncate(file, st.st_size / 2) == 0, "truncate");
	TH_CHECK(store_open(&env, sub, NULL, detail, sizeof(detail)) == STORE_CORRUPT,
		 "a truncated file is refused");
	TH_CHECK(strstr(detail, "truncated") != NULL && strstr(detail, "data.mdb") != NULL,
		 "the reason names the file and the truncation: %s", detail);
	printf("ok truncated data file refused: %s\n", detail);
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--grow") == 0)
		return grow_child(argv[2]);
	make_dir();
	test_be_encoding();
	test_put_get_scan();
	test_read_only();
	test_map_full();
	test_map_grown_elsewhere("/proc/self/exe");
	test_truncated();
	remove_dir();
	return 0;
}

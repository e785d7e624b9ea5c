/*
 * base_lmdb.c — the durable-write floor: raw LMDB, one synced commit per
 * message, in a directory on the same filesystem as parleyd's data; and
 * reading the last transaction id of parleyd's environment, which counts
 * its commits (messages per commit = messages / commits).
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

uint64_t
lmdb_baseline(const char *dir, size_t msg_len, uint64_t dur_ns, samples *lat, char *err,
	      size_t errlen)
{
	MDB_env *env = NULL;
	MDB_dbi dbi;
	MDB_txn *txn;
	uint8_t *val = calloc(1, msg_len);
	uint64_t n = 0, end;
	int rc;

	if (val == NULL) {
		snprintf(err, errlen, "out of memory");
		return 0;
	}
	memset(val, 'x', msg_len);
	if ((rc = mdb_env_create(&env)) != 0 ||
	    (rc = mdb_env_set_mapsize(env, (size_t)1 << 30)) != 0 ||
	    (rc = mdb_env_set_maxdbs(env, 4)) != 0 ||
	    (rc = mdb_env_open(env, dir, MDB_NOTLS, 0600)) != 0 ||
	    (rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0)
		goto fail;
	if ((rc = mdb_dbi_open(txn, "messages", MDB_CREATE, &dbi)) != 0 ||
	    (rc = mdb_txn_commit(txn)) != 0)
		goto fail;

	end = bench_now_ns() + dur_ns;
	do {
		uint64_t t0 = bench_now_ns();
		uint8_t key[8];
		MDB_val k = {sizeof(key), key}, v = {msg_len, val};

		for (int i = 7, x = 0; i >= 0; i--, x++)
			key[i] = (uint8_t)((n + 1) >> (8 * x));
		if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0)
			goto fail;
		if ((rc = mdb_put(txn, dbi, &k, &v, 0)) != 0) {
			mdb_txn_abort(txn);
			goto fail;
		}
		if ((rc = mdb_txn_commit(txn)) != 0)	/* syncs: the env has no NOSYNC */
			goto fail;
		samples_add(lat, bench_now_ns() - t0);
		n++;
	} while (bench_now_ns() < end && n < 10000000);
	mdb_env_close(env);
	free(val);
	return n;

fail:
	snprintf(err, errlen, "lmdb in %s: %s", dir, mdb_strerror(rc));
	if (env != NULL)
		mdb_env_close(env);
	free(val);
	return n;
}

uint64_t
lmdb_last_txnid(const char *dir)
{
	MDB_env *env;
	MDB_envinfo info;
	uint64_t id = 0;

	if (mdb_env_create(&env) != 0)
		return 0;
	/* Read-only and without the lock file: we only read the meta pages,
	 * and must not take a reader slot from the daemon. */
	mdb_env_set_maxdbs(env, 64);
	if (mdb_env_open(env, dir, MDB_RDONLY | MDB_NOLOCK, 0600) == 0 &&
	    mdb_env_info(env, &info) == 0)
		id = (uint64_t)info.me_last_txnid;
	mdb_env_close(env);
	return id;
}

/* store.c — see store.h. */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

struct store_env {
	MDB_env *env;
	size_t map_size;
	bool read_only;
	pthread_mutex_t dbi_mtx; /* mdb_dbi_open is not thread-safe */
};

struct store_txn {
	MDB_txn *txn;
	store_env *env;
};

static store_err
from_mdb(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return STORE_OK;
	case MDB_NOTFOUND:
		return STORE_NOTFOUND;
	case MDB_KEYEXIST:
		return STORE_EXISTS;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
	case MDB_DBS_FULL:
		return STORE_FULL;
	case MDB_READERS_FULL:
		return STORE_BUSY;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
		return STORE_CORRUPT;
	case MDB_BAD_VALSIZE:
	case EINVAL:
		return STORE_INVALID;
	case EACCES:
	case EROFS:
		return STORE_READONLY;
	default:
		return STORE_IO;
	}
}

const char *
store_strerror(store_err err)
{
	switch (err) {
	case STORE_OK:
		return "ok";
	case STORE_NOTFOUND:
		return "not found";
	case STORE_EXISTS:
		return "already exists";
	case STORE_FULL:
		return "storage is full (raise the map size)";
	case STORE_READONLY:
		return "storage is read-only";
	case STORE_BUSY:
		return "too many concurrent readers";
	case STORE_CORRUPT:
		return "storage is damaged or not an LMDB file";
	case STORE_INVALID:
		return "invalid key or value";
	case STORE_IO:
		return "storage I/O error";
	}
	return "unknown storage error";
}

static int
mkdir_p(const char *dir)
{
	char path[4096];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(path))
		return EINVAL;
	memcpy(path, dir, n + 1);
	for (char *p = path + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST)
			return errno;
		*p = '/';
	}
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return errno;
	return 0;
}

store_err
store_open(store_env **envp, const char *dir, const store_opts *opts, char *detail,
	   size_t detail_len)
{
	store_env *e;
	unsigned flags = MDB_NOTLS;
	int dead = 0;
	int rc;

	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return STORE_IO;
	e->map_size = opts && opts->map_size ? opts->map_size : STORE_DEFAULT_MAP_SIZE;
	e->read_only = opts && opts->read_only;
	pthread_mutex_init(&e->dbi_mtx, NULL);
	if (e->read_only)
		flags |= MDB_RDONLY;
	else if ((rc = mkdir_p(dir)) != 0)
		goto fail;
	if ((rc = mdb_env_create(&e->env)) != 0)
		goto fail;
	if ((rc = mdb_env_set_maxdbs(e->env, 64)) != 0 ||
	    (rc = mdb_env_set_maxreaders(e->env, opts && opts->max_readers ? opts->max_readers
									    : 1024)) != 0 ||
	    (rc = mdb_env_set_mapsize(e->env, e->map_size)) != 0)
		goto fail;
	if ((rc = mdb_env_open(e->env, dir, flags, 0600)) != 0)
		goto fail;
	/* A process that died holding a read transaction leaves its slot
	 * taken; clear those before anyone counts on free slots. */
	mdb_reader_check(e->env, &dead);
	*envp = e;
	return STORE_OK;

fail:
	if (detail != NULL)
		snprintf(detail, detail_len, "%s: %s", dir, mdb_strerror(rc));
	if (e->env != NULL)
		mdb_env_close(e->env);
	pthread_mutex_destroy(&e->dbi_mtx);
	free(e);
	return rc == ENOENT && opts && opts->read_only ? STORE_NOTFOUND : from_mdb(rc);
}

void
store_close(store_env *e)
{
	if (e == NULL)
		return;
	mdb_env_close(e->env);
	pthread_mutex_destroy(&e->dbi_mtx);
	free(e);
}

size_t
store_map_size(const store_env *e)
{
	return e->map_size;
}

bool
store_read_only(const store_env *e)
{
	return e->read_only;
}

static int
txn_begin(store_env *e, unsigned flags, MDB_txn **txn)
{
	int rc = mdb_txn_begin(e->env, NULL, flags, txn);

	if (rc == MDB_MAP_RESIZED) {
		/* Another process grew the map: adopt its size and go on. */
		mdb_env_set_mapsize(e->env, 0);
		rc = mdb_txn_begin(e->env, NULL, flags, txn);
	}
	return rc;
}

store_err
store_table_open(store_env *e, const char *name, store_table *out)
{
	MDB_txn *txn;
	MDB_dbi dbi;
	int rc;

	pthread_mutex_lock(&e->dbi_mtx);
	rc = txn_begin(e, e->read_only ? MDB_RDONLY : 0, &txn);
	if (rc == 0) {
		rc = mdb_dbi_open(txn, name, e->read_only ? 0 : MDB_CREATE, &dbi);
		if (rc == 0)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
	}
	pthread_mutex_unlock(&e->dbi_mtx);
	if (rc == 0)
		*out = dbi;
	return from_mdb(rc);
}

store_err
store_begin(store_env *e, bool write, store_txn **txnp)
{
	store_txn *t;
	int rc;

	if (write && e->read_only)
		return STORE_READONLY;
	t = malloc(sizeof(*t));
	if (t == NULL)
		return STORE_IO;
	t->env = e;
	rc = txn_begin(e, write ? 0 : MDB_RDONLY, &t->txn);
	if (rc != 0) {
		free(t);
		return from_mdb(rc);
	}
	*txnp = t;
	return STORE_OK;
}

store_err
store_commit(store_txn *t)
{
	int rc = mdb_txn_commit(t->txn);

	free(t);
	return from_mdb(rc);
}

void
store_abort(store_txn *t)
{
	if (t == NULL)
		return;
	mdb_txn_abort(t->txn);
	free(t);
}

store_err
store_get(store_txn *t, store_table tbl, const void *key, size_t klen, store_val *out)
{
	MDB_val k = {klen, (void *)key}, v;
	int rc;

	if (klen == 0 || klen > STORE_MAX_KEY)
		return STORE_INVALID;
	rc = mdb_get(t->txn, tbl, &k, &v);
	if (rc == 0) {
		out->data = v.mv_data;
		out->len = v.mv_size;
	}
	return from_mdb(rc);
}

store_err
store_put(store_txn *t, store_table tbl, const void *key, size_t klen, const void *val,
	  size_t vlen, unsigned flags)
{
	MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};

	if (klen == 0 || klen > STORE_MAX_KEY)
		return STORE_INVALID;
	return from_mdb(mdb_put(t->txn, tbl, &k, &v,
				(flags & STORE_NOOVERWRITE) ? MDB_NOOVERWRITE : 0));
}

store_err
store_del(store_txn *t, store_table tbl, const void *key, size_t klen)
{
	MDB_val k = {klen, (void *)key};

	if (klen == 0 || klen > STORE_MAX_KEY)
		return STORE_INVALID;
	return from_mdb(mdb_del(t->txn, tbl, &k, NULL));
}

store_err
store_scan(store_txn *t, store_table tbl, const void *from, size_t from_len, bool reverse,
	   store_visit_fn fn, void *arg)
{
	MDB_cursor *cur;
	MDB_val k = {from_len, (void *)from}, v;
	int rc;

	if (from_len > STORE_MAX_KEY)
		return STORE_INVALID;
	if ((rc = mdb_cursor_open(t->txn, tbl, &cur)) != 0)
		return from_mdb(rc);
	if (!reverse) {
		rc = from != NULL && from_len > 0 ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
						  : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	} else if (from == NULL || from_len == 0) {
		rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
	} else {
		/* The last key <= from: position at the first key >= from and
		 * step back unless it is from itself. */
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND)
			rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
		else if (rc == 0 && (k.mv_size != from_len || memcmp(k.mv_data, from, from_len) != 0))
			rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
	}
	while (rc == 0) {
		if (!fn(arg, (store_val){k.mv_data, k.mv_size}, (store_val){v.mv_data, v.mv_size}))
			break;
		rc = mdb_cursor_get(cur, &k, &v, reverse ? MDB_PREV : MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return rc == 0 || rc == MDB_NOTFOUND ? STORE_OK : from_mdb(rc);
}

store_err
store_get_copy(store_env *e, store_table tbl, const void *key, size_t klen, void **val,
	       size_t *vlen)
{
	store_txn *t;
	store_val v = {0};
	store_err err;

	*val = NULL;
	*vlen = 0;
	if ((err = store_begin(e, false, &t)) != STORE_OK)
		return err;
	err = store_get(t, tbl, key, klen, &v);
	if (err == STORE_OK) {
		*val = malloc(v.len ? v.len : 1);
		if (*val == NULL)
			err = STORE_IO;
		else
			memcpy(*val, v.data, v.len);
		*vlen = v.len;
	}
	store_abort(t);
	return err;
}

store_err
store_put1(store_env *e, store_table tbl, const void *key, size_t klen, const void *val,
	   size_t vlen, unsigned flags)
{
	store_txn *t;
	store_err err;

	if ((err = store_begin(e, true, &t)) != STORE_OK)
		return err;
	err = store_put(t, tbl, key, klen, val, vlen, flags);
	if (err != STORE_OK) {
		store_abort(t);
		return err;
	}
	return store_commit(t);
}

store_err
store_del1(store_env *e, store_table tbl, const void *key, size_t klen)
{
	store_txn *t;
	store_err err;

	if ((err = store_begin(e, true, &t)) != STORE_OK)
		return err;
	err = store_del(t, tbl, key, klen);
	if (err != STORE_OK) {
		store_abort(t);
		return err;
	}
	return store_commit(t);
}

store_err
store_space(store_env *e, uint64_t *map_bytes, uint64_t *used_bytes)
{
	MDB_envinfo info;
	MDB_stat st;
	int rc;

	if ((rc = mdb_env_info(e->env, &info)) != 0 || (rc = mdb_env_stat(e->env, &st)) != 0)
		return from_mdb(rc);
	*map_bytes = info.me_mapsize;
	*used_bytes = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
	return STORE_OK;
}

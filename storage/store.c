/* store.c — see store.h. */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "store_int.h"

struct store_env {
	MDB_env *env;
	size_t map_size;	 /* [gate_mtx] */
	bool read_only;
	pthread_mutex_t dbi_mtx; /* mdb_dbi_open is not thread-safe */

	/* The resize gate. LMDB lets a process change its map only while no
	 * transaction of the process is open: every transaction is counted
	 * here, and the thread adopting a map another process grew waits for
	 * the count to reach 0 while new transactions wait for it. */
	pthread_mutex_t gate_mtx;
	pthread_cond_t gate_cv;
	unsigned txns;		 /* [gate_mtx] transactions open in this process */
	bool resizing;		 /* [gate_mtx] a thread waits to adopt the map */
};

/* Transactions the calling thread holds (on any environment): a thread
 * that holds one never waits at the gate, or it would wait for itself. */
static __thread unsigned thread_txns;

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
	case MDB_MAP_RESIZED:
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
	case EPERM:
		return STORE_DENIED;
	case EROFS:
		return STORE_ROFS;
	case ENOSPC:
	case EDQUOT:
		return STORE_NOSPACE;
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
	case STORE_ROFS:
		return "storage is on a read-only file system (EROFS)";
	case STORE_NOMEM:
		return "out of memory";
	case STORE_DENIED:
		return "storage permission denied (EACCES/EPERM)";
	case STORE_NOSPACE:
		return "the disk is full (ENOSPC)";
	case STORE_BUSY:
		return "storage is busy (no free reader slot, or the map is being resized)";
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

/*
 * LMDB maps the file and trusts it: a page the meta page counts but the
 * file no longer holds (a truncated or half-copied data.mdb) is a SIGBUS
 * at the first read that touches it. So the file must reach the end of
 * the last page in use before anyone reads. MDB_CORRUPTED, with the sizes
 * in detail, when it does not.
 */
static int
check_file_size(store_env *e, const char *dir, char *detail, size_t detail_len)
{
	MDB_envinfo info;
	MDB_stat st;
	struct stat fst;
	mdb_filehandle_t fd;
	int rc;

	if ((rc = mdb_env_info(e->env, &info)) != 0 || (rc = mdb_env_stat(e->env, &st)) != 0 ||
	    (rc = mdb_env_get_fd(e->env, &fd)) != 0)
		goto fail;
	if (fstat(fd, &fst) != 0) {
		rc = errno;
		goto fail;
	}
	if ((uint64_t)fst.st_size < ((uint64_t)info.me_last_pgno + 1) * st.ms_psize) {
		if (detail != NULL)
			snprintf(detail, detail_len,
				 "%s/data.mdb is %llu bytes but its pages in use end at byte %llu: "
				 "the file was truncated; restore it from a backup",
				 dir, (unsigned long long)fst.st_size,
				 ((unsigned long long)info.me_last_pgno + 1) * st.ms_psize);
		return MDB_CORRUPTED;
	}
	e->map_size = info.me_mapsize;
	return 0;

fail:
	if (detail != NULL)
		snprintf(detail, detail_len, "%s: %s", dir, mdb_strerror(rc));
	return rc;
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
	pthread_mutex_init(&e->gate_mtx, NULL);
	pthread_cond_init(&e->gate_cv, NULL);
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
	if ((rc = check_file_size(e, dir, detail, detail_len)) != 0)
		goto fail_detailed;
	/* A process that died holding a read transaction leaves its slot
	 * taken; clear those before anyone counts on free slots. */
	mdb_reader_check(e->env, &dead);
	*envp = e;
	return STORE_OK;

fail:
	if (detail != NULL)
		snprintf(detail, detail_len, "%s: %s", dir, mdb_strerror(rc));
fail_detailed:
	if (e->env != NULL)
		mdb_env_close(e->env);
	pthread_cond_destroy(&e->gate_cv);
	pthread_mutex_destroy(&e->gate_mtx);
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
	pthread_cond_destroy(&e->gate_cv);
	pthread_mutex_destroy(&e->gate_mtx);
	pthread_mutex_destroy(&e->dbi_mtx);
	free(e);
}

size_t
store_map_size(const store_env *e)
{
	store_info info;

	store_get_info((store_env *)e, &info);
	return info.map_size;
}

void
store_get_info(store_env *e, store_info *out)
{
	pthread_mutex_lock(&e->gate_mtx);
	out->map_size = e->map_size;
	out->txns_open = e->txns;
	out->resize_waiting = e->resizing;
	pthread_mutex_unlock(&e->gate_mtx);
}

bool
store_read_only(const store_env *e)
{
	return e->read_only;
}

/* Counts a transaction in (the caller then begins it). Waits while a
 * resize is pending, unless this thread holds a transaction already. */
static void
gate_enter(store_env *e)
{
	pthread_mutex_lock(&e->gate_mtx);
	while (e->resizing && thread_txns == 0)
		pthread_cond_wait(&e->gate_cv, &e->gate_mtx);
	e->txns++;
	pthread_mutex_unlock(&e->gate_mtx);
	thread_txns++;
}

static void
gate_leave(store_env *e)
{
	thread_txns--;
	pthread_mutex_lock(&e->gate_mtx);
	if (--e->txns == 0 && e->resizing)
		pthread_cond_broadcast(&e->gate_cv);
	pthread_mutex_unlock(&e->gate_mtx);
}

/*
 * Another process grew the map beyond ours (MDB_MAP_RESIZED). LMDB allows
 * mdb_env_set_mapsize only while no transaction of this process is open:
 * stop new ones at the gate, wait for the open ones to end, adopt the size,
 * let everyone go. One thread does it; others that hit the same error wait
 * for it. A thread that itself holds a transaction cannot wait for the
 * count to reach 0: MDB_MAP_RESIZED for it (STORE_BUSY: try again).
 */
static int
adopt_map(store_env *e)
{
	MDB_envinfo info;
	int rc = 0;

	if (thread_txns > 0)
		return MDB_MAP_RESIZED;
	pthread_mutex_lock(&e->gate_mtx);
	if (e->resizing) {
		while (e->resizing)
			pthread_cond_wait(&e->gate_cv, &e->gate_mtx);
	} else {
		e->resizing = true;
		while (e->txns > 0)
			pthread_cond_wait(&e->gate_cv, &e->gate_mtx);
		rc = mdb_env_set_mapsize(e->env, 0);
		if (rc == 0 && mdb_env_info(e->env, &info) == 0)
			e->map_size = info.me_mapsize;
		e->resizing = false;
		pthread_cond_broadcast(&e->gate_cv);
	}
	pthread_mutex_unlock(&e->gate_mtx);
	return rc;
}

/* Begins an LMDB transaction counted at the gate; on failure nothing is
 * counted. */
static int
txn_begin(store_env *e, unsigned flags, MDB_txn **txn)
{
	int rc;

	for (int tries = 0;; tries++) {
		gate_enter(e);
		rc = mdb_txn_begin(e->env, NULL, flags, txn);
		if (rc == 0)
			return 0;
		gate_leave(e);
		if (rc != MDB_MAP_RESIZED || tries == 3 || (rc = adopt_map(e)) != 0)
			return rc;
	}
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
		gate_leave(e);
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
store_list_tables(store_env *e, store_table_fn fn, void *arg)
{
	char name[STORE_MAX_KEY + 1];
	MDB_cursor *cur;
	MDB_val k, v;
	MDB_dbi main_dbi;
	store_txn *t;
	store_err err;
	int rc;

	if ((err = store_begin(e, false, &t)) != STORE_OK)
		return err;
	if ((rc = mdb_dbi_open(t->txn, NULL, 0, &main_dbi)) != 0 ||
	    (rc = mdb_cursor_open(t->txn, main_dbi, &cur)) != 0) {
		store_abort(t);
		return from_mdb(rc);
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size > STORE_MAX_KEY || memchr(k.mv_data, '\0', k.mv_size) != NULL)
			continue; /* not a name we could have made */
		memcpy(name, k.mv_data, k.mv_size);
		name[k.mv_size] = '\0';
		if (!fn(arg, name))
			break;
	}
	mdb_cursor_close(cur);
	store_abort(t);
	return rc == 0 || rc == MDB_NOTFOUND ? STORE_OK : from_mdb(rc);
}

store_err
store_commit(store_txn *t)
{
	int rc = mdb_txn_commit(t->txn);

	gate_leave(t->env);
	free(t);
	return from_mdb(rc);
}

void
store_abort(store_txn *t)
{
	if (t == NULL)
		return;
	mdb_txn_abort(t->txn);
	gate_leave(t->env);
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

/* ---- for the other files of storage/ (store_int.h) ---------------------- */

MDB_env *
store_env_mdb(store_env *e)
{
	return e->env;
}

MDB_txn *
store_txn_mdb(store_txn *t)
{
	return t->txn;
}

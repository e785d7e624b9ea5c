/*
 * base_lmdb.c — the durable-write floor: raw LMDB, one synced commit per
 * message, in a directory on the same filesystem as parleyd's data; the
 * group-commit writer of the floor servers (lgc_*); and reading the last
 * transaction id of parleyd's environment, which counts its commits
 * (messages per commit = messages / commits).
 */
#include "bench.h"

#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ---- the floor servers' group commit ----------------------------------------- */

#define LGC_ROOMS 8		/* records spread over 8 rooms, as peers' Sends */
#define LGC_VALUE 96		/* a record's value: a 64-byte text and its fields */

static struct {
	pthread_mutex_t mtx;
	pthread_cond_t cv, done_cv;
	lgc_item *head, **tail;		/* to commit */
	lgc_item *done, **done_tail;	/* committed, to answer */
	void (*batch_done)(void);
	MDB_env *env;
	MDB_dbi dbi;
	int log;		/* the log's fd, or -1: LMDB */
	uint8_t *buf;		/* log: a batch's records */
	size_t cap;
	uint64_t seq[LGC_ROOMS];
	unsigned next_room;
} lgc = {.mtx = PTHREAD_MUTEX_INITIALIZER,
	   .cv = PTHREAD_COND_INITIALIZER,
	   .done_cv = PTHREAD_COND_INITIALIZER,
	   .log = -1};

/* Appends the records of batch to the log and syncs it once; errno, or 0. */
static int
lgc_append(lgc_item *batch)
{
	size_t need = 0, len = 0;

	for (lgc_item *it = batch; it != NULL; it = it->next)
		need += (size_t)it->records * (9 + LGC_VALUE);
	if (need > lgc.cap) {
		uint8_t *b = realloc(lgc.buf, need);

		if (b == NULL)
			return ENOMEM;
		lgc.buf = b;
		lgc.cap = need;
	}
	for (lgc_item *it = batch; it != NULL; it = it->next) {
		for (int r = 0; r < it->records; r++) {
			unsigned room = lgc.next_room++ % LGC_ROOMS;
			uint64_t seq = ++lgc.seq[room];

			lgc.buf[len] = (uint8_t)room;
			for (int i = 0; i < 8; i++)
				lgc.buf[len + 1 + (size_t)i] = (uint8_t)(seq >> (56 - 8 * i));
			memset(lgc.buf + len + 9, 0, LGC_VALUE);
			len += 9 + LGC_VALUE;
		}
	}
	for (size_t off = 0; off < len;) {
		ssize_t n = write(lgc.log, lgc.buf + off, len - off);

		if (n < 0 && errno != EINTR)
			return errno;
		off += n > 0 ? (size_t)n : 0;
	}
	return fdatasync(lgc.log) != 0 ? errno : 0;
}

/* Puts the records of batch in one transaction; the LMDB error, or 0. */
static int
lgc_commit(lgc_item *batch)
{
	static const uint8_t value[LGC_VALUE] = {0};
	MDB_txn *txn;
	int rc;

	if (lgc.log >= 0)
		return lgc_append(batch);
	if ((rc = mdb_txn_begin(lgc.env, NULL, 0, &txn)) != 0)
		return rc;
	for (lgc_item *it = batch; it != NULL; it = it->next) {
		for (int r = 0; r < it->records; r++) {
			unsigned room = lgc.next_room++ % LGC_ROOMS;
			uint64_t seq = ++lgc.seq[room];
			uint8_t key[9];
			MDB_val k = {sizeof(key), key}, v = {sizeof(value), (void *)value};

			key[0] = (uint8_t)room;
			for (int i = 0; i < 8; i++)
				key[1 + i] = (uint8_t)(seq >> (56 - 8 * i));
			if ((rc = mdb_put(txn, lgc.dbi, &k, &v, 0)) != 0) {
				mdb_txn_abort(txn);
				return rc;
			}
		}
	}
	return mdb_txn_commit(txn);	/* synced: the env has no NOSYNC */
}

/* Waits until the list at *head has items; takes them all. */
static lgc_item *
lgc_take(lgc_item **head, lgc_item ***tail, pthread_cond_t *cv)
{
	lgc_item *all;

	pthread_mutex_lock(&lgc.mtx);
	while (*head == NULL)
		pthread_cond_wait(cv, &lgc.mtx);
	all = *head;
	*head = NULL;
	*tail = head;
	pthread_mutex_unlock(&lgc.mtx);
	return all;
}

static void *
lgc_main(void *arg)
{
	(void)arg;
	for (;;) {
		lgc_item *batch = lgc_take(&lgc.head, &lgc.tail, &lgc.cv);
		int rc;

		if ((rc = lgc_commit(batch)) != 0) {
			fprintf(stderr, "floor server: commit: %s\n", mdb_strerror(rc)); /* or errno */
			_exit(1);	/* the bench reads the missing replies as errors */
		}
		/* Answering is the replier's, as in Parley: the next commit
		 * starts at once. */
		pthread_mutex_lock(&lgc.mtx);
		*lgc.done_tail = batch;
		while (*lgc.done_tail != NULL)
			lgc.done_tail = &(*lgc.done_tail)->next;
		pthread_cond_signal(&lgc.done_cv);
		pthread_mutex_unlock(&lgc.mtx);
	}
	return NULL;
}

/* The replier: answers committed items in order, then says a batch ended. */
static void *
lgc_replier(void *arg)
{
	(void)arg;
	for (;;) {
		lgc_item *batch = lgc_take(&lgc.done, &lgc.done_tail, &lgc.done_cv);

		while (batch != NULL) {
			lgc_item *it = batch;

			batch = it->next;	/* it may be submitted again once done */
			it->done(it);
		}
		if (lgc.batch_done != NULL)
			lgc.batch_done();
	}
	return NULL;
}

static int
lgc_threads(void)
{
	pthread_t th;

	if (pthread_create(&th, NULL, lgc_replier, NULL) != 0 ||
	    pthread_create(&th, NULL, lgc_main, NULL) != 0)
		return ENOMEM;
	return 0;
}

int
lgc_start(const char *dir, bool log, void (*batch_done)(void))
{
	MDB_txn *txn;
	int rc;

	lgc.tail = &lgc.head;
	lgc.done_tail = &lgc.done;
	lgc.batch_done = batch_done;
	if (log) {
		char path[512];

		snprintf(path, sizeof(path), "%s/log", dir);
		if ((lgc.log = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0)
			return errno;
		return lgc_threads();
	}
	if ((rc = mdb_env_create(&lgc.env)) != 0 ||
	    (rc = mdb_env_set_mapsize(lgc.env, (size_t)4 << 30)) != 0 ||
	    (rc = mdb_env_set_maxdbs(lgc.env, 4)) != 0 ||
	    (rc = mdb_env_open(lgc.env, dir, MDB_NOTLS, 0600)) != 0 ||
	    (rc = mdb_txn_begin(lgc.env, NULL, 0, &txn)) != 0)
		return rc;
	if ((rc = mdb_dbi_open(txn, "events", MDB_CREATE, &lgc.dbi)) != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		return rc;
	return lgc_threads();
}

void
lgc_submit(lgc_item *it)
{
	pthread_mutex_lock(&lgc.mtx);
	it->next = NULL;
	*lgc.tail = it;
	lgc.tail = &it->next;
	pthread_cond_signal(&lgc.cv);
	pthread_mutex_unlock(&lgc.mtx);
}

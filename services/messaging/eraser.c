/*
 * eraser.c — erasing deleted text from the data file, on a thread of its
 * own (see writer_int.h).
 *
 * Why a thread: erasing waits for readers of old snapshots to move on (up
 * to ERASE_WAIT_MS), and on the writer thread every Send of every room
 * waited with it: repeated Deletes stalled the service. The writer now
 * hands each batch's Delete items here after its commit and goes on with
 * the next batch; the eraser answers them once their texts are erased,
 * so a Delete is still acknowledged only after the erase.
 *
 * Every Delete item goes through here, refused ones and retries
 * (stored_hit, same_as) included, in the order the writer committed
 * them: a retry of a Delete whose erase is still running is answered
 * after it, never before.
 *
 * What it costs the writer: each round takes LMDB's write lock for one
 * commit (the bump) and one scan of the file (store_wipe); between rounds
 * it waits with a doubling pause, not the lock.
 *
 * Locking: e->mtx guards the queue and `stopping`. The items being
 * erased belong to the eraser thread alone; an item lives in its call's
 * arena until it is answered.
 */
#define _GNU_SOURCE 1 /* pthread_setname_np */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "log.h"
#include "writer_int.h"

#define ERASE_WAIT_MS 10000	/* readers of old snapshots get this long */
#define ERASE_DEADLINE_MARGIN_MS 250 /* answer this long before a call's deadline */
#define ERASE_PAUSE_MIN_MS 10
#define ERASE_PAUSE_MAX_MS 500

struct wr_eraser {
	messaging_service *m;
	pthread_t thread;
	bool started;

	pthread_mutex_t mtx;
	pthread_cond_t cv;	/* work queued, or stopping */
	pthread_cond_t stop_cv;	/* stopping: ends a pause between rounds */
	struct wr_item *head, *tail;
	bool stopping;
};

/* A commit that changes nothing that matters, so that the pages the
 * deleting commit freed leave LMDB's fallback snapshot. */
static store_err
bump(messaging_service *m)
{
	uint8_t be[8];
	store_txn *txn;
	store_err err;

	if ((err = store_begin(m->env, true, &txn)) != STORE_OK)
		return err;
	store_be64_put(be, rpc_wall_ms());
	err = store_put(txn, m->meta, MX_WIPE_ROUND_KEY, strlen(MX_WIPE_ROUND_KEY), be, 8, 0);
	if (err == STORE_OK)
		return store_commit(txn);
	store_abort(txn);
	return err;
}

static void
free_needles(store_val *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		sodium_memzero((void *)v[i].data, v[i].len);
		free((void *)v[i].data);
	}
}

/*
 * Erases the texts of the fresh deletes of list, waiting for old readers
 * at most until `until` (monotonic ms); frees every item's needles.
 * Failures are logged: the Delete itself is committed either way.
 */
static void
erase(wr_eraser *e, struct wr_item *list, int64_t until)
{
	store_val *all = NULL;
	size_t n = 0;
	store_wipe_stats st = {0};
	store_err err = STORE_OK;
	int64_t pause = ERASE_PAUSE_MIN_MS;

	for (struct wr_item *it = list; it != NULL; it = it->next) {
		store_val *nv;

		if (it->nneedles == 0)
			continue;
		if (it->fresh && (nv = realloc(all, (n + it->nneedles) * sizeof(*nv))) != NULL) {
			all = nv;
			memcpy(all + n, it->needles, it->nneedles * sizeof(*nv));
			n += it->nneedles;
		} else {
			/* The Delete is committed and will be answered: an
			 * erase skipped for want of memory must at least be
			 * said, as a failed one is. */
			if (it->fresh)
				plog_error("messaging", "no memory to erase a deleted text of "
					   "room %s from the data file", it->room);
			free_needles(it->needles, it->nneedles);
		}
		free(it->needles);
		it->needles = NULL;
		it->nneedles = 0;
	}
	if (n == 0)
		return;
	/* One bump puts the freed pages out of the fallback snapshot; after
	 * it only readers hold them, and each round erases what they let go. */
	if ((err = bump(e->m)) == STORE_OK)
		err = store_wipe(e->m->env, all, n, &st);
	while (err == STORE_OK && st.held > 0 && rpc_now_ms() + pause < until) {
		bool stopping;

		pthread_mutex_lock(&e->mtx);
		if (!(stopping = e->stopping))
			rpc_cond_wait_until(&e->stop_cv, &e->mtx, rpc_now_ms() + pause);
		pthread_mutex_unlock(&e->mtx);
		if (stopping)
			break; /* shutdown is bounded: what is held stays */
		pause = pause * 2 > ERASE_PAUSE_MAX_MS ? ERASE_PAUSE_MAX_MS : pause * 2;
		err = store_wipe(e->m->env, all, n, &st);
	}
	if (err != STORE_OK)
		plog_error("messaging", "erasing deleted text from the data file failed: %s",
			   store_strerror(err));
	else if (st.held > 0)
		plog_error("messaging", "deleted text is still in %u free pages an old reader "
					"holds; they stay until LMDB reuses them",
			   st.held);
	free_needles(all, n);
	free(all);
}

/* How long this batch may wait for readers: ERASE_WAIT_MS, and never past
 * the earliest deadline of its calls (less a margin to answer). */
static int64_t
erase_until(const wr_eraser *e, const struct wr_item *list, bool stopping)
{
	int64_t now = rpc_now_ms(), until = now + ERASE_WAIT_MS;

	if (stopping)
		return now; /* one round, no waiting: shutdown is bounded */
	for (const struct wr_item *it = list; it != NULL; it = it->next) {
		int64_t d = rpc_call_deadline(it->call) - ERASE_DEADLINE_MARGIN_MS;

		if (d < until)
			until = d;
	}
	(void)e;
	return until;
}

static void *
eraser_main(void *arg)
{
	wr_eraser *e = arg;

	pthread_setname_np(pthread_self(), "mx-eraser"); /* for perf and top */

	for (;;) {
		struct wr_item *list, *next;
		bool stopping;

		pthread_mutex_lock(&e->mtx);
		while (e->head == NULL && !e->stopping)
			pthread_cond_wait(&e->cv, &e->mtx);
		list = e->head;
		e->head = e->tail = NULL;
		stopping = e->stopping;
		pthread_mutex_unlock(&e->mtx);
		if (list == NULL)
			break; /* stopping, and nothing left */
		erase(e, list, erase_until(e, list, stopping));
		for (struct wr_item *it = list; it != NULL; it = next) {
			next = it->next;
			wr_answer(it, it->batch_err); /* frees it */
		}
	}
	return NULL;
}

void
wr_eraser_submit(wr_eraser *e, struct wr_item *list)
{
	struct wr_item *last = list;

	if (list == NULL)
		return;
	while (last->next != NULL)
		last = last->next;
	pthread_mutex_lock(&e->mtx);
	if (e->tail != NULL)
		e->tail->next = list;
	else
		e->head = list;
	e->tail = last;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mtx);
}

int
wr_eraser_start(messaging_service *m, wr_eraser **out, rpc_status *st)
{
	wr_eraser *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	e->m = m;
	pthread_mutex_init(&e->mtx, NULL);
	rpc_cond_init(&e->cv);
	rpc_cond_init(&e->stop_cv);
	if (pthread_create(&e->thread, NULL, eraser_main, e) != 0) {
		wr_eraser_stop(e);
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "cannot start the eraser");
	}
	e->started = true;
	*out = e;
	return RPC_OK;
}

void
wr_eraser_stop(wr_eraser *e)
{
	if (e == NULL)
		return;
	pthread_mutex_lock(&e->mtx);
	e->stopping = true;
	pthread_cond_broadcast(&e->cv);
	pthread_cond_broadcast(&e->stop_cv);
	pthread_mutex_unlock(&e->mtx);
	if (e->started)
		pthread_join(e->thread, NULL);
	pthread_cond_destroy(&e->stop_cv);
	pthread_cond_destroy(&e->cv);
	pthread_mutex_destroy(&e->mtx);
	free(e);
}

/*
 * wipe.c — store_wipe: overwrite what LMDB keeps of erased bytes but no
 * longer uses (see store.h).
 *
 * Why this exists: LMDB never writes a committed page in place. Replacing
 * a record writes a new copy of its page and leaves the old one, bytes
 * and all, in the file as a free page until some later transaction reuses
 * it; and a page's unused middle (between its node pointers and its
 * nodes) keeps whatever the buffer held before, since LMDB copies only the
 * used parts of a page. So a record overwritten in the store may still be
 * read from data.mdb with `grep`. For data that must be gone (a deleted
 * chat message), the caller commits the change, commits once more (so the
 * pages the change freed are no longer part of the fallback snapshot) and
 * then calls store_wipe with the bytes to erase.
 *
 * How: every place the bytes occur in the file is found (memmem over the
 * map); each occurrence is classified by the page it lies in:
 *   - a free page no snapshot can reach (freed by a transaction older than
 *     every reader and than the previous commit, as LMDB itself decides
 *     reuse), or a page past the last one in use: zeroed whole;
 *   - the unused middle of a branch or leaf page (live, or free but still
 *     readable by an old reader): that middle is zeroed; readers never
 *     look at it;
 *   - anything else is live data (another record holding the same bytes,
 *     which is not ours to erase) or held by a reader (counted: the caller
 *     may commit again and retry once readers have moved on).
 * All of it happens inside a write transaction, which keeps every other
 * writer (of any process) from reusing a page while it is zeroed; the
 * transaction is aborted, never committed. Zeros are written with pwrite
 * on the environment's file and synced before returning.
 *
 * The page layout read here is LMDB 0.9's (data version 1): a 16-byte
 * header of page number, pad, flags, lower and upper bounds.
 */
#define _GNU_SOURCE 1 /* memmem */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_int.h"

#define PAGE_HDR 16
#define P_BRANCH 0x01
#define P_LEAF 0x02
#define P_OVERFLOW 0x04
#define P_META 0x08
#define P_LEAF2 0x20
#define P_SUBP 0x40

struct free_page {
	size_t pgno;
	bool reachable; /* a reader or the fallback snapshot may still read it */
};

struct wipe {
	MDB_env *env;
	int fd;
	const uint8_t *map;
	size_t psize, file_size, last_pgno;
	struct free_page *free;
	size_t nfree, cap;
	uint8_t *zeros;
	bool wrote;
	store_wipe_stats *st;
};

/* ---- the oldest snapshot any reader holds --------------------------------- */

struct oldest {
	uint64_t txnid;
};

/* One line of mdb_reader_list: "pid thread txnid" ("-" when idle). */
static int
reader_line(const char *line, void *arg)
{
	struct oldest *o = arg;
	unsigned long long txnid;
	char tid[32];
	int pid;

	if (sscanf(line, "%d %31s %llu", &pid, tid, &txnid) == 3 && txnid < o->txnid)
		o->txnid = txnid;
	return 0;
}

/* ---- the free list ----------------------------------------------------------- */

static int
cmp_free(const void *a, const void *b)
{
	const struct free_page *x = a, *y = b;

	return x->pgno < y->pgno ? -1 : x->pgno > y->pgno;
}

static bool
add_free(struct wipe *w, size_t pgno, bool reachable)
{
	if (w->nfree == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 1024;
		struct free_page *p = realloc(w->free, cap * sizeof(*p));

		if (p == NULL)
			return false;
		w->free = p;
		w->cap = cap;
	}
	w->free[w->nfree].pgno = pgno;
	w->free[w->nfree++].reachable = reachable;
	return true;
}

/*
 * Reads LMDB's free list (table 0, readable only in a read transaction):
 * key = the id of the transaction that freed the pages, value = a count
 * and that many page numbers. Pages freed by a transaction older than
 * `oldest` are what LMDB itself would hand out again.
 */
static int
load_free(struct wipe *w, MDB_txn *rtxn, uint64_t oldest)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(rtxn, 0, &cur)) != 0)
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		size_t freed_by, n;
		const size_t *ids = v.mv_data;

		if (k.mv_size != sizeof(size_t) || v.mv_size < sizeof(size_t)) {
			rc = MDB_CORRUPTED;
			break;
		}
		memcpy(&freed_by, k.mv_data, sizeof(freed_by));
		n = ids[0];
		if (v.mv_size < (n + 1) * sizeof(size_t)) {
			rc = MDB_CORRUPTED;
			break;
		}
		for (size_t i = 1; i <= n; i++)
			if (!add_free(w, ids[i], freed_by >= oldest)) {
				mdb_cursor_close(cur);
				return ENOMEM;
			}
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return rc;
	qsort(w->free, w->nfree, sizeof(*w->free), cmp_free);
	return 0;
}

static const struct free_page *
find_free(const struct wipe *w, size_t pgno)
{
	struct free_page key = {.pgno = pgno};

	return bsearch(&key, w->free, w->nfree, sizeof(*w->free), cmp_free);
}

/* ---- zeroing ----------------------------------------------------------------- */

static int
zero_range(struct wipe *w, size_t off, size_t len)
{
	while (len > 0) {
		ssize_t n = pwrite(w->fd, w->zeros, len < w->psize ? len : w->psize, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EIO;
		off += (size_t)n;
		len -= (size_t)n;
	}
	w->wrote = true;
	return 0;
}

/* The unused middle [lower, upper) of a branch or leaf page, if p is one
 * (its header names its own number); false otherwise. */
static bool
page_gap(const struct wipe *w, size_t pgno, size_t *lower, size_t *upper)
{
	const uint8_t *p = w->map + pgno * w->psize;
	uint16_t flags, lo, up;
	size_t self;

	memcpy(&self, p, sizeof(self));
	memcpy(&flags, p + 10, 2);
	memcpy(&lo, p + 12, 2);
	memcpy(&up, p + 14, 2);
	if (self != pgno || !(flags & (P_BRANCH | P_LEAF)) ||
	    (flags & (P_OVERFLOW | P_META | P_LEAF2 | P_SUBP)) || lo < PAGE_HDR || lo > up ||
	    up > w->psize)
		return false;
	*lower = lo;
	*upper = up;
	return true;
}

/* Deals with the bytes [off, end) of one occurrence that lie in page pgno. */
static int
wipe_in_page(struct wipe *w, size_t pgno, size_t off, size_t end)
{
	size_t base = pgno * w->psize, lower, upper;
	const struct free_page *f;

	if (pgno < 2) {
		w->st->live++; /* the meta pages hold no records */
		return 0;
	}
	f = find_free(w, pgno);
	if (pgno > w->last_pgno || (f != NULL && !f->reachable)) {
		w->st->pages_zeroed++;
		return zero_range(w, base, w->psize);
	}
	if (page_gap(w, pgno, &lower, &upper) && off < base + upper && end > base + lower) {
		int rc = zero_range(w, base + lower, upper - lower);

		w->st->gaps_zeroed++;
		if (rc != 0 || (off >= base + lower && end <= base + upper))
			return rc;
	}
	if (f != NULL)
		w->st->held++;
	else
		w->st->live++;
	return 0;
}

static int
wipe_needle(struct wipe *w, const void *needle, size_t len)
{
	const uint8_t *at = w->map, *end = w->map + w->file_size;

	while (at < end && (size_t)(end - at) >= len) {
		const uint8_t *hit = memmem(at, (size_t)(end - at), needle, len);
		size_t off, stop;

		if (hit == NULL)
			break;
		off = (size_t)(hit - w->map);
		stop = off + len;
		for (size_t pg = off / w->psize; pg * w->psize < stop; pg++) {
			size_t a = off > pg * w->psize ? off : pg * w->psize;
			size_t b = stop < (pg + 1) * w->psize ? stop : (pg + 1) * w->psize;
			int rc = wipe_in_page(w, pg, a, b);

			if (rc != 0)
				return rc;
		}
		at = hit + 1;
	}
	return 0;
}

store_err
store_wipe(store_env *env, const store_val *needles, size_t n, store_wipe_stats *st)
{
	struct wipe w = {.env = store_env_mdb(env), .st = st};
	struct oldest oldest;
	void *map = MAP_FAILED;
	store_txn *wtxn = NULL, *rtxn = NULL;
	MDB_envinfo info;
	MDB_stat stat;
	struct stat sb;
	store_err err;
	int rc;

	memset(st, 0, sizeof(*st));
	if (store_read_only(env))
		return STORE_READONLY;
	/* The write transaction keeps every writer from reusing a page. */
	if ((err = store_begin(env, true, &wtxn)) != STORE_OK)
		return err;
	if ((err = store_begin(env, false, &rtxn)) != STORE_OK)
		goto done;
	/* Pages freed by the last commit belong to the previous snapshot,
	 * which LMDB keeps as its fallback: as old as the readers, or that. */
	oldest.txnid = mdb_txn_id(store_txn_mdb(rtxn));
	mdb_reader_list(w.env, reader_line, &oldest);
	if ((rc = mdb_env_get_fd(w.env, &w.fd)) != 0 || (rc = mdb_env_info(w.env, &info)) != 0 ||
	    (rc = mdb_env_stat(w.env, &stat)) != 0 || (rc = fstat(w.fd, &sb)) != 0 ||
	    (rc = load_free(&w, store_txn_mdb(rtxn), oldest.txnid)) != 0)
		goto mdb_fail;
	w.psize = stat.ms_psize;
	w.last_pgno = info.me_last_pgno;
	w.file_size = (size_t)sb.st_size < info.me_mapsize ? (size_t)sb.st_size : info.me_mapsize;
	w.file_size -= w.file_size % w.psize;
	if (w.file_size == 0)
		goto done;
	/* A map of our own (LMDB does not say where its map is); the page
	 * cache keeps it in step with what pwrite writes. */
	map = mmap(NULL, w.file_size, PROT_READ, MAP_SHARED, w.fd, 0);
	if (map == MAP_FAILED) {
		rc = errno;
		goto mdb_fail;
	}
	w.map = map;
	if ((w.zeros = calloc(1, w.psize)) == NULL) {
		rc = ENOMEM;
		goto mdb_fail;
	}
	for (size_t i = 0; i < n; i++)
		if (needles[i].len > 0 && (rc = wipe_needle(&w, needles[i].data, needles[i].len)) != 0)
			goto mdb_fail;
	if (w.wrote && fdatasync(w.fd) != 0) {
		rc = errno;
		goto mdb_fail;
	}
	err = STORE_OK;
	goto done;

mdb_fail:
	err = rc == ENOMEM ? STORE_IO : rc == MDB_CORRUPTED ? STORE_CORRUPT
			   : rc == ENOSPC ? STORE_NOSPACE : STORE_IO;
done:
	if (map != MAP_FAILED)
		munmap(map, w.file_size);
	if (rtxn != NULL)
		store_abort(rtxn);
	store_abort(wtxn);
	free(w.zeros);
	free(w.free);
	return err;
}

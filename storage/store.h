/*
 * store.h — Parley's LMDB layer: one environment per data directory, named
 * tables, big-endian keys, short transactions.
 *
 * Ownership: a store_val returned inside a transaction points into the
 * memory map and is valid only until that transaction ends; copy it out
 * (store_get_copy does) before committing or aborting. One transaction per
 * thread at a time; a write transaction blocks other writers of the same
 * environment, so keep them short. The environment opens with MDB_NOTLS, so
 * read transactions are not tied to threads.
 *
 * Errors are store_err values; storage knows nothing of RPC status codes.
 * The services translate them (svc_fail_store: STORE_FULL and STORE_NOSPACE
 * are RESOURCE_EXHAUSTED, STORE_CORRUPT is DATA_LOSS).
 *
 * Locks: the environment counts the transactions open in the process (its
 * resize gate, see txn_begin in store.c) so that a map another process grew
 * is adopted only when none is open, as LMDB requires. A transaction ends
 * on the thread that began it.
 */
#ifndef PARLEY_STORE_H
#define PARLEY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum store_err {
	STORE_OK = 0,
	STORE_NOTFOUND,	 /* no such key, or no such table in a read-only env */
	STORE_EXISTS,	 /* key exists and STORE_NOOVERWRITE was given */
	STORE_FULL,	 /* the map is full: raise the map size */
	STORE_READONLY,	 /* write on an environment opened read-only */
	STORE_BUSY,	 /* too many readers */
	STORE_CORRUPT,	 /* the file is damaged or not an LMDB file */
	STORE_INVALID,	 /* bad argument (key too long, bad name) */
	STORE_IO,	 /* another operating system error */
	STORE_NOSPACE,	 /* the file system is full (ENOSPC, EDQUOT) */
	STORE_DENIED,	 /* the file system refused access (EACCES, EPERM) */
	STORE_ROFS,	 /* the file system is mounted read-only (EROFS) */
	STORE_NOMEM,	 /* out of memory (a caller's scan could not keep what it read) */
} store_err;

#define STORE_DEFAULT_MAP_SIZE ((size_t)1 << 30) /* 1 GiB */
#define STORE_MAX_KEY 511			 /* LMDB's default key limit */

typedef struct store_env store_env;
typedef struct store_txn store_txn;
typedef unsigned int store_table;

typedef struct store_val {
	const void *data;
	size_t len;
} store_val;

typedef struct store_opts {
	size_t map_size;	/* 0 = STORE_DEFAULT_MAP_SIZE */
	bool read_only;		/* open an environment another process writes */
	unsigned max_readers;	/* 0 = 1024 */
} store_opts;

const char *store_strerror(store_err err);

/* Opens (creating if needed, unless read_only) the environment in dir and
 * clears reader slots left by dead processes. opts may be NULL. The detail
 * buffer, if given, receives the operating system's reason on failure.
 * A data file shorter than the pages its meta page counts (truncated) is
 * STORE_CORRUPT, refused before any page is read. Errors: STORE_CORRUPT,
 * STORE_NOTFOUND (read-only and no environment), STORE_DENIED, STORE_ROFS,
 * STORE_NOSPACE, STORE_INVALID, STORE_IO. */
store_err store_open(store_env **envp, const char *dir, const store_opts *opts,
		     char *detail, size_t detail_len);
void store_close(store_env *env);
size_t store_map_size(const store_env *env);

/* What the environment is doing now, for diagnostics and tests. */
typedef struct store_info {
	size_t map_size;	/* the map this process uses */
	unsigned txns_open;	/* transactions open in this process */
	bool resize_waiting;	/* a thread waits for them to end to adopt a
				 * map another process grew */
} store_info;
void store_get_info(store_env *env, store_info *out);
bool store_read_only(const store_env *env);

/* Opens a named table, creating it in a writable environment. Thread-safe.
 * In a read-only environment a table the writer has not created yet gives
 * STORE_NOTFOUND: try again later. */
store_err store_table_open(store_env *env, const char *name, store_table *out);

/* Begins a transaction; may wait while the map is adopted (see above).
 * Errors: STORE_READONLY (write on a read-only env), STORE_BUSY (no reader
 * slot, or the map grew while this thread holds another transaction),
 * STORE_CORRUPT, STORE_IO. */
store_err store_begin(store_env *env, bool write, store_txn **txnp);

/* Calls fn with the name of every table in env, in name order, inside one
 * read transaction; fn returns false to stop. For tools (parleyd check).
 * Errors: those of store_begin, STORE_CORRUPT. */
typedef bool (*store_table_fn)(void *arg, const char *name);
store_err store_list_tables(store_env *env, store_table_fn fn, void *arg);
/* Commits (and frees) txn. For a write transaction, durable on return: the
 * environment syncs on commit. */
store_err store_commit(store_txn *txn);
void store_abort(store_txn *txn);

store_err store_get(store_txn *txn, store_table t, const void *key, size_t klen,
		    store_val *out);
#define STORE_NOOVERWRITE 1u
store_err store_put(store_txn *txn, store_table t, const void *key, size_t klen,
		    const void *val, size_t vlen, unsigned flags);
store_err store_del(store_txn *txn, store_table t, const void *key, size_t klen);

/*
 * Visits entries in key order starting at the first key >= from (or, with
 * reverse, at the last key <= from, where from == NULL means the very last
 * key). fn returns true to go on, false to stop. Values are valid only
 * inside fn.
 */
typedef bool (*store_visit_fn)(void *arg, store_val key, store_val val);
store_err store_scan(store_txn *txn, store_table t, const void *from, size_t from_len,
		     bool reverse, store_visit_fn fn, void *arg);

/* One-shot helpers, each its own short transaction. store_get_copy returns
 * a malloc'd copy the caller frees. */
store_err store_get_copy(store_env *env, store_table t, const void *key, size_t klen,
			 void **val, size_t *vlen);
store_err store_put1(store_env *env, store_table t, const void *key, size_t klen,
		     const void *val, size_t vlen, unsigned flags);
store_err store_del1(store_env *env, store_table t, const void *key, size_t klen);

/*
 * Erasing for good. LMDB never overwrites a committed page: a replaced
 * record's old bytes stay in the file (in free pages, and in the unused
 * middle of pages) until reused. store_wipe overwrites with zeros every
 * occurrence of each needle that no record and no reader can still reach:
 * in free pages LMDB would reuse, pages past the end in use, and the
 * unused middle of any branch or leaf page. Occurrences inside live
 * records (another record with the same bytes) are left alone and counted
 * as live; those in free pages an older reader may still read are counted
 * as held: commit something and call again once readers moved on.
 *
 * Use: commit the change that drops the bytes, commit once more (the
 * pages the change freed belong to LMDB's fallback snapshot until the next
 * commit), then wipe. It takes the write lock for its duration (a scan of
 * the file per needle) and syncs what it wrote. Not inside a transaction
 * of the calling thread. Errors: those of store_begin, STORE_READONLY,
 * STORE_CORRUPT (a damaged free list), STORE_NOSPACE, STORE_IO.
 */
typedef struct store_wipe_stats {
	unsigned pages_zeroed;	/* free pages (or past the end) zeroed whole */
	unsigned gaps_zeroed;	/* unused middles of pages zeroed */
	unsigned held;		/* occurrences in pages a reader may still read */
	unsigned live;		/* occurrences inside live records */
} store_wipe_stats;
store_err store_wipe(store_env *env, const store_val *needles, size_t n, store_wipe_stats *st);

/* Big-endian key encoding: byte order equals numeric order. */
static inline void
store_be64_put(uint8_t out[8], uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		out[i] = (uint8_t)v;
}

static inline uint64_t
store_be64_get(const uint8_t in[8])
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | in[i];
	return v;
}

static inline void
store_be32_put(uint8_t out[4], uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		out[i] = (uint8_t)v;
}

static inline uint32_t
store_be32_get(const uint8_t in[4])
{
	return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
}

/* ---- backups (backup.c) ------------------------------------------------ */

/* The file that marks a finished backup; written last. */
#define STORE_BACKUP_MANIFEST "parley-backup"

/*
 * Copies the data directory data_dir into dest_dir while other processes
 * may go on writing it: the LMDB environment as of one instant, compacted
 * (free pages left out), and every other regular file in data_dir (keys
 * the services keep there, such as auth.key), then the manifest. Files are
 * created 0600, and dest_dir, if it does not exist, 0700 (with missing
 * parents); an existing dest_dir must be empty. Everything is synced
 * before return. A copy that failed half-way has no manifest.
 *
 * Errors: STORE_NOTFOUND (no store in data_dir), STORE_EXISTS (dest_dir
 * not empty), STORE_CORRUPT (the store is damaged), STORE_BUSY (no reader
 * slot free), STORE_FULL (disk full), STORE_READONLY (permission), STORE_IO,
 * STORE_INVALID (path too long). detail, if given, says which file and why.
 */
store_err store_backup(const char *data_dir, const char *dest_dir, char *detail,
		       size_t detail_len);

/*
 * Makes data_dir (created 0700 if absent, else it must be empty) a store
 * again from a finished backup in backup_dir, which is only read (no lock
 * file is made in it). The environment is rewritten through LMDB, so every
 * page in use is read and a damaged backup is refused here.
 *
 * Errors: STORE_CORRUPT (no manifest: not a backup or an unfinished one; or
 * damaged pages), STORE_EXISTS (data_dir not empty), and those of
 * store_backup.
 */
store_err store_restore(const char *backup_dir, const char *data_dir, char *detail,
			size_t detail_len);

/* ---- space (store.c) ---------------------------------------------------- */

/* The map's size and the bytes in use (pages up to the last one written,
 * as of the last commit), for metrics. Thread-safe, no transaction. */
store_err store_space(store_env *env, uint64_t *map_bytes, uint64_t *used_bytes);

#endif

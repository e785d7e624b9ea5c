/*
 * timeline.h — how room timelines lie in LMDB. The messaging service is the
 * one writer; the history service reads the same tables, in the same process
 * or in another one on the same host. This layout is the contract between
 * them, so it lives here rather than in either service.
 *
 *   msg.events  room_id \0 be64(seq)  -> serialized parley.v1.Event
 *
 * A room's head (its latest seq; 0 without events) is the seq of its last
 * key: one cursor seek, and nothing more to write per event. (Data dirs
 * written before 2026-12 also hold msg.heads, room_id -> be64(head); it
 * is no longer read or written. An older binary on a newer data dir would
 * read a stale head there and its next append would fail with KEYEXIST,
 * never overwrite.)
 *
 * A chat message's record is kept current: after an edit it holds the
 * latest text and edited_at_ms, after a delete an empty text and
 * redacted = true (the MessageEdit and MessageRedaction events follow it
 * in the timeline with their own seqs).
 *
 * Every room's persisted events are numbered 1, 2, 3, ... without gaps, and
 * the head is derived from the events themselves, so a reader that sees
 * head h in a transaction sees every event 1..h in it.
 *
 * Threads: a timeline is shared by many threads. timeline_open is
 * thread-safe; the table handles it returns never change once open. All
 * other functions work inside the caller's transaction.
 */
#ifndef PARLEY_TIMELINE_H
#define PARLEY_TIMELINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "server.h"
#include "store.h"

#include "parley/v1/events.pb-c.h"

#define TIMELINE_EVENTS_TABLE "msg.events"
#define TIMELINE_HEADS_TABLE "msg.heads" /* legacy: see above (parleyd check) */
#define TIMELINE_ROOM_MAX 64
#define TIMELINE_KEY_MAX (TIMELINE_ROOM_MAX + 1 + 8)

typedef struct timeline {
	store_env *env;
	pthread_mutex_t mtx;
	bool ready;		/* set once, under mtx; the handles below then stay */
	store_table events;
} timeline;

void timeline_init(timeline *t, store_env *env);
void timeline_fini(timeline *t);

/*
 * Opens the tables unless already open. In a read-only environment whose
 * writer has not created them yet this gives STORE_NOTFOUND: the timeline
 * is empty for now; call again later.
 */
store_err timeline_open(timeline *t);

/* Writes the key of (room, seq) into key; returns its length. */
size_t timeline_key(uint8_t key[TIMELINE_KEY_MAX], const char *room, uint64_t seq);

/* The latest seq of room (0 when it has no events). */
store_err timeline_head(store_txn *txn, const timeline *t, const char *room, uint64_t *head);

/* In a write transaction: stores ev (packed, len bytes) as (room, seq),
 * which makes seq the room's head. The caller assigns seq = head + 1;
 * an existing (room, seq) is STORE_EXISTS, never
 * overwritten. */
store_err timeline_append(store_txn *txn, const timeline *t, const char *room, uint64_t seq,
			  const void *ev, size_t len);

/* The packed event (room, seq), valid until txn ends. STORE_NOTFOUND
 * when there is none. */
store_err timeline_get(store_txn *txn, const timeline *t, const char *room, uint64_t seq,
		       store_val *ev);

/* In a write transaction: replaces the stored event (room, seq), which
 * must exist, with ev (len bytes); the head is unchanged. Edits and
 * deletes keep the original record current this way, so that reading a
 * page of history costs no more than before. */
store_err timeline_replace(store_txn *txn, const timeline *t, const char *room, uint64_t seq,
			   const void *ev, size_t len);

/*
 * Visits the events of room with from <= seq <= to in ascending order; fn
 * gets each seq and its packed Event (valid only inside fn) and returns
 * false to stop. A seq missing inside the range is STORE_CORRUPT: the
 * sequence is gap-free by construction.
 */
typedef bool (*timeline_visit_fn)(void *arg, uint64_t seq, store_val ev);
store_err timeline_read(store_txn *txn, const timeline *t, const char *room, uint64_t from,
			uint64_t to, timeline_visit_fn fn, void *arg);

/* Decodes a packed Event into call's arena (freed with the call's reply);
 * NULL if it does not decode. */
Parley__V1__Event *timeline_unpack_for_call(rpc_call *call, const void *data, size_t len);

/*
 * A stored event is trusted by nobody: the file may be damaged. These check
 * the record of (room, seq) before it is served: it decodes, every string
 * is UTF-8 without NUL, its room_id and seq are those of its key, it has a
 * body, and a message's text is 1..TIMELINE_TEXT_MAX bytes. On failure
 * they write the reason into why (why_len bytes) and return NULL / false.
 *
 * timeline_decode_for_call decodes into call's arena (freed with the reply).
 */
#define TIMELINE_TEXT_MAX 4096
Parley__V1__Event *timeline_decode_for_call(rpc_call *call, const char *room, uint64_t seq,
					    const void *data, size_t len, char *why,
					    size_t why_len);
bool timeline_check_event(const char *room, uint64_t seq, const void *data, size_t len,
			  char *why, size_t why_len);

#endif

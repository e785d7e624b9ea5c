/*
 * writer_int.h — what writer.c (the queue, batches, Send, membership
 * changes), writer_ops.c (Edit, Delete, MarkRead), replier.c (answering
 * written batches) and eraser.c (erasing deleted text, then answering
 * Deletes) share. The writer thread alone touches a batch's items and the maps.
 */
#ifndef PARLEY_MESSAGING_WRITER_INT_H
#define PARLEY_MESSAGING_WRITER_INT_H

#include <stdatomic.h>

#include "messaging_int.h"

#define HASH_BYTES 32
#define WHY_MAX 160

typedef enum item_kind { ITEM_OP, ITEM_CHANGES } item_kind;

/* The Sends of one SendBatch call, queued together and written in one
 * transaction; the call is answered when the last of them is. Lives in the
 * call's arena. Its items are answered one at a time (the replier, or the
 * writer while the replier is idle), so only `left` needs to be atomic. */
struct wr_group {
	rpc_call *call;
	Parley__V1__SendBatchResponse *resp;
	atomic_uint left;	/* items not answered yet */
	struct wr_item *failed;	/* the first refused item, by index; NULL if none */
	store_err err;		/* failed's batch outcome */
};

struct wr_item {
	item_kind kind;
	struct wr_item *next;

	/* ITEM_OP: a checked call; its strings live in the call's arena until
	 * the writer answers it. */
	mx_op op;
	rpc_call *call;
	const char *room, *text, *cmid; /* "" when the op has none */
	uint64_t target;		/* EDIT/DELETE: the message; READ: the seq */
	bool may_moderate;		/* DELETE: the caller moderates the room */
	const char *sender;
	uint8_t hash[HASH_BYTES];	/* what a retry must repeat */
	rpc_code code;
	char why[WHY_MAX];		/* the message of a refusal (code != OK) */
	bool fresh;			/* wrote a new event in this batch */
	bool stored_hit;		/* a retry of an op committed earlier */
	bool mismatch;			/* client_msg_id reused for another op */
	uint64_t seq, ts_ms;
	struct wr_item *same_as;	/* an earlier op of the batch with the same key */
	struct wr_group *group;		/* a Send of a SendBatch; NULL for a call of its own */
	size_t index;			/* its place in the group */
	store_val *needles;		/* DELETE: the texts to erase (malloc'd) */
	size_t nneedles;
	store_err batch_err;		/* DELETE: its batch's outcome, for the eraser */

	/* ITEM_CHANGES */
	Parley__V1__Event **changes;
	size_t nchanges;
	uint64_t cursor;
	store_err err;
	bool done;
};

/* writer.c, for writer_ops.c: */

/* Appends ev (its seq assigned here) to its room in txn and keeps its PUB
 * frame for after the commit. */
store_err wr_append_event(mx_writer *w, store_txn *txn, Parley__V1__Event *ev);
/* The same for the event of op it (Send, Edit, Delete), whose body the
 * caller has set: room, sender and time now come from the op. */
store_err wr_append_op_event(mx_writer *w, store_txn *txn, const struct wr_item *it,
			     Parley__V1__Event *ev, uint64_t now);

/* For an op with a client_msg_id: finds an earlier op with the same key
 * (in this batch or stored). *answered is true when it decided the op (a
 * retry: stored_hit or same_as; or a mismatch); else the op goes ahead
 * and wr_key_done records it once it succeeded. */
store_err wr_key_check(mx_writer *w, store_txn *txn, struct wr_item *it, bool *answered);
store_err wr_key_done(mx_writer *w, store_txn *txn, struct wr_item *it);
/* Answers op it as done by the event appended at seq, at now, and records
 * its key (wr_key_done). */
store_err wr_answer_op(mx_writer *w, store_txn *txn, struct wr_item *it, uint64_t seq,
		       uint64_t now);

messaging_service *wr_service(mx_writer *w);

/* Marks change item it done with err and wakes its feed thread; it is
 * that thread's again afterwards. Any thread. */
void wr_change_done(mx_writer *w, struct wr_item *it, store_err err);

/* replier.c: the thread that answers written batches (see there). */
typedef struct wr_replier wr_replier;
typedef struct wr_eraser wr_eraser;

/* Answers op it (err: its batch's commit) and finishes its call; the item
 * is gone afterwards (it lived in the call's arena). Any thread. */
void wr_answer(struct wr_item *it, store_err err);

int wr_replier_start(mx_writer *w, wr_eraser *eraser, wr_replier **out, rpc_status *st);
/* Takes a written batch (err: its commit's outcome), its events' PUB
 * frames and the malloc'd array holding them: answers the ops (Deletes
 * through the eraser), marks the change items done and publishes the
 * frames, after every batch handed over before. more: the writer has
 * another batch waiting (else, if nothing is being answered, this is
 * answered on the caller's thread). Writer thread only. */
void wr_replier_submit(wr_replier *r, struct wr_item *batch, nng_msg **pubs, size_t npubs,
		       store_err err, bool more);
/* Answers what was handed over, then stops the thread. NULL is fine. */
void wr_replier_stop(wr_replier *r);

/* writer_ops.c: */

store_err wr_apply_edit(mx_writer *w, store_txn *txn, struct wr_item *it, uint64_t now);
store_err wr_apply_delete(mx_writer *w, store_txn *txn, struct wr_item *it, uint64_t now);
store_err wr_apply_read(mx_writer *w, store_txn *txn, struct wr_item *it);

/* eraser.c: the thread that erases deleted texts from the data file
 * (store_wipe) and then answers the Deletes. */
int wr_eraser_start(messaging_service *m, wr_eraser **out, rpc_status *st);
/* Takes a committed batch's Delete items (linked through next, each with
 * batch_err set) and answers each with wr_answer, in order, after every
 * item handed over before, once the texts of the fresh ones are erased
 * (bounded: ERASE_WAIT_MS and the calls' deadlines; failures are logged).
 * The items' needles are freed and wiped. */
void wr_eraser_submit(wr_eraser *e, struct wr_item *deletes);
/* Erases and answers what was handed over (one round, no waiting for
 * readers), then stops the thread. NULL is fine. */
void wr_eraser_stop(wr_eraser *e);

#endif

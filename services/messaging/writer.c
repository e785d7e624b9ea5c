/*
 * writer.c — the one thread that writes the message store (see
 * messaging_int.h).
 *
 * Send handlers and the feed thread queue items. The writer takes every
 * queued item, up to WRITER_BATCH_MAX, into one write transaction: each
 * new event gets its room's next seq, each client_msg_id its record, each
 * membership change its place in the mirror and the feed cursor its new
 * value; then one commit, which LMDB syncs. Only then
 * is each Send answered, and each new event published, in commit order.
 * If the transaction fails (storage full, I/O), every new event of the
 * batch fails with it and nothing is published; retries answered from
 * existing records still succeed.
 *
 * After the commit the writer hands the batch to the replier thread
 * (replier.c), which answers the calls, marks change items done and
 * publishes, batch after batch in commit order, while the writer
 * already writes the next batch. Deletes are answered by the eraser
 * thread (eraser.c), after their text is erased from the file.
 *
 * Locking: w->mtx guards the queue, `queued`, `stopping` and the `done`
 * flag of change items. The batch being written, and the scratch maps,
 * belong to the writer thread alone. A queued Send lives in its call's
 * arena until the writer answers it; a change item lives on the feed
 * thread's stack until it is marked done.
 */
#define _GNU_SOURCE 1 /* pthread_setname_np */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "log.h"
#include "messaging_int.h"
#include "metrics.h"
#include "records.h"
#include "parley/store/v1/messaging_records.pb-c.h"
#include "writer_int.h"

#define WRITER_QUEUE_MAX 4096	/* sends waiting; beyond, RESOURCE_EXHAUSTED */
#define WRITER_BATCH_MAX 512	/* items per transaction (and a SendBatch's rest) */
#define MAP_SLOTS 4096		/* > 2 x the distinct keys one batch can hold */
#define CLIENT_KEY_MAX (RPC_USER_ID_MAX + 1 + MX_CLIENT_MSG_ID_MAX)

/* A fixed open-addressing map from one or two strings to a number or an
 * item, reset after each batch. */
struct map_entry {
	const char *a, *b;
	uint64_t num;		/* rooms: the head within the batch */
	bool loaded;		/* rooms: num holds the stored head or later */
	struct wr_item *item;	/* keys: the send holding the key's answer */
};

struct map {
	struct map_entry slots[MAP_SLOTS];
	unsigned used[MAP_SLOTS];
	unsigned nused;
};

struct mx_writer {
	messaging_service *m;
	pthread_t thread;
	bool started;

	pthread_mutex_t mtx;
	pthread_cond_t cv;	/* queue not empty, or stopping */
	pthread_cond_t done_cv; /* a change item is done */
	struct wr_item *head, *tail;
	unsigned queued;
	bool stopping;

	wr_eraser *eraser;   /* answers the Deletes (eraser.c) */
	wr_replier *replier; /* answers the rest, publishes (replier.c) */

	/* Writer thread only. */
	struct map rooms; /* room -> head seq within the batch */
	struct map keys;  /* (sender, client_msg_id) -> first item */
	nng_msg **pubs;
	size_t npubs, cap_pubs;

	/* Metrics (rpc/metrics.h), made at start. */
	rpc_metric *m_sends, *m_commits, *m_failed, *m_per_commit, *m_commit_s;
};

/* ---- scratch maps ------------------------------------------------------ */

static unsigned
map_hash(const char *a, const char *b)
{
	return mx_pair_hash(a, b) & (MAP_SLOTS - 1);
}

/* The entry for (a, b), created empty if absent and create is set. */
static struct map_entry *
map_get(struct map *mp, const char *a, const char *b, bool create)
{
	unsigned i = map_hash(a, b);

	for (;; i = (i + 1) & (MAP_SLOTS - 1)) {
		struct map_entry *e = &mp->slots[i];

		if (e->a == NULL) {
			if (!create || mp->nused >= MAP_SLOTS / 2)
				return NULL;
			e->a = a;
			e->b = b;
			mp->used[mp->nused++] = i;
			return e;
		}
		if (strcmp(e->a, a) == 0 && (b == NULL || strcmp(e->b, b) == 0))
			return e;
	}
}

static void
map_reset(struct map *mp)
{
	for (unsigned i = 0; i < mp->nused; i++)
		memset(&mp->slots[mp->used[i]], 0, sizeof(struct map_entry));
	mp->nused = 0;
}

/* ---- writing one batch ------------------------------------------------- */

static bool
push_pub(mx_writer *w, nng_msg *msg)
{
	if (w->npubs == w->cap_pubs) {
		size_t cap = w->cap_pubs ? w->cap_pubs * 2 : 64;
		nng_msg **p = realloc(w->pubs, cap * sizeof(*p));

		if (p == NULL)
			return false;
		w->pubs = p;
		w->cap_pubs = cap;
	}
	w->pubs[w->npubs++] = msg;
	return true;
}

messaging_service *
wr_service(mx_writer *w)
{
	return w->m;
}

store_err
wr_append_event(mx_writer *w, store_txn *txn, Parley__V1__Event *ev)
{
	struct map_entry *room = map_get(&w->rooms, ev->room_id, NULL, true);
	size_t off = strlen(ev->room_id) + 1;
	nng_msg *frame;
	store_err err;

	if (room == NULL)
		return STORE_FULL; /* cannot happen: batches are bounded */
	if (!room->loaded) {
		/* First event of this room in the batch: its stored head. */
		if ((err = timeline_head(txn, &w->m->tl, ev->room_id, &room->num)) != STORE_OK)
			return err;
		room->loaded = true;
	}
	ev->seq = room->num + 1;
	if ((frame = mx_event_frame(ev)) == NULL)
		return STORE_IO;
	err = timeline_append(txn, &w->m->tl, ev->room_id, ev->seq,
			      (uint8_t *)nng_msg_body(frame) + off, nng_msg_len(frame) - off);
	if (err == STORE_OK && !push_pub(w, frame))
		err = STORE_IO;
	if (err != STORE_OK) {
		nng_msg_free(frame);
		return err;
	}
	room->num = ev->seq;
	return STORE_OK;
}

static size_t
client_key(uint8_t *key, const char *sender, const char *cmid)
{
	size_t a = strlen(sender), b = strlen(cmid);

	memcpy(key, sender, a);
	key[a] = '\0';
	memcpy(key + a + 1, cmid, b);
	return a + 1 + b;
}

/* Looks for a stored record of (sender, client_msg_id). *found tells. */
static store_err
lookup_client_id(mx_writer *w, store_txn *txn, struct wr_item *it, bool *found)
{
	Parley__Store__V1__ClientMsgRecord *rec;
	uint8_t key[CLIENT_KEY_MAX];
	store_val v;
	store_err err;

	*found = false;
	err = store_get(txn, w->m->client_ids, key, client_key(key, it->sender, it->cmid), &v);
	if (err == STORE_NOTFOUND)
		return STORE_OK;
	if (err != STORE_OK)
		return err;
	/* A damaged record is DATA_LOSS for this Send, not a crash. */
	rec = records_client_msg(NULL, v.data, v.len);
	if (rec == NULL)
		return STORE_CORRUPT;
	*found = true;
	if (strcmp(rec->room_id, it->room) == 0 && rec->text_hash.len == HASH_BYTES &&
	    memcmp(rec->text_hash.data, it->hash, HASH_BYTES) == 0) {
		it->code = RPC_OK;
		it->stored_hit = true;
		it->seq = rec->seq;
		it->ts_ms = rec->ts_ms;
	} else {
		it->code = RPC_INVALID_ARGUMENT;
		it->mismatch = true;
	}
	parley__store__v1__client_msg_record__free_unpacked(rec, NULL);
	return STORE_OK;
}

static store_err
put_client_id(mx_writer *w, store_txn *txn, struct wr_item *it)
{
	Parley__Store__V1__ClientMsgRecord rec = PARLEY__STORE__V1__CLIENT_MSG_RECORD__INIT;
	uint8_t key[CLIENT_KEY_MAX], buf[256];
	size_t len;

	rec.room_id = (char *)it->room;
	rec.seq = it->seq;
	rec.ts_ms = it->ts_ms;
	rec.text_hash.data = it->hash;
	rec.text_hash.len = HASH_BYTES;
	len = parley__store__v1__client_msg_record__get_packed_size(&rec);
	if (len > sizeof(buf))
		return STORE_INVALID;
	parley__store__v1__client_msg_record__pack(&rec, buf);
	return store_put(txn, w->m->client_ids, key, client_key(key, it->sender, it->cmid), buf,
			 len, 0);
}

store_err
wr_key_check(mx_writer *w, store_txn *txn, struct wr_item *it, bool *answered)
{
	struct map_entry *k;
	bool found;
	store_err err;

	*answered = false;
	if (it->cmid[0] == '\0')
		return STORE_OK;
	/* A retry inside this very batch, then a retry of a stored one. */
	k = map_get(&w->keys, it->sender, it->cmid, true);
	if (k == NULL)
		return STORE_FULL;
	if (k->item != NULL) {
		if (strcmp(k->item->room, it->room) == 0 &&
		    memcmp(k->item->hash, it->hash, HASH_BYTES) == 0) {
			it->same_as = k->item;
		} else {
			it->code = RPC_INVALID_ARGUMENT;
			it->mismatch = true;
		}
		*answered = true;
		return STORE_OK;
	}
	if ((err = lookup_client_id(w, txn, it, &found)) != STORE_OK)
		return err;
	if (found) {
		if (!it->mismatch)
			k->item = it;
		*answered = true;
	}
	return STORE_OK;
}

store_err
wr_key_done(mx_writer *w, store_txn *txn, struct wr_item *it)
{
	struct map_entry *k;
	store_err err;

	if (it->cmid[0] == '\0')
		return STORE_OK;
	if ((err = put_client_id(w, txn, it)) != STORE_OK)
		return err;
	if ((k = map_get(&w->keys, it->sender, it->cmid, true)) != NULL)
		k->item = it;
	return STORE_OK;
}

store_err
wr_append_op_event(mx_writer *w, store_txn *txn, const struct wr_item *it,
		   Parley__V1__Event *ev, uint64_t now)
{
	ev->room_id = (char *)it->room;
	ev->ts_ms = now;
	ev->sender = (char *)it->sender;
	return wr_append_event(w, txn, ev);
}

store_err
wr_answer_op(mx_writer *w, store_txn *txn, struct wr_item *it, uint64_t seq, uint64_t now)
{
	it->seq = seq;
	it->ts_ms = now;
	it->code = RPC_OK;
	it->fresh = true;
	return wr_key_done(w, txn, it);
}

static store_err
apply_send(mx_writer *w, store_txn *txn, struct wr_item *it, uint64_t now)
{
	Parley__V1__Event ev = PARLEY__V1__EVENT__INIT;
	Parley__V1__ChatMessage msg = PARLEY__V1__CHAT_MESSAGE__INIT;
	bool answered;
	store_err err;

	if ((err = wr_key_check(w, txn, it, &answered)) != STORE_OK || answered)
		return err;
	msg.text = (char *)it->text;
	msg.client_msg_id = (char *)it->cmid;
	ev.body_case = PARLEY__V1__EVENT__BODY_MESSAGE;
	ev.message = &msg;
	if ((err = wr_append_op_event(w, txn, it, &ev, now)) != STORE_OK ||
	    (err = mx_unread_note(w->m, txn, it->room, ev.seq, it->sender, it->text)) != STORE_OK)
		return err;
	return wr_answer_op(w, txn, it, ev.seq, now);
}

/* The rooms log's changes: membership (JOINED ... INVITED) or room_update. */
static bool
valid_change(const Parley__V1__Event *c)
{
	if (!svc_valid_room_id(c->room_id) || !svc_valid_user_id(c->sender))
		return false;
	if (c->body_case == PARLEY__V1__EVENT__BODY_ROOM_UPDATE)
		return c->room_update != NULL;
	return c->body_case == PARLEY__V1__EVENT__BODY_MEMBERSHIP && c->membership != NULL &&
	       c->membership->kind >= PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED &&
	       c->membership->kind <= PARLEY__V1__MEMBERSHIP_CHANGE__KIND__INVITED;
}

static store_err
apply_changes(mx_writer *w, store_txn *txn, struct wr_item *it, uint64_t now)
{
	uint8_t be[8];
	uint64_t cursor = 0;
	store_val v;
	store_err err;

	err = store_get(txn, w->m->meta, MX_FEED_CURSOR_KEY, strlen(MX_FEED_CURSOR_KEY), &v);
	if (err == STORE_OK && v.len == 8)
		cursor = store_be64_get(v.data);
	else if (err == STORE_OK)
		return STORE_CORRUPT;
	else if (err != STORE_NOTFOUND)
		return err;

	for (size_t i = 0; i < it->nchanges; i++) {
		const Parley__V1__Event *c = it->changes[i];
		Parley__V1__Event ev = PARLEY__V1__EVENT__INIT;
		Parley__V1__MembershipChange mc = PARLEY__V1__MEMBERSHIP_CHANGE__INIT;
		Parley__V1__RoomUpdate ru = PARLEY__V1__ROOM_UPDATE__INIT;

		if (c->seq <= cursor)
			continue; /* applied before */
		if (c->seq != cursor + 1)
			break;	  /* a hole in what we were given: fetch again */
		cursor = c->seq;
		if (!valid_change(c)) {
			plog_error("messaging", "membership change %llu is malformed; skipped",
				   (unsigned long long)c->seq);
			continue;
		}
		if ((err = mx_mirror_apply(w->m, txn, c)) != STORE_OK)
			return err;
		ev.room_id = c->room_id;
		ev.ts_ms = now;
		ev.sender = c->sender;
		ev.body_case = c->body_case;
		if (c->body_case == PARLEY__V1__EVENT__BODY_ROOM_UPDATE) {
			ru.name = c->room_update->name;
			ru.topic = c->room_update->topic;
			ev.room_update = &ru;
		} else {
			mc.kind = c->membership->kind;
			mc.actor = c->membership->actor;
			mc.reason = c->membership->reason;
			ev.membership = &mc;
		}
		if ((err = wr_append_event(w, txn, &ev)) != STORE_OK)
			return err;
	}
	store_be64_put(be, cursor);
	err = store_put(txn, w->m->meta, MX_FEED_CURSOR_KEY, strlen(MX_FEED_CURSOR_KEY), be, 8, 0);
	it->cursor = cursor;
	return err;
}

static store_err
apply_op(mx_writer *w, store_txn *txn, struct wr_item *it, uint64_t now)
{
	switch (it->op) {
	case MX_OP_SEND:
		return apply_send(w, txn, it, now);
	case MX_OP_EDIT:
		return wr_apply_edit(w, txn, it, now);
	case MX_OP_DELETE:
		return wr_apply_delete(w, txn, it, now);
	case MX_OP_READ:
		return wr_apply_read(w, txn, it);
	}
	return STORE_INVALID;
}

static store_err
write_batch(mx_writer *w, struct wr_item *batch)
{
	uint64_t now = rpc_wall_ms();
	struct wr_item *it;
	store_txn *txn = NULL;
	bool more;
	store_err err;

	w->npubs = 0;
	err = store_begin(w->m->env, true, &txn);
	for (it = batch; err == STORE_OK && it != NULL; it = it->next)
		err = it->kind == ITEM_OP ? apply_op(w, txn, it, now)
					  : apply_changes(w, txn, it, now);
	if (err == STORE_OK)
		err = store_commit(txn);
	else
		store_abort(txn);
	map_reset(&w->rooms);
	map_reset(&w->keys);

	if (err != STORE_OK) {
		static int64_t last_log;
		int64_t t = rpc_now_ms();

		if (t - last_log > 5000) {
			plog_error("messaging", "write failed: %s", store_strerror(err));
			last_log = t;
		}
		for (size_t i = 0; i < w->npubs; i++)
			nng_msg_free(w->pubs[i]);
		w->npubs = 0;
		/* Only answers resting on earlier commits stand. */
		for (it = batch; it != NULL; it = it->next)
			if (it->kind == ITEM_OP && !it->stored_hit && !it->mismatch &&
			    it->same_as == NULL) {
				it->code = RPC_INTERNAL; /* reported from err */
				it->why[0] = '\0';
				it->fresh = false;
			}
	}
	/* Copy each in-batch retry's answer before any call is answered:
	 * answering frees the item. */
	for (it = batch; it != NULL; it = it->next) {
		if (it->kind != ITEM_OP || it->same_as == NULL)
			continue;
		it->code = it->same_as->code;
		memcpy(it->why, it->same_as->why, sizeof(it->why));
		it->seq = it->same_as->seq;
		it->ts_ms = it->same_as->ts_ms;
	}
	/* Answering, publishing and marking changes done go to the replier
	 * thread: the next batch is written meanwhile. */
	pthread_mutex_lock(&w->mtx);
	more = w->head != NULL;
	pthread_mutex_unlock(&w->mtx);
	wr_replier_submit(w->replier, batch, w->pubs, w->npubs, err, more);
	w->pubs = NULL;
	w->npubs = w->cap_pubs = 0;
	return err;
}

void
wr_change_done(mx_writer *w, struct wr_item *it, store_err err)
{
	pthread_mutex_lock(&w->mtx);
	it->err = err;
	it->done = true;
	pthread_cond_broadcast(&w->done_cv);
	pthread_mutex_unlock(&w->mtx);
}

static int64_t
clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *
writer_main(void *arg)
{
	mx_writer *w = arg;

	pthread_setname_np(pthread_self(), "mx-writer"); /* for perf and top */

	for (;;) {
		struct wr_item *batch, *last;
		unsigned n = 1, ops;
		int64_t t0;

		pthread_mutex_lock(&w->mtx);
		while (w->head == NULL && !w->stopping)
			pthread_cond_wait(&w->cv, &w->mtx);
		if (w->head == NULL) {
			pthread_mutex_unlock(&w->mtx);
			break;
		}
		batch = last = w->head;
		ops = batch->kind == ITEM_OP;
		/* A SendBatch's items stay together: one transaction. */
		while (last->next != NULL &&
		       (n < WRITER_BATCH_MAX ||
			(last->group != NULL && last->next->group == last->group))) {
			last = last->next;
			ops += last->kind == ITEM_OP;
			n++;
		}
		w->head = last->next;
		if (w->head == NULL)
			w->tail = NULL;
		last->next = NULL;
		w->queued -= ops;
		pthread_mutex_unlock(&w->mtx);

		t0 = clock_ns();
		if (write_batch(w, batch) == STORE_OK) {
			rpc_counter_add(w->m_commits, 1);
			rpc_counter_add(w->m_sends, ops);
			if (ops > 0)
				rpc_histogram_observe(w->m_per_commit, ops);
			rpc_histogram_observe(w->m_commit_s, (double)(clock_ns() - t0) / 1e9);
		} else {
			rpc_counter_add(w->m_failed, 1);
		}
	}
	return NULL;
}

/* ---- the interface --------------------------------------------------------- */

static void
enqueue_locked(mx_writer *w, struct wr_item *it)
{
	it->next = NULL;
	if (w->tail != NULL)
		w->tail->next = it;
	else
		w->head = it;
	w->tail = it;
	pthread_cond_signal(&w->cv);
}

/* What a retry of the op must repeat: the text of a Send (as stored by
 * earlier versions), else the op, its target and text, which a Send's text
 * (no NUL) can never equal. */
static void
op_hash(struct wr_item *it)
{
	static const char *const tags[] = {"", "\0edit", "\0delete", "\0read"};
	crypto_generichash_state h;
	uint8_t be[8];

	crypto_generichash_init(&h, NULL, 0, HASH_BYTES);
	if (it->op != MX_OP_SEND) {
		store_be64_put(be, it->target);
		crypto_generichash_update(&h, (const unsigned char *)tags[it->op],
					  1 + strlen(tags[it->op] + 1));
		crypto_generichash_update(&h, be, sizeof(be));
	}
	crypto_generichash_update(&h, (const unsigned char *)it->text, strlen(it->text));
	crypto_generichash_final(&h, it->hash, HASH_BYTES);
}

static struct wr_item *
new_item(rpc_call *call, mx_op op, const char *room, const char *text, const char *cmid,
	 uint64_t target, bool may_moderate)
{
	struct wr_item *it = rpc_call_alloc(call, sizeof(*it));

	it->kind = ITEM_OP;
	it->op = op;
	it->call = call;
	it->room = room;
	it->text = text != NULL ? text : "";
	it->cmid = cmid != NULL ? cmid : "";
	it->target = target;
	it->may_moderate = may_moderate;
	it->sender = rpc_call_caller(call);
	op_hash(it);
	return it;
}

/* Makes room for n items and defers call, under w->mtx; on failure, the
 * call's status is set, the lock released and the code returned. */
static rpc_code
admit_locked(mx_writer *w, rpc_call *call, unsigned n)
{
	rpc_code code;

	if (w->stopping) {
		pthread_mutex_unlock(&w->mtx);
		return rpc_call_fail(call, RPC_UNAVAILABLE, "messaging is shutting down");
	}
	if (w->queued + n > WRITER_QUEUE_MAX) {
		pthread_mutex_unlock(&w->mtx);
		rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED,
			      "too many requests waiting to be written; try again shortly");
		rpc_call_retry_after(call, 100);
		return RPC_RESOURCE_EXHAUSTED;
	}
	/* Marked deferred before the writer can see it (rpc_call_defer). */
	if ((code = rpc_call_defer(call)) != RPC_OK) {
		pthread_mutex_unlock(&w->mtx);
		return code;
	}
	w->queued += n;
	return RPC_OK;
}

rpc_code
mx_writer_op(mx_writer *w, rpc_call *call, mx_op op, const char *room, const char *text,
	     const char *cmid, uint64_t target, bool may_moderate)
{
	struct wr_item *it = new_item(call, op, room, text, cmid, target, may_moderate);
	rpc_code code;

	pthread_mutex_lock(&w->mtx);
	if ((code = admit_locked(w, call, 1)) != RPC_OK)
		return code;
	enqueue_locked(w, it);
	pthread_mutex_unlock(&w->mtx);
	return RPC_DEFERRED;
}

rpc_code
mx_writer_send_batch(mx_writer *w, rpc_call *call, const Parley__V1__SendBatchRequest *req,
		     Parley__V1__SendBatchResponse *resp)
{
	struct wr_group *g = rpc_call_alloc(call, sizeof(*g));
	struct wr_item **items = rpc_call_alloc(call, req->n_messages * sizeof(*items));
	rpc_code code;

	g->call = call;
	g->resp = resp;
	atomic_init(&g->left, (unsigned)req->n_messages);
	resp->results = rpc_call_alloc(call, req->n_messages * sizeof(*resp->results));
	resp->n_results = req->n_messages;
	for (size_t i = 0; i < req->n_messages; i++) {
		const Parley__V1__SendRequest *m = req->messages[i];

		resp->results[i] = rpc_call_alloc(call, sizeof(*resp->results[i]));
		parley__v1__send_response__init(resp->results[i]);
		items[i] = new_item(call, MX_OP_SEND, m->room_id, m->text, m->client_msg_id, 0,
				    false);
		items[i]->group = g;
		items[i]->index = i;
	}
	pthread_mutex_lock(&w->mtx);
	if ((code = admit_locked(w, call, (unsigned)req->n_messages)) != RPC_OK)
		return code;
	for (size_t i = 0; i < req->n_messages; i++)
		enqueue_locked(w, items[i]);
	pthread_mutex_unlock(&w->mtx);
	return RPC_DEFERRED;
}

store_err
mx_writer_apply_changes(mx_writer *w, Parley__V1__Event **changes, size_t n, uint64_t *cursor)
{
	struct wr_item it = {.kind = ITEM_CHANGES, .changes = changes, .nchanges = n};

	pthread_mutex_lock(&w->mtx);
	if (w->stopping) {
		pthread_mutex_unlock(&w->mtx);
		return STORE_IO;
	}
	enqueue_locked(w, &it);
	while (!it.done)
		pthread_cond_wait(&w->done_cv, &w->mtx);
	pthread_mutex_unlock(&w->mtx);
	if (it.err == STORE_OK)
		*cursor = it.cursor;
	return it.err;
}

int
mx_writer_start(messaging_service *m, mx_writer **out, rpc_status *st)
{
	mx_writer *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	w->m = m;
	pthread_mutex_init(&w->mtx, NULL);
	rpc_cond_init(&w->cv);
	rpc_cond_init(&w->done_cv);
	w->m_sends = rpc_metrics_counter("parley_messaging_sends_total",
					 "Sends written (committed), retries included.", NULL);
	w->m_commits = rpc_metrics_counter("parley_messaging_commits_total",
					   "Synced LMDB commits of the message writer.", NULL);
	w->m_failed = rpc_metrics_counter("parley_messaging_commit_failures_total",
					  "Writer batches whose commit failed.", NULL);
	w->m_per_commit = rpc_metrics_histogram(
	    "parley_messaging_sends_per_commit", "Sends in one commit (group commit).", NULL,
	    rpc_metrics_count_bounds, rpc_metrics_count_nbounds);
	w->m_commit_s = rpc_metrics_histogram(
	    "parley_messaging_commit_duration_seconds",
	    "Time to write and sync one batch.", NULL, rpc_metrics_latency_bounds,
	    rpc_metrics_latency_nbounds);
	if (wr_eraser_start(m, &w->eraser, st) != RPC_OK ||
	    wr_replier_start(w, w->eraser, &w->replier, st) != RPC_OK) {
		mx_writer_stop(w);
		return st->code;
	}
	if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
		mx_writer_stop(w);
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "cannot start the writer");
	}
	w->started = true;
	*out = w;
	return RPC_OK;
}

void
mx_writer_stop(mx_writer *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mtx);
	w->stopping = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mtx);
	if (w->started)
		pthread_join(w->thread, NULL);
	/* After the writer: its last batches may still be answered, and
	 * those may have handed Deletes over. */
	wr_replier_stop(w->replier);
	wr_eraser_stop(w->eraser);
	free(w->pubs);
	pthread_cond_destroy(&w->done_cv);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mtx);
	free(w);
}

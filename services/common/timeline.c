/* timeline.c — see timeline.h. */
#include "timeline.h"

#include <stdio.h>
#include <string.h>

void
timeline_init(timeline *t, store_env *env)
{
	memset(t, 0, sizeof(*t));
	t->env = env;
	pthread_mutex_init(&t->mtx, NULL);
}

void
timeline_fini(timeline *t)
{
	pthread_mutex_destroy(&t->mtx);
}

store_err
timeline_open(timeline *t)
{
	store_table ev;
	store_err err = STORE_OK;

	pthread_mutex_lock(&t->mtx);
	if (!t->ready) {
		err = store_table_open(t->env, TIMELINE_EVENTS_TABLE, &ev);
		if (err == STORE_OK) {
			t->events = ev;
			__atomic_store_n(&t->ready, true, __ATOMIC_RELEASE);
		}
	}
	pthread_mutex_unlock(&t->mtx);
	return err;
}

size_t
timeline_key(uint8_t key[TIMELINE_KEY_MAX], const char *room, uint64_t seq)
{
	size_t n = strnlen(room, TIMELINE_ROOM_MAX);

	memcpy(key, room, n);
	key[n] = '\0';
	store_be64_put(key + n + 1, seq);
	return n + 1 + 8;
}

struct last_of {
	const uint8_t *prefix;
	size_t prefix_len;
	uint64_t seq;
	bool odd;	/* a key of the room that is not room \0 be64(seq) */
};

static bool
last_of_room(void *arg, store_val k, store_val v)
{
	struct last_of *l = arg;

	(void)v;
	if (k.len < l->prefix_len || memcmp(k.data, l->prefix, l->prefix_len) != 0)
		return false; /* another room's key: this one has no events */
	if (k.len != l->prefix_len + 8)
		l->odd = true;
	else
		l->seq = store_be64_get((const uint8_t *)k.data + l->prefix_len);
	return false;
}

store_err
timeline_head(store_txn *txn, const timeline *t, const char *room, uint64_t *head)
{
	uint8_t key[TIMELINE_KEY_MAX];
	size_t klen = timeline_key(key, room, UINT64_MAX);
	struct last_of l = {.prefix = key, .prefix_len = klen - 8};
	store_err err;

	/* The last key <= (room, max) is the room's last event, if it has
	 * any: room ids hold no NUL, so no other room's key starts with
	 * room \0. */
	*head = 0;
	err = store_scan(txn, t->events, key, klen, true, last_of_room, &l);
	if (err == STORE_NOTFOUND)
		return STORE_OK;
	if (err != STORE_OK)
		return err;
	if (l.odd)
		return STORE_CORRUPT;
	*head = l.seq;
	return STORE_OK;
}

store_err
timeline_append(store_txn *txn, const timeline *t, const char *room, uint64_t seq,
		const void *ev, size_t len)
{
	uint8_t key[TIMELINE_KEY_MAX];

	/* The head is the last key: nothing else to write. */
	return store_put(txn, t->events, key, timeline_key(key, room, seq), ev, len,
			 STORE_NOOVERWRITE);
}

store_err
timeline_get(store_txn *txn, const timeline *t, const char *room, uint64_t seq, store_val *ev)
{
	uint8_t key[TIMELINE_KEY_MAX];

	return store_get(txn, t->events, key, timeline_key(key, room, seq), ev);
}

store_err
timeline_replace(store_txn *txn, const timeline *t, const char *room, uint64_t seq,
		 const void *ev, size_t len)
{
	uint8_t key[TIMELINE_KEY_MAX];
	size_t klen = timeline_key(key, room, seq);
	store_val old;
	store_err err;

	if ((err = store_get(txn, t->events, key, klen, &old)) != STORE_OK)
		return err;
	return store_put(txn, t->events, key, klen, ev, len, 0);
}

struct read_state {
	size_t prefix_len;
	const uint8_t *prefix;
	uint64_t next, to;
	timeline_visit_fn fn;
	void *arg;
	bool stopped; /* fn asked to stop */
};

static bool
read_one(void *arg, store_val key, store_val val)
{
	struct read_state *r = arg;
	uint64_t seq;

	/* Another room's key, or a seq out of line, ends the walk; the
	 * caller sees that `next` fell short of `to`. */
	if (key.len != r->prefix_len + 8 || memcmp(key.data, r->prefix, r->prefix_len) != 0)
		return false;
	seq = store_be64_get((const uint8_t *)key.data + r->prefix_len);
	if (seq != r->next)
		return false;
	r->next++;
	if (!r->fn(r->arg, seq, val)) {
		r->stopped = true;
		return false;
	}
	return seq < r->to;
}

store_err
timeline_read(store_txn *txn, const timeline *t, const char *room, uint64_t from, uint64_t to,
	      timeline_visit_fn fn, void *arg)
{
	uint8_t key[TIMELINE_KEY_MAX];
	struct read_state r = {.prefix = key, .next = from, .to = to, .fn = fn, .arg = arg};
	size_t klen;
	store_err err;

	if (from == 0 || from > to)
		return STORE_OK;
	klen = timeline_key(key, room, from);
	r.prefix_len = klen - 8;
	err = store_scan(txn, t->events, key, klen, false, read_one, &r);
	if (err == STORE_OK && !r.stopped && r.next <= to)
		err = STORE_CORRUPT;
	return err;
}

static void *
arena_alloc(void *call, size_t size)
{
	return rpc_call_alloc(call, size);
}

static void
arena_free(void *call, void *p)
{
	/* The arena goes with the call. */
}

Parley__V1__Event *
timeline_unpack_for_call(rpc_call *call, const void *data, size_t len)
{
	ProtobufCAllocator a = {.alloc = arena_alloc, .free = arena_free, .allocator_data = call};

	return parley__v1__event__unpack(&a, len, data);
}

/* The checks of an unpacked event against its key; false with why. */
static bool
event_fits_key(const Parley__V1__Event *ev, const char *room, uint64_t seq, char *why,
	       size_t why_len)
{
	size_t n;

	if (strcmp(ev->room_id, room) != 0 || ev->seq != seq) {
		snprintf(why, why_len, "the record names room '%.64s' seq %llu", ev->room_id,
			 (unsigned long long)ev->seq);
		return false;
	}
	switch (ev->body_case) {
	case PARLEY__V1__EVENT__BODY_MESSAGE:
		/* A deleted message keeps its place with its text erased. */
		n = strlen(ev->message->text);
		if ((n == 0 && !ev->message->redacted) || n > TIMELINE_TEXT_MAX ||
		    (n != 0 && ev->message->redacted)) {
			snprintf(why, why_len, "message text of %zu bytes%s", n,
				 ev->message->redacted ? " (redacted)" : "");
			return false;
		}
		return true;
	case PARLEY__V1__EVENT__BODY_EDIT:
		/* Emptied when the message it edits is deleted. */
		n = strlen(ev->edit->text);
		if (n > TIMELINE_TEXT_MAX || ev->edit->target_seq == 0 ||
		    ev->edit->target_seq >= seq) {
			snprintf(why, why_len, "edit of seq %llu with %zu bytes of text",
				 (unsigned long long)ev->edit->target_seq, n);
			return false;
		}
		return true;
	case PARLEY__V1__EVENT__BODY_REDACTION:
		if (ev->redaction->target_seq == 0 || ev->redaction->target_seq >= seq) {
			snprintf(why, why_len, "redaction of seq %llu",
				 (unsigned long long)ev->redaction->target_seq);
			return false;
		}
		return true;
	case PARLEY__V1__EVENT__BODY_MEMBERSHIP:
	case PARLEY__V1__EVENT__BODY_ROOM_UPDATE:
		return true;
	default:
		snprintf(why, why_len, "no message, edit, redaction or membership body");
		return false;
	}
}

/* Strings first: protobuf-c checks no UTF-8 and ends C strings at a NUL. */
static bool
wire_ok(const void *data, size_t len, char *why, size_t why_len)
{
	rpc_status st = {0};

	if (rpc_check_wire(&parley__v1__event__descriptor, data, len, &st) != RPC_OK) {
		snprintf(why, why_len, "%s", st.message);
		return false;
	}
	return true;
}

Parley__V1__Event *
timeline_decode_for_call(rpc_call *call, const char *room, uint64_t seq, const void *data,
			 size_t len, char *why, size_t why_len)
{
	Parley__V1__Event *ev;

	if (!wire_ok(data, len, why, why_len))
		return NULL;
	if ((ev = timeline_unpack_for_call(call, data, len)) == NULL) {
		snprintf(why, why_len, "the record does not decode as an Event");
		return NULL;
	}
	return event_fits_key(ev, room, seq, why, why_len) ? ev : NULL;
}

bool
timeline_check_event(const char *room, uint64_t seq, const void *data, size_t len, char *why,
		     size_t why_len)
{
	Parley__V1__Event *ev;
	bool ok;

	if (!wire_ok(data, len, why, why_len))
		return false;
	if ((ev = parley__v1__event__unpack(NULL, len, data)) == NULL) {
		snprintf(why, why_len, "the record does not decode as an Event");
		return false;
	}
	ok = event_fits_key(ev, room, seq, why, why_len);
	parley__v1__event__free_unpacked(ev, NULL);
	return ok;
}

/*
 * writer_ops.c — Edit, Delete and MarkRead as the writer thread applies
 * them inside its batch transaction (see writer_int.h).
 *
 * An edit or a delete is checked against the stored message in the same
 * transaction that writes it, so two racing deletes, or an edit racing a
 * delete, are decided in commit order. Refusals fail the one op (code and
 * message in the item) and the batch goes on.
 *
 * Edit: a MessageEdit event (its own seq), the original record rewritten
 * with the new text and edited_at_ms, and an index entry
 * msg.edits (room, target, edit seq) -> the text the edit replaced.
 * Delete: a MessageRedaction event, the original record rewritten with an
 * empty text and redacted set, every MessageEdit of it emptied and its
 * index entries emptied: no live record keeps any version of the text.
 * The texts are then erased from the file itself (eraser.c, see
 * store_wipe) before the Delete is answered.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "log.h"
#include "writer_int.h"

#define EDIT_KEY_MAX (TIMELINE_ROOM_MAX + 1 + 8 + 1 + 8)

static size_t
edit_key(uint8_t key[EDIT_KEY_MAX], const char *room, uint64_t target, uint64_t edit)
{
	size_t n = strnlen(room, TIMELINE_ROOM_MAX);

	memcpy(key, room, n);
	key[n] = '\0';
	store_be64_put(key + n + 1, target);
	key[n + 9] = '\0';
	store_be64_put(key + n + 10, edit);
	return n + 18;
}

/* Fails the op alone. */
static store_err
refuse(struct wr_item *it, rpc_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static store_err
refuse(struct wr_item *it, rpc_code code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(it->why, sizeof(it->why), fmt, ap);
	va_end(ap);
	it->code = code;
	return STORE_OK;
}

/* The chat message at it->target, decoded (malloc'd: the caller frees it
 * with parley__v1__event__free_unpacked), or NULL with the op refused. */
static Parley__V1__Event *
load_target(mx_writer *w, store_txn *txn, struct wr_item *it, store_err *err)
{
	messaging_service *m = wr_service(w);
	Parley__V1__Event *ev;
	char why[160];
	store_val v;

	*err = timeline_get(txn, &m->tl, it->room, it->target, &v);
	if (*err == STORE_NOTFOUND) {
		*err = refuse(it, RPC_NOT_FOUND, "room '%s' has no event at seq %llu", it->room,
			      (unsigned long long)it->target);
		return NULL;
	}
	if (*err != STORE_OK)
		return NULL;
	if (!timeline_check_event(it->room, it->target, v.data, v.len, why, sizeof(why)) ||
	    (ev = parley__v1__event__unpack(NULL, v.len, v.data)) == NULL) {
		plog_error("messaging", "room %s, seq %llu is damaged: %s", it->room,
			   (unsigned long long)it->target, why);
		*err = refuse(it, RPC_DATA_LOSS, "the event at seq %llu cannot be read",
			      (unsigned long long)it->target);
		return NULL;
	}
	if (ev->body_case != PARLEY__V1__EVENT__BODY_MESSAGE) {
		*err = refuse(it, RPC_FAILED_PRECONDITION,
			      "the event at seq %llu is not a chat message",
			      (unsigned long long)it->target);
	} else if (ev->message->redacted) {
		*err = refuse(it, RPC_FAILED_PRECONDITION, "the message at seq %llu was deleted",
			      (unsigned long long)it->target);
	} else {
		return ev;
	}
	parley__v1__event__free_unpacked(ev, NULL);
	return NULL;
}

/* Packs ev and stores it over (room, seq). */
static store_err
rewrite(mx_writer *w, store_txn *txn, const Parley__V1__Event *ev)
{
	size_t len = parley__v1__event__get_packed_size(ev);
	uint8_t *buf = malloc(len ? len : 1);
	store_err err;

	if (buf == NULL)
		return STORE_IO;
	parley__v1__event__pack(ev, buf);
	err = timeline_replace(txn, &wr_service(w)->tl, ev->room_id, ev->seq, buf, len);
	free(buf);
	return err;
}

/* Rewrites the chat message target with text in place of its own; target
 * keeps its own text when this returns. */
static store_err
rewrite_text(mx_writer *w, store_txn *txn, Parley__V1__Event *target, const char *text)
{
	char *own = target->message->text;
	store_err err;

	target->message->text = (char *)text;
	err = rewrite(w, txn, target);
	target->message->text = own;
	return err;
}

/* The target of an Edit or Delete not answered before (see load_target),
 * or NULL: with *err set, or with *err STORE_OK and the op answered or
 * refused. */
static Parley__V1__Event *
open_target(mx_writer *w, store_txn *txn, struct wr_item *it, store_err *err)
{
	bool answered;

	if ((*err = wr_key_check(w, txn, it, &answered)) != STORE_OK || answered)
		return NULL;
	return load_target(w, txn, it, err);
}

struct edits_of {
	const uint8_t *prefix;
	size_t prefix_len;
	uint64_t seqs[MX_EDITS_MAX];
	size_t n;
	bool over;
};

static bool
collect_edit(void *arg, store_val k, store_val v)
{
	struct edits_of *e = arg;

	if (k.len != e->prefix_len + 8 || memcmp(k.data, e->prefix, e->prefix_len) != 0)
		return false;
	if (e->n == MX_EDITS_MAX) {
		e->over = true;
		return false;
	}
	e->seqs[e->n++] = store_be64_get((const uint8_t *)k.data + e->prefix_len);
	return true;
}

/* The seqs of the edits of (room, target), in order. */
static store_err
edits_of(mx_writer *w, store_txn *txn, const char *room, uint64_t target, struct edits_of *e)
{
	uint8_t key[EDIT_KEY_MAX];
	size_t klen = edit_key(key, room, target, 0);
	store_err err;

	e->prefix = key;
	e->prefix_len = klen - 8;
	e->n = 0;
	e->over = false;
	err = store_scan(txn, wr_service(w)->edits, key, klen, false, collect_edit, e);
	return err == STORE_NOTFOUND ? STORE_OK : err;
}

store_err
wr_apply_edit(mx_writer *w, store_txn *txn, struct wr_item *it, uint64_t now)
{
	Parley__V1__Event ev = PARLEY__V1__EVENT__INIT, *target;
	Parley__V1__MessageEdit me = PARLEY__V1__MESSAGE_EDIT__INIT;
	uint8_t key[EDIT_KEY_MAX];
	struct edits_of e;
	store_err err;

	if ((target = open_target(w, txn, it, &err)) == NULL)
		return err;
	if (strcmp(target->sender, it->sender) != 0) {
		err = refuse(it, RPC_PERMISSION_DENIED,
			     "only its sender can edit the message at seq %llu",
			     (unsigned long long)it->target);
		goto done;
	}
	if ((err = edits_of(w, txn, it->room, it->target, &e)) != STORE_OK)
		goto done;
	if (e.n == MX_EDITS_MAX) {
		err = refuse(it, RPC_FAILED_PRECONDITION,
			     "the message at seq %llu was edited %d times already",
			     (unsigned long long)it->target, MX_EDITS_MAX);
		goto done;
	}
	me.target_seq = it->target;
	me.text = (char *)it->text;
	ev.body_case = PARLEY__V1__EVENT__BODY_EDIT;
	ev.edit = &me;
	if ((err = wr_append_op_event(w, txn, it, &ev, now)) != STORE_OK)
		goto done;
	err = store_put(txn, wr_service(w)->edits, key, edit_key(key, it->room, it->target, ev.seq),
			target->message->text, strlen(target->message->text), 0);
	if (err != STORE_OK)
		goto done;
	/* The original reads with the latest text from now on. */
	target->message->edited_at_ms = now;
	if ((err = rewrite_text(w, txn, target, it->text)) != STORE_OK)
		goto done;
	err = wr_answer_op(w, txn, it, ev.seq, now);
done:
	parley__v1__event__free_unpacked(target, NULL);
	return err;
}

/* Keeps a copy of a text to erase from the file after the commit. */
static store_err
keep_needle(struct wr_item *it, const void *text, size_t len)
{
	store_val *nv;
	void *copy;

	if (len == 0)
		return STORE_OK;
	nv = realloc(it->needles, (it->nneedles + 1) * sizeof(*nv));
	if (nv == NULL)
		return STORE_IO;
	it->needles = nv;
	if ((copy = malloc(len)) == NULL)
		return STORE_IO;
	memcpy(copy, text, len);
	it->needles[it->nneedles++] = (store_val){copy, len};
	return STORE_OK;
}

/* Empties the edit at edit_seq of the deleted message and its index entry,
 * keeping both texts to erase. */
static store_err
empty_edit(mx_writer *w, store_txn *txn, struct wr_item *it, uint64_t edit_seq)
{
	messaging_service *m = wr_service(w);
	uint8_t key[EDIT_KEY_MAX];
	size_t klen = edit_key(key, it->room, it->target, edit_seq);
	Parley__V1__Event *ev;
	store_val v;
	char *text;
	store_err err;

	if ((err = store_get(txn, m->edits, key, klen, &v)) != STORE_OK ||
	    (err = keep_needle(it, v.data, v.len)) != STORE_OK ||
	    (err = store_put(txn, m->edits, key, klen, "", 0, 0)) != STORE_OK ||
	    (err = timeline_get(txn, &m->tl, it->room, edit_seq, &v)) != STORE_OK)
		return err;
	if ((ev = parley__v1__event__unpack(NULL, v.len, v.data)) == NULL)
		return STORE_CORRUPT;
	if (ev->body_case != PARLEY__V1__EVENT__BODY_EDIT) {
		parley__v1__event__free_unpacked(ev, NULL);
		return STORE_CORRUPT;
	}
	text = ev->edit->text;
	err = keep_needle(it, text, strlen(text));
	ev->edit->text = (char *)"";
	if (err == STORE_OK)
		err = rewrite(w, txn, ev);
	ev->edit->text = text;
	parley__v1__event__free_unpacked(ev, NULL);
	return err;
}

store_err
wr_apply_delete(mx_writer *w, store_txn *txn, struct wr_item *it, uint64_t now)
{
	Parley__V1__Event ev = PARLEY__V1__EVENT__INIT, *target;
	Parley__V1__MessageRedaction mr = PARLEY__V1__MESSAGE_REDACTION__INIT;
	struct edits_of e;
	const char *text;
	store_err err;

	if ((target = open_target(w, txn, it, &err)) == NULL)
		return err;
	if (strcmp(target->sender, it->sender) != 0 && !it->may_moderate) {
		err = refuse(it, RPC_PERMISSION_DENIED,
			     "only its sender or a moderator or admin of room '%s' can delete the "
			     "message at seq %llu",
			     it->room, (unsigned long long)it->target);
		goto done;
	}
	if ((err = edits_of(w, txn, it->room, it->target, &e)) != STORE_OK)
		goto done;
	for (size_t i = 0; i < e.n && err == STORE_OK; i++)
		err = empty_edit(w, txn, it, e.seqs[i]);
	if (err != STORE_OK)
		goto done;
	mr.target_seq = it->target;
	ev.body_case = PARLEY__V1__EVENT__BODY_REDACTION;
	ev.redaction = &mr;
	if ((err = wr_append_op_event(w, txn, it, &ev, now)) != STORE_OK)
		goto done;
	text = target->message->text;
	if ((err = keep_needle(it, text, strlen(text))) != STORE_OK)
		goto done;
	target->message->redacted = true;
	if ((err = rewrite_text(w, txn, target, "")) != STORE_OK)
		goto done;
	err = wr_answer_op(w, txn, it, ev.seq, now);
done:
	parley__v1__event__free_unpacked(target, NULL);
	return err;
}

store_err
wr_apply_read(mx_writer *w, store_txn *txn, struct wr_item *it)
{
	store_err err = mx_unread_mark(wr_service(w), txn, it->sender, it->room, it->target);

	if (err == STORE_OK)
		it->code = RPC_OK;
	return err;
}

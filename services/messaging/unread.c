/*
 * unread.c — read markers and unread counts without scanning history
 * (see messaging_int.h for the tables).
 *
 * Counters are cumulative and indexed by seq, written by the writer in the
 * transaction of each chat message:
 *   msg.counts    room \0 be64(seq)          -> be64(chat messages in room, 1..seq)
 *   msg.own       user \0 room \0 be64(seq)  -> be64(user's own messages there, 1..seq)
 *   msg.mentions  user \0 room \0 be64(seq)  -> be64(others' messages mentioning user, 1..seq)
 *   msg.reads     user \0 room               -> be64(read_seq)
 * "How many up to s" is the value of the last key <= (prefix, s): one
 * cursor seek. So unread after r is
 *   (counts(head) - counts(r)) - (own(head) - own(r))
 * and mentions after r is mentions(head) - mentions(r): a fixed number of
 * seeks per room, whatever the room's length. Deleted messages still
 * count (they show as deleted); edits, deletes and membership events do
 * not.
 *
 * A mention is "@" + the user id, not preceded by an id character or "@"
 * and not followed by one (trailing dots are punctuation): "@bob," and
 * "(@bob.)" mention bob, "mail@bob" and "@bobby" do not. Mentions of the
 * sender are not counted; at most UNREAD_MENTIONS_MAX users per message.
 *
 * Threads: the note/mark functions run on the writer thread inside its
 * transaction; the handlers read in their own read transactions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "members.h"
#include "messaging_int.h"
#include "parley/v1/rooms.pb-c.h"

#define UNREAD_ROOMS_MAX 100	/* room_ids of one GetUnread */
#define UNREAD_KEY_MAX (RPC_USER_ID_MAX + 1 + TIMELINE_ROOM_MAX + 1 + 8)

/* ---- keys and lookups ------------------------------------------------------ */

/* user \0 room [\0 be64(seq)], or room [\0 be64(seq)] without a user. */
static size_t
unread_key(uint8_t key[UNREAD_KEY_MAX], const char *user, const char *room, bool with_seq,
	   uint64_t seq)
{
	size_t n = 0, a;

	if (user != NULL) {
		a = strnlen(user, RPC_USER_ID_MAX - 1);
		memcpy(key, user, a);
		key[a] = '\0';
		n = a + 1;
	}
	a = strnlen(room, TIMELINE_ROOM_MAX);
	memcpy(key + n, room, a);
	n += a;
	if (with_seq) {
		key[n++] = '\0';
		store_be64_put(key + n, seq);
		n += 8;
	}
	return n;
}

struct floor_state {
	const uint8_t *prefix;
	size_t prefix_len;
	uint64_t value;
	bool bad;
};

static bool
floor_visit(void *arg, store_val k, store_val v)
{
	struct floor_state *f = arg;

	if (k.len == f->prefix_len + 8 && memcmp(k.data, f->prefix, f->prefix_len) == 0) {
		if (v.len == 8)
			f->value = store_be64_get(v.data);
		else
			f->bad = true;
	}
	return false; /* the one entry at or before the key is all we want */
}

/* The cumulative count stored under (user, room) at the last seq <= seq:
 * one seek. 0 when there is none. */
static store_err
count_at(store_txn *txn, store_table t, const char *user, const char *room, uint64_t seq,
	 uint64_t *out, unsigned *reads)
{
	uint8_t key[UNREAD_KEY_MAX];
	size_t klen = unread_key(key, user, room, true, seq);
	struct floor_state f = {.prefix = key, .prefix_len = klen - 8};
	store_err err;

	if (reads != NULL)
		(*reads)++;
	*out = 0;
	err = store_scan(txn, t, key, klen, true, floor_visit, &f);
	if (err == STORE_NOTFOUND)
		err = STORE_OK;
	if (err == STORE_OK && f.bad)
		err = STORE_CORRUPT;
	if (err == STORE_OK)
		*out = f.value;
	return err;
}

/* Adds 1 to the cumulative count of (user, room) at seq. */
static store_err
count_bump(store_txn *txn, store_table t, const char *user, const char *room, uint64_t seq)
{
	uint8_t key[UNREAD_KEY_MAX], val[8];
	size_t klen = unread_key(key, user, room, true, seq);
	uint64_t before;
	store_err err;

	if ((err = count_at(txn, t, user, room, seq - 1, &before, NULL)) != STORE_OK)
		return err;
	store_be64_put(val, before + 1);
	return store_put(txn, t, key, klen, val, 8, 0);
}

/* ---- mentions --------------------------------------------------------------- */

static bool
id_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

size_t
mx_mentions(const char *text, const char *sender, char (*out)[RPC_USER_ID_MAX], size_t max)
{
	size_t n = 0;

	for (const char *p = text; *p != '\0' && n < max; p++) {
		const char *start, *end;
		char id[RPC_USER_ID_MAX];
		bool seen = false;

		if (*p != '@' || (p > text && (id_char(p[-1]) || p[-1] == '@')))
			continue;
		start = end = p + 1;
		while (id_char(*end))
			end++;
		p = end - 1;
		while (end > start && end[-1] == '.')
			end--;
		if (end - start < 3 || end - start > 32)
			continue;
		memcpy(id, start, (size_t)(end - start));
		id[end - start] = '\0';
		if (!svc_valid_user_id(id) || strcmp(id, sender) == 0)
			continue;
		for (size_t k = 0; k < n && !seen; k++)
			seen = strcmp(out[k], id) == 0;
		if (!seen)
			memcpy(out[n++], id, sizeof(id));
	}
	return n;
}

/* ---- the writer's side --------------------------------------------------------- */

store_err
mx_unread_note(messaging_service *m, store_txn *txn, const char *room, uint64_t seq,
	       const char *sender, const char *text)
{
	char mentioned[UNREAD_MENTIONS_MAX][RPC_USER_ID_MAX];
	size_t n = mx_mentions(text, sender, mentioned, UNREAD_MENTIONS_MAX);
	store_err err;

	if ((err = count_bump(txn, m->counts, NULL, room, seq)) != STORE_OK ||
	    (err = count_bump(txn, m->own, sender, room, seq)) != STORE_OK)
		return err;
	for (size_t i = 0; i < n; i++)
		if ((err = count_bump(txn, m->mentions, mentioned[i], room, seq)) != STORE_OK)
			return err;
	return STORE_OK;
}

store_err
mx_unread_read_seq(messaging_service *m, store_txn *txn, const char *user, const char *room,
		   uint64_t *seq)
{
	uint8_t key[UNREAD_KEY_MAX];
	store_val v;
	store_err err;

	*seq = 0;
	err = store_get(txn, m->reads, key, unread_key(key, user, room, false, 0), &v);
	if (err == STORE_NOTFOUND)
		return STORE_OK;
	if (err == STORE_OK && v.len != 8)
		return STORE_CORRUPT;
	if (err == STORE_OK)
		*seq = store_be64_get(v.data);
	return err;
}

store_err
mx_unread_mark(messaging_service *m, store_txn *txn, const char *user, const char *room,
	       uint64_t seq)
{
	uint8_t key[UNREAD_KEY_MAX], val[8];
	uint64_t now;
	store_err err;

	if ((err = mx_unread_read_seq(m, txn, user, room, &now)) != STORE_OK || seq <= now)
		return err; /* never back */
	store_be64_put(val, seq);
	return store_put(txn, m->reads, key, unread_key(key, user, room, false, 0), val, 8, 0);
}

/* ---- reading ------------------------------------------------------------------------ */

store_err
mx_unread_get(messaging_service *m, store_txn *txn, const char *user, const char *room,
	      mx_unread *u, unsigned *reads)
{
	uint64_t all_h, all_r, own_h, own_r, men_h, men_r;
	store_err err;

	memset(u, 0, sizeof(*u));
	if (reads != NULL)
		*reads += 2;
	if ((err = timeline_head(txn, &m->tl, room, &u->head)) != STORE_OK ||
	    (err = mx_unread_read_seq(m, txn, user, room, &u->read)) != STORE_OK)
		return err;
	if (u->read > u->head)
		u->read = u->head; /* cannot happen: MarkRead refuses it */
	if ((err = count_at(txn, m->counts, NULL, room, u->head, &all_h, reads)) != STORE_OK ||
	    (err = count_at(txn, m->counts, NULL, room, u->read, &all_r, reads)) != STORE_OK ||
	    (err = count_at(txn, m->own, user, room, u->head, &own_h, reads)) != STORE_OK ||
	    (err = count_at(txn, m->own, user, room, u->read, &own_r, reads)) != STORE_OK ||
	    (err = count_at(txn, m->mentions, user, room, u->head, &men_h, reads)) != STORE_OK ||
	    (err = count_at(txn, m->mentions, user, room, u->read, &men_r, reads)) != STORE_OK)
		return err;
	if (all_h < all_r || own_h < own_r || men_h < men_r || all_h - all_r < own_h - own_r)
		return STORE_CORRUPT;
	u->unread = (all_h - all_r) - (own_h - own_r);
	u->mentions = men_h - men_r;
	return STORE_OK;
}

/* ---- MarkRead and GetUnread ----------------------------------------------------------- */

rpc_code
mx_handle_mark_read(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		    void *ctx)
{
	const Parley__V1__MarkReadRequest *req = (const void *)reqm;
	messaging_service *m = ctx;
	uint64_t head = 0;
	store_txn *txn;
	store_err err;
	rpc_code code;

	if (!svc_valid_room_id(req->room_id))
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "room_id must be 1 to 64 characters of a-z 0-9 _ . - "
				     "starting with a letter or digit");
	if ((code = members_require(call, m->rooms, req->room_id)) != RPC_OK)
		return code;
	/* Heads only grow: a seq within the head now stays within it. */
	if ((err = store_begin(m->env, false, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "mark read");
	err = timeline_head(txn, &m->tl, req->room_id, &head);
	store_abort(txn);
	if (err != STORE_OK)
		return svc_fail_store(call, err, "mark read");
	if (req->seq > head)
		return rpc_call_fail(call, RPC_OUT_OF_RANGE,
				     "seq %llu is past the end of room '%s' (%llu)",
				     (unsigned long long)req->seq, req->room_id,
				     (unsigned long long)head);
	return mx_writer_op(m->writer, call, MX_OP_READ, req->room_id, NULL, NULL, req->seq, false);
}

/* The caller's rooms, from the rooms service (ListMyRooms, their token). */
static rpc_code
my_rooms(rpc_call *call, messaging_service *m, char ***ids, size_t *n)
{
	Parley__V1__ListMyRoomsRequest req = PARLEY__V1__LIST_MY_ROOMS_REQUEST__INIT;
	Parley__V1__ListMyRoomsResponse *resp;
	rpc_call_opts opts = {.token = rpc_call_token(call), .deadline_ms = rpc_call_deadline(call)};
	rpc_status st = {0};
	char why[RPC_STATUS_MESSAGE_MAX];

	if (rpc_client_call(m->rooms, &parley__v1__rooms__descriptor, "ListMyRooms", &req.base,
			    (ProtobufCMessage **)&resp, &opts, &st) != RPC_OK) {
		snprintf(why, sizeof(why), "%s", st.message);
		return rpc_call_fail(call, st.code == RPC_UNAUTHENTICATED ? RPC_UNAUTHENTICATED
									  : RPC_UNAVAILABLE,
				     "cannot list your rooms: %s", why);
	}
	*n = resp->n_rooms;
	*ids = rpc_call_alloc(call, (resp->n_rooms + 1) * sizeof(char *));
	for (size_t i = 0; i < resp->n_rooms; i++)
		(*ids)[i] = rpc_call_strdup(call, resp->rooms[i]->room_id);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return RPC_OK;
}

/* The event at head into r->last_event; a damaged one is left out (and
 * logged): the counts still stand. */
static void
last_event(rpc_call *call, messaging_service *m, store_txn *txn, Parley__V1__RoomUnread *r)
{
	char why[160];
	store_val v;

	if (r->head_seq == 0 || timeline_get(txn, &m->tl, r->room_id, r->head_seq, &v) != STORE_OK)
		return;
	r->last_event = timeline_decode_for_call(call, r->room_id, r->head_seq, v.data, v.len,
						 why, sizeof(why));
	if (r->last_event == NULL)
		plog_error("messaging", "room %s, seq %llu is damaged: %s", r->room_id,
			   (unsigned long long)r->head_seq, why);
}

rpc_code
mx_handle_get_unread(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		     void *ctx)
{
	const Parley__V1__GetUnreadRequest *req = (const void *)reqm;
	Parley__V1__GetUnreadResponse *resp = (void *)respm;
	messaging_service *m = ctx;
	const char *user = rpc_call_caller(call);
	char **ids = req->room_ids;
	size_t n = req->n_room_ids;
	store_txn *txn;
	store_err err = STORE_OK;
	rpc_code code;

	if (n > UNREAD_ROOMS_MAX)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "room_ids names at most %d rooms (got %zu)", UNREAD_ROOMS_MAX, n);
	for (size_t i = 0; i < n; i++) {
		if (!svc_valid_room_id(ids[i]))
			return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
					     "room_ids[%zu] must be 1 to 64 characters of a-z 0-9 "
					     "_ . - starting with a letter or digit",
					     i);
		if ((code = members_require(call, m->rooms, ids[i])) != RPC_OK)
			return code;
	}
	if (n == 0 && (code = my_rooms(call, m, &ids, &n)) != RPC_OK)
		return code;
	resp->rooms = rpc_call_alloc(call, (n + 1) * sizeof(*resp->rooms));
	if ((err = store_begin(m->env, false, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "unread");
	for (size_t i = 0; i < n && err == STORE_OK; i++) {
		Parley__V1__RoomUnread *r = rpc_call_alloc(call, sizeof(*r));
		mx_unread u;

		parley__v1__room_unread__init(r);
		if ((err = mx_unread_get(m, txn, user, ids[i], &u, NULL)) != STORE_OK)
			break;
		r->room_id = ids[i];
		r->head_seq = u.head;
		r->read_seq = u.read;
		r->unread_count = u.unread;
		r->mention_count = u.mentions;
		last_event(call, m, txn, r);
		resp->rooms[resp->n_rooms++] = r;
	}
	store_abort(txn);
	if (err != STORE_OK)
		return svc_fail_store(call, err, "unread");
	return RPC_OK;
}

int
mx_unread_open(messaging_service *m, rpc_status *st)
{
	if (!svc_open_table(m->env, "msg.counts", &m->counts, st) ||
	    !svc_open_table(m->env, "msg.own", &m->own, st) ||
	    !svc_open_table(m->env, "msg.mentions", &m->mentions, st) ||
	    !svc_open_table(m->env, "msg.reads", &m->reads, st))
		return st->code;
	return RPC_OK;
}

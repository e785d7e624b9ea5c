/*
 * session_reply.c — answering a session's Poll (see session.h): the
 * membership check of every room with something to deliver, the user's
 * removal event as a room's last, events from the buffer and from LMDB,
 * and the token check before anything goes out; and adding the rooms the
 * user joins. Runs on the session's worker thread only.
 */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

static rpc_metric *refilled_metric, *delivered_metric;

struct reply {
	rpc_call *call;
	Parley__V1__Event **events;
	size_t n, max, bytes;
	sess_room *room;
	sess_room *bad_room;	/* a stored event of this room failed its checks */
	uint64_t bad_seq;
	char why[160];
};

static bool
reply_add(struct reply *r, const void *data, size_t len)
{
	Parley__V1__Event *ev = timeline_unpack_for_call(r->call, data, len);

	if (ev != NULL)
		r->events[r->n++] = ev;
	r->bytes += len;
	return r->n < r->max && r->bytes < POLL_REPLY_BYTES;
}

/* An event read from LMDB: checked before it is served (the file may be
 * damaged); a bad one stops the read with the cursor before it. */
static bool
reply_visit(void *arg, uint64_t seq, store_val v)
{
	struct reply *r = arg;
	Parley__V1__Event *ev = timeline_decode_for_call(r->call, r->room->id, seq, v.data,
							 v.len, r->why, sizeof(r->why));

	if (ev == NULL) {
		r->bad_room = r->room;
		r->bad_seq = seq;
		return false;
	}
	r->room->cursor = seq;
	r->events[r->n++] = ev;
	r->bytes += v.len;
	return r->n < r->max && r->bytes < POLL_REPLY_BYTES;
}

/* ---- membership ------------------------------------------------------------- */

static bool
kind_matches(Parley__V1__MembershipChange__Kind k, bool joined)
{
	if (joined)
		return k == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED;
	return k == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT ||
	       k == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__KICKED ||
	       k == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__BANNED;
}

uint64_t
session_find_membership(mx_session *s, store_txn *txn, const char *room, uint64_t floor,
			bool joined)
{
	uint64_t head, seq;

	if (timeline_head(txn, &s->m->tl, room, &head) != STORE_OK)
		return 0;
	if (floor + SESSION_SCAN_BACK < head)
		floor = head - SESSION_SCAN_BACK;
	for (seq = head; seq > floor; seq--) {
		Parley__V1__Event *ev;
		store_val v;
		bool hit;

		if (timeline_get(txn, &s->m->tl, room, seq, &v) != STORE_OK)
			return 0;
		if ((ev = parley__v1__event__unpack(NULL, v.len, v.data)) == NULL)
			continue; /* damaged: the read that serves it says so */
		hit = ev->body_case == PARLEY__V1__EVENT__BODY_MEMBERSHIP &&
		      ev->membership != NULL && ev->sender != NULL &&
		      strcmp(ev->sender, s->user) == 0 && kind_matches(ev->membership->kind, joined);
		parley__v1__event__free_unpacked(ev, NULL);
		if (hit)
			return seq;
	}
	return 0;
}

/*
 * The user is no longer a member of room i. What the session had not yet
 * delivered of it may have been sent after LeaveRoom returned (the LEFT
 * lands in the timeline only when the feed applies it), so none of it goes
 * out: only the removal event itself, found in the timeline (the mirror
 * that said "not a member" was written in its transaction). The room is
 * dropped once that event is out, or at once if there is none to send.
 */
static void
start_leaving(mx_session *s, unsigned i)
{
	sess_room *r = s->rooms[i];
	uint64_t delivered = r->cursor, removal = 0;
	store_txn *txn;

	for (unsigned k = 0; k < s->buf_len; k++) {
		const sess_event *e = &s->buf[(s->buf_head + k) % s->buf_cap];

		if (e->room == i && e->f->seq != 0) {
			delivered = e->f->seq - 1; /* the first one not sent */
			break;
		}
	}
	session_buf_remove_room(s, i);
	mx_router_drop_room(s->m->router, s, i);
	if (store_begin(s->m->env, false, &txn) == STORE_OK) {
		removal = session_find_membership(s, txn, r->id, delivered, false);
		store_abort(txn);
	}
	if (removal == 0) {
		session_drop_room(s, i);
		return;
	}
	r->leaving = true;
	r->cursor = removal - 1;
	r->known_head = removal;
}

/*
 * Checks membership of every room with something to deliver. First the
 * membership barrier (every change the rooms service committed before the
 * events at hand were committed is in the mirror: for a live event, the
 * round the router took when it arrived; for LMDB, a round from now), then
 * the mirror; a room the mirror does not list is
 * confirmed with IsMember (the Poll's token) before the user's removal
 * becomes its last event. RPC_OK, or the failure in st (nothing is
 * consumed then). checked[i] tells which rooms may deliver.
 */
static rpc_code
check_rooms(mx_session *s, rpc_call *call, bool *checked, rpc_status *st)
{
	int64_t deadline = rpc_now_ms() + MEMBERS_TIMEOUT_MS;
	bool unsure[SESSION_MAX_ROOMS], any = false;
	uint64_t mine = 0;
	store_txn *txn;

	for (unsigned i = 0; i < s->nrooms; i++) {
		sess_room *r = s->rooms[i];

		checked[i] = r->leaving && session_behind(r);
		unsure[i] = !session_is_gone(r) && !r->leaving &&
			    (r->buffered > 0 || session_behind(r));
		any |= unsure[i];
		/* Read from LMDB now: what it holds needs a round from now. */
		if (unsure[i] && session_behind(r) && mine == 0)
			mine = mx_feed_round_next(s->m->feed);
	}
	if (!any)
		return RPC_OK;
	/* A live event needs the round taken when it reached the router. */
	for (unsigned k = 0; k < s->buf_len; k++) {
		const mx_frame *f = s->buf[(s->buf_head + k) % s->buf_cap].f;

		if (f->need > mine)
			mine = f->need;
	}
	if (mine == 0)
		mine = mx_feed_round_next(s->m->feed);
	if (rpc_call_deadline(call) < deadline)
		deadline = rpc_call_deadline(call);
	if (mx_feed_sync_round(s->m->feed, mine, deadline, st) != RPC_OK)
		return st->code;
	if (store_begin(s->m->env, false, &txn) == STORE_OK) {
		for (unsigned i = 0; i < s->nrooms; i++) {
			bool member;

			if (unsure[i] && mx_mirror_is_member(s->m, txn, s->rooms[i]->id, s->user,
							     &member) == STORE_OK &&
			    member) {
				unsure[i] = false;
				checked[i] = true;
			}
		}
		store_abort(txn);
	}
	for (unsigned i = 0; i < s->nrooms; i++) {
		bool member;

		if (!unsure[i])
			continue;
		if (members_check(s->m->rooms, s->rooms[i]->id, s->user, rpc_call_token(call),
				  deadline, &member, st) != RPC_OK) {
			if (st->code != RPC_NOT_FOUND)
				return st->code;
			/* A PRIVATE or DIRECT room hides itself from whoever is
			 * not a member (NOT_FOUND, as if it did not exist): for a
			 * room this session covered, that is the user's removal,
			 * delivered like any other (rooms are never deleted). */
			member = false;
			st->code = RPC_OK;
			st->message[0] = '\0';
		}
		if (!member) {
			start_leaving(s, i);
			checked[i] = s->rooms[i]->leaving;
		} else {
			checked[i] = true;
		}
	}
	return RPC_OK;
}

/* ---- following the user's joins ------------------------------------------------- */

/* A new slot for room id at the end of s->rooms; NULL when full or out of
 * memory. */
static sess_room *
add_slot(mx_session *s, const char *id)
{
	sess_room *r;

	if (s->nrooms >= SESSION_MAX_ROOMS || (r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	snprintf(r->id, sizeof(r->id), "%s", id);
	pthread_mutex_lock(&s->mtx);
	if (s->nrooms == s->rooms_cap) {
		unsigned cap = s->rooms_cap * 2 > SESSION_MAX_ROOMS ? SESSION_MAX_ROOMS
								     : s->rooms_cap * 2;
		sess_room **v = realloc(s->rooms, cap * sizeof(*v));

		if (v == NULL) {
			pthread_mutex_unlock(&s->mtx);
			free(r);
			return NULL;
		}
		s->rooms = v;
		s->rooms_cap = cap;
	}
	__atomic_store_n(&r->gone, true, __ATOMIC_RELEASE); /* until it is set up */
	s->rooms[s->nrooms++] = r;
	pthread_mutex_unlock(&s->mtx);
	return r;
}

void
session_follow_room(mx_session *s, const char *id)
{
	uint64_t joined = 0, head = 0;
	sess_room *r = NULL;
	store_txn *txn;
	unsigned i;

	for (i = 0; i < s->nrooms; i++)
		if (strcmp(s->rooms[i]->id, id) == 0)
			break;
	if (i < s->nrooms && !session_is_gone(s->rooms[i]))
		return;
	if (store_begin(s->m->env, false, &txn) != STORE_OK)
		return;
	/* A room it left: never back before what it delivered there. */
	joined = session_find_membership(s, txn, id, i < s->nrooms ? s->rooms[i]->cursor : 0,
					 true);
	if (timeline_head(txn, &s->m->tl, id, &head) != STORE_OK)
		joined = 0;
	store_abort(txn);
	if (joined == 0)
		return; /* no JOINED of ours near the head: nothing to start from */
	if (i < s->nrooms)
		r = s->rooms[i];
	else if ((r = add_slot(s, id)) == NULL) {
		plog_info("messaging", "session of %s covers %u rooms: does not follow %s", s->user,
			  s->nrooms, id);
		return;
	}
	if (!mx_presence_enter(s->m->presence, id, s->user))
		return;
	r->cursor = joined - 1;
	r->known_head = head;
	r->buffered = 0;
	r->leaving = false;
	pthread_mutex_lock(&s->mtx);
	r->rewind_set = false;
	pthread_mutex_unlock(&s->mtx);
	__atomic_store_n(&r->gone, false, __ATOMIC_RELEASE);
	if (!mx_router_add_room(s->m->router, s, i)) {
		/* Out of memory: served from LMDB, woken by Polls only. */
		plog_error("messaging", "session of %s: cannot route %s", s->user, id);
	}
	plog_info("messaging", "session of %s: now follows %s from seq %llu", s->user, id,
		  (unsigned long long)joined);
}

/* ---- building the reply ----------------------------------------------------------- */

/* Reads events of rooms that are behind (and have nothing buffered) from
 * LMDB into the reply. */
static void
reply_from_store(mx_session *s, struct reply *r, const bool *checked)
{
	store_txn *txn;
	store_err err;

	if ((err = store_begin(s->m->env, false, &txn)) != STORE_OK)
		return; /* the rooms stay behind; next Poll */
	for (unsigned k = 0; k < s->nrooms && r->n < r->max && r->bytes < POLL_REPLY_BYTES &&
			     r->bad_room == NULL;
	     k++) {
		unsigned i = (s->rr + k) % s->nrooms;
		sess_room *room = s->rooms[i];
		uint64_t head, to;

		if (!checked[i] || room->buffered > 0 || !session_behind(room))
			continue;
		if (timeline_head(txn, &s->m->tl, room->id, &head) != STORE_OK)
			continue;
		if (room->leaving)
			head = room->known_head; /* the removal event, no further */
		else if (head > room->known_head)
			room->known_head = head;
		if (head <= room->cursor)
			continue;
		to = room->cursor + (r->max - r->n);
		if (to > head)
			to = head;
		r->room = room;
		err = timeline_read(txn, &s->m->tl, room->id, room->cursor + 1, to, reply_visit, r);
		if (err != STORE_OK)
			plog_error("messaging", "reading %s after %llu: %s", room->id,
				   (unsigned long long)room->cursor, store_strerror(err));
	}
	store_abort(txn);
	s->rr++;
}

/* Is the Poll's token (the session's own) still valid? Asked of auth just
 * before events go out, so that a Logout ends delivery at once. */
static rpc_code
token_still_valid(mx_session *s, rpc_call *call, rpc_status *st)
{
	int64_t deadline = rpc_now_ms() + MEMBERS_TIMEOUT_MS;
	char user[RPC_USER_ID_MAX];
	rpc_code code;

	if (rpc_call_deadline(call) < deadline)
		deadline = rpc_call_deadline(call);
	code = svc_authn_validate(s->m->authn, rpc_call_token(call), deadline, user, st);
	if (code == RPC_UNAUTHENTICATED || (code == RPC_OK && strcmp(user, s->user) != 0))
		return rpc_status_set(st, RPC_UNAUTHENTICATED,
				      "your login ended (logged out, expired or revoked); this "
				      "session is closed");
	return code;
}

/* The reply could not go out: the rooms it took events from go back to
 * where they were and are read again from LMDB. */
static void
untake(mx_session *s, const uint64_t *saved)
{
	for (unsigned i = 0; i < s->nrooms; i++) {
		sess_room *r = s->rooms[i];

		if (r->cursor == saved[i])
			continue;
		session_buf_remove_room(s, i);
		if (r->known_head < r->cursor)
			r->known_head = r->cursor;
		r->cursor = saved[i];
	}
}

bool
session_answer_poll(mx_session *s, rpc_call *call, uint32_t max, bool may_wait)
{
	Parley__V1__PollResponse *resp = (Parley__V1__PollResponse *)rpc_call_response(call);
	bool checked[SESSION_MAX_ROOMS];
	struct reply r = {.call = call, .max = max};
	uint64_t saved[SESSION_MAX_ROOMS];
	rpc_status st = {0};
	size_t from_buffer;

	if (s->buf_len > 0 || session_rooms_behind(s) > 0) {
		if (check_rooms(s, call, checked, &st) != RPC_OK) {
			rpc_call_fail_status(call, &st);
			rpc_call_finish(call, st.code);
			return true;
		}
	}
	if (s->buf_len == 0 && session_rooms_behind(s) == 0 && may_wait)
		return false;

	for (unsigned i = 0; i < s->nrooms; i++)
		saved[i] = s->rooms[i]->cursor;
	r.events = rpc_call_alloc(call, max * sizeof(*r.events));
	while (s->buf_len > 0 && r.n < r.max && r.bytes < POLL_REPLY_BYTES) {
		const mx_frame *f = s->buf[s->buf_head].f;

		reply_add(&r, (const uint8_t *)nng_msg_body(f->msg) + f->off, mx_frame_len(f));
		session_buf_pop(s);
	}
	from_buffer = r.n;
	if (r.n < r.max && r.bytes < POLL_REPLY_BYTES && session_rooms_behind(s) > 0)
		reply_from_store(s, &r, checked);
	if (r.bad_room != NULL) {
		plog_error("messaging", "room %s, seq %llu is damaged: %s", r.bad_room->id,
			   (unsigned long long)r.bad_seq, r.why);
		if (r.n == 0) {
			/* What came before went out already; this is where the
			 * room stops. The next Poll meets it again. */
			rpc_call_fail(call, RPC_DATA_LOSS,
				      "room '%s' has damaged history: the event at seq %llu "
				      "cannot be read; reopen the session after it",
				      r.bad_room->id, (unsigned long long)r.bad_seq);
			rpc_call_finish(call, RPC_DATA_LOSS);
			return true;
		}
	}
	if (r.n > 0 && token_still_valid(s, call, &st) != RPC_OK) {
		if (st.code == RPC_UNAUTHENTICATED) {
			sessions_unregister(s->ss, s); /* no one finds it again */
			pthread_mutex_lock(&s->mtx);
			s->closing = true; /* the worker ends it next */
			pthread_mutex_unlock(&s->mtx);
		} else {
			untake(s, saved);
		}
		rpc_call_fail_status(call, &st);
		rpc_call_finish(call, st.code);
		return true;
	}
	rpc_counter_add(rpc_metrics_counter_cached(
			    &refilled_metric, "parley_messaging_events_refilled_total",
			    "Events a session read back from LMDB (missed or dropped live).", NULL),
			r.n - from_buffer);
	rpc_counter_add(rpc_metrics_counter_cached(&delivered_metric,
						   "parley_messaging_deliveries_total",
						   "Events handed to clients in Poll replies.", NULL),
			r.n);
	resp->events = r.events;
	resp->n_events = r.n;
	rpc_call_finish(call, RPC_OK);
	if (r.n > 0)
		s->last_reply = rpc_now_ms();
	/* A room whose removal event just went out ends here. */
	for (unsigned i = 0; i < s->nrooms; i++) {
		sess_room *room = s->rooms[i];

		if (room->leaving && !session_is_gone(room) && room->cursor >= room->known_head)
			session_drop_room(s, i);
	}
	return true;
}

/* session.c — one session and its worker thread (see session.h). */
#include "session.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <sodium.h>

#include "log.h"
#include "metrics.h"

#if defined(__SANITIZE_ADDRESS__)
#define WORKER_STACK (4 * SESSION_STACK_SIZE) /* ASan's redzones need room */
#else
#define WORKER_STACK SESSION_STACK_SIZE
#endif


/* ---- frames from the router (an nng thread) ----------------------------- */

/* Frames a session could not take (parley_messaging_frames_dropped_total)
 * and events it then read back from LMDB instead (..._refilled_total). */
static rpc_metric *dropped_metric, *refilled_metric, *delivered_metric;

static rpc_metric *
dropped(void)
{
	return rpc_metrics_counter_cached(
	    &dropped_metric, "parley_messaging_frames_dropped_total",
	    "Event frames a session could not take live (inbox or buffer full, or after a gap); "
	    "it reads them from LMDB.",
	    NULL);
}

void
session_deliver(mx_session *s, nng_msg *msg)
{
	pthread_mutex_lock(&s->mtx);
	if (msg != NULL && s->inbox_len < SESSION_INBOX_MAX) {
		s->inbox[(s->inbox_head + s->inbox_len++) % SESSION_INBOX_MAX] = msg;
	} else {
		if (msg != NULL)
			nng_msg_free(msg);
		s->inbox_overflow = true;
		rpc_counter_add(dropped(), 1);
	}
	/* Wake the worker only when a frame may complete an answer, or
	 * before the inbox fills: frames for an idle client wait in bulk. */
	if (s->want_frames || s->inbox_len >= SESSION_INBOX_MAX / 2)
		pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mtx);
}

/* Takes s out of the router and drops what it had not sorted yet. */
static void
unroute(mx_session *s)
{
	if (s->routed)
		mx_router_remove(s->m->router, s);
	s->routed = false;
	pthread_mutex_lock(&s->mtx);
	while (s->inbox_len > 0) {
		nng_msg_free(s->inbox[s->inbox_head]);
		s->inbox_head = (s->inbox_head + 1) % SESSION_INBOX_MAX;
		s->inbox_len--;
	}
	pthread_mutex_unlock(&s->mtx);
}

/* ---- the buffer ---------------------------------------------------------------- */

static bool
is_gone(const sess_room *r)
{
	return __atomic_load_n(&r->gone, __ATOMIC_ACQUIRE);
}

static bool
buf_fits(const mx_session *s, size_t len)
{
	return s->buf_len < SESSION_BUF_EVENTS && s->buf_bytes + len <= SESSION_BUF_BYTES;
}

static void
buf_push(mx_session *s, nng_msg *msg, size_t off, unsigned room, uint64_t seq)
{
	sess_event *e = &s->buf[(s->buf_head + s->buf_len++) % SESSION_BUF_EVENTS];

	e->msg = msg;
	e->off = off;
	e->room = (uint16_t)room;
	e->seq = seq;
	s->buf_bytes += nng_msg_len(msg) - off;
	s->rooms[room].buffered++;
}

static void
buf_pop(mx_session *s)
{
	sess_event *e = &s->buf[s->buf_head];

	s->buf_bytes -= nng_msg_len(e->msg) - e->off;
	s->rooms[e->room].buffered--;
	nng_msg_free(e->msg);
	e->msg = NULL;
	s->buf_head = (s->buf_head + 1) % SESSION_BUF_EVENTS;
	s->buf_len--;
}

/* Takes room's events out of the buffer, keeping the others' order. */
static void
buf_remove_room(mx_session *s, unsigned room)
{
	unsigned kept = 0;

	for (unsigned i = 0; i < s->buf_len; i++) {
		sess_event e = s->buf[(s->buf_head + i) % SESSION_BUF_EVENTS];

		if (e.room == room) {
			s->buf_bytes -= nng_msg_len(e.msg) - e.off;
			nng_msg_free(e.msg);
		} else {
			s->buf[(s->buf_head + kept++) % SESSION_BUF_EVENTS] = e;
		}
	}
	s->buf_len = kept;
	s->rooms[room].buffered = 0;
}

/* Drops room from the session: the user is no longer a member. */
static void
drop_room(mx_session *s, unsigned room)
{
	sess_room *r = &s->rooms[room];

	__atomic_store_n(&r->gone, true, __ATOMIC_RELEASE);
	/* The user left: the LEFT event says it, no OFFLINE after it. */
	mx_presence_leave(s->m->presence, r->id, s->user, false);
	mx_router_drop_room(s->m->router, s, room);
	buf_remove_room(s, room);
	plog_info("messaging", "session of %s: no longer a member of %s; room dropped", s->user,
		  r->id);
}

/* The client has room up to seq `to`: what was sent after it goes again,
 * read from LMDB (the room is now behind). Nothing if not behind. */
static void
rewind_room(mx_session *s, unsigned room, uint64_t to)
{
	sess_room *r = &s->rooms[room];

	if (is_gone(r) || to >= r->cursor)
		return;
	buf_remove_room(s, room);
	if (r->known_head < r->cursor)
		r->known_head = r->cursor;
	r->cursor = to;
}

static bool
behind(const sess_room *r)
{
	return !is_gone(r) && r->known_head > r->cursor;
}

static unsigned
rooms_behind(const mx_session *s)
{
	unsigned n = 0;

	for (unsigned i = 0; i < s->nrooms; i++)
		n += behind(&s->rooms[i]);
	return n;
}

/* Sorts one PUB frame: into the buffer, or only into known_head. */
static void
take_frame(mx_session *s, nng_msg *msg)
{
	const uint8_t *body = nng_msg_body(msg);
	size_t len = nng_msg_len(msg), off;
	const uint8_t *nul = memchr(body, '\0', len < TIMELINE_ROOM_MAX + 1 ? len
								 : TIMELINE_ROOM_MAX + 1);
	Parley__V1__Event *ev;
	unsigned room;

	if (nul == NULL)
		goto drop;
	off = (size_t)(nul - body) + 1;
	for (room = 0; room < s->nrooms; room++)
		if (strcmp(s->rooms[room].id, (const char *)body) == 0)
			break;
	if (room == s->nrooms || is_gone(&s->rooms[room]))
		goto drop;
	ev = parley__v1__event__unpack(NULL, len - off, body + off);
	if (ev == NULL)
		goto drop;
	if (ev->seq == 0) {
		/* Presence is ephemeral: kept if it fits, never one's own. */
		if (strcmp(ev->sender, s->user) != 0 && buf_fits(s, len - off)) {
			buf_push(s, msg, off, room, 0);
			msg = NULL;
		}
	} else {
		sess_room *r = &s->rooms[room];

		if (ev->seq == r->cursor + 1 && buf_fits(s, len - off)) {
			buf_push(s, msg, off, room, ev->seq);
			msg = NULL;
			r->cursor = ev->seq;
		} else if (ev->seq > r->cursor) {
			/* After a gap, or no room in the buffer: LMDB has it. */
			rpc_counter_add(dropped(), 1);
		}
		if (ev->seq > r->known_head)
			r->known_head = ev->seq;
	}
	parley__v1__event__free_unpacked(ev, NULL);
drop:
	if (msg != NULL)
		nng_msg_free(msg);
}

/* Re-reads every room's head from LMDB. */
static void
read_heads(mx_session *s)
{
	store_txn *txn;
	store_err err;

	s->check_heads = false;
	if ((err = store_begin(s->m->env, false, &txn)) != STORE_OK) {
		s->check_heads = true; /* try again at the next tick */
		return;
	}
	for (unsigned i = 0; i < s->nrooms; i++) {
		uint64_t head;

		if (is_gone(&s->rooms[i]) ||
		    timeline_head(txn, &s->m->tl, s->rooms[i].id, &head) != STORE_OK)
			continue;
		if (head > s->rooms[i].known_head)
			s->rooms[i].known_head = head;
	}
	store_abort(txn);
}

/* ---- answering a Poll ------------------------------------------------------------- */

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

/*
 * Checks membership of every room with something to deliver, and drops
 * the rooms the user left. First the membership barrier (every change the
 * rooms service committed before now is in the mirror), then the mirror;
 * a room the mirror does not list is confirmed with IsMember (the Poll's
 * token) before it is dropped. RPC_OK, or the failure in st (nothing is
 * consumed then). checked[i] tells which rooms passed.
 */
static rpc_code
check_rooms(mx_session *s, rpc_call *call, bool *checked, rpc_status *st)
{
	int64_t deadline = rpc_now_ms() + MEMBERS_TIMEOUT_MS;
	bool unsure[SESSION_MAX_ROOMS], any = false;
	store_txn *txn;

	for (unsigned i = 0; i < s->nrooms; i++) {
		sess_room *r = &s->rooms[i];

		checked[i] = false;
		unsure[i] = !is_gone(r) && (r->buffered > 0 || behind(r));
		any |= unsure[i];
	}
	if (!any)
		return RPC_OK;
	if (rpc_call_deadline(call) < deadline)
		deadline = rpc_call_deadline(call);
	if (mx_feed_sync(s->m->feed, deadline, st) != RPC_OK)
		return st->code;
	if (store_begin(s->m->env, false, &txn) == STORE_OK) {
		for (unsigned i = 0; i < s->nrooms; i++) {
			bool member;

			if (unsure[i] && mx_mirror_is_member(s->m, txn, s->rooms[i].id, s->user,
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
		if (members_check(s->m->rooms, s->rooms[i].id, s->user, rpc_call_token(call),
				  deadline, &member, st) != RPC_OK)
			return st->code;
		if (!member)
			drop_room(s, i);
		else
			checked[i] = true;
	}
	return RPC_OK;
}

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
		sess_room *room = &s->rooms[i];
		uint64_t head, to;

		if (!checked[i] || room->buffered > 0 || !behind(room))
			continue;
		if (timeline_head(txn, &s->m->tl, room->id, &head) != STORE_OK)
			continue;
		if (head > room->known_head)
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
		sess_room *r = &s->rooms[i];

		if (r->cursor == saved[i])
			continue;
		buf_remove_room(s, i);
		if (r->known_head < r->cursor)
			r->known_head = r->cursor;
		r->cursor = saved[i];
	}
}

/*
 * Builds and sends the reply to call. Returns false, without answering,
 * when there turned out to be nothing to send (rooms dropped) and the
 * call may wait on.
 */
static bool
answer_poll(mx_session *s, rpc_call *call, uint32_t max, bool may_wait)
{
	Parley__V1__PollResponse *resp = (Parley__V1__PollResponse *)rpc_call_response(call);
	bool checked[SESSION_MAX_ROOMS];
	struct reply r = {.call = call, .max = max};
	uint64_t saved[SESSION_MAX_ROOMS];
	rpc_status st = {0};
	size_t from_buffer;

	if (s->buf_len > 0 || rooms_behind(s) > 0) {
		if (check_rooms(s, call, checked, &st) != RPC_OK) {
			rpc_call_fail_status(call, &st);
			rpc_call_finish(call, st.code);
			return true;
		}
	}
	if (s->buf_len == 0 && rooms_behind(s) == 0 && may_wait)
		return false;

	for (unsigned i = 0; i < s->nrooms; i++)
		saved[i] = s->rooms[i].cursor;
	r.events = rpc_call_alloc(call, max * sizeof(*r.events));
	while (s->buf_len > 0 && r.n < r.max && r.bytes < POLL_REPLY_BYTES) {
		sess_event *e = &s->buf[s->buf_head];

		reply_add(&r, (uint8_t *)nng_msg_body(e->msg) + e->off,
			  nng_msg_len(e->msg) - e->off);
		buf_pop(s);
	}
	from_buffer = r.n;
	if (r.n < r.max && r.bytes < POLL_REPLY_BYTES && rooms_behind(s) > 0)
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
	return true;
}

/* ---- the worker ---------------------------------------------------------------------- */

/* Takes the rewinds Polls left (s->mtx held) for apply_rewinds. */
static void
take_rewinds(mx_session *s, bool *rewind, uint64_t *rewinds)
{
	for (unsigned i = 0; i < s->nrooms; i++) {
		rewind[i] = s->rooms[i].rewind_set;
		rewinds[i] = s->rooms[i].rewind;
		s->rooms[i].rewind_set = false;
	}
}

static void
apply_rewinds(mx_session *s, const bool *rewind, const uint64_t *rewinds)
{
	for (unsigned i = 0; i < s->nrooms; i++)
		if (rewind[i])
			rewind_room(s, i, rewinds[i]);
}

/* When a waiting Poll should be answered for the events at hand: at once,
 * unless the last answer went out less than SESSION_REPLY_GAP_MS ago; then
 * the events of a busy stream travel together. INT64_MAX with nothing. */
static int64_t
reply_ready_at(const mx_session *s)
{
	if (s->buf_len == 0 && rooms_behind(s) == 0)
		return INT64_MAX;
	return s->last_reply + SESSION_REPLY_GAP_MS;
}

/* The session no longer covers its rooms: OFFLINE into those where it
 * was the user's last session and the user is still a member, as far as
 * the mirror knows (a room left meanwhile hears nothing more of them). */
static void
say_offline(mx_session *s)
{
	store_txn *txn = NULL;

	if (store_begin(s->m->env, false, &txn) != STORE_OK)
		txn = NULL;
	for (unsigned i = 0; i < s->nrooms; i++) {
		bool member = true;

		if (is_gone(&s->rooms[i]))
			continue;
		if (txn != NULL)
			mx_mirror_is_member(s->m, txn, s->rooms[i].id, s->user, &member);
		mx_presence_leave(s->m->presence, s->rooms[i].id, s->user, member);
	}
	store_abort(txn);
}

static void
end_session(mx_session *s)
{
	mx_sessions *ss = s->ss;
	char user[RPC_USER_ID_MAX];
	rpc_call *call;

	/* Copied: the count is given back after s may be freed. */
	memcpy(user, s->user, sizeof(user));
	sessions_unregister(ss, s);
	pthread_mutex_lock(&s->mtx);
	s->dead = true;
	call = s->poll;
	s->poll = NULL;
	pthread_mutex_unlock(&s->mtx);
	if (call != NULL)
		rpc_call_finish(call, RPC_OK); /* empty */

	unroute(s);
	while (s->buf_len > 0)
		buf_pop(s);
	say_offline(s);
	session_unref(s);
	sessions_worker_done(ss, user);
}

static void *
worker_main(void *arg)
{
	mx_session *s = arg;
	uint32_t idle_ms = s->m->session_idle_ms;
	nng_msg *frames[SESSION_INBOX_MAX];
	uint64_t rewinds[SESSION_MAX_ROOMS];
	bool rewind[SESSION_MAX_ROOMS];

	for (;;) {
		rpc_call *call = NULL;
		unsigned nframes = 0;
		uint32_t max = 0;
		int64_t now, deadline = 0;
		bool ending = false;

		/* 1. Wait for something to do. */
		pthread_mutex_lock(&s->mtx);
		for (;;) {
			int64_t wake;

			now = rpc_now_ms();
			if (s->closing || rpc_server_stopping(s->m->srv)) {
				ending = true;
				break;
			}
			if (s->inbox_len > 0 || s->poll_new || s->inbox_overflow)
				break;
			s->want_frames = false;
			if (s->poll != NULL) {
				int64_t ready = reply_ready_at(s);

				if (now >= ready || now >= s->poll_deadline || now >= s->next_heal)
					break;
				wake = s->poll_deadline < s->next_heal ? s->poll_deadline
								       : s->next_heal;
				if (ready < wake)
					wake = ready;
				/* Nothing at hand: the next frame may be the answer. */
				s->want_frames = ready == INT64_MAX;
			} else {
				if (now - s->last_active >= idle_ms) {
					ending = true;
					break;
				}
				wake = s->last_active + idle_ms;
			}
			rpc_cond_wait_until(&s->cv, &s->mtx, wake);
		}
		s->want_frames = false;
		while (s->inbox_len > 0) {
			frames[nframes++] = s->inbox[s->inbox_head];
			s->inbox_head = (s->inbox_head + 1) % SESSION_INBOX_MAX;
			s->inbox_len--;
		}
		take_rewinds(s, rewind, rewinds);
		if (s->inbox_overflow || s->poll_new)
			s->check_heads = true;
		if (s->poll_new)
			s->next_heal = now + SESSION_HEAL_MS;
		s->inbox_overflow = false;
		s->poll_new = false;
		if (s->poll != NULL && now >= s->next_heal) {
			s->check_heads = true;
			s->next_heal = now + SESSION_HEAL_MS;
		}
		pthread_mutex_unlock(&s->mtx);

		/* 2. Rewind rooms a reply was lost for; sort the frames;
		 * re-read heads when asked. */
		apply_rewinds(s, rewind, rewinds);
		for (unsigned i = 0; i < nframes; i++)
			take_frame(s, frames[i]);
		if (ending)
			break;
		if (s->check_heads)
			read_heads(s);

		/* 3. Answer the Poll if there is something or its time is up. */
		pthread_mutex_lock(&s->mtx);
		now = rpc_now_ms();
		if (s->poll != NULL && (now >= reply_ready_at(s) || now >= s->poll_deadline)) {
			call = s->poll;
			max = s->poll_max;
			deadline = s->poll_deadline;
			s->poll = NULL;
			/* A Poll that came after step 1 brought its rewind
			 * along: its reply must start from it, or the rewind,
			 * applied late, sends this reply's events again. */
			take_rewinds(s, rewind, rewinds);
		}
		pthread_mutex_unlock(&s->mtx);
		if (call == NULL)
			continue;
		apply_rewinds(s, rewind, rewinds);
		if (!answer_poll(s, call, max, now < deadline)) {
			/* Nothing after all: wait on, unless a newer Poll came. */
			pthread_mutex_lock(&s->mtx);
			if (s->poll == NULL && !s->closing) {
				s->poll = call;
				s->poll_max = max;
				s->poll_deadline = deadline;
				call = NULL;
			}
			pthread_mutex_unlock(&s->mtx);
			if (call != NULL)
				rpc_call_finish(call, RPC_OK);
		}
		pthread_mutex_lock(&s->mtx);
		s->last_active = rpc_now_ms();
		pthread_mutex_unlock(&s->mtx);
	}
	end_session(s);
	return NULL;
}

/* ---- life ------------------------------------------------------------------------------- */

void
session_token_hash(const char *token, uint8_t out[SESSION_TOKEN_HASH])
{
	crypto_generichash(out, SESSION_TOKEN_HASH, (const unsigned char *)token, strlen(token),
			   NULL, 0);
}

bool
session_token_matches(const mx_session *s, const char *token)
{
	uint8_t h[SESSION_TOKEN_HASH];
	bool same;

	session_token_hash(token != NULL ? token : "", h);
	same = sodium_memcmp(h, s->token_hash, sizeof(h)) == 0;
	sodium_memzero(h, sizeof(h));
	return same;
}

mx_session *
session_create(messaging_service *m, mx_sessions *ss, const char *user, const char *token,
	       const Parley__V1__OpenRequest *req, const uint64_t *heads, rpc_status *st)
{
	unsigned char raw[SESSION_ID_LEN / 2];
	mx_session *s;

	s = calloc(1, sizeof(*s) + req->n_rooms * sizeof(sess_room));
	if (s == NULL) {
		rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	s->m = m;
	s->ss = ss;
	s->refs = 1;
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(s->id, sizeof(s->id), raw, sizeof(raw));
	snprintf(s->user, sizeof(s->user), "%s", user);
	session_token_hash(token != NULL ? token : "", s->token_hash);
	s->nrooms = (unsigned)req->n_rooms;
	for (unsigned i = 0; i < s->nrooms; i++) {
		snprintf(s->rooms[i].id, sizeof(s->rooms[i].id), "%s", req->rooms[i]->room_id);
		s->rooms[i].cursor = req->rooms[i]->since_seq;
		s->rooms[i].known_head = heads[i];
	}
	s->last_active = rpc_now_ms();
	s->check_heads = true;
	pthread_mutex_init(&s->mtx, NULL);
	rpc_cond_init(&s->cv);

	if (!mx_router_add(m->router, s)) {
		rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
		session_unref(s);
		return NULL;
	}
	s->routed = true;
	return s;
}

bool
session_run(mx_session *s)
{
	pthread_attr_t attr;
	pthread_t t;
	int rv;

	/* Counted before the worker can end it: the worker leaves each room
	 * exactly once (drop_room or say_offline). */
	for (unsigned i = 0; i < s->nrooms; i++)
		if (!mx_presence_enter(s->m->presence, s->rooms[i].id, s->user)) {
			while (i-- > 0)
				mx_presence_leave(s->m->presence, s->rooms[i].id, s->user, true);
			return false;
		}
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, WORKER_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	session_ref(s);
	rv = pthread_create(&t, &attr, worker_main, s);
	pthread_attr_destroy(&attr);
	if (rv != 0) {
		for (unsigned i = 0; i < s->nrooms; i++)
			mx_presence_leave(s->m->presence, s->rooms[i].id, s->user, true);
		session_unref(s);
		plog_error("messaging", "cannot start a session worker: %s", strerror(rv));
		return false;
	}
	return true;
}

void
session_ref(mx_session *s)
{
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

void
session_unref(mx_session *s)
{
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	unroute(s); /* a session that never ran */
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mtx);
	free(s);
}

int
session_room_index(const mx_session *s, const char *room_id)
{
	for (unsigned i = 0; i < s->nrooms; i++)
		if (strcmp(s->rooms[i].id, room_id) == 0)
			return (int)i;
	return -1;
}

rpc_code
session_attach_poll(mx_session *s, rpc_call *call, uint32_t wait_ms, uint32_t max,
		    const unsigned *room, const uint64_t *acked, unsigned n)
{
	int64_t now = rpc_now_ms(), until = now + wait_ms;
	int64_t latest = rpc_call_deadline(call) - POLL_REPLY_MARGIN_MS;
	rpc_call *old;
	rpc_code code;

	pthread_mutex_lock(&s->mtx);
	if (s->dead || s->closing) {
		pthread_mutex_unlock(&s->mtx);
		return RPC_NOT_FOUND;
	}
	/* Marked deferred before the worker can see it (rpc_call_defer). */
	if ((code = rpc_call_defer(call)) != RPC_OK) {
		pthread_mutex_unlock(&s->mtx);
		return code;
	}
	for (unsigned i = 0; i < n; i++) {
		s->rooms[room[i]].rewind = acked[i];
		s->rooms[room[i]].rewind_set = true;
	}
	old = s->poll;
	s->poll = call;
	s->poll_deadline = until < latest ? until : latest > now ? latest : now;
	s->poll_max = max;
	s->poll_new = true;
	s->last_active = now;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mtx);
	if (old != NULL)
		rpc_call_finish(old, RPC_OK); /* empty: the newer Poll wins */
	return RPC_DEFERRED;
}

bool
session_close(mx_session *s)
{
	bool was;

	pthread_mutex_lock(&s->mtx);
	was = s->closing || s->dead;
	s->closing = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mtx);
	return !was;
}

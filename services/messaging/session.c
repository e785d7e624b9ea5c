/* session.c — one session and its worker thread (see session.h). */
#define _GNU_SOURCE 1 /* pthread_setname_np */
#include "session.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <nng/nng.h>
#include <sodium.h>

#include "log.h"
#include "metrics.h"

#if defined(PARLEY_ASAN)
#define WORKER_STACK (4 * SESSION_STACK_SIZE) /* ASan's redzones need room */
#else
#define WORKER_STACK SESSION_STACK_SIZE
#endif

/* ---- frames from the router (an nng thread) ----------------------------- */

/* Frames a session could not take (parley_messaging_frames_dropped_total). */
static rpc_metric *dropped_metric;

static rpc_metric *
dropped(void)
{
	return rpc_metrics_counter_cached(
	    &dropped_metric, "parley_messaging_frames_dropped_total",
	    "Event frames a session could not take live (inbox or buffer full, or after a gap); "
	    "it reads them from LMDB.",
	    NULL);
}

/* Room for one more frame in the inbox, growing it up to
 * SESSION_INBOX_MAX; s->mtx held. */
static bool
inbox_room(mx_session *s)
{
	unsigned cap;
	mx_frame **v;

	if (s->inbox_len < s->inbox_cap)
		return true;
	if (s->inbox_cap >= SESSION_INBOX_MAX)
		return false;
	cap = s->inbox_cap ? s->inbox_cap * 2 : 8;
	if ((v = realloc(s->inbox, cap * sizeof(*v))) == NULL)
		return false;
	s->inbox = v;
	s->inbox_cap = cap;
	return true;
}

void
session_deliver(mx_session *s, mx_frame *f)
{
	pthread_mutex_lock(&s->mtx);
	if (f != NULL && inbox_room(s)) {
		s->inbox[s->inbox_len++] = f;
	} else {
		if (f != NULL)
			mx_frame_unref(f);
		s->inbox_overflow = true;
		rpc_counter_add(dropped(), 1);
	}
	/* Wake the worker only when a frame may complete an answer, or
	 * before the inbox fills: frames for an idle client wait in bulk. */
	if (s->want_frames || s->inbox_len >= SESSION_INBOX_MAX / 2)
		pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mtx);
}

void
session_heal(mx_session *s)
{
	pthread_mutex_lock(&s->mtx);
	s->heal = true;
	if (s->want_frames)
		pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mtx);
}

void
session_follow(mx_session *s, const char *room_id)
{
	pthread_mutex_lock(&s->mtx);
	if (!s->dead && !s->closing && s->njoins < SESSION_MAX_ROOMS) {
		if (s->joins == NULL)
			s->joins = calloc(SESSION_MAX_ROOMS, sizeof(*s->joins));
		if (s->joins != NULL) {
			snprintf(s->joins[s->njoins++], sizeof(s->joins[0]), "%s", room_id);
			pthread_cond_signal(&s->cv);
		}
	}
	pthread_mutex_unlock(&s->mtx);
}

/* Frees frames taken from the inbox (n of them) and the array. */
static void
free_frames(mx_frame **v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		mx_frame_unref(v[i]);
	free(v);
}

/* Takes s out of the router and drops what it had not sorted yet. */
static void
unroute(mx_session *s)
{
	mx_frame **v;
	unsigned n;

	if (s->routed)
		mx_router_remove(s->m->router, s);
	s->routed = false;
	pthread_mutex_lock(&s->mtx);
	v = s->inbox;
	n = s->inbox_len;
	s->inbox = NULL;
	s->inbox_len = s->inbox_cap = 0;
	pthread_mutex_unlock(&s->mtx);
	free_frames(v, n);
}

/* ---- the buffer ---------------------------------------------------------------- */

/* Room in the buffer for an event of len bytes, growing it up to
 * SESSION_BUF_EVENTS (it is allocated only while it holds something). */
static bool
buf_room(mx_session *s, size_t len)
{
	unsigned cap;
	sess_event *v;

	if (s->buf_bytes + len > SESSION_BUF_BYTES)
		return false;
	if (s->buf_len < s->buf_cap)
		return true;
	if (s->buf_cap >= SESSION_BUF_EVENTS)
		return false;
	cap = s->buf_cap ? s->buf_cap * 2 : 8;
	if ((v = malloc(cap * sizeof(*v))) == NULL)
		return false;
	for (unsigned i = 0; i < s->buf_len; i++)
		v[i] = s->buf[(s->buf_head + i) % s->buf_cap];
	free(s->buf);
	s->buf = v;
	s->buf_cap = cap;
	s->buf_head = 0;
	return true;
}

/* Frees the buffer once it is empty. */
static void
buf_trim(mx_session *s)
{
	if (s->buf_len == 0 && s->buf != NULL) {
		free(s->buf);
		s->buf = NULL;
		s->buf_cap = s->buf_head = 0;
	}
}

/* Keeps f (one reference) as the next event of room; buf_room said yes. */
static void
buf_push(mx_session *s, mx_frame *f, unsigned room)
{
	sess_event *e = &s->buf[(s->buf_head + s->buf_len++) % s->buf_cap];

	e->f = f;
	e->room = (uint16_t)room;
	s->buf_bytes += mx_frame_len(f);
	s->rooms[room]->buffered++;
}

void
session_buf_pop(mx_session *s)
{
	sess_event *e = &s->buf[s->buf_head];

	s->buf_bytes -= mx_frame_len(e->f);
	s->rooms[e->room]->buffered--;
	mx_frame_unref(e->f);
	e->f = NULL;
	s->buf_head = (s->buf_head + 1) % s->buf_cap;
	s->buf_len--;
	buf_trim(s);
}

void
session_buf_remove_room(mx_session *s, unsigned room)
{
	unsigned kept = 0;

	for (unsigned i = 0; i < s->buf_len; i++) {
		sess_event e = s->buf[(s->buf_head + i) % s->buf_cap];

		if (e.room == room) {
			s->buf_bytes -= mx_frame_len(e.f);
			mx_frame_unref(e.f);
		} else {
			s->buf[(s->buf_head + kept++) % s->buf_cap] = e;
		}
	}
	s->buf_len = kept;
	s->rooms[room]->buffered = 0;
	buf_trim(s);
}

void
session_drop_room(mx_session *s, unsigned room)
{
	sess_room *r = s->rooms[room];

	__atomic_store_n(&r->gone, true, __ATOMIC_RELEASE);
	r->leaving = false;
	/* The user left: the LEFT event says it, no OFFLINE after it. */
	mx_presence_leave(s->m->presence, r->id, s->user, false);
	mx_router_drop_room(s->m->router, s, room);
	session_buf_remove_room(s, room);
	plog_info("messaging", "session of %s: no longer a member of %s; room dropped", s->user,
		  r->id);
}

/* The client has room up to seq `to`: what was sent after it goes again,
 * read from LMDB (the room is now behind). Nothing if not behind, nor for
 * a room that is leaving (it sends only its removal event). */
static void
rewind_room(mx_session *s, unsigned room, uint64_t to)
{
	sess_room *r = s->rooms[room];

	if (session_is_gone(r) || r->leaving || to >= r->cursor)
		return;
	session_buf_remove_room(s, room);
	if (r->known_head < r->cursor)
		r->known_head = r->cursor;
	r->cursor = to;
}

unsigned
session_rooms_behind(const mx_session *s)
{
	unsigned n = 0;

	for (unsigned i = 0; i < s->nrooms; i++)
		n += session_behind(s->rooms[i]);
	return n;
}

/* Sorts one frame: into the buffer, or only into known_head. Takes f. */
static void
take_frame(mx_session *s, mx_frame *f)
{
	const char *id = mx_frame_room(f);
	size_t len = mx_frame_len(f);
	unsigned room;

	for (room = 0; room < s->nrooms; room++)
		if (strcmp(s->rooms[room]->id, id) == 0)
			break;
	if (room == s->nrooms || session_is_gone(s->rooms[room]) || s->rooms[room]->leaving)
		goto drop;
	if (f->seq == 0) {
		/* Presence is ephemeral: kept if it fits, never one's own. */
		if (strcmp(f->sender, s->user) != 0 && buf_room(s, len)) {
			buf_push(s, f, room);
			f = NULL;
		}
	} else {
		sess_room *r = s->rooms[room];
		uint64_t seq = f->seq;

		if (seq > r->known_head)
			r->known_head = seq;
		if (seq == r->cursor + 1 && buf_room(s, len)) {
			r->cursor = seq;
			buf_push(s, f, room);
			f = NULL;
		} else if (seq > r->cursor) {
			/* After a gap, or no room in the buffer: LMDB has it. */
			rpc_counter_add(dropped(), 1);
		}
	}
drop:
	if (f != NULL)
		mx_frame_unref(f);
}

/* Re-reads every room's head from LMDB. */
static void
read_heads(mx_session *s)
{
	store_txn *txn;
	store_err err;

	s->check_heads = false;
	if ((err = store_begin(s->m->env, false, &txn)) != STORE_OK) {
		s->check_heads = true; /* try again at the next turn */
		return;
	}
	for (unsigned i = 0; i < s->nrooms; i++) {
		sess_room *r = s->rooms[i];
		uint64_t head;

		if (session_is_gone(r) || r->leaving ||
		    timeline_head(txn, &s->m->tl, r->id, &head) != STORE_OK)
			continue;
		if (head > r->known_head)
			r->known_head = head;
	}
	store_abort(txn);
}

/* ---- the worker ---------------------------------------------------------------------- */

/* Takes the rewinds Polls left (s->mtx held) for apply_rewinds. */
static void
take_rewinds(mx_session *s, bool *rewind, uint64_t *rewinds)
{
	for (unsigned i = 0; i < s->nrooms; i++) {
		rewind[i] = s->rooms[i]->rewind_set;
		rewinds[i] = s->rooms[i]->rewind;
		s->rooms[i]->rewind_set = false;
	}
}

static void
apply_rewinds(mx_session *s, const bool *rewind, const uint64_t *rewinds)
{
	for (unsigned i = 0; i < s->nrooms; i++)
		if (rewind[i])
			rewind_room(s, i, rewinds[i]);
}

/* When a waiting Poll should be answered for the events at hand; INT64_MAX
 * with nothing. A client that keeps up (its Poll was there before the
 * events) is answered at once: holding its reply would only add latency.
 * A client behind the stream (its Poll found events waiting) is answered
 * no sooner than SESSION_REPLY_GAP_MS after the last answer, so that a busy
 * stream's events travel together and cost one reply instead of many. */
static int64_t
reply_ready_at(const mx_session *s)
{
	if (s->buf_len == 0 && session_rooms_behind(s) == 0)
		return INT64_MAX;
	if (!s->lagging)
		return 0;
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

		if (session_is_gone(s->rooms[i]))
			continue;
		if (txn != NULL)
			mx_mirror_is_member(s->m, txn, s->rooms[i]->id, s->user, &member);
		mx_presence_leave(s->m->presence, s->rooms[i]->id, s->user,
				  member && !s->rooms[i]->leaving);
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
		session_buf_pop(s);
	say_offline(s);
	session_unref(s);
	sessions_worker_done(ss, user, true);
}

/* ---- the worker's stack ----------------------------------------------------------------- */

/*
 * Answering a Poll takes a worker's stack ~11 KiB deep (protobuf packing,
 * nng's send, LMDB reads), but it waits ~6.5 KiB deep: the pages in
 * between would stay resident as long as the session lives, a third of an
 * idle session's memory. So a worker about to wait gives them back
 * (MADV_DONTNEED: they read as zeros when touched again) when it parks a
 * Poll for SESSION_TRIM_WAIT_MS or more, has worked since it last did so,
 * and sent no events for SESSION_TRIM_QUIET_MS: a quiet session once per
 * long Poll, never on a wake-up of its own; a busy one, or a client
 * polling without waiting, not at all.
 */
static rpc_metric *trims_metric;

/* Below this far under the trimming frame nothing is live: its own frame,
 * the red zone and the madvise call's. */
#define TRIM_MARGIN 1024

static __attribute__((noinline)) void
stack_trim(mx_session *s)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	volatile char here = 0;
	uintptr_t lo, hi;

	if (s->stack_lo == 0) {
		pthread_attr_t a;
		void *addr;
		size_t size;

		s->stack_lo = UINTPTR_MAX; /* unless it is found now */
		if (pthread_getattr_np(pthread_self(), &a) != 0)
			return;
		if (pthread_attr_getstack(&a, &addr, &size) == 0)
			s->stack_lo = (uintptr_t)addr;
		pthread_attr_destroy(&a);
	}
	if (s->stack_lo == UINTPTR_MAX)
		return;
	lo = (s->stack_lo + page - 1) & ~(page - 1);
	hi = ((uintptr_t)&here - TRIM_MARGIN) & ~(page - 1);
	if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0)
		rpc_counter_add(rpc_metrics_counter_cached(
				    &trims_metric, "parley_messaging_stack_trims_total",
				    "Session workers that gave back their stack's deeper pages "
				    "after a quiet spell.",
				    NULL),
				1);
}

/* What step 1 of the loop took from under the lock. */
struct taken {
	mx_frame **frames;
	unsigned nframes;
	char (*joins)[TIMELINE_ROOM_MAX + 1];
	unsigned njoins;
	bool ending;
	int64_t now;
};

/* Waits (s->mtx held) until there is something to do, and takes it. Only a
 * frame that may complete an answer, a Poll, a join, a heal while a Poll
 * waits, the Poll's deadline or idle expiry wake the worker. */
static void
wait_for_work(mx_session *s, struct taken *t, bool *rewind, uint64_t *rewinds)
{
	uint32_t idle_ms = s->m->session_idle_ms;

	for (;;) {
		int64_t wake;

		t->now = rpc_now_ms();
		if (s->closing || rpc_server_stopping(s->m->srv)) {
			t->ending = true;
			break;
		}
		if (s->inbox_len > 0 || s->poll_new || s->inbox_overflow || s->njoins > 0 ||
		    (s->heal && s->poll != NULL))
			break;
		s->want_frames = false;
		if (s->poll != NULL) {
			int64_t ready = reply_ready_at(s);

			if (t->now >= ready || t->now >= s->poll_deadline)
				break;
			wake = ready < s->poll_deadline ? ready : s->poll_deadline;
			/* Nothing at hand: the next frame may be the answer. */
			s->want_frames = ready == INT64_MAX;
		} else {
			if (t->now - s->last_active >= idle_ms) {
				t->ending = true;
				break;
			}
			wake = s->last_active + idle_ms;
		}
		if (s->stack_deep && s->poll != NULL && wake - t->now >= SESSION_TRIM_WAIT_MS &&
		    t->now - s->last_reply >= SESSION_TRIM_QUIET_MS) {
			s->stack_deep = false;
			pthread_mutex_unlock(&s->mtx);
			stack_trim(s);
			pthread_mutex_lock(&s->mtx);
			continue; /* look again: things may have come meanwhile */
		}
		rpc_cond_wait_until(&s->cv, &s->mtx, wake);
	}
	s->want_frames = false;
	if (s->poll_new)
		s->lagging = s->inbox_len > 0 || s->buf_len > 0 || session_rooms_behind(s) > 0;
	t->frames = s->inbox;
	t->nframes = s->inbox_len;
	s->inbox = NULL;
	s->inbox_len = s->inbox_cap = 0;
	t->joins = s->joins;
	t->njoins = s->njoins;
	s->joins = NULL;
	s->njoins = 0;
	take_rewinds(s, rewind, rewinds);
	if (s->inbox_overflow || s->poll_new || (s->heal && s->poll != NULL)) {
		s->check_heads = true;
		s->heal = false;
	}
	s->inbox_overflow = false;
	s->poll_new = false;
}

static void *
worker_main(void *arg)
{
	mx_session *s = arg;
	uint64_t rewinds[SESSION_MAX_ROOMS];
	bool rewind[SESSION_MAX_ROOMS];

	pthread_setname_np(pthread_self(), "mx-session"); /* for perf and top */
	for (;;) {
		struct taken t = {0};
		rpc_call *call = NULL;
		uint32_t max = 0;
		int64_t now, deadline = 0;

		/* 1. Wait for something to do. */
		pthread_mutex_lock(&s->mtx);
		wait_for_work(s, &t, rewind, rewinds);
		pthread_mutex_unlock(&s->mtx);
		s->stack_deep = true; /* what follows may take it deep */

		/* 2. Rewind rooms a reply was lost for; sort the frames; add
		 * rooms the user joined; re-read heads when asked. */
		apply_rewinds(s, rewind, rewinds);
		for (unsigned i = 0; i < t.nframes; i++)
			take_frame(s, t.frames[i]);
		free(t.frames);
		for (unsigned i = 0; i < t.njoins && !t.ending; i++)
			session_follow_room(s, t.joins[i]);
		free(t.joins);
		if (t.ending)
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
		if (!session_answer_poll(s, call, max, now < deadline)) {
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

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	s->m = m;
	s->ss = ss;
	s->refs = 1;
	pthread_mutex_init(&s->mtx, NULL);
	rpc_cond_init(&s->cv);
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(s->id, sizeof(s->id), raw, sizeof(raw));
	snprintf(s->user, sizeof(s->user), "%s", user);
	session_token_hash(token != NULL ? token : "", s->token_hash);
	s->rooms_cap = (unsigned)req->n_rooms;
	if ((s->rooms = calloc(s->rooms_cap, sizeof(*s->rooms))) == NULL)
		goto oom;
	for (unsigned i = 0; i < s->rooms_cap; i++) {
		sess_room *r = calloc(1, sizeof(*r));

		if (r == NULL)
			goto oom;
		snprintf(r->id, sizeof(r->id), "%s", req->rooms[i]->room_id);
		r->cursor = req->rooms[i]->since_seq;
		r->known_head = heads[i];
		s->rooms[s->nrooms++] = r;
	}
	s->last_active = rpc_now_ms();
	s->check_heads = true;
	if (!mx_router_add(m->router, s))
		goto oom;
	s->routed = true;
	return s;

oom:
	rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	session_unref(s);
	return NULL;
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
		if (!mx_presence_enter(s->m->presence, s->rooms[i]->id, s->user)) {
			while (i-- > 0)
				mx_presence_leave(s->m->presence, s->rooms[i]->id, s->user, true);
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
			mx_presence_leave(s->m->presence, s->rooms[i]->id, s->user, true);
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
	for (unsigned i = 0; i < s->nrooms; i++)
		free(s->rooms[i]);
	free(s->rooms);
	free(s->joins);
	free(s->buf);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mtx);
	free(s);
}

int
session_room_index(mx_session *s, const char *room_id)
{
	int k = -1;

	pthread_mutex_lock(&s->mtx);
	for (unsigned i = 0; i < s->nrooms && k < 0; i++)
		if (strcmp(s->rooms[i]->id, room_id) == 0)
			k = (int)i;
	pthread_mutex_unlock(&s->mtx);
	return k;
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
		s->rooms[room[i]]->rewind = acked[i];
		s->rooms[room[i]]->rewind_set = true;
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

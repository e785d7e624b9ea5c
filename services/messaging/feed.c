/*
 * feed.c — copies the rooms service's membership log into room timelines
 * and into the membership mirror, and offers the membership barrier.
 *
 * The log (parley.internal.v1.RoomsFeed/ListChanges) is the source of
 * truth; the rooms PUB socket only says "something changed" and may drop.
 * So one thread catches up from the log: at start, on every PUB frame,
 * whenever a barrier is waited for, and every FEED_TICK_MS whatever
 * happens, which heals any dropped frame. Each page of changes goes to the
 * writer, which applies the changes after the stored cursor and stores the
 * new cursor in the same transaction: every change lands in its room's
 * timeline, and in the mirror, exactly once, across restarts too.
 *
 * Rounds: each catch-up is a numbered round. A round that reached the
 * log's head as reported by a ListChanges sent during the round has
 * applied every change committed before the round began. A barrier waiter
 * arriving while round r runs needs round r + 1: that is what makes the
 * mirror safe to use for "has this user left?" without a stale window.
 *
 * The barrier is asked for as early as it can be: the router takes, as a
 * frame arrives (its event is committed by then), the round that must
 * pass before the frame may be delivered (mx_feed_round_next) and kicks
 * that round off at once. By the time a session builds its reply, that
 * round has often passed, and then the barrier costs one atomic load: no
 * lock, no wait (mx_feed_sync_round). An event read from LMDB at reply
 * time needs a round that starts after that moment, as before.
 *
 * Following: once a page is applied, every JOINED in it is passed to the
 * sessions (mx_sessions_joined), whose open sessions of that user add the
 * room. The sessions end before the feed: mx_feed_unfollow stops that.
 *
 * Locking: f->mtx guards the round counters, `kick` and `stop`
 * (round_started and round_ok are also read atomically without it);
 * the SUB callback (an nng thread) only sets `kick`. f->follow_mtx guards
 * `follow` and is held while the sessions are told of joins. Everything
 * else belongs to the feed thread.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "log.h"
#include "tls.h"
#include "tsan.h"
#include "messaging_int.h"
#include "parley/internal/v1/feed.pb-c.h"

#define FEED_TICK_MS 500
#define FEED_PAGE 1000		 /* the log's largest page */
#define FEED_PAGES_PER_ROUND 64	 /* then the next round goes on */
#define FEED_CALL_TIMEOUT_MS 2000
#define MIRROR_KEY_MAX (TIMELINE_ROOM_MAX + 1 + RPC_USER_ID_MAX)

struct mx_feed {
	messaging_service *m;
	pthread_t thread;
	bool started;
	nng_socket sub;
	nng_aio *aio;
	bool sub_open;

	pthread_mutex_t mtx;
	pthread_cond_t cv;	/* kick, waiters or stop */
	pthread_cond_t done_cv; /* a round ended */
	uint64_t round_started, round_done, round_ok;
	uint64_t round_wanted; /* the latest round a barrier waits for */
	bool kick, stop;
	rpc_status round_error; /* why the last failed round failed */
	pthread_mutex_t follow_mtx;
	bool follow;		/* [follow_mtx] tell the sessions of joins */

	uint64_t applied; /* [atomic] the cursor, once the mirror holds it */

	/* Feed thread only. */
	uint64_t cursor;
	bool rooms_down; /* logged once per outage */
	rpc_status last_error;
};

/* ---- the mirror ------------------------------------------------------------ */

static size_t
mirror_key(uint8_t key[MIRROR_KEY_MAX], const char *room, const char *user)
{
	size_t a = strnlen(room, TIMELINE_ROOM_MAX), b = strnlen(user, RPC_USER_ID_MAX - 1);

	memcpy(key, room, a);
	key[a] = '\0';
	memcpy(key + a + 1, user, b);
	return a + 1 + b;
}

store_err
mx_mirror_apply(messaging_service *m, store_txn *txn, const Parley__V1__Event *change)
{
	uint8_t key[MIRROR_KEY_MAX];
	size_t klen = mirror_key(key, change->room_id, change->sender);
	store_err err;

	if (change->body_case != PARLEY__V1__EVENT__BODY_MEMBERSHIP)
		return STORE_OK; /* a room update: nobody comes or goes */
	switch (change->membership->kind) {
	case PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED:
		return store_put(txn, m->members, key, klen, "", 0, 0);
	case PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT:
	case PARLEY__V1__MEMBERSHIP_CHANGE__KIND__KICKED:
	case PARLEY__V1__MEMBERSHIP_CHANGE__KIND__BANNED:
		/* Removed, whoever did it: the same path as leaving. */
		err = store_del(txn, m->members, key, klen);
		return err == STORE_NOTFOUND ? STORE_OK : err;
	default:
		return STORE_OK; /* INVITED, UNBANNED: not a member either way */
	}
}

store_err
mx_mirror_is_member(messaging_service *m, store_txn *txn, const char *room, const char *user,
		    bool *member)
{
	uint8_t key[MIRROR_KEY_MAX];
	store_val v;
	store_err err = store_get(txn, m->members, key, mirror_key(key, room, user), &v);

	*member = err == STORE_OK;
	return err == STORE_NOTFOUND ? STORE_OK : err;
}

/* ---- catching up ---------------------------------------------------------------- */

/* Reads the stored cursor (0 before the first change). */
static uint64_t
load_cursor(messaging_service *m)
{
	void *v;
	size_t len;
	uint64_t c = 0;

	if (store_get_copy(m->env, m->meta, MX_FEED_CURSOR_KEY, strlen(MX_FEED_CURSOR_KEY), &v,
			   &len) == STORE_OK) {
		if (len == 8)
			c = store_be64_get(v);
		free(v);
	}
	return c;
}

/* Tells the sessions of the JOINEDs among changes that were applied now
 * (those past the cursor `before`). */
static void
tell_joins(mx_feed *f, Parley__V1__Event **changes, size_t n, uint64_t before)
{
	pthread_mutex_lock(&f->follow_mtx);
	for (size_t i = 0; i < n && f->follow; i++) {
		const Parley__V1__Event *c = changes[i];

		if (c->seq > before && c->seq <= f->cursor &&
		    c->body_case == PARLEY__V1__EVENT__BODY_MEMBERSHIP && c->membership != NULL &&
		    c->membership->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED &&
		    c->room_id != NULL && c->sender != NULL)
			mx_sessions_joined(f->m->sessions, c->room_id, c->sender);
	}
	pthread_mutex_unlock(&f->follow_mtx);
}

void
mx_feed_unfollow(mx_feed *f)
{
	if (f == NULL)
		return;
	pthread_mutex_lock(&f->follow_mtx);
	f->follow = false;
	pthread_mutex_unlock(&f->follow_mtx);
}

/* Fetches one page after the cursor and has the writer apply it. *head
 * receives the log's head as the rooms service reported it. */
static bool
catch_up_page(mx_feed *f, uint64_t *head)
{
	Parley__Internal__V1__ListChangesRequest req =
	    PARLEY__INTERNAL__V1__LIST_CHANGES_REQUEST__INIT;
	Parley__Internal__V1__ListChangesResponse *resp;
	rpc_call_opts opts = {.timeout_ms = FEED_CALL_TIMEOUT_MS};
	rpc_status *st = &f->last_error;
	store_err err = STORE_OK;
	uint64_t before = f->cursor;

	req.after_seq = f->cursor;
	req.limit = FEED_PAGE;
	if (rpc_client_call(f->m->rooms_feed, &parley__internal__v1__rooms_feed__descriptor,
			    "ListChanges", &req.base, (ProtobufCMessage **)&resp, &opts,
			    st) != RPC_OK) {
		if (!f->rooms_down)
			plog_info("messaging", "rooms feed not reachable: %s %s",
				  rpc_code_name(st->code), st->message);
		f->rooms_down = true;
		return false;
	}
	if (f->rooms_down)
		plog_info("messaging", "rooms feed reachable; membership cursor at %llu",
			  (unsigned long long)f->cursor);
	f->rooms_down = false;
	*head = resp->head_seq;
	if (resp->n_changes > 0 &&
	    (err = mx_writer_apply_changes(f->m->writer, resp->changes, resp->n_changes,
					   &f->cursor)) == STORE_OK) {
		tell_joins(f, resp->changes, resp->n_changes, before);
		/* After tell_joins, like a round: a barrier that passes means
		 * the sessions were told of the joins too. */
		__atomic_store_n(&f->applied, f->cursor, __ATOMIC_SEQ_CST);
	} else if (resp->n_changes == 0 && resp->head_seq < f->cursor)
		plog_error("messaging", "rooms log ends at %llu, before our cursor %llu: was it reset?",
			   (unsigned long long)resp->head_seq, (unsigned long long)f->cursor);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	if (err != STORE_OK) {
		rpc_status_set(st, RPC_UNAVAILABLE, "cannot apply membership changes: %s",
			       store_strerror(err));
		plog_error("messaging", "%s", st->message);
		return false;
	}
	return true;
}

/* One round: true when the cursor reached the head. */
static bool
catch_up(mx_feed *f)
{
	uint64_t head = 0;

	for (int i = 0; i < FEED_PAGES_PER_ROUND; i++) {
		uint64_t before = f->cursor;

		if (!catch_up_page(f, &head))
			return false;
		if (f->cursor >= head)
			return true;
		if (f->cursor == before) {
			/* The log has a hole where we stand: the next round
			 * asks again. */
			rpc_status_set(&f->last_error, RPC_UNAVAILABLE,
				       "membership log has no change %llu yet",
				       (unsigned long long)before + 1);
			return false;
		}
	}
	rpc_status_set(&f->last_error, RPC_UNAVAILABLE, "membership log is far ahead");
	return false;
}

/* The next receive; f is not touched after the release (see sub_cb). */
static void
sub_rearm(mx_feed *f)
{
	nng_socket sub = f->sub;
	nng_aio *aio = f->aio;

	rpc_tsan_release(f);
	nng_recv_aio(sub, aio);
}

static void
sub_cb(void *arg)
{
	mx_feed *f = arg;

	rpc_tsan_acquire(f); /* from the thread that started the receive */
	if (nng_aio_result(f->aio) != 0) {
		rpc_tsan_release(f); /* to mx_feed_stop */
		return; /* closed: the ticks carry on */
	}
	nng_msg_free(nng_aio_get_msg(f->aio));
	nng_aio_set_msg(f->aio, NULL);
	pthread_mutex_lock(&f->mtx);
	f->kick = true;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mtx);
	sub_rearm(f);
}

static void *
feed_main(void *arg)
{
	mx_feed *f = arg;
	int64_t next_tick = 0;

	pthread_mutex_lock(&f->mtx);
	while (!f->stop) {
		uint64_t round;
		bool ok;

		if (!f->kick && f->round_wanted <= f->round_started && rpc_now_ms() < next_tick) {
			rpc_cond_wait_until(&f->cv, &f->mtx, next_tick);
			continue;
		}
		f->kick = false;
		round = f->round_started + 1;
		__atomic_store_n(&f->round_started, round, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&f->mtx);

		ok = catch_up(f);
		next_tick = rpc_now_ms() + FEED_TICK_MS;

		pthread_mutex_lock(&f->mtx);
		f->round_done = round;
		if (ok)
			__atomic_store_n(&f->round_ok, round, __ATOMIC_RELEASE);
		else /* last_error is the feed thread's; waiters read this copy */
			f->round_error = f->last_error;
		pthread_cond_broadcast(&f->done_cv);
	}
	pthread_cond_broadcast(&f->done_cv);
	pthread_mutex_unlock(&f->mtx);
	return NULL;
}

uint64_t
mx_feed_round_next(mx_feed *f)
{
	return __atomic_load_n(&f->round_started, __ATOMIC_ACQUIRE) + 1;
}

void
mx_feed_want(mx_feed *f, uint64_t round)
{
	pthread_mutex_lock(&f->mtx);
	if (f->round_wanted < round) {
		f->round_wanted = round;
		pthread_cond_signal(&f->cv);
	}
	pthread_mutex_unlock(&f->mtx);
}

bool
mx_feed_current(mx_feed *f)
{
	uint64_t head;

	/* The rooms service is in this process: its committed head says at
	 * once whether the mirror has every change committed until now. */
	return rpc_client_is_local(f->m->rooms_feed) && svc_rooms_log_head(&head) &&
	       __atomic_load_n(&f->applied, __ATOMIC_SEQ_CST) >= head;
}

rpc_code
mx_feed_sync_round(mx_feed *f, uint64_t mine, int64_t deadline_ms, rpc_status *st)
{
	rpc_code code = RPC_OK;

	if (__atomic_load_n(&f->round_ok, __ATOMIC_ACQUIRE) >= mine)
		return RPC_OK; /* passed already: the mirror is current enough */
	if (mx_feed_current(f))
		return RPC_OK;
	pthread_mutex_lock(&f->mtx);
	if (f->round_wanted < mine) {
		f->round_wanted = mine;
		pthread_cond_signal(&f->cv);
	}
	while (f->round_done < mine && !f->stop && rpc_now_ms() < deadline_ms)
		rpc_cond_wait_until(&f->done_cv, &f->mtx, deadline_ms);
	if (f->round_ok >= mine)
		code = RPC_OK;
	else if (f->round_done >= mine)
		code = rpc_status_set(st, RPC_UNAVAILABLE, "rooms service: %s",
				      f->round_error.message);
	else
		code = rpc_status_set(st, RPC_UNAVAILABLE,
				      "rooms service did not answer in time");
	pthread_mutex_unlock(&f->mtx);
	return code;
}

rpc_code
mx_feed_sync(mx_feed *f, int64_t deadline_ms, rpc_status *st)
{
	return mx_feed_sync_round(f, mx_feed_round_next(f), deadline_ms, st);
}

/* ---- life ------------------------------------------------------------------------ */

int
mx_feed_start(messaging_service *m, mx_feed **out, rpc_status *st)
{
	mx_feed *f = calloc(1, sizeof(*f));
	rpc_status why = {0};
	int rv;

	if (f == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	f->m = m;
	f->cursor = load_cursor(m);
	f->applied = f->cursor;
	f->follow = m->sessions != NULL;
	pthread_mutex_init(&f->mtx, NULL);
	pthread_mutex_init(&f->follow_mtx, NULL);
	rpc_cond_init(&f->cv);
	rpc_cond_init(&f->done_cv);
	if ((rv = nng_sub0_open(&f->sub)) == 0) {
		f->sub_open = true;
		rv = rpc_socket_cap(f->sub, RPC_MAX_EVENT_FRAME);
		nng_socket_set(f->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0);
		/* Only a wake-up: frames are never read, their size is capped. */
		nng_socket_set_size(f->sub, NNG_OPT_RECVMAXSZ, MX_FRAME_MAX);
		nng_socket_set_ms(f->sub, NNG_OPT_RECONNMINT, 50);
		nng_socket_set_ms(f->sub, NNG_OPT_RECONNMAXT, 1000);
		/* The rooms service may come up later: dial in the background. */
		if (rv == 0 &&
		    (rv = rpc_tls_dial(f->sub, m->room_events_addr, NNG_FLAG_NONBLOCK, &why)) == 0)
			rv = nng_aio_alloc(&f->aio, sub_cb, f);
	}
	if (rv != 0) {
		rpc_status_set(st, RPC_INVALID_ARGUMENT, "cannot subscribe to %s: %s",
			       m->room_events_addr,
			       why.message[0] != '\0' ? why.message : nng_strerror(rv));
		mx_feed_stop(f);
		return st->code;
	}
	sub_rearm(f); /* sub_cb runs on nng's threads */
	if (pthread_create(&f->thread, NULL, feed_main, f) != 0) {
		mx_feed_stop(f);
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "cannot start the feed thread");
	}
	f->started = true;
	*out = f;
	return RPC_OK;
}

void
mx_feed_stop(mx_feed *f)
{
	if (f == NULL)
		return;
	pthread_mutex_lock(&f->mtx);
	f->stop = true;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mtx);
	if (f->started)
		pthread_join(f->thread, NULL);
	if (f->aio != NULL)
		nng_aio_stop(f->aio);
	rpc_tsan_acquire(f); /* sub_cb is over and starts no more */
	if (f->sub_open)
		mx_close_bounded(f->sub, "the rooms feed SUB socket");
	if (f->aio != NULL) {
		nng_msg *left = nng_aio_get_msg(f->aio);

		if (left != NULL)
			nng_msg_free(left);
		nng_aio_free(f->aio);
	}
	pthread_cond_destroy(&f->done_cv);
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->follow_mtx);
	pthread_mutex_destroy(&f->mtx);
	free(f);
}

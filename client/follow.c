/*
 * follow.c — a stream of room events over messaging sessions that survives
 * dropped connections and server restarts; see parley.h.
 *
 * The follower is the only source of truth about what the caller has seen:
 * last[i] is the seq of the last event of room i handed to the callback.
 * Whenever a session may have delivered events the caller never got (a
 * Poll whose reply was lost, a server that forgot the session), the
 * follower drops it and opens a new one with since_seq = last[i]. Events at
 * or below last[i] that a server sends again are skipped.
 *
 * With a watch (parley_follow_watch) the follower tracks which followed
 * rooms the user is still a member of. The session says so itself: the
 * user's own LEFT/KICKED/BANNED event is the room's last one in it (the
 * room is then set aside and reported at once, with that event), and the
 * user's JOINED event brings it back (the session adds a room the user
 * joins anywhere); the events missed meanwhile come from History, as for
 * any gap. The ListMyRooms check (every watch interval) remains for what
 * no event tells: a change made while no session was open (the server
 * down, or every room set aside, since a session needs a room), and a
 * login that ended (UNAUTHENTICATED), which an idle Poll does not report.
 *
 * Pacing: a session that cannot be reopened is tried again after a short
 * back-off (BACKOFF_MAX_MS at most); while the server is unreachable each
 * try itself sleeps in the rpc client until a connection comes up (or its
 * grace passes), so the follower neither spins nor sleeps past the moment
 * the server answers again.
 *
 * Locking: mtx guards session, closed and cancelled, which
 * parley_follow_cancel touches from other threads. Everything else belongs
 * to the thread calling parley_follow_poll.
 */
#include "parley.h"

#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 250
#define CLOSE_TIMEOUT_MS 1000

struct parley_follow {
	parley_conn *c;
	size_t n;
	char **room;
	uint64_t *last;
	bool *away;		/* the user is not a member now: not in the session */

	char me[RPC_USER_ID_MAX + 1]; /* whose membership events count */
	parley_member_fn member_fn; /* NULL: no watch */
	void *member_arg;
	uint32_t watch_ms;
	int64_t check_at;	/* monotonic ms: next membership check */

	bool need_open;
	int64_t retry_at;	/* monotonic ms: no reopen before */
	int64_t backoff;
	rpc_code last_code;	/* why the session is being reopened */
	char stale[PARLEY_SESSION_ID_MAX]; /* a session to close once replaced */

	pthread_mutex_t mtx;
	pthread_cond_t cv;	/* signalled on cancel */
	char session[PARLEY_SESSION_ID_MAX];
	bool closed;		/* session already closed by cancel */
	bool cancelled;
};

static bool
is_cancelled(parley_follow *f)
{
	bool c;

	pthread_mutex_lock(&f->mtx);
	c = f->cancelled;
	pthread_mutex_unlock(&f->mtx);
	return c;
}

/* Sleeps until the monotonic time `until` or a cancel. */
static void
wait_until(parley_follow *f, int64_t until)
{
	pthread_mutex_lock(&f->mtx);
	while (!f->cancelled && rpc_now_ms() < until)
		rpc_cond_wait_until(&f->cv, &f->mtx, until);
	pthread_mutex_unlock(&f->mtx);
}

static void
close_quietly(parley_conn *c, const char *session)
{
	if (session[0] != '\0')
		parley_session_close(c, session, CLOSE_TIMEOUT_MS, NULL);
}

static rpc_code
open_session(parley_follow *f, rpc_status *st)
{
	parley_cursor *cur = calloc(f->n, sizeof(*cur));
	Parley__V1__OpenResponse *resp;
	size_t k = 0;
	rpc_code code;

	if (cur == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	/* A session replaced while the server kept it (a lost reply): close it
	 * first, so that the room sees us go offline and come back rather than
	 * go offline while we are there. */
	close_quietly(f->c, f->stale);
	f->stale[0] = '\0';
	for (size_t i = 0; i < f->n; i++) {
		if (f->away[i])
			continue;
		cur[k].room_id = f->room[i];
		cur[k].since_seq = f->last[i];
		k++;
	}
	if (k == 0) {
		/* Every room is set aside: no session until one comes back. */
		free(cur);
		f->need_open = false;
		return RPC_OK;
	}
	code = parley_session_open(f->c, cur, k, &resp, st);
	free(cur);
	if (code != RPC_OK)
		return code;
	pthread_mutex_lock(&f->mtx);
	memcpy(f->session, resp->session_id, strlen(resp->session_id) + 1);
	f->closed = false;
	pthread_mutex_unlock(&f->mtx);
	parley_free(resp);
	f->need_open = false;
	f->backoff = BACKOFF_MIN_MS;
	return RPC_OK;
}

/* No reopen before the back-off has passed (or what the server asked for
 * with retry_after_ms); the next one waits longer. */
static void
back_off(parley_follow *f, rpc_code code, const rpc_status *st)
{
	int64_t wait = f->backoff;

	/* A server over its limits (RESOURCE_EXHAUSTED) is given the time it
	 * asks for. One that is stopping asks too, but the next try waits for
	 * the connection to come back by itself: honouring the hint would
	 * delay the reconnect after a quick restart. */
	if (code == RPC_RESOURCE_EXHAUSTED && st != NULL && st->retry_after_ms > wait)
		wait = st->retry_after_ms > 5000 ? 5000 : st->retry_after_ms;
	f->need_open = true;
	f->last_code = code;
	f->retry_at = rpc_now_ms() + wait;
	f->backoff = f->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : f->backoff * 2;
}

/* Marks the session for reopening from last[] after a failure with code.
 * session_gone: the server no longer knows it, so there is nothing to close
 * and the server is up: reopen at once. */
static void
schedule_reopen(parley_follow *f, rpc_code code, bool session_gone)
{
	pthread_mutex_lock(&f->mtx);
	if (!session_gone && f->stale[0] == '\0')
		memcpy(f->stale, f->session, sizeof(f->stale));
	f->session[0] = '\0';
	pthread_mutex_unlock(&f->mtx);
	if (session_gone) {
		f->need_open = true;
		f->last_code = code;
		f->retry_at = 0;
	} else {
		back_off(f, code, NULL);
	}
}

rpc_code
parley_follow_new(parley_follow **fp, parley_conn *c, const parley_cursor *rooms, size_t n,
		  rpc_status *st)
{
	parley_follow *f;
	rpc_code code;

	*fp = NULL;
	if (n == 0)
		return rpc_status_set(st, RPC_INVALID_ARGUMENT, "nothing to follow");
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	pthread_mutex_init(&f->mtx, NULL);
	rpc_cond_init(&f->cv);
	f->c = c;
	f->backoff = BACKOFF_MIN_MS;
	f->room = calloc(n, sizeof(*f->room));
	f->last = calloc(n, sizeof(*f->last));
	f->away = calloc(n, sizeof(*f->away));
	if (f->room == NULL || f->last == NULL || f->away == NULL) {
		code = rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
		goto fail;
	}
	f->n = n;
	for (size_t i = 0; i < n; i++) {
		if ((f->room[i] = strdup(rooms[i].room_id)) == NULL) {
			code = rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
			goto fail;
		}
		f->last[i] = rooms[i].since_seq;
	}
	if ((code = open_session(f, st)) != RPC_OK)
		goto fail;
	*fp = f;
	return RPC_OK;

fail:
	parley_follow_free(f);
	return code;
}

static long
room_index(const parley_follow *f, const char *room_id)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->room[i], room_id) == 0)
			return (long)i;
	return -1;
}

uint64_t
parley_follow_seq(const parley_follow *f, const char *room_id)
{
	long i = room_index(f, room_id);

	return i < 0 ? 0 : f->last[i];
}

/* Delivers the events of room i between last[i] and seq (exclusive) from
 * History. RPC_OK also when History has nothing more to give: the gap is
 * then real and later events must not wait for it forever. */
static rpc_code
fill_gap(parley_follow *f, size_t i, uint64_t seq, parley_event_fn fn, void *arg,
	 rpc_status *st)
{
	while (f->last[i] + 1 < seq) {
		Parley__V1__GetHistoryResponse *h;
		uint64_t want = seq - 1 - f->last[i];
		uint64_t before = f->last[i];
		rpc_code code;

		code = parley_history(f->c, f->room[i], 0, f->last[i],
				      want > PARLEY_HISTORY_MAX ? PARLEY_HISTORY_MAX : (uint32_t)want,
				      &h, st);
		if (code != RPC_OK)
			return code;
		for (size_t k = 0; k < h->n_events && h->events[k]->seq < seq; k++) {
			fn(h->events[k], arg);
			f->last[i] = h->events[k]->seq;
		}
		parley_free(h);
		if (f->last[i] == before)
			break;
	}
	return RPC_OK;
}

void
parley_follow_watch(parley_follow *f, const char *me, uint32_t every_ms, parley_member_fn fn,
		    void *arg)
{
	snprintf(f->me, sizeof(f->me), "%s", me);
	/* The first call starts the clock; later ones (a new arg for each
	 * poll, say) keep it. */
	if (f->member_fn == NULL)
		f->check_at = rpc_now_ms() + (every_ms ? every_ms : PARLEY_WATCH_MS);
	f->member_fn = fn;
	f->member_arg = arg;
	f->watch_ms = every_ms ? every_ms : PARLEY_WATCH_MS;
}

/*
 * Asks the server which followed rooms the user is a member of, sets aside
 * the rooms left and takes back the rooms joined again (a new session then
 * opens from their last seq), telling member_fn of each change. RPC_OK, or
 * a final failure (UNAUTHENTICATED); a transient one is left for the next
 * check.
 */
static rpc_code
check_membership(parley_follow *f, rpc_status *st)
{
	Parley__V1__ListMyRoomsResponse *mine;
	bool back = false;
	rpc_code code;

	f->check_at = rpc_now_ms() + f->watch_ms;
	code = parley_rooms_mine(f->c, &mine, st);
	if (code == RPC_UNAUTHENTICATED)
		return code;
	if (code != RPC_OK)
		return rpc_status_set(st, RPC_OK, NULL);
	for (size_t i = 0; i < f->n; i++) {
		bool member = false;

		for (size_t k = 0; k < mine->n_rooms && !member; k++)
			member = strcmp(mine->rooms[k]->room_id, f->room[i]) == 0;
		if (member == !f->away[i])
			continue;
		f->away[i] = !member;
		back |= member;
		f->member_fn(f->room[i], member, NULL, f->member_arg);
	}
	parley_free(mine);
	if (back) {
		/* The session in place dropped the room for good: a new one. */
		schedule_reopen(f, RPC_OK, false);
		f->retry_at = 0;
	}
	return rpc_status_set(st, RPC_OK, NULL);
}

static bool
session_empty(parley_follow *f)
{
	bool empty;

	pthread_mutex_lock(&f->mtx);
	empty = f->session[0] == '\0';
	pthread_mutex_unlock(&f->mtx);
	return empty;
}

/* The user's own membership change in a followed room, or NULL. */
static const Parley__V1__MembershipChange *
own_change(const parley_follow *f, const Parley__V1__Event *ev)
{
	if (f->member_fn == NULL || f->me[0] == '\0' ||
	    ev->body_case != PARLEY__V1__EVENT__BODY_MEMBERSHIP || ev->membership == NULL ||
	    strcmp(ev->sender, f->me) != 0)
		return NULL;
	return ev->membership;
}

static bool
ends_membership(const Parley__V1__MembershipChange *mc)
{
	return mc != NULL && (mc->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT ||
			      mc->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__KICKED ||
			      mc->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__BANNED);
}

static bool
any_followed(const parley_follow *f)
{
	for (size_t i = 0; i < f->n; i++)
		if (!f->away[i])
			return true;
	return false;
}

rpc_code
parley_follow_poll(parley_follow *f, uint32_t wait_ms, parley_event_fn fn, void *arg,
		   rpc_status *st)
{
	Parley__V1__PollResponse *resp;
	char session[PARLEY_SESSION_ID_MAX];
	int64_t start = rpc_now_ms();
	rpc_code code;

	if (is_cancelled(f))
		return rpc_status_set(st, RPC_CANCELLED, "stopped following");
	if (f->member_fn != NULL) {
		if (start >= f->check_at && (code = check_membership(f, st)) != RPC_OK)
			return code;
		if (f->check_at - start < (int64_t)wait_ms)
			wait_ms = f->check_at > start ? (uint32_t)(f->check_at - start) : 0;
		if (!any_followed(f) && !f->need_open && session_empty(f)) {
			/* Nothing to poll: wait for the next check. A session
			 * whose rooms were all set aside is still polled: the
			 * user's JOINED event brings a room back. */
			wait_until(f, start + wait_ms);
			if (is_cancelled(f))
				return rpc_status_set(st, RPC_CANCELLED, "stopped following");
			return rpc_status_set(st, RPC_OK, NULL);
		}
	}
	if (f->need_open) {
		if (f->retry_at > start) {
			int64_t until = f->retry_at < start + wait_ms ? f->retry_at : start + wait_ms;

			wait_until(f, until);
			if (is_cancelled(f))
				return rpc_status_set(st, RPC_CANCELLED, "stopped following");
			if (rpc_now_ms() < f->retry_at)
				return rpc_status_set(st, f->last_code, "reconnecting");
		}
		code = open_session(f, st);
		if (is_cancelled(f))
			return rpc_status_set(st, RPC_CANCELLED, "stopped following");
		if (code != RPC_OK && f->member_fn != NULL &&
		    (code == RPC_PERMISSION_DENIED || code == RPC_NOT_FOUND)) {
			/* A room the user left meanwhile: find which, try again. */
			rpc_code why = code;

			if ((code = check_membership(f, st)) != RPC_OK)
				return code;
			back_off(f, why, NULL);
			return rpc_status_set(st, RPC_OK, NULL);
		}
		if (code != RPC_OK) {
			if (parley_code_transient(code))
				back_off(f, code, st);
			return code;
		}
		/* Back: say so now (RPC_OK) rather than after a long poll. */
		return rpc_status_set(st, RPC_OK, NULL);
	}

	pthread_mutex_lock(&f->mtx);
	memcpy(session, f->session, sizeof(session));
	pthread_mutex_unlock(&f->mtx);
	code = parley_session_poll(f->c, session, wait_ms, 0, &resp, st);
	if (is_cancelled(f)) {
		parley_free(resp);
		return rpc_status_set(st, RPC_CANCELLED, "stopped following");
	}
	if (code != RPC_OK) {
		if (code == RPC_NOT_FOUND) {
			/* The server does not know the session (it restarted, or
			 * the session expired): open another from where we are. */
			schedule_reopen(f, code, true);
		} else if (parley_code_transient(code)) {
			/* The reply may have carried events we never got. */
			schedule_reopen(f, code, false);
		}
		return code;
	}

	for (size_t k = 0; k < resp->n_events; k++) {
		const Parley__V1__Event *ev = resp->events[k];
		long i = room_index(f, ev->room_id);
		const Parley__V1__MembershipChange *mc;

		if (i < 0)
			continue; /* not ours: ignore rather than trust */
		if (ev->seq == 0) {
			fn(ev, arg);
			continue;
		}
		if (ev->seq <= f->last[i])
			continue; /* seen already */
		mc = own_change(f, ev);
		if (f->away[i] && mc != NULL && mc->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED) {
			/* Joined again elsewhere: the session took the room
			 * back; what was missed comes from History below. */
			f->away[i] = false;
			f->member_fn(f->room[i], true, ev, f->member_arg);
		}
		if (ev->seq > f->last[i] + 1 &&
		    (code = fill_gap(f, (size_t)i, ev->seq, fn, arg, st)) != RPC_OK) {
			parley_free(resp);
			/* Deliver nothing past the gap; the next session starts at
			 * last[i] and brings the rest. */
			schedule_reopen(f, code, false);
			return code;
		}
		fn(ev, arg);
		f->last[i] = ev->seq;
		if (!f->away[i] && ends_membership(mc)) {
			/* The room's last event in this session. */
			f->away[i] = true;
			f->member_fn(f->room[i], false, ev, f->member_arg);
		}
	}
	parley_free(resp);
	return rpc_status_set(st, RPC_OK, NULL);
}

void
parley_follow_cancel(parley_follow *f)
{
	char session[PARLEY_SESSION_ID_MAX];

	pthread_mutex_lock(&f->mtx);
	f->cancelled = true;
	memcpy(session, f->session, sizeof(session));
	f->closed = true;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mtx);
	close_quietly(f->c, session);
}

void
parley_follow_free(parley_follow *f)
{
	if (f == NULL)
		return;
	if (!f->closed)
		close_quietly(f->c, f->session);
	close_quietly(f->c, f->stale);
	for (size_t i = 0; f->room != NULL && i < f->n; i++)
		free(f->room[i]);
	free(f->room);
	free(f->last);
	free(f->away);
	pthread_mutex_destroy(&f->mtx);
	pthread_cond_destroy(&f->cv);
	free(f);
}

/*
 * sessions.c — the registry of sessions and the Open, Poll and Close
 * handlers (see session.h for one session).
 *
 * Locking: ss->mtx guards the buckets, each session's `next` and
 * `registered`, and the counters. `live` counts sessions whose worker has
 * not ended (including one being opened), which is what max_sessions caps:
 * a closed session still holds its thread until the worker is gone. The
 * same sessions are counted per user in `users` (an entry per user with at
 * least one, freed at 0), which max_user_sessions caps; the entry also
 * lists the user's registered sessions, which follow the user's joins
 * (mx_sessions_joined). Order: ss->mtx, then a session's own lock.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "session.h"

/* The count of sessions open (parley_messaging_sessions_open). */
static rpc_metric *
open_sessions(void)
{
	static rpc_metric *m;
	rpc_metric *g = __atomic_load_n(&m, __ATOMIC_ACQUIRE);

	if (g == NULL) {
		g = rpc_metrics_gauge("parley_messaging_sessions_open",
				      "Messaging sessions open (Open .. Close or expiry).", NULL);
		__atomic_store_n(&m, g, __ATOMIC_RELEASE);
	}
	return g;
}

#define SESSION_BUCKETS 4096
#define USER_BUCKETS 1024

/* Sessions of one user whose worker has not ended. */
typedef struct user_count {
	struct user_count *next;
	mx_session *sessions;	/* registered ones, through user_next */
	unsigned n;
	char user[RPC_USER_ID_MAX];
} user_count;

struct mx_sessions {
	messaging_service *m;
	pthread_mutex_t mtx;
	pthread_cond_t idle_cv;	/* live dropped to 0 */
	mx_session *buckets[SESSION_BUCKETS];
	user_count *users[USER_BUCKETS];
	unsigned live;
	bool stopping;
};

static unsigned
bucket_of(const char *id)
{
	uint32_t h = 2166136261u;

	for (; *id; id++)
		h = (h ^ (uint8_t)*id) * 16777619u;
	return h % SESSION_BUCKETS;
}

/* The session with id, with a reference for the caller; NULL if none. */
static mx_session *
lookup(mx_sessions *ss, const char *id)
{
	mx_session *s;

	if (strlen(id) != SESSION_ID_LEN)
		return NULL;
	pthread_mutex_lock(&ss->mtx);
	for (s = ss->buckets[bucket_of(id)]; s != NULL; s = s->next)
		if (strcmp(s->id, id) == 0)
			break;
	if (s != NULL)
		session_ref(s);
	pthread_mutex_unlock(&ss->mtx);
	return s;
}

static user_count **user_slot(mx_sessions *ss, const char *user);
static void release_user_locked(mx_sessions *ss, const char *user);

static void
register_session(mx_sessions *ss, mx_session *s)
{
	unsigned b = bucket_of(s->id);
	user_count *uc;

	session_ref(s);
	pthread_mutex_lock(&ss->mtx);
	s->next = ss->buckets[b];
	ss->buckets[b] = s;
	s->registered = true;
	if ((uc = *user_slot(ss, s->user)) != NULL) { /* reserve made it */
		s->user_next = uc->sessions;
		uc->sessions = s;
	}
	pthread_mutex_unlock(&ss->mtx);
}

void
sessions_unregister(mx_sessions *ss, mx_session *s)
{
	bool was;

	pthread_mutex_lock(&ss->mtx);
	was = s->registered;
	if (was) {
		mx_session **pp = &ss->buckets[bucket_of(s->id)];

		user_count *uc = *user_slot(ss, s->user);

		while (*pp != s)
			pp = &(*pp)->next;
		*pp = s->next;
		s->next = NULL;
		s->registered = false;
		for (pp = uc != NULL ? &uc->sessions : NULL; pp != NULL && *pp != NULL;
		     pp = &(*pp)->user_next)
			if (*pp == s) {
				*pp = s->user_next;
				break;
			}
		s->user_next = NULL;
		/* Closed or ended: no longer the user's, although its worker
		 * may run a moment longer (live counts that). */
		release_user_locked(ss, s->user);
	}
	pthread_mutex_unlock(&ss->mtx);
	if (was)
		session_unref(s);
}

/* The link that points at user's entry (at NULL if it has none).
 * Called with ss->mtx held. */
static user_count **
user_slot(mx_sessions *ss, const char *user)
{
	user_count **pp = &ss->users[bucket_of(user) % USER_BUCKETS];

	while (*pp != NULL && strcmp((*pp)->user, user) != 0)
		pp = &(*pp)->next;
	return pp;
}

/* One fewer of user's sessions (max_user_sessions). Called with ss->mtx
 * held. */
static void
release_user_locked(mx_sessions *ss, const char *user)
{
	user_count **pp = user_slot(ss, user), *uc;

	if ((uc = *pp) != NULL && --uc->n == 0) {
		*pp = uc->next;
		free(uc);
	}
}

void
sessions_worker_done(mx_sessions *ss, const char *user, bool unregistered)
{
	pthread_mutex_lock(&ss->mtx);
	if (!unregistered)
		release_user_locked(ss, user);
	rpc_gauge_add(open_sessions(), -1);
	if (--ss->live == 0)
		pthread_cond_broadcast(&ss->idle_cv);
	pthread_mutex_unlock(&ss->mtx);
}

void
mx_sessions_joined(mx_sessions *ss, const char *room, const char *user)
{
	user_count *uc;

	pthread_mutex_lock(&ss->mtx);
	if ((uc = *user_slot(ss, user)) != NULL)
		for (mx_session *s = uc->sessions; s != NULL; s = s->user_next)
			session_follow(s, room);
	pthread_mutex_unlock(&ss->mtx);
}

/* ---- Open ------------------------------------------------------------------- */

static rpc_code
check_open(rpc_call *call, const Parley__V1__OpenRequest *req)
{
	if (req->n_rooms == 0)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT, "rooms must name at least one room");
	if (req->n_rooms > SESSION_MAX_ROOMS)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "a session covers at most %d rooms (got %zu)",
				     SESSION_MAX_ROOMS, req->n_rooms);
	for (size_t i = 0; i < req->n_rooms; i++) {
		const char *id = req->rooms[i]->room_id;

		if (!svc_valid_room_id(id))
			return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
					     "rooms[%zu].room_id must be 1 to 64 characters of "
					     "a-z 0-9 _ . - starting with a letter or digit",
					     i);
		for (size_t k = 0; k < i; k++)
			if (strcmp(req->rooms[k]->room_id, id) == 0)
				return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
						     "room '%s' is named twice", id);
	}
	return RPC_OK;
}

/* While the service stops, sessions end: say so, retryable, rather than
 * hand out a session that is about to go. */
static rpc_code
shutting_down(rpc_call *call)
{
	rpc_call_fail(call, RPC_UNAVAILABLE, "messaging is shutting down");
	rpc_call_retry_after(call, RPC_SHUTDOWN_RETRY_MS);
	return RPC_UNAVAILABLE;
}

/* Counts a refusal by limit (parley_limits_hit_total) and fails call. */
static rpc_code __attribute__((format(printf, 4, 5)))
limit_hit(rpc_call *call, const char *limit, rpc_code code, const char *fmt, ...)
{
	static rpc_metric *by_limit[2];
	char labels[64], msg[RPC_STATUS_MESSAGE_MAX];
	bool user = strcmp(limit, "user_sessions") == 0;
	va_list ap;

	snprintf(labels, sizeof(labels), "limit=\"%s\"", limit);
	rpc_counter_add(rpc_metrics_counter_cached(&by_limit[user], "parley_limits_hit_total",
						   "Calls refused by a limit, by limit.", labels),
			1);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return rpc_call_fail(call, code, "%s", msg);
}

/* Reserves a place for user under max_user_sessions and max_sessions;
 * sessions_unregister gives back the user's (a closed session is no longer
 * theirs), sessions_worker_done the rest. The user's own cap is checked first:
 * closing sessions is then what helps, not waiting. */
static rpc_code
reserve(rpc_call *call, mx_sessions *ss, const char *user)
{
	rpc_code code = RPC_OK;
	user_count **pp, *uc;

	pthread_mutex_lock(&ss->mtx);
	pp = user_slot(ss, user);
	uc = *pp;
	if (ss->stopping)
		code = shutting_down(call);
	else if (uc != NULL && uc->n >= ss->m->max_user_sessions)
		code = limit_hit(call, "user_sessions", RPC_RESOURCE_EXHAUSTED,
				     "you have too many open sessions (at most %u); close some "
				     "first",
				     ss->m->max_user_sessions);
	else if (ss->live >= ss->m->max_sessions)
		code = limit_hit(call, "sessions", RPC_RESOURCE_EXHAUSTED,
				     "too many open sessions (at most %u); try again later",
				     ss->m->max_sessions);
	else if (uc == NULL && (uc = calloc(1, sizeof(*uc))) == NULL)
		code = rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
	if (code == RPC_OK) {
		if (*pp == NULL) {
			snprintf(uc->user, sizeof(uc->user), "%s", user);
			*pp = uc;
		}
		uc->n++;
		ss->live++;
		rpc_gauge_add(open_sessions(), 1);
	}
	pthread_mutex_unlock(&ss->mtx);
	if (code == RPC_RESOURCE_EXHAUSTED)
		rpc_call_retry_after(call, 1000);
	return code;
}

static rpc_code
read_open_heads(rpc_call *call, messaging_service *m, const Parley__V1__OpenRequest *req,
		uint64_t *heads)
{
	store_txn *txn;
	store_err err;

	if ((err = store_begin(m->env, false, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "open");
	for (size_t i = 0; i < req->n_rooms && err == STORE_OK; i++)
		err = timeline_head(txn, &m->tl, req->rooms[i]->room_id, &heads[i]);
	store_abort(txn);
	if (err != STORE_OK)
		return svc_fail_store(call, err, "open");
	for (size_t i = 0; i < req->n_rooms; i++)
		if (req->rooms[i]->since_seq > heads[i])
			return rpc_call_fail(call, RPC_OUT_OF_RANGE,
					     "since_seq %llu is past the end of room '%s' (%llu)",
					     (unsigned long long)req->rooms[i]->since_seq,
					     req->rooms[i]->room_id, (unsigned long long)heads[i]);
	return RPC_OK;
}

rpc_code
mx_handle_open(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	const Parley__V1__OpenRequest *req = (const void *)reqm;
	Parley__V1__OpenResponse *resp = (void *)respm;
	messaging_service *m = ctx;
	mx_sessions *ss = m->sessions;
	uint64_t heads[SESSION_MAX_ROOMS];
	rpc_status st = {0};
	mx_session *s;
	rpc_code code;

	if ((code = check_open(call, req)) != RPC_OK)
		return code;
	if (rpc_server_stopping(m->srv))
		return shutting_down(call);
	for (size_t i = 0; i < req->n_rooms; i++)
		if ((code = members_require(call, m->rooms, req->rooms[i]->room_id)) != RPC_OK)
			return code;
	if ((code = reserve(call, ss, rpc_call_caller(call))) != RPC_OK)
		return code;
	if ((code = read_open_heads(call, m, req, heads)) != RPC_OK)
		goto unreserve;
	s = session_create(m, ss, rpc_call_caller(call), rpc_call_token(call), req, heads, &st);
	if (s == NULL) {
		code = rpc_call_fail_status(call, &st);
		goto unreserve;
	}
	register_session(ss, s);
	if (!session_run(s)) {
		sessions_unregister(ss, s); /* gives back the user's place */
		session_unref(s);
		sessions_worker_done(ss, rpc_call_caller(call), true);
		return rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED, "cannot start a session now");
	}

	resp->session_id = rpc_call_strdup(call, s->id);
	resp->n_heads = req->n_rooms;
	resp->heads = rpc_call_alloc(call, req->n_rooms * sizeof(*resp->heads));
	for (size_t i = 0; i < req->n_rooms; i++) {
		Parley__V1__RoomCursor *c = rpc_call_alloc(call, sizeof(*c));

		parley__v1__room_cursor__init(c);
		c->room_id = rpc_call_strdup(call, req->rooms[i]->room_id);
		c->since_seq = heads[i];
		resp->heads[i] = c;
	}
	session_unref(s);
	return RPC_OK;

unreserve:
	sessions_worker_done(ss, rpc_call_caller(call), false);
	return code;
}

/* ---- Poll and Close -------------------------------------------------------------- */

/* The caller's own session named by id, with a reference; else fails call. */
static __attribute__((warn_unused_result)) mx_session *
own_session(rpc_call *call, mx_sessions *ss, const char *id, rpc_code *code)
{
	mx_session *s;

	if (id[0] == '\0') {
		*code = rpc_call_fail(call, RPC_INVALID_ARGUMENT, "session_id is required");
		return NULL;
	}
	s = lookup(ss, id);
	if (s == NULL) {
		*code = rpc_call_fail(call, RPC_NOT_FOUND, "no session '%.64s' (closed or expired)",
				      id);
		return NULL;
	}
	if (strcmp(s->user, rpc_call_caller(call)) != 0) {
		session_unref(s);
		*code = rpc_call_fail(call, RPC_PERMISSION_DENIED,
				      "session '%s' belongs to another user", id);
		return NULL;
	}
	if (!session_token_matches(s, rpc_call_token(call))) {
		session_unref(s);
		*code = rpc_call_fail(call, RPC_PERMISSION_DENIED,
				      "session '%s' belongs to another login of yours; open a "
				      "session with this token",
				      id);
		return NULL;
	}
	return s;
}

rpc_code
mx_handle_poll(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	const Parley__V1__PollRequest *req = (const void *)reqm;
	messaging_service *m = ctx;
	uint32_t max = req->max_events;
	unsigned rooms[SESSION_MAX_ROOMS];
	uint64_t acked[SESSION_MAX_ROOMS];
	mx_session *s;
	rpc_code code;

	if (req->wait_ms > POLL_WAIT_MAX_MS)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT, "wait_ms must be at most %d",
				     POLL_WAIT_MAX_MS);
	if (max == 0)
		max = POLL_DEFAULT_EVENTS;
	if (max > POLL_MAX_EVENTS)
		max = POLL_MAX_EVENTS;
	if (req->n_acked > SESSION_MAX_ROOMS)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT, "acked names at most %d rooms",
				     SESSION_MAX_ROOMS);
	if ((s = own_session(call, m->sessions, req->session_id, &code)) == NULL)
		return code;
	for (size_t i = 0; i < req->n_acked; i++) {
		int k = session_room_index(s, req->acked[i]->room_id);

		if (k < 0) {
			session_unref(s);
			return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
					     "acked[%zu]: room '%.64s' is not in this session", i,
					     req->acked[i]->room_id);
		}
		rooms[i] = (unsigned)k;
		acked[i] = req->acked[i]->since_seq;
	}
	code = session_attach_poll(s, call, req->wait_ms, max, rooms, acked,
				   (unsigned)req->n_acked);
	session_unref(s);
	if (code == RPC_NOT_FOUND && rpc_server_stopping(m->srv))
		return shutting_down(call); /* the session ended with the service */
	if (code == RPC_NOT_FOUND)
		return rpc_call_fail(call, RPC_NOT_FOUND, "session '%s' is closed", req->session_id);
	return code;
}

rpc_code
mx_handle_close(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		void *ctx)
{
	const Parley__V1__CloseRequest *req = (const void *)reqm;
	messaging_service *m = ctx;
	mx_session *s;
	rpc_code code;

	if ((s = own_session(call, m->sessions, req->session_id, &code)) == NULL)
		return code;
	sessions_unregister(m->sessions, s);
	session_close(s);
	session_unref(s);
	return RPC_OK;
}

/* ---- lifecycle ---------------------------------------------------------------------- */

int
mx_sessions_start(messaging_service *m, mx_sessions **out, rpc_status *st)
{
	mx_sessions *ss = calloc(1, sizeof(*ss));

	if (ss == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	ss->m = m;
	if (mx_router_start(m, &m->router, st) != RPC_OK) {
		free(ss);
		return st->code;
	}
	pthread_mutex_init(&ss->mtx, NULL);
	rpc_cond_init(&ss->idle_cv);
	*out = ss;
	return RPC_OK;
}

void
mx_sessions_stop(mx_sessions *ss)
{
	if (ss == NULL)
		return;
	/* No more joins from the feed (which outlives the sessions). */
	mx_feed_unfollow(ss->m->feed);
	/* Ask every registered session to end; closed ones are ending
	 * already. Their workers answer waiting Polls empty on the way. */
	pthread_mutex_lock(&ss->mtx);
	ss->stopping = true;
	for (unsigned b = 0; b < SESSION_BUCKETS; b++)
		for (mx_session *s = ss->buckets[b]; s != NULL; s = s->next)
			session_close(s);
	while (ss->live > 0)
		pthread_cond_wait(&ss->idle_cv, &ss->mtx);
	pthread_mutex_unlock(&ss->mtx);
	mx_router_stop(ss->m->router);
	ss->m->router = NULL;
	pthread_cond_destroy(&ss->idle_cv);
	pthread_mutex_destroy(&ss->mtx);
	free(ss);
}

/*
 * router.c — feeds every session worker of this process from one SUB socket
 * on the service's inproc PUB endpoint (see messaging_int.h).
 *
 * One subscriber takes in the whole event stream once and hands each frame
 * to the sessions of that frame's room only, through an index room ->
 * sessions. A frame therefore costs one delivery per interested session,
 * not one per session of the process, and opening a session costs O(its
 * rooms), not a SUB socket and a pipe of its own.
 *
 * The router unpacks each frame once (mx_frame: seq, sender) and hands the
 * same frame, reference counted, to every session of the room: a frame
 * costs one allocation and one parse whatever the room's size, and a
 * session holds pointers, not copies.
 *
 * Delivery never blocks: a session whose inbox is full drops the frame and
 * reads that room from LMDB later (session.c). Frames lost before they
 * reach the router (PUB or the router's SUB queue under load) are found by
 * one heal tick for the whole process: every ROUTER_HEAL_MS it compares
 * each routed room's head in LMDB with the last seq the router saw of it,
 * and tells that room's sessions to re-read heads only where they differ.
 * So no session needs a timer of its own, and an idle room costs nothing.
 *
 * Locking: r->mtx guards the index (and each route's `seen`) and is held
 * while a frame is handed out or the tick visits the routes, so once
 * mx_router_remove returns no delivery to that session is in progress or
 * can start. Order: r->mtx, then a session's own lock, or the feed's.
 */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "log.h"
#include "tsan.h"

#define ROUTE_BUCKETS 4096
#define ROUTER_RECVBUF 1024		/* nng's queue in the router's SUB socket */
#define ROUTER_MARKER_WAIT_MS 2000	/* stopping: wait for our marker this long */
#define ROUTER_HEAL_MS 500		/* the heal tick */

/* The sessions of one room; each entry is a session and its index there. */
struct route {
	struct route *next;
	struct route_entry {
		mx_session *s;
		unsigned room;
	} *v;
	unsigned n, cap;
	uint64_t seen;		/* the highest seq routed (or healed) */
	char room[];
};

struct mx_router {
	messaging_service *m;
	nng_socket sub;
	nng_aio *aio;
	pthread_mutex_t mtx;
	pthread_cond_t cv;	/* marker_seen, stop */
	bool marker_seen;
	uint64_t wanted;	/* the last membership round asked of the feed */
	bool stop;		/* the tick thread ends */
	pthread_t tick;
	bool tick_started;
	struct route *buckets[ROUTE_BUCKETS];
};

static const char marker[] = {MX_CONTROL_BYTE, 'r', 'o', 'u', 't', 'e', 'r', '\0'};

static unsigned
bucket_of(const char *room, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)room[i]) * 16777619u;
	return h % ROUTE_BUCKETS;
}

/* The route of the room named by the first len bytes of name, or NULL. */
static struct route *
find_locked(mx_router *r, const char *name, size_t len, struct route ***link)
{
	struct route **pp = &r->buckets[bucket_of(name, len)];

	for (; *pp != NULL; pp = &(*pp)->next)
		if (strncmp((*pp)->room, name, len) == 0 && (*pp)->room[len] == '\0')
			break;
	if (link != NULL)
		*link = pp;
	return *pp;
}

void
mx_frame_unref(mx_frame *f)
{
	if (__atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	nng_msg_free(f->msg);
	free(f);
}

/* The frame of msg (taken) for n sessions, parsed once; NULL if it does
 * not parse or memory is short (msg freed then). */
static mx_frame *
frame_of(nng_msg *msg, size_t off, unsigned n)
{
	const uint8_t *body = nng_msg_body(msg);
	Parley__V1__Event *ev;
	mx_frame *f;

	ev = parley__v1__event__unpack(NULL, nng_msg_len(msg) - off, body + off);
	if (ev == NULL || (f = malloc(sizeof(*f))) == NULL) {
		if (ev != NULL)
			parley__v1__event__free_unpacked(ev, NULL);
		nng_msg_free(msg);
		return NULL;
	}
	f->refs = (int)n;
	f->msg = msg;
	f->off = off;
	f->seq = ev->seq;
	f->need = 0;
	snprintf(f->sender, sizeof(f->sender), "%s", ev->sender != NULL ? ev->sender : "");
	parley__v1__event__free_unpacked(ev, NULL);
	return f;
}

/* Hands msg to the sessions of its room; false (msg not taken) if nobody
 * wants it. */
static bool
deliver_locked(mx_router *r, nng_msg *msg)
{
	const char *body = nng_msg_body(msg);
	size_t len = nng_msg_len(msg);
	const char *nul = memchr(body, '\0', len < TIMELINE_ROOM_MAX + 1 ? len
								: TIMELINE_ROOM_MAX + 1);
	struct route *rt;
	mx_frame *f;

	if (len > 0 && body[0] == MX_CONTROL_BYTE) {
		if (len == sizeof(marker) && memcmp(body, marker, sizeof(marker)) == 0) {
			r->marker_seen = true;
			pthread_cond_broadcast(&r->cv);
		}
		return false;
	}
	if (nul == NULL || (rt = find_locked(r, body, (size_t)(nul - body), NULL)) == NULL ||
	    rt->n == 0)
		return false;
	/* Unparseable or out of memory counts as a lost frame: sessions heal. */
	f = frame_of(msg, (size_t)(nul - body) + 1, rt->n);
	if (f != NULL && f->seq > rt->seen)
		rt->seen = f->seq;
	if (f != NULL && r->m->feed != NULL && !mx_feed_current(r->m->feed)) {
		/* Committed by now: the first round that starts from here
		 * clears it for delivery. Start it now, once per round. (With
		 * the mirror current no round is needed: need stays 0.) */
		f->need = mx_feed_round_next(r->m->feed);
		if (f->need > r->wanted) {
			r->wanted = f->need;
			mx_feed_want(r->m->feed, f->need);
		}
	}
	for (unsigned i = 0; i < rt->n; i++)
		session_deliver(rt->v[i].s, f);
	return true;
}

/* The next receive; r is not touched after the release (see router_cb). */
static void
router_rearm(mx_router *r)
{
	nng_socket sub = r->sub;
	nng_aio *aio = r->aio;

	rpc_tsan_release(r);
	nng_recv_aio(sub, aio);
}

static void
router_cb(void *arg)
{
	mx_router *r = arg;
	nng_msg *msg;
	int rv;

	rpc_tsan_acquire(r); /* from the thread that started the receive */
	rv = nng_aio_result(r->aio);
	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
		rpc_tsan_release(r); /* to mx_router_stop */
		return; /* closed or stopped */
	}
	if (rv != 0) {
		router_rearm(r);
		return;
	}
	msg = nng_aio_get_msg(r->aio);
	nng_aio_set_msg(r->aio, NULL);
	rpc_tsan_acquire(msg); /* published on another thread (mx_publish) */
	pthread_mutex_lock(&r->mtx);
	if (!deliver_locked(r, msg))
		nng_msg_free(msg);
	pthread_mutex_unlock(&r->mtx);
	router_rearm(r);
}

/*
 * The heal tick: rooms whose head in LMDB is past the last seq routed lost
 * frames on the way; their sessions re-read heads. One read transaction
 * for every routed room, under r->mtx (a lookup per room).
 */
static void
heal_locked(mx_router *r)
{
	store_txn *txn;

	if (store_begin(r->m->env, false, &txn) != STORE_OK)
		return; /* the next tick */
	for (unsigned b = 0; b < ROUTE_BUCKETS; b++)
		for (struct route *rt = r->buckets[b]; rt != NULL; rt = rt->next) {
			uint64_t head;

			if (timeline_head(txn, &r->m->tl, rt->room, &head) != STORE_OK ||
			    head <= rt->seen)
				continue;
			rt->seen = head;
			for (unsigned i = 0; i < rt->n; i++)
				session_heal(rt->v[i].s);
		}
	store_abort(txn);
}

static void *
tick_main(void *arg)
{
	mx_router *r = arg;
	int64_t next = rpc_now_ms() + ROUTER_HEAL_MS;

	pthread_mutex_lock(&r->mtx);
	while (!r->stop) {
		if (rpc_now_ms() < next) {
			rpc_cond_wait_until(&r->cv, &r->mtx, next);
			continue;
		}
		heal_locked(r);
		next = rpc_now_ms() + ROUTER_HEAL_MS;
	}
	pthread_mutex_unlock(&r->mtx);
	return NULL;
}

int
mx_router_start(messaging_service *m, mx_router **out, rpc_status *st)
{
	mx_router *r = calloc(1, sizeof(*r));
	int rv;

	if (r == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	r->m = m;
	pthread_mutex_init(&r->mtx, NULL);
	rpc_cond_init(&r->cv);
	if ((rv = nng_sub0_open(&r->sub)) != 0)
		goto fail;
	nng_socket_set_int(r->sub, NNG_OPT_RECVBUF, ROUTER_RECVBUF);
	if ((rv = rpc_socket_cap(r->sub, RPC_MAX_EVENT_FRAME)) != 0 ||
	    (rv = nng_socket_set(r->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0)) != 0 ||
	    (rv = nng_dial(r->sub, m->inproc_url, NULL, 0)) != 0 ||
	    (rv = nng_aio_alloc(&r->aio, router_cb, r)) != 0) {
		nng_close(r->sub);
		goto fail;
	}
	router_rearm(r); /* router_cb runs on nng's threads */
	if (pthread_create(&r->tick, NULL, tick_main, r) == 0)
		r->tick_started = true;
	else
		plog_error("messaging", "cannot start the router's heal tick: lost frames heal "
					"at the next Poll only");
	*out = r;
	return RPC_OK;

fail:
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mtx);
	free(r);
	return rpc_status_set(st, RPC_INTERNAL, "cannot subscribe the sessions' router: %s",
			      nng_strerror(rv));
}

/*
 * nng 1.5 leaks a frame that is on its way into a SUB socket when the
 * socket closes. So, holding the publish lock (nothing new is sent), we
 * publish a marker and wait for it to come back: PUB keeps order per
 * subscriber, so everything sent before has arrived. Then close, and wait
 * until the PUB side has let go of the pipe too.
 */
void
mx_router_stop(mx_router *r)
{
	messaging_service *m;
	int64_t until = rpc_now_ms() + ROUTER_MARKER_WAIT_MS;
	nng_msg *msg;
	uint64_t gone;

	if (r == NULL)
		return;
	m = r->m;
	pthread_mutex_lock(&r->mtx);
	r->stop = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mtx);
	if (r->tick_started)
		pthread_join(r->tick, NULL);
	pthread_mutex_lock(&m->pub_mtx);
	if (nng_msg_alloc(&msg, sizeof(marker)) == 0) {
		memcpy(nng_msg_body(msg), marker, sizeof(marker));
		mx_publish_locked(m, msg);
	}
	pthread_mutex_lock(&r->mtx);
	while (!r->marker_seen && rpc_now_ms() < until)
		rpc_cond_wait_until(&r->cv, &r->mtx, until);
	pthread_mutex_unlock(&r->mtx);
	nng_aio_stop(r->aio);
	rpc_tsan_acquire(r); /* router_cb is over and starts no more */
	gone = mx_pub_pipes_gone(m);
	mx_close_bounded(r->sub, "the sessions' router SUB socket");
	mx_pub_wait_pipe_gone(m, gone, rpc_now_ms() + ROUTER_MARKER_WAIT_MS);
	pthread_mutex_unlock(&m->pub_mtx);
	if ((msg = nng_aio_get_msg(r->aio)) != NULL)
		nng_msg_free(msg);
	nng_aio_free(r->aio);

	/* Sessions are gone by now; free whatever routes they left. */
	for (unsigned b = 0; b < ROUTE_BUCKETS; b++)
		while (r->buckets[b] != NULL) {
			struct route *rt = r->buckets[b];

			r->buckets[b] = rt->next;
			free(rt->v);
			free(rt);
		}
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mtx);
	free(r);
}

static bool
add_locked(mx_router *r, mx_session *s, unsigned room)
{
	const char *id = s->rooms[room]->id;
	size_t len = strlen(id);
	struct route **link, *rt = find_locked(r, id, len, &link);

	if (rt == NULL) {
		if ((rt = calloc(1, sizeof(*rt) + len + 1)) == NULL)
			return false;
		memcpy(rt->room, id, len + 1);
		*link = rt;
	}
	if (rt->n == rt->cap) {
		unsigned cap = rt->cap ? rt->cap * 2 : 4;
		struct route_entry *v = realloc(rt->v, cap * sizeof(*v));

		if (v == NULL) {
			if (rt->n == 0) { /* just made: leave no empty route */
				*link = rt->next;
				free(rt);
			}
			return false;
		}
		rt->v = v;
		rt->cap = cap;
	}
	rt->v[rt->n++] = (struct route_entry){s, room};
	return true;
}

static void
remove_locked(mx_router *r, mx_session *s, unsigned room)
{
	const char *id = s->rooms[room]->id;
	struct route **link, *rt = find_locked(r, id, strlen(id), &link);

	if (rt == NULL)
		return;
	for (unsigned i = 0; i < rt->n; i++)
		if (rt->v[i].s == s) {
			rt->v[i] = rt->v[--rt->n];
			break;
		}
	if (rt->n == 0) {
		*link = rt->next;
		free(rt->v);
		free(rt);
	}
}

bool
mx_router_add(mx_router *r, mx_session *s)
{
	unsigned i;

	pthread_mutex_lock(&r->mtx);
	for (i = 0; i < s->nrooms; i++)
		if (!add_locked(r, s, i))
			break;
	if (i < s->nrooms)
		while (i-- > 0)
			remove_locked(r, s, i);
	pthread_mutex_unlock(&r->mtx);
	return i == s->nrooms;
}

bool
mx_router_add_room(mx_router *r, mx_session *s, unsigned room)
{
	bool ok;

	pthread_mutex_lock(&r->mtx);
	remove_locked(r, s, room); /* never twice */
	ok = add_locked(r, s, room);
	pthread_mutex_unlock(&r->mtx);
	return ok;
}

void
mx_router_drop_room(mx_router *r, mx_session *s, unsigned room)
{
	pthread_mutex_lock(&r->mtx);
	remove_locked(r, s, room);
	pthread_mutex_unlock(&r->mtx);
}

void
mx_router_remove(mx_router *r, mx_session *s)
{
	pthread_mutex_lock(&r->mtx);
	for (unsigned i = 0; i < s->nrooms; i++)
		remove_locked(r, s, i);
	pthread_mutex_unlock(&r->mtx);
}

/*
 * server.c — the RPC endpoint (see server.h).
 *
 * Each call slot owns one nng context and one aio and walks
 * RECV -> QUEUED -> RUN -> SEND -> RECV. nng's callbacks only move a slot
 * along and queue it; the worker threads decode, dispatch and reply.
 * srv->mtx guards slot states, the run queue and the counters.
 *
 * `contexts` slots receive at all times. A call that is deferred
 * (rpc_call_defer) keeps its slot, since its reply must go out on its
 * context, and a spare slot starts receiving in its place: deferred calls
 * have their own budget (max_deferred) and never take the slots that cheap
 * calls (Validate, Health) are answered through. A deferred slot whose
 * reply has gone becomes a spare again.
 *
 * Connections are tracked by conns.c: a call from a connection over its
 * limits is answered RESOURCE_EXHAUSTED from the callback, without a
 * worker; a reply that the peer leaves unread closes its connection.
 */
#include "server.h"
#include "conns.h"
#include "local.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "log.h"
#include "tls.h"
#include "tlskeep.h"
#include "metrics.h"
#include "version.h"
#include "tsan.h"
#include "parley/v1/health.pb-c.h"
#include "parley/v1/rpc.pb-c.h"

#define MAX_SERVICES 8
/* A call's arena starts small: a deferred call (a Poll waiting for events)
 * holds its arena for as long as it waits, and 10,000 such at 4 KiB each
 * were 40 MB. 1 KiB still holds a Poll's reply of 100 events (pointers)
 * and a Send's writer item; a call that needs more gets ARENA_BLOCK at a
 * time. */
#define ARENA_FIRST 1024
#define ARENA_BLOCK 4096

typedef enum slot_state {
	SLOT_IDLE,	/* not receiving: before start or once closing */
	SLOT_SPARE,	/* not receiving: waits to stand in for a deferred call */
	SLOT_RECV,
	SLOT_QUEUED,
	SLOT_RUN,	/* in a handler, or deferred */
	SLOT_SEND,
} slot_state;

struct arena_block {
	struct arena_block *next;
	size_t used, cap;
	max_align_t data[];
};

struct service {
	const ProtobufCServiceDescriptor *desc;
	const rpc_method *methods;
	void *ctx;
	rpc_call_metrics **metrics; /* per method, in descriptor order */
};

struct rpc_call {
	rpc_server *srv;
	nng_ctx ctx;
	nng_aio *aio;
	slot_state state;
	bool deferred;	/* set by rpc_call_defer under srv->mtx, before the hand-off */
	bool refuse;	/* arrived after shutdown began: answer UNAVAILABLE */
	bool counted;	/* conns_call_begin was called for it */
	uint32_t pipe;	/* the connection it came on */
	size_t reply_len; /* of the reply being sent */
	bool wipe;	/* rpc_call_wipe_after_reply: zero what the call held */
	struct local_call *local; /* an in-process call (not a slot), or NULL */
	rpc_call *next_queued;	/* run queue, or the spare list */

	/* The call in progress; all reset by call_reset. */
	nng_msg *msg;
	int64_t arrived_ms;
	int64_t arrived_ns;	/* monotonic, for the latency metrics */
	rpc_call_metrics *metrics; /* the method's, once dispatch found it */
	int64_t deadline_ms;
	uint64_t request_id;
	Parley__V1__RpcRequest *env;
	const ProtobufCMethodDescriptor *method;
	ProtobufCMessage *req;
	ProtobufCMessage *resp;
	const char *token;
	char caller[RPC_USER_ID_MAX];
	char peer[RPC_PEER_MAX];	/* rpc_call_peer's answer, "" until asked */
	rpc_status st;
	struct arena_block *arena;
};

struct rpc_server {
	char name[32];
	char url[256];
	nng_socket sock;
	struct service services[MAX_SERVICES];
	int nservices;
	rpc_authn_fn authn;
	void *authn_ctx;
	rpc_call_metrics *unknown_metrics; /* calls that named no method here */

	rpc_call **slots;	/* nslots made so far, of at most cap_slots */
	int nslots, cap_slots;
	int contexts;		/* slots receiving at all times */
	int max_deferred;	/* deferred calls at once */
	int ndeferred;
	rpc_call *spares;	/* made, not receiving */
	rpc_conns *conns;
	rpc_limits lim;
	pthread_t *workers;
	int nworkers;

	pthread_mutex_t mtx;
	pthread_cond_t cv;	 /* run queue not empty, or workers_stop */
	pthread_cond_t idle_cv;	 /* a slot changed state during shutdown */
	rpc_call *queue_head, *queue_tail;
	rpc_server *local_next;	/* in local_servers; local_mtx guards */
	int local_pins;		/* in-process callers inside; local_mtx guards */
	int local_running;	/* in-process calls in dispatch */
	int64_t last_arrival_ms; /* when a call last came in */
	int64_t last_reply_ms;	/* when a reply was last handed to nng */
	bool stopping;	/* shutdown began: Health answers NOT_SERVING */
	bool refusing;	/* calls arriving now are refused, not run */
	bool closing;	/* the socket is about to close: stop receiving */
	bool workers_stop;
};

/*
 * An in-process call: the caller's thread runs dispatch itself and waits
 * here for the reply, which a deferred handler may send from any thread.
 * If the caller gives up at its deadline first, the reply's sender frees
 * the call.
 */
struct local_call {
	rpc_call call;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	nng_msg *reply;
	bool done;
	bool abandoned;
};

/* Servers of this process that in-process clients may call, by URL. */
static pthread_mutex_t local_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t local_cv = PTHREAD_COND_INITIALIZER; /* a pin was dropped */
static rpc_server *local_servers;

/* ---- the per-call arena ---------------------------------------------- */

void *
rpc_call_alloc(rpc_call *c, size_t size)
{
	struct arena_block *b = c->arena;
	size_t need = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);

	if (b == NULL || b->cap - b->used < need) {
		size_t block = b == NULL ? ARENA_FIRST : ARENA_BLOCK;
		size_t cap = need > block ? need : block;

		b = malloc(sizeof(*b) + cap);
		if (b == NULL)
			abort();
		b->cap = cap;
		b->used = 0;
		b->next = c->arena;
		c->arena = b;
	}
	void *p = (char *)b->data + b->used;
	b->used += need;
	memset(p, 0, size);
	return p;
}

char *
rpc_call_strdup(rpc_call *c, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = rpc_call_alloc(c, n);

	memcpy(p, s, n);
	return p;
}

void
rpc_call_wipe_after_reply(rpc_call *c)
{
	c->wipe = true;
}

/* The request frame, the envelope's copy of the body and the arena (the
 * reply's fields and its packed body) of a call that carried secrets.
 * explicit_bzero: rpc/ does not link libsodium, and the compiler must not
 * drop the stores to memory about to be freed. */
static void
call_wipe(rpc_call *c)
{
	if (c->msg != NULL)
		explicit_bzero(nng_msg_body(c->msg), nng_msg_len(c->msg));
	if (c->env != NULL && c->env->body.data != NULL)
		explicit_bzero(c->env->body.data, c->env->body.len);
	for (struct arena_block *b = c->arena; b != NULL; b = b->next)
		explicit_bzero(b->data, b->used);
}

static void
call_reset(rpc_call *c)
{
	if (c->wipe)
		call_wipe(c);
	while (c->arena != NULL) {
		struct arena_block *next = c->arena->next;
		free(c->arena);
		c->arena = next;
	}
	if (c->req != NULL)
		protobuf_c_message_free_unpacked(c->req, NULL);
	if (c->env != NULL)
		parley__v1__rpc_request__free_unpacked(c->env, NULL);
	if (c->msg != NULL)
		nng_msg_free(c->msg);
	c->msg = NULL;
	c->env = NULL;
	c->req = NULL;
	c->resp = NULL;
	c->method = NULL;
	c->metrics = NULL;
	c->token = NULL;
	c->caller[0] = '\0';
	c->peer[0] = '\0';
	c->request_id = 0;
	c->wipe = false;
	memset(&c->st, 0, sizeof(c->st));
	/* deferred, counted and pipe are the slot's accounting: cleared by
	 * slot_done_locked, under srv->mtx. refuse is read by the drain
	 * checks under srv->mtx: cleared by slot_send_locked. */
}

/* ---- accessors for handlers -------------------------------------------- */

const char *
rpc_call_caller(const rpc_call *c)
{
	return c->caller[0] != '\0' ? c->caller : NULL;
}

const char *
rpc_call_token(const rpc_call *c)
{
	return c->token;
}

int64_t
rpc_call_deadline(const rpc_call *c)
{
	return c->deadline_ms;
}

uint64_t
rpc_call_request_id(const rpc_call *c)
{
	return c->request_id;
}

ProtobufCMessage *
rpc_call_response(rpc_call *c)
{
	return c->resp;
}

rpc_code
rpc_call_fail(rpc_call *c, rpc_code code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rpc_status_vset(&c->st, code, fmt, ap);
	va_end(ap);
	return code;
}

rpc_code
rpc_call_fail_prefix(rpc_call *c, const char *fmt, ...)
{
	char msg[sizeof(c->st.message)];
	size_t n;
	va_list ap;

	memcpy(msg, c->st.message, sizeof(msg));
	va_start(ap, fmt);
	n = (size_t)vsnprintf(c->st.message, sizeof(c->st.message), fmt, ap);
	va_end(ap);
	if (n < sizeof(c->st.message)) /* the message, cut to what is left */
		memccpy(c->st.message + n, msg, '\0', sizeof(c->st.message) - n);
	c->st.message[sizeof(c->st.message) - 1] = '\0';
	return c->st.code;
}

rpc_code
rpc_call_fail_status(rpc_call *c, const rpc_status *st)
{
	c->st = *st;
	return st->code;
}

void
rpc_call_retry_after(rpc_call *c, uint32_t ms)
{
	c->st.retry_after_ms = ms;
}

bool
rpc_server_stopping(const rpc_server *srv)
{
	return __atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE);
}

/* ---- the caller's address ------------------------------------------------- */

/* An IP address in text, normalised (an IPv4-mapped IPv6 address is written
 * as IPv4); false if text is no IP address. */
static bool
peer_normalise(const char *text, char out[RPC_PEER_MAX])
{
	unsigned char a[16];

	if (inet_pton(AF_INET, text, a) == 1)
		return inet_ntop(AF_INET, a, out, RPC_PEER_MAX) != NULL;
	if (inet_pton(AF_INET6, text, a) != 1)
		return false;
	if (memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0)
		return inet_ntop(AF_INET, a + 12, out, RPC_PEER_MAX) != NULL;
	return inet_ntop(AF_INET6, a, out, RPC_PEER_MAX) != NULL;
}

/* The remote address of the connection msg came on, without its port. */
static void
peer_of_pipe(nng_msg *msg, char out[RPC_PEER_MAX])
{
	nng_sockaddr sa;
	char text[RPC_PEER_MAX];

	snprintf(out, RPC_PEER_MAX, "unknown"); /* e.g. the peer hung up already */
	if (msg == NULL || nng_pipe_get_addr(nng_msg_get_pipe(msg), NNG_OPT_REMADDR, &sa) != 0)
		return;
	switch (sa.s_family) {
	case NNG_AF_INET:
		if (inet_ntop(AF_INET, &sa.s_in.sa_addr, text, sizeof(text)) != NULL)
			peer_normalise(text, out);
		break;
	case NNG_AF_INET6:
		if (inet_ntop(AF_INET6, sa.s_in6.sa_addr, text, sizeof(text)) != NULL)
			peer_normalise(text, out);
		break;
	case NNG_AF_IPC:
	case NNG_AF_ABSTRACT:
		snprintf(out, RPC_PEER_MAX, "ipc");
		break;
	case NNG_AF_INPROC:
		snprintf(out, RPC_PEER_MAX, "inproc");
		break;
	default:
		break;
	}
}

const char *
rpc_call_peer(const rpc_call *call)
{
	rpc_call *c = (rpc_call *)call; /* the answer is worked out once, on first use */

	const char *said = NULL;
	bool verified = false;

	if (c->peer[0] != '\0')
		return c->peer;
	/* Whoever called us in process (the HTTP face), or a peer that
	 * proved with a certificate of the cluster's CA (mutual TLS: a
	 * listener requires one when --tls-ca is set; a gateway on another
	 * host), may say for which end client it calls. Any other peer's
	 * "peer" is ignored: it could claim any address. */
	for (size_t i = 0; c->env != NULL && i < c->env->n_metadata; i++) {
		const char *k = c->env->metadata[i]->key, *v = c->env->metadata[i]->value;

		if (k != NULL && v != NULL && strcasecmp(k, "peer") == 0)
			said = v;
	}
	if (c->local == NULL) {
		peer_of_pipe(c->msg, c->peer);
		if (said != NULL && c->msg != NULL &&
		    nng_pipe_get_bool(nng_msg_get_pipe(c->msg), NNG_OPT_TLS_VERIFIED, &verified) ==
			0 &&
		    verified && !peer_normalise(said, c->peer))
			peer_of_pipe(c->msg, c->peer); /* not an address: the connection's */
		return c->peer;
	}
	if (said == NULL || !peer_normalise(said, c->peer))
		snprintf(c->peer, sizeof(c->peer), "local");
	return c->peer;
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- slot state machine ------------------------------------------------ */

static void slot_cb(void *arg);

/* Called with srv->mtx held. */
static void
slot_recv_locked(rpc_call *c)
{
	if (c->srv->closing) {
		c->state = SLOT_IDLE;
		pthread_cond_broadcast(&c->srv->idle_cv);
		return;
	}
	c->state = SLOT_RECV;
	/* The aio carried a send timeout: a receive waits as long as it takes. */
	nng_aio_set_timeout(c->aio, NNG_DURATION_INFINITE);
	rpc_tsan_release(c); /* slot_cb runs on nng's thread */
	nng_ctx_recv(c->ctx, c->aio);
}

static void
spare_put_locked(rpc_server *srv, rpc_call *c)
{
	c->state = SLOT_SPARE;
	c->next_queued = srv->spares;
	srv->spares = c;
}

/* A spare slot, made now if none is left and the budget allows; NULL when
 * out of memory. Called with srv->mtx held. */
static rpc_call *
spare_take_locked(rpc_server *srv)
{
	rpc_call *c = srv->spares;

	if (c != NULL) {
		srv->spares = c->next_queued;
		c->next_queued = NULL;
		return c;
	}
	if (srv->nslots == srv->cap_slots || (c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->srv = srv;
	if (nng_ctx_open(&c->ctx, srv->sock) != 0) {
		free(c);
		return NULL;
	}
	if (nng_aio_alloc(&c->aio, slot_cb, c) != 0) {
		nng_ctx_close(c->ctx);
		free(c);
		return NULL;
	}
	srv->slots[srv->nslots++] = c;
	return c;
}

/* The call of slot c is over (its reply gone or dropped): give back what
 * it counted, then receive again, or become a spare if it was deferred
 * (a spare has been receiving in its place). Called with srv->mtx held. */
static void
slot_done_locked(rpc_call *c)
{
	rpc_server *srv = c->srv;

	if (c->counted)
		conns_call_end(srv->conns, c->pipe);
	c->counted = false;
	c->pipe = 0;
	if (c->deferred) {
		c->deferred = false;
		srv->ndeferred--;
		spare_put_locked(srv, c);
		pthread_cond_broadcast(&srv->idle_cv);
		return;
	}
	slot_recv_locked(c);
}

static void local_answer(struct local_call *lc, nng_msg *reply);

/* Hands reply (NULL: none) to nng; returns a pipe to close (outside the
 * lock), or 0. Called with srv->mtx held. */
static uint32_t
slot_send_locked(rpc_call *c, nng_msg *reply)
{
	rpc_server *srv = c->srv;
	uint32_t doomed = 0;

	c->refuse = false;
	if (reply != NULL && !conns_send_begin(srv->conns, c->pipe, nng_msg_len(reply))) {
		/* Its peer leaves replies unread while it sends more: every
		 * reply to it would hold a slot. It goes; the calls it still
		 * has in flight end as their replies are dropped. */
		nng_msg_free(reply);
		reply = NULL;
		doomed = c->pipe;
	}
	if (reply == NULL) {
		call_reset(c);
		slot_done_locked(c);
		return doomed;
	}
	c->state = SLOT_SEND;
	c->reply_len = nng_msg_len(reply);
	srv->last_reply_ms = rpc_now_ms();
	/* A connection that takes no reply in this long is stalled: the slot
	 * must not wait for it (nng queues the reply until the peer reads). */
	nng_aio_set_timeout(c->aio, srv->lim.send_timeout_ms);
	rpc_tsan_release(reply); /* an inproc peer reads it on its own thread */
	rpc_tsan_release(c);
	nng_aio_set_msg(c->aio, reply);
	nng_ctx_send(c->ctx, c->aio);
	return 0;
}

static void
slot_send(rpc_call *c, nng_msg *reply)
{
	rpc_server *srv = c->srv;
	uint32_t doomed;

	if (c->local != NULL) {
		call_reset(c);
		local_answer(c->local, reply);
		return;
	}
	/* What a deferred call held is freed once its reply is out (slot_cb),
	 * on nng's thread: a session worker answering a Poll frees nothing,
	 * so its thread's malloc cache keeps none of it while it waits. */
	if (!c->deferred)
		call_reset(c);
	pthread_mutex_lock(&srv->mtx);
	doomed = slot_send_locked(c, reply);
	pthread_mutex_unlock(&srv->mtx);
	if (doomed != 0)
		conns_close_pipe(srv->conns, doomed, "it leaves its replies unread");
}

static nng_msg *build_reply(rpc_call *c, rpc_code code);

/* A call arrived on slot c; returns a pipe to close, or 0. Called with
 * srv->mtx held, from nng's callback. */
static uint32_t
slot_arrived_locked(rpc_call *c)
{
	rpc_server *srv = c->srv;
	char why[RPC_STATUS_MESSAGE_MAX];
	conn_verdict verdict;
	uint32_t doomed;

	c->msg = nng_aio_get_msg(c->aio);
	rpc_tsan_acquire(c->msg); /* an inproc peer wrote it on its own thread */
	c->pipe = (uint32_t)nng_pipe_id(nng_msg_get_pipe(c->msg));
	c->counted = true;
	verdict = conns_call_begin(srv->conns, c->pipe, why, sizeof(why));
	if (verdict == CONN_CUT) {
		call_reset(c);
		doomed = c->pipe;
		slot_done_locked(c);
		return doomed;
	}
	if (verdict == CONN_REFUSE) {
		/* Answered here, nothing decoded or run: the connection is
		 * over its limits, and a worker must not be spent on it. */
		rpc_status_set(&c->st, RPC_RESOURCE_EXHAUSTED, "%s", why);
		c->st.retry_after_ms = 100;
		nng_msg *reply = build_reply(c, RPC_RESOURCE_EXHAUSTED);
		call_reset(c);
		return slot_send_locked(c, reply);
	}
	c->refuse = srv->refusing;
	c->arrived_ms = rpc_now_ms();
	srv->last_arrival_ms = c->arrived_ms;
	c->state = SLOT_QUEUED;
	c->next_queued = NULL;
	if (srv->queue_tail != NULL)
		srv->queue_tail->next_queued = c;
	else
		srv->queue_head = c;
	srv->queue_tail = c;
	pthread_cond_signal(&srv->cv);
	return 0;
}

static void
slot_cb(void *arg)
{
	rpc_call *c = arg;
	rpc_server *srv;
	int rv;
	uint32_t doomed = 0;
	const char *why = NULL;

	rpc_tsan_acquire(c); /* from the thread that started the operation */
	srv = c->srv;
	rv = nng_aio_result(c->aio);
	if (c->state == SLOT_SEND)
		call_reset(c); /* a deferred call's, now its reply is out (slot_send) */
	pthread_mutex_lock(&srv->mtx);
	switch (c->state) {
	case SLOT_RECV:
		if (rv != 0) {
			if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || srv->closing) {
				c->state = SLOT_IDLE;
				pthread_cond_broadcast(&srv->idle_cv);
			} else {
				slot_recv_locked(c);
			}
			break;
		}
		if (srv->closing) {
			nng_msg_free(nng_aio_get_msg(c->aio));
			c->state = SLOT_IDLE;
			pthread_cond_broadcast(&srv->idle_cv);
			break;
		}
		c->arrived_ns = now_ns();
		doomed = slot_arrived_locked(c);
		why = "it leaves its replies unread";
		break;
	case SLOT_SEND:
		conns_send_end(srv->conns, c->pipe, c->reply_len);
		if (rv != 0) {
			nng_msg_free(nng_aio_get_msg(c->aio));
			nng_aio_set_msg(c->aio, NULL);
			if (rv == NNG_ETIMEDOUT) {
				doomed = c->pipe;
				why = "it took no reply in the send timeout";
			}
		}
		slot_done_locked(c);
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&srv->mtx);
	if (doomed != 0)
		conns_close_pipe(srv->conns, doomed, why);
	rpc_tsan_release(c); /* to rpc_server_close, after nng_aio_stop */
}

/* ---- replies ------------------------------------------------------------ */

static nng_msg *
build_reply(rpc_call *c, rpc_code code)
{
	Parley__V1__RpcResponse r = PARLEY__V1__RPC_RESPONSE__INIT;
	Parley__V1__Status s = PARLEY__V1__STATUS__INIT;
	nng_msg *m;
	size_t len;

	if (code == RPC_OK && c->resp != NULL) {
		len = protobuf_c_message_get_packed_size(c->resp);
		r.body.data = rpc_call_alloc(c, len ? len : 1);
		r.body.len = protobuf_c_message_pack(c->resp, r.body.data);
	}
	s.code = (Parley__V1__Code)code;
	if (code != RPC_OK) {
		s.message = c->st.message[0] != '\0' ? c->st.message : (char *)rpc_code_name(code);
		s.retry_after_ms = c->st.retry_after_ms;
	}
	r.status = &s;
	r.request_id = c->request_id;
	len = parley__v1__rpc_response__get_packed_size(&r);
	if (nng_msg_alloc(&m, len) != 0)
		return NULL;
	parley__v1__rpc_response__pack(&r, nng_msg_body(m));
	return m;
}

/* Where the call came from, for the log: the remote IP address of its
 * connection (no port: as rpc_call_peer of the auth work gives it, which
 * replaces this helper when merged), "local" for an in-process call. */
static void
call_peer(const rpc_call *c, char *out, size_t len)
{
	nng_sockaddr sa;
	char ip[INET6_ADDRSTRLEN];
	nng_pipe p;

	snprintf(out, len, "unknown");
	if (c->local != NULL) {
		snprintf(out, len, "local");
		return;
	}
	if (c->msg == NULL)
		return;
	p = nng_msg_get_pipe(c->msg);
	if (nng_pipe_id(p) < 0 || nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0)
		return;
	switch (sa.s_family) {
	case NNG_AF_INET:
		if (inet_ntop(AF_INET, &sa.s_in.sa_addr, ip, sizeof(ip)) != NULL)
			snprintf(out, len, "%s", ip);
		break;
	case NNG_AF_INET6:
		if (inet_ntop(AF_INET6, sa.s_in6.sa_addr, ip, sizeof(ip)) != NULL)
			snprintf(out, len, "%s", ip);
		break;
	case NNG_AF_IPC:
		snprintf(out, len, "ipc");
		break;
	case NNG_AF_INPROC:
		snprintf(out, len, "inproc");
		break;
	default:
		break;
	}
}

/* One line per failed call, written as its reply goes out. Never the
 * token, the metadata or the body: those may hold secrets. */
static void
log_failed(const rpc_call *c, rpc_code code)
{
	char peer[160];
	plog_call line = {
		.component = c->srv->name,
		.method = c->env != NULL ? c->env->method : NULL,
		.status = rpc_code_name(code),
		.code = (int)code,
		.message = c->st.message[0] != '\0' ? c->st.message : rpc_code_name(code),
		.request_id = c->request_id,
		.peer = peer,
		.duration_ms = (double)(rpc_now_ms() - c->arrived_ms),
		.server_fault = code == RPC_UNKNOWN || code == RPC_INTERNAL ||
				code == RPC_UNAVAILABLE || code == RPC_DATA_LOSS,
	};

	call_peer(c, peer, sizeof(peer));
	plog_call_failed(&line);
}

static void
reply(rpc_call *c, rpc_code code)
{
	if (code != RPC_OK && c->st.code != code) {
		/* A handler returned a code without rpc_call_fail: keep its
		 * message if it set one for this code, else name the code. */
		c->st.code = code;
	}
	if (code != RPC_OK)
		log_failed(c, code);
	rpc_metrics_call_done(c->metrics != NULL ? c->metrics : c->srv->unknown_metrics, code,
			      now_ns() - c->arrived_ns);
	slot_send(c, build_reply(c, code));
}

rpc_code
rpc_call_defer(rpc_call *c)
{
	rpc_server *srv = c->srv;
	rpc_call *stand_in;

	if (c->local != NULL) {
		/* An in-process call holds no slot: its caller's thread waits. */
		c->deferred = true;
		return RPC_OK;
	}
	pthread_mutex_lock(&srv->mtx);
	if (srv->ndeferred >= srv->max_deferred) {
		pthread_mutex_unlock(&srv->mtx);
		rpc_call_fail(c, RPC_RESOURCE_EXHAUSTED,
			      "%s: too many calls waiting to be answered (limit %d); try again "
			      "shortly",
			      srv->name, srv->max_deferred);
		rpc_call_retry_after(c, 200);
		return RPC_RESOURCE_EXHAUSTED;
	}
	stand_in = srv->closing ? NULL : spare_take_locked(srv);
	if (stand_in == NULL && !srv->closing) {
		pthread_mutex_unlock(&srv->mtx);
		return rpc_call_fail(c, RPC_RESOURCE_EXHAUSTED, "%s: out of memory", srv->name);
	}
	c->deferred = true;
	srv->ndeferred++;
	if (stand_in != NULL)
		slot_recv_locked(stand_in);
	pthread_mutex_unlock(&srv->mtx);
	return RPC_OK;
}

void
rpc_call_finish(rpc_call *c, rpc_code code)
{
	if (!c->deferred)
		plog_error(c->srv->name, "a handler finished a call it never deferred "
			   "(rpc_call_defer before the hand-off)");
	reply(c, code);
}

/* ---- dispatch ----------------------------------------------------------- */

static const struct service *
find_method(rpc_server *srv, const char *full, const ProtobufCMethodDescriptor **mp)
{
	const char *slash;
	size_t svc_len;

	if (full[0] != '/')
		return NULL;
	slash = strchr(full + 1, '/');
	if (slash == NULL)
		return NULL;
	svc_len = (size_t)(slash - (full + 1));
	for (int i = 0; i < srv->nservices; i++) {
		const struct service *s = &srv->services[i];

		if (strlen(s->desc->name) == svc_len &&
		    memcmp(s->desc->name, full + 1, svc_len) == 0) {
			*mp = protobuf_c_service_descriptor_get_method_by_name(s->desc, slash + 1);
			return *mp != NULL ? s : NULL;
		}
	}
	return NULL;
}

static const char *
find_token(const Parley__V1__RpcRequest *env, rpc_call *c, rpc_code *code)
{
	static const char bearer[] = "Bearer ";

	*code = RPC_OK;
	for (size_t i = 0; i < env->n_metadata; i++) {
		const char *k = env->metadata[i]->key;
		const char *v = env->metadata[i]->value;

		if (k == NULL || v == NULL || strcasecmp(k, "authorization") != 0)
			continue;
		if (strncmp(v, bearer, sizeof(bearer) - 1) != 0 || v[sizeof(bearer) - 1] == '\0') {
			*code = rpc_call_fail(c, RPC_UNAUTHENTICATED,
					      "authorization metadata must be 'Bearer <token>'");
			return NULL;
		}
		return v + sizeof(bearer) - 1;
	}
	return NULL;
}

static rpc_code
dispatch(rpc_call *c)
{
	rpc_server *srv = c->srv;
	size_t len = nng_msg_len(c->msg);
	const struct service *svc;
	uint32_t timeout;
	rpc_code code;
	unsigned idx;

	if (len > RPC_MAX_REQUEST)
		return rpc_call_fail(c, RPC_RESOURCE_EXHAUSTED,
				     "request of %zu bytes exceeds the limit of %d bytes", len,
				     RPC_MAX_REQUEST);
	c->env = parley__v1__rpc_request__unpack(NULL, len, nng_msg_body(c->msg));
	if (c->env == NULL)
		return rpc_call_fail(c, RPC_INVALID_ARGUMENT, "malformed request envelope");
	c->request_id = c->env->request_id;
	if (rpc_check_wire(&parley__v1__rpc_request__descriptor, nng_msg_body(c->msg), len,
			   &c->st) != RPC_OK)
		return RPC_INVALID_ARGUMENT;
	if (c->env->method[0] == '\0')
		return rpc_call_fail(c, RPC_INVALID_ARGUMENT, "request names no method");

	timeout = c->env->timeout_ms != 0 ? c->env->timeout_ms : RPC_DEFAULT_TIMEOUT_MS;
	if (timeout > RPC_MAX_TIMEOUT_MS)
		timeout = RPC_MAX_TIMEOUT_MS;
	c->deadline_ms = c->arrived_ms + timeout;
	if (rpc_now_ms() >= c->deadline_ms)
		return rpc_call_fail(c, RPC_DEADLINE_EXCEEDED,
				     "deadline passed before the call started");

	svc = find_method(srv, c->env->method, &c->method);
	if (svc == NULL)
		return rpc_call_fail(c, RPC_UNIMPLEMENTED, "unknown method '%.128s'",
				     c->env->method);
	idx = (unsigned)(c->method - svc->desc->methods);
	c->metrics = svc->metrics[idx];
	if (svc->methods[idx].fn == NULL)
		return rpc_call_fail(c, RPC_UNIMPLEMENTED, "method '%.128s' is not served here",
				     c->env->method);
	if (c->refuse && svc->desc != &parley__v1__health__descriptor) {
		/* Nothing was done: the client may retry elsewhere or later. */
		rpc_call_fail(c, RPC_UNAVAILABLE, "%s is shutting down", srv->name);
		rpc_call_retry_after(c, RPC_SHUTDOWN_RETRY_MS);
		return RPC_UNAVAILABLE;
	}

	c->token = find_token(c->env, c, &code);
	if (code != RPC_OK)
		return code;
	if (svc->methods[idx].auth == RPC_AUTH_REQUIRED) {
		if (c->token == NULL)
			return rpc_call_fail(c, RPC_UNAUTHENTICATED, "missing bearer token");
		if (srv->authn == NULL)
			return rpc_call_fail(c, RPC_INTERNAL, "no authenticator configured");
		code = srv->authn(srv->authn_ctx, c->token, c->deadline_ms, c->caller, &c->st);
		if (code != RPC_OK) {
			c->caller[0] = '\0';
			return code;
		}
		/* Handlers rely on a caller for these methods: an authenticator
		 * that says yes without naming one is a fault, not a user. */
		c->caller[RPC_USER_ID_MAX - 1] = '\0';
		if (c->caller[0] == '\0')
			return rpc_call_fail(c, RPC_INTERNAL,
					     "the authenticator accepted the token but named no user");
	}

	c->req = protobuf_c_message_unpack(c->method->input, NULL, c->env->body.len,
					   c->env->body.data);
	if (c->req == NULL)
		return rpc_call_fail(c, RPC_INVALID_ARGUMENT, "malformed %s body",
				     c->method->input->name);
	if (rpc_check_wire(c->method->input, c->env->body.data, c->env->body.len, &c->st) !=
	    RPC_OK)
		return RPC_INVALID_ARGUMENT;

	c->resp = rpc_call_alloc(c, c->method->output->sizeof_message);
	c->method->output->message_init(c->resp);
	/* After RPC_DEFERRED the call belongs to whoever it was handed to
	 * (rpc_call_defer marked it before): not one more touch here. */
	return svc->methods[idx].fn(c, c->req, c->resp, svc->ctx);
}

static void *
worker_main(void *arg)
{
	rpc_server *srv = arg;

	for (;;) {
		rpc_call *c;
		rpc_code code;

		pthread_mutex_lock(&srv->mtx);
		while (srv->queue_head == NULL && !srv->workers_stop)
			pthread_cond_wait(&srv->cv, &srv->mtx);
		c = srv->queue_head;
		if (c == NULL) {
			pthread_mutex_unlock(&srv->mtx);
			break;
		}
		srv->queue_head = c->next_queued;
		if (srv->queue_head == NULL)
			srv->queue_tail = NULL;
		c->state = SLOT_RUN;
		pthread_mutex_unlock(&srv->mtx);

		code = dispatch(c);
		if (code != RPC_DEFERRED)
			reply(c, code);
	}
	return NULL;
}

/* ---- the built-in health service ------------------------------------------ */

static rpc_code
health_check(rpc_call *c, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	const Parley__V1__HealthCheckRequest *req = (const void *)reqm;
	Parley__V1__HealthCheckResponse *resp = (void *)respm;
	rpc_server *srv = ctx;
	bool known = req->service[0] == '\0';

	for (int i = 0; i < srv->nservices && !known; i++)
		known = strcmp(srv->services[i].desc->name, req->service) == 0;
	if (!known)
		return rpc_call_fail(c, RPC_NOT_FOUND, "unknown service '%.128s'", req->service);
	resp->status = rpc_server_stopping(srv)
			   ? PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
			   : PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	resp->version = (char *)parley_version;
	resp->commit = (char *)parley_commit;
	return RPC_OK;
}

static const rpc_method health_methods[] = {
	{.fn = health_check, .auth = RPC_AUTH_NONE},
};

/* ---- in-process calls ------------------------------------------------------- */

static void
local_free(struct local_call *lc)
{
	if (lc->reply != NULL)
		nng_msg_free(lc->reply);
	pthread_cond_destroy(&lc->cv);
	pthread_mutex_destroy(&lc->mtx);
	free(lc);
}

static void
local_answer(struct local_call *lc, nng_msg *reply)
{
	bool abandoned;

	pthread_mutex_lock(&lc->mtx);
	lc->reply = reply;
	lc->done = true;
	abandoned = lc->abandoned;
	pthread_cond_signal(&lc->cv);
	pthread_mutex_unlock(&lc->mtx);
	if (abandoned)
		local_free(lc);
}

rpc_server *
rpc_local_acquire(const char *url)
{
	rpc_server *srv;

	pthread_mutex_lock(&local_mtx);
	for (srv = local_servers; srv != NULL; srv = srv->local_next)
		if (strcmp(srv->url, url) == 0) {
			srv->local_pins++;
			break;
		}
	pthread_mutex_unlock(&local_mtx);
	return srv;
}

void
rpc_local_release(rpc_server *srv)
{
	pthread_mutex_lock(&local_mtx);
	if (--srv->local_pins == 0)
		pthread_cond_broadcast(&local_cv);
	pthread_mutex_unlock(&local_mtx);
}

rpc_code
rpc_local_call(rpc_server *srv, nng_msg *request, int64_t deadline_ms, nng_msg **replyp,
	       rpc_status *st)
{
	struct local_call *lc = calloc(1, sizeof(*lc));
	rpc_call *c;
	rpc_code code;

	*replyp = NULL;
	if (lc == NULL) {
		rpc_local_release(srv);
		nng_msg_free(request);
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	pthread_mutex_init(&lc->mtx, NULL);
	rpc_cond_init(&lc->cv);
	c = &lc->call;
	c->srv = srv;
	c->local = lc;
	c->state = SLOT_RUN;
	c->msg = request;
	c->arrived_ms = rpc_now_ms();
	c->arrived_ns = now_ns();
	pthread_mutex_lock(&srv->mtx);
	c->refuse = srv->refusing;
	srv->local_running++;
	srv->last_arrival_ms = c->arrived_ms;
	pthread_mutex_unlock(&srv->mtx);

	/* The same path as a call off the socket, on this thread. A deferred
	 * reply is the handler's owner's business from here: like a deferred
	 * slot, it no longer holds up a drain or the server's close. */
	code = dispatch(c);
	if (code != RPC_DEFERRED)
		reply(c, code);
	pthread_mutex_lock(&srv->mtx);
	srv->local_running--;
	pthread_cond_broadcast(&srv->idle_cv);
	pthread_mutex_unlock(&srv->mtx);
	rpc_local_release(srv);

	pthread_mutex_lock(&lc->mtx);
	while (!lc->done && rpc_now_ms() < deadline_ms)
		rpc_cond_wait_until(&lc->cv, &lc->mtx, deadline_ms);
	if (!lc->done) {
		lc->abandoned = true; /* the deferred handler frees it */
		pthread_mutex_unlock(&lc->mtx);
		return rpc_status_set(st, RPC_DEADLINE_EXCEEDED, "no answer in time");
	}
	pthread_mutex_unlock(&lc->mtx);
	*replyp = lc->reply;
	lc->reply = NULL;
	local_free(lc);
	if (*replyp == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory for the reply");
	return RPC_OK;
}

static void
local_register(rpc_server *srv)
{
	pthread_mutex_lock(&local_mtx);
	srv->local_next = local_servers;
	local_servers = srv;
	pthread_mutex_unlock(&local_mtx);
}

/* After this, no in-process caller is inside srv or can enter it. */
static void
local_unregister(rpc_server *srv)
{
	pthread_mutex_lock(&local_mtx);
	for (rpc_server **p = &local_servers; *p != NULL; p = &(*p)->local_next)
		if (*p == srv) {
			*p = srv->local_next;
			break;
		}
	while (srv->local_pins > 0)
		pthread_cond_wait(&local_cv, &local_mtx);
	pthread_mutex_unlock(&local_mtx);
}

/* ---- lifecycle ------------------------------------------------------------- */

static void
free_slot(rpc_call *c)
{
	call_reset(c);
	if (c->aio != NULL)
		nng_aio_free(c->aio);
	free(c);
}

int
rpc_server_open(rpc_server **srvp, const char *url, const rpc_server_opts *opts,
		rpc_status *st)
{
	rpc_server *srv;
	rpc_status why = {0};
	int rv;

	srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	snprintf(srv->name, sizeof(srv->name), "%s", opts && opts->name ? opts->name : "rpc");
	snprintf(srv->url, sizeof(srv->url), "%s", url);
	srv->unknown_metrics = rpc_metrics_for_method(srv->name, NULL);
	srv->contexts = opts && opts->contexts > 0 ? opts->contexts : 256;
	srv->max_deferred = opts && opts->deferred > 0 ? opts->deferred : srv->contexts;
	srv->cap_slots = srv->contexts + srv->max_deferred;
	srv->nworkers = opts && opts->workers > 0 ? opts->workers : 16;
	rpc_get_limits(&srv->lim);
	pthread_mutex_init(&srv->mtx, NULL);
	rpc_cond_init(&srv->cv);
	rpc_cond_init(&srv->idle_cv);

	if ((rv = nng_rep0_open(&srv->sock)) != 0)
		goto fail;
	if ((rv = rpc_socket_cap(srv->sock, RPC_MAX_FRAME)) != 0)
		goto fail;
	if (conns_open(&srv->conns, srv->sock, &srv->lim, srv->name, st) != RPC_OK) {
		rv = NNG_ENOMEM;
		goto fail;
	}
	srv->slots = calloc((size_t)srv->cap_slots, sizeof(rpc_call *));
	if (srv->slots == NULL) {
		rv = NNG_ENOMEM;
		goto fail;
	}
	/* The receiving slots now; spares as deferred calls need them. */
	for (int i = 0; i < srv->contexts; i++) {
		rpc_call *c = calloc(1, sizeof(*c));

		if (c == NULL) {
			rv = NNG_ENOMEM;
			goto fail;
		}
		c->srv = srv;
		srv->slots[srv->nslots++] = c;
		if ((rv = nng_ctx_open(&c->ctx, srv->sock)) != 0 ||
		    (rv = nng_aio_alloc(&c->aio, slot_cb, c)) != 0)
			goto fail;
	}
	if ((rv = rpc_tls_listen(srv->sock, url, &why)) != 0)
		goto fail;
	rpc_server_add_service(srv, &parley__v1__health__descriptor, health_methods, srv);
	*srvp = srv;
	return 0;

fail:
	rpc_status_set(st, rpc_code_from_nng(rv), "%s: cannot listen on %s: %s", srv->name, url,
		       why.message[0] != '\0' ? why.message : nng_strerror(rv));
	nng_close(srv->sock); /* rpc_tls_listen keeps nothing when it fails */
	conns_free(srv->conns);
	for (int i = 0; i < srv->nslots; i++)
		free_slot(srv->slots[i]);
	free(srv->slots);
	free(srv);
	return st ? st->code : RPC_INTERNAL;
}

int
rpc_server_add_service(rpc_server *srv, const ProtobufCServiceDescriptor *svc,
		       const rpc_method *methods, void *svc_ctx)
{
	rpc_call_metrics **metrics;

	if (srv->nservices == MAX_SERVICES)
		return RPC_RESOURCE_EXHAUSTED;
	metrics = calloc(svc->n_methods ? svc->n_methods : 1, sizeof(*metrics));
	if (metrics == NULL)
		return RPC_RESOURCE_EXHAUSTED;
	for (unsigned i = 0; i < svc->n_methods; i++) {
		char full[256];

		snprintf(full, sizeof(full), "/%s/%s", svc->name, svc->methods[i].name);
		metrics[i] = rpc_metrics_for_method(srv->name, full);
	}
	srv->services[srv->nservices++] = (struct service){svc, methods, svc_ctx, metrics};
	return RPC_OK;
}

void
rpc_server_set_authenticator(rpc_server *srv, rpc_authn_fn fn, void *ctx)
{
	srv->authn = fn;
	srv->authn_ctx = ctx;
}

int
rpc_server_start(rpc_server *srv, rpc_status *st)
{
	srv->workers = calloc((size_t)srv->nworkers, sizeof(pthread_t));
	if (srv->workers == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	for (int i = 0; i < srv->nworkers; i++) {
		if (pthread_create(&srv->workers[i], NULL, worker_main, srv) != 0) {
			srv->nworkers = i;
			return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED,
					      "cannot start worker threads");
		}
	}
	pthread_mutex_lock(&srv->mtx);
	for (int i = 0; i < srv->nslots; i++)
		slot_recv_locked(srv->slots[i]);
	pthread_mutex_unlock(&srv->mtx);
	local_register(srv);
	return RPC_OK;
}

/*
 * True when no call is in a handler or queued for one (deferred ones too
 * if count_deferred). A reply on its way (SEND) counts only if
 * count_sending: it holds no service state, and waits at most the send
 * timeout, after which its connection is closed.
 */
static bool
drained_locked(rpc_server *srv, bool count_deferred, bool count_sending)
{
	if (srv->local_running > 0)
		return false;
	for (int i = 0; i < srv->nslots; i++) {
		rpc_call *c = srv->slots[i];

		/* Refused calls touch no service state: a stream of them
		 * must not hold the shutdown up. */
		if (c->state == SLOT_IDLE || c->state == SLOT_SPARE || c->state == SLOT_RECV ||
		    c->refuse)
			continue;
		if (c->state == SLOT_SEND && !count_sending)
			continue;
		if (c->state == SLOT_RUN && c->deferred && !count_deferred)
			continue;
		return false;
	}
	return true;
}

static void
wait_drained(rpc_server *srv, bool count_deferred, bool count_sending, int max_ms)
{
	int64_t until = rpc_now_ms() + max_ms;

	pthread_mutex_lock(&srv->mtx);
	while (!drained_locked(srv, count_deferred, count_sending) && rpc_now_ms() < until)
		rpc_cond_wait_until(&srv->idle_cv, &srv->mtx, rpc_now_ms() + 50);
	pthread_mutex_unlock(&srv->mtx);
}

/*
 * Runs what is in flight, and what is still arriving, until no call has
 * come in for RPC_SHUTDOWN_QUIET_MS (at most RPC_SHUTDOWN_SETTLE_MS).
 * nng may hand two calls of one connection to their contexts in either
 * order, so a call a client sent before another that was already answered
 * can still reach us a moment after shutdown began: it is served, not
 * refused.
 */
static void
settle(rpc_server *srv)
{
	int64_t until = rpc_now_ms() + RPC_SHUTDOWN_SETTLE_MS;

	pthread_mutex_lock(&srv->mtx);
	for (;;) {
		int64_t now = rpc_now_ms(), quiet_at = srv->last_arrival_ms + RPC_SHUTDOWN_QUIET_MS;

		if (now >= until || (now >= quiet_at && drained_locked(srv, false, false)))
			break;
		rpc_cond_wait_until(&srv->idle_cv, &srv->mtx,
				    quiet_at > now && quiet_at < until ? quiet_at : now + 50);
	}
	pthread_mutex_unlock(&srv->mtx);
}

void
rpc_server_shutdown(rpc_server *srv)
{
	pthread_mutex_lock(&srv->mtx);
	if (srv->stopping) {
		pthread_mutex_unlock(&srv->mtx);
		return;
	}
	__atomic_store_n(&srv->stopping, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&srv->mtx);
	settle(srv);
	/* Slots keep receiving: a call that arrives from now on is answered
	 * UNAVAILABLE at once instead of being cut off with the connection
	 * when the socket closes, so its client knows nothing was done. */
	pthread_mutex_lock(&srv->mtx);
	srv->refusing = true;
	pthread_mutex_unlock(&srv->mtx);
	wait_drained(srv, false, false, RPC_MAX_TIMEOUT_MS);
}

/*
 * nng_close with a bound (server.h). In nng 1.5 a pipe torn down while the
 * transport completes a partial read or write never finishes its teardown
 * (nanomsg/nng#1636, fixed in 1.6), and nng_close waits for it forever.
 * The connections were cut at their sockets first (conns.c), which leaves
 * that race a narrow window; should it still be hit, the close goes on
 * without it: a thread waits in nng_close, and after the bound the socket
 * is left to the exiting process instead of hanging it.
 */
struct closer {
	nng_socket sock;
	const char *who, *what; /* for the "finished late" line; what may be NULL */
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool done;
	bool abandoned;	/* the waiter went on without it */
	int refs;	/* the closing thread and the waiter; the last frees */
};

static void
closer_rele(struct closer *k)
{
	bool last;

	pthread_mutex_lock(&k->mtx);
	last = --k->refs == 0;
	pthread_mutex_unlock(&k->mtx);
	if (last) {
		pthread_cond_destroy(&k->cv);
		pthread_mutex_destroy(&k->mtx);
		free(k);
	}
}

static void *
closer_main(void *arg)
{
	struct closer *k = arg;
	bool late;

	nng_close(k->sock);
	pthread_mutex_lock(&k->mtx);
	k->done = true;
	late = k->abandoned;
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->mtx);
	if (late && k->what != NULL)
		plog_info(k->who, "closing %s finished late", k->what);
	closer_rele(k);
	return NULL;
}

bool
rpc_close_bounded(nng_socket sock, int bound_ms, const char *who, const char *what)
{
	struct closer *k = calloc(1, sizeof(*k));
	int64_t until = rpc_now_ms() + bound_ms;
	pthread_t t;
	bool done;

	rpc_tls_forget(sock);
	if (k == NULL) {
		nng_close(sock);
		return true;
	}
	k->sock = sock;
	k->who = who;
	k->what = what;
	k->refs = 2;
	pthread_mutex_init(&k->mtx, NULL);
	rpc_cond_init(&k->cv);
	if (pthread_create(&t, NULL, closer_main, k) != 0) {
		k->refs = 1;
		nng_close(sock);
		closer_rele(k);
		return true;
	}
	pthread_detach(t);
	pthread_mutex_lock(&k->mtx);
	while (!k->done && rpc_now_ms() < until)
		rpc_cond_wait_until(&k->cv, &k->mtx, until);
	done = k->done;
	k->abandoned = !done;
	pthread_mutex_unlock(&k->mtx);
	closer_rele(k);
	return done;
}

void
rpc_server_close(rpc_server *srv, int drain_ms)
{
	rpc_server_shutdown(srv);
	/* Replies still on their way get drain_ms to go out. */
	wait_drained(srv, true, true, drain_ms);
	local_unregister(srv);
	pthread_mutex_lock(&srv->mtx);
	srv->closing = true;
	/* A sent reply may still sit in a connection's queue: nng (without
	 * linger) drops it when the socket closes, and its client would see
	 * the connection reset instead of the answer. Give the last replies a
	 * moment to reach the wire. */
	while (rpc_now_ms() < srv->last_reply_ms + RPC_CLOSE_LINGER_MS)
		rpc_cond_wait_until(&srv->idle_cv, &srv->mtx,
				    srv->last_reply_ms + RPC_CLOSE_LINGER_MS);
	pthread_mutex_unlock(&srv->mtx);
	/* Every connection goes first, so that nng_close has none left whose
	 * peer stopped reading (its queued replies are dropped: rep0 then
	 * completes the contexts waiting on it, and no slot waits on a send
	 * that cannot finish). */
	conns_close_all(srv->conns);
	for (int64_t until = rpc_now_ms() + RPC_CLOSE_BOUND_MS / 2;
	     conns_count(srv->conns) > 0 && rpc_now_ms() < until;) {
		pthread_mutex_lock(&srv->mtx);
		rpc_cond_wait_until(&srv->idle_cv, &srv->mtx, rpc_now_ms() + 10);
		pthread_mutex_unlock(&srv->mtx);
	}
	if (!rpc_close_bounded(srv->sock, RPC_CLOSE_BOUND_MS, srv->name, NULL)) {
		/* Everything nng may still touch stays allocated: the process
		 * is on its way out, and a leak is better than a hang. */
		plog_error(srv->name, "the socket did not close within %d ms (an nng 1.5 "
			   "teardown stuck on a connection); going on without it",
			   RPC_CLOSE_BOUND_MS);
		return;
	}
	/* Workers empty the run queue before they exit; their replies fail
	 * on the closed socket and the slots go idle. Only then may the aios
	 * stop, with no worker left to start another operation on one. */
	pthread_mutex_lock(&srv->mtx);
	srv->workers_stop = true;
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mtx);
	for (int i = 0; srv->workers != NULL && i < srv->nworkers; i++)
		pthread_join(srv->workers[i], NULL);
	for (int i = 0; i < srv->nslots; i++) {
		nng_aio_stop(srv->slots[i]->aio);
		rpc_tsan_acquire(srv->slots[i]); /* its last slot_cb is over */
	}
	conns_free(srv->conns);

	for (int i = 0; i < srv->nslots; i++)
		free_slot(srv->slots[i]);
	for (int i = 0; i < srv->nservices; i++)
		free(srv->services[i].metrics);
	free(srv->slots);
	free(srv->workers);
	pthread_cond_destroy(&srv->idle_cv);
	pthread_cond_destroy(&srv->cv);
	pthread_mutex_destroy(&srv->mtx);
	free(srv);
}

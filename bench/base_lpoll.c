/*
 * base_lpoll.c — the delivery floor of DESIGN.md's shape: long polls over
 * nng REQ/REP answered by a worker thread per client, with nothing else.
 *
 * The server (a child process, our own binary's hidden subcommand) makes
 * every send durable as Parley does, group-committed by one writer thread
 * into one LMDB table before anyone hears of it (lgc_*), and keeps each
 * room's messages in memory for the polls (no protobuf, no tokens, no
 * reads from LMDB). A replier thread takes each committed batch while the
 * writer commits the next, as Parley's does: it appends the sends to
 * their rooms and acks them, then wakes each waiting worker of a room
 * once for the batch (one condition variable each, as Parley's router
 * wakes its sessions). A poll is handed to its client's worker, which
 * waits until its room has messages past the client's cursor (or the
 * poll's deadline) and replies with them. So every delivery pays what
 * DESIGN.md's shape costs (a synced commit before publishing, a worker
 * per client woken per batch, a hand-off to nng) and no more: what Parley
 * would cost if all its own work were free.
 *
 * Without a thread per client ("callbacks"), the same server parks a poll
 * that finds nothing new in its room's list on nng's callback thread, and
 * the replier answers a room's parked polls once a batch for it is
 * committed (a sweeper thread answers those past their deadline, empty):
 * the event-loop shape of Redis and the in-memory servers. With "log",
 * sends are made durable in an append-only file instead of LMDB (one
 * write and one fdatasync a batch, as Redis's AOF).
 *
 * Wire (all integers big-endian):
 *   send:  'S' room payload[FO_TEXT_LEN]           reply: seq(8)
 *   poll:  'P' room client(4) cursor(8) wait_ms(4)  reply: n(4) n x (seq(8) payload)
 *
 * Locks: a room's mutex before a worker's, never the other way round.
 * Replies are built outside the room's lock: messages up to a head read
 * under it do not change until LP_RING more are appended.
 */
#define _GNU_SOURCE
#include "fanout.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#define LP_CLIENTS 1100		/* receivers a server serves: peers' 1,000 and slack */
#define LP_SLOTS (LP_CLIENTS + 64) /* contexts: a poll each, and the senders' */
#define LP_RING 32768		/* messages a room keeps */
#define LP_BATCH 64		/* messages a reply carries at most */
#define LP_SEND_LEN (2 + FO_TEXT_LEN)
#define LP_POLL_LEN 18
#define LP_SENDERS 16		/* driver threads with a connection of their own */
#define LP_WAIT_MS 30000	/* a poll's wait: idle receivers must not load the machine
				 * while the other systems are measured */

static void
put32(uint8_t *b, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void
put64(uint8_t *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint32_t
get32(const uint8_t *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static uint64_t
get64(const uint8_t *b)
{
	return (uint64_t)get32(b) << 32 | get32(b + 4);
}

/* ---- the server (child process) ------------------------------------------- */

typedef struct lp_slot {
	lgc_item commit;	/* first, so that done finds the slot */
	nng_ctx ctx;
	nng_aio *aio;
	atomic_bool sending;	/* set by whichever thread replies, read by nng's */
	/* callbacks: while parked in its room */
	struct lp_slot *parked_next;
	uint64_t cursor;
	uint64_t deadline_ns;
} lp_slot;

typedef struct lp_worker {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	lp_slot *slot;		/* the poll to answer, or NULL */
	uint64_t avail;		/* the room's head as last told */
	struct lp_worker *next;	/* in its room's list */
	int room;
} lp_worker;

typedef struct lp_room {
	pthread_mutex_t mtx;
	uint64_t head;
	lp_worker *workers;
	lp_slot *parked;	/* callbacks: polls waiting */
	uint8_t (*ring)[FO_TEXT_LEN];
} lp_room;

static bool lp_threads;	/* a worker per client, else callbacks */

static lp_room lp_rooms[FO_MAX_ROOMS];
static lp_worker *lp_workers[LP_CLIENTS];
static pthread_mutex_t lp_workers_mtx = PTHREAD_MUTEX_INITIALIZER;

static void
lp_send_reply(lp_slot *s, nng_msg *msg)
{
	nng_aio_set_msg(s->aio, msg);
	s->sending = true;
	nng_ctx_send(s->ctx, s->aio);
}

/* The room's head; messages up to it are in the ring and stay unchanged
 * until LP_RING more are appended, so they are read without the lock. */
static uint64_t
lp_head(lp_room *r)
{
	uint64_t head;

	pthread_mutex_lock(&r->mtx);
	head = r->head;
	pthread_mutex_unlock(&r->mtx);
	return head;
}

/* Replies to s's poll with r's messages past cursor up to head (none, at
 * a deadline); head read from the room after its messages were written. */
static void
lp_answer(lp_room *r, lp_slot *s, uint64_t cursor, uint64_t head)
{
	nng_msg *msg = nng_aio_get_msg(s->aio);

	nng_msg_clear(msg);
	if (cursor + LP_RING < head)	/* fell out of the ring: not in the bench */
		cursor = head - LP_RING;
	if (head > cursor + LP_BATCH)
		head = cursor + LP_BATCH;
	nng_msg_append_u32(msg, (uint32_t)(head > cursor ? head - cursor : 0));
	for (uint64_t seq = cursor + 1; seq <= head; seq++) {
		nng_msg_append_u64(msg, seq);
		nng_msg_append(msg, r->ring[seq % LP_RING], FO_TEXT_LEN);
	}
	lp_send_reply(s, msg);
}

static bool lp_dirty[FO_MAX_ROOMS];	/* the replier's: rooms appended to */

/* On the replier's thread, once the send is durable: appended to its room
 * and acked; its room's clients hear of it at the batch's end. */
static void
lp_committed(lgc_item *it)
{
	lp_slot *s = (lp_slot *)it;
	nng_msg *msg = nng_aio_get_msg(s->aio);
	const uint8_t *b = nng_msg_body(msg);
	int room = b[1] % FO_MAX_ROOMS;
	lp_room *r = &lp_rooms[room];
	uint64_t seq;

	pthread_mutex_lock(&r->mtx);
	seq = ++r->head;
	memcpy(r->ring[seq % LP_RING], b + 2, FO_TEXT_LEN);
	pthread_mutex_unlock(&r->mtx);
	lp_dirty[room] = true;
	nng_msg_clear(msg);
	nng_msg_append_u64(msg, seq);
	lp_send_reply(s, msg);
}

/* On the replier's thread after a batch: one wake-up per waiting worker,
 * or one answer per parked poll, per room appended to. */
static void
lp_batch_done(void)
{
	for (int i = 0; i < FO_MAX_ROOMS; i++) {
		lp_room *r = &lp_rooms[i];
		lp_slot *parked;
		uint64_t head;

		if (!lp_dirty[i])
			continue;
		lp_dirty[i] = false;
		pthread_mutex_lock(&r->mtx);
		head = r->head;
		for (lp_worker *w = r->workers; w != NULL; w = w->next) {
			pthread_mutex_lock(&w->mtx);
			w->avail = head;
			if (w->slot != NULL)
				pthread_cond_signal(&w->cv);
			pthread_mutex_unlock(&w->mtx);
		}
		parked = r->parked;
		r->parked = NULL;
		pthread_mutex_unlock(&r->mtx);
		while (parked != NULL) {
			lp_slot *p = parked;

			parked = p->parked_next;
			lp_answer(r, p, p->cursor, head);
		}
	}
}

/* A client's worker: answers its polls one at a time. */
static void *
lp_worker_main(void *arg)
{
	lp_worker *w = arg;

	for (;;) {
		lp_slot *s;
		const uint8_t *b;
		uint64_t cursor;
		int64_t until;
		lp_room *r = &lp_rooms[w->room];

		pthread_mutex_lock(&w->mtx);
		while (w->slot == NULL)
			pthread_cond_wait(&w->cv, &w->mtx);
		s = w->slot;
		b = nng_msg_body(nng_aio_get_msg(s->aio));
		cursor = get64(b + 6);
		until = rpc_now_ms() + get32(b + 14);
		while (w->avail <= cursor && rpc_now_ms() < until)
			rpc_cond_wait_until(&w->cv, &w->mtx, until);
		w->slot = NULL;
		pthread_mutex_unlock(&w->mtx);

		lp_answer(r, s, cursor, lp_head(r));
	}
	return NULL;
}

/* The client's worker, started on its first poll in room; NULL if none. */
static lp_worker *
lp_worker_get(uint32_t client, int room)
{
	lp_worker *w;
	pthread_attr_t attr;
	pthread_t th;

	if (client >= LP_CLIENTS)
		return NULL;
	pthread_mutex_lock(&lp_workers_mtx);
	if ((w = lp_workers[client]) == NULL && (w = calloc(1, sizeof(*w))) != NULL) {
		pthread_mutex_init(&w->mtx, NULL);
		rpc_cond_init(&w->cv);
		w->room = room;
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 64 * 1024);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &attr, lp_worker_main, w) != 0) {
			free(w);
			w = NULL;
		} else {
			lp_room *r = &lp_rooms[room];

			pthread_mutex_lock(&r->mtx);
			w->avail = r->head;
			w->next = r->workers;
			r->workers = w;
			pthread_mutex_unlock(&r->mtx);
			lp_workers[client] = w;
		}
		pthread_attr_destroy(&attr);
	}
	pthread_mutex_unlock(&lp_workers_mtx);
	return w;
}

static void
lp_cb(void *arg)
{
	lp_slot *s = arg;
	nng_msg *msg;
	const uint8_t *b;
	lp_worker *w;
	int rv = nng_aio_result(s->aio);

	if (rv != 0 && s->sending)
		nng_msg_free(nng_aio_get_msg(s->aio));
	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
		return;
	if (rv != 0 || s->sending) {
		s->sending = false;
		nng_ctx_recv(s->ctx, s->aio);
		return;
	}
	msg = nng_aio_get_msg(s->aio);
	b = nng_msg_body(msg);
	if (nng_msg_len(msg) == LP_SEND_LEN && b[0] == 'S') {
		s->commit.records = 1;
		s->commit.done = lp_committed;
		lgc_submit(&s->commit);
		return;
	}
	if (nng_msg_len(msg) == LP_POLL_LEN && b[0] == 'P' && !lp_threads) {
		lp_room *r = &lp_rooms[b[1] % FO_MAX_ROOMS];
		uint64_t head;

		s->cursor = get64(b + 6);
		s->deadline_ns = bench_now_ns() + get32(b + 14) * 1000000ull;

		pthread_mutex_lock(&r->mtx);
		if ((head = r->head) <= s->cursor) {
			s->parked_next = r->parked;
			r->parked = s;
		}
		pthread_mutex_unlock(&r->mtx);
		if (head > s->cursor)
			lp_answer(r, s, s->cursor, head);
		return;
	}
	if (nng_msg_len(msg) == LP_POLL_LEN && b[0] == 'P' &&
	    (w = lp_worker_get(get32(b + 2), b[1] % FO_MAX_ROOMS)) != NULL) {
		pthread_mutex_lock(&w->mtx);
		if (w->slot == NULL) {
			w->slot = s;
			pthread_cond_signal(&w->cv);
			pthread_mutex_unlock(&w->mtx);
			return;
		}
		pthread_mutex_unlock(&w->mtx);	/* a second poll at once: refused */
	}
	nng_msg_free(msg);
	nng_ctx_recv(s->ctx, s->aio);	/* no reply: the client times out */
}

/* callbacks: answers parked polls past their deadline, empty. */
static void *
lp_sweeper(void *arg)
{
	(void)arg;
	for (;;) {
		uint64_t now;

		bench_sleep_ns(50000000);
		now = bench_now_ns();
		for (int i = 0; i < FO_MAX_ROOMS; i++) {
			lp_room *r = &lp_rooms[i];
			lp_slot *due = NULL;
			uint64_t head;

			pthread_mutex_lock(&r->mtx);
			head = r->head;
			for (lp_slot **pp = &r->parked; *pp != NULL;) {
				lp_slot *p = *pp;

				if (p->deadline_ns > now) {
					pp = &p->parked_next;
					continue;
				}
				*pp = p->parked_next;
				p->parked_next = due;
				due = p;
			}
			pthread_mutex_unlock(&r->mtx);
			while (due != NULL) {
				lp_slot *p = due;

				due = p->parked_next;
				lp_answer(r, p, p->cursor, head);
			}
		}
	}
	return NULL;
}

int
lpoll_child_main(const char *url, const char *dir, const char *mode)
{
	static lp_slot slots[LP_SLOTS];
	pthread_t sweeper;
	nng_socket sock;
	sigset_t sigs;
	int sig, rv;

	bench_child_signals(&sigs);
	if ((rv = lgc_start(dir, strstr(mode, "log") != NULL, lp_batch_done)) != 0) {
		fprintf(stderr, "long-poll server: lmdb in %s: error %d\n", dir, rv);
		return 1;
	}
	for (int r = 0; r < FO_MAX_ROOMS; r++) {
		pthread_mutex_init(&lp_rooms[r].mtx, NULL);
		if ((lp_rooms[r].ring = calloc(LP_RING, FO_TEXT_LEN)) == NULL)
			return 1;
	}
	lp_threads = strstr(mode, "threads") != NULL;
	if (!lp_threads && pthread_create(&sweeper, NULL, lp_sweeper, NULL) != 0)
		return 1;
	if ((rv = nng_rep0_open(&sock)) != 0 || (rv = nng_listen(sock, url, NULL, 0)) != 0) {
		fprintf(stderr, "long-poll server: %s: %s\n", url, nng_strerror(rv));
		return 1;
	}
	for (int i = 0; i < LP_SLOTS; i++) {
		if (nng_ctx_open(&slots[i].ctx, sock) != 0 ||
		    nng_aio_alloc(&slots[i].aio, lp_cb, &slots[i]) != 0)
			return 1;
		nng_ctx_recv(slots[i].ctx, slots[i].aio);
	}
	while (sigwait(&sigs, &sig) != 0)
		;
	_exit(0);	/* workers may hold polls: nothing to tidy in a child */
}

/* ---- the clients -------------------------------------------------------------- */

typedef struct lp_client {
	struct lpoll *p;
	nng_socket sock;
	fo_recv *recv;
	uint32_t id;
	pthread_t th;
	bool started;
} lp_client;

typedef struct lpoll {
	pid_t pid;
	char url[PD_ADDR];
	char tmp[300];		/* the server's LMDB environment */
	int n, rooms;
	lp_client *clients;
	nng_socket senders[LP_SENDERS];
	int nsenders;
	atomic_bool stop;
	atomic_int errors;
	pthread_mutex_t mtx;		/* last */
	uint64_t last[FO_MAX_ROOMS];	/* the highest seq acked per room */
} lpoll;

static int
lp_dial(nng_socket *sock, const char *url)
{
	int rv;

	if ((rv = nng_req0_open(sock)) != 0)
		return rv;
	nng_socket_set_ms(*sock, NNG_OPT_RECVTIMEO, LP_WAIT_MS + 10000);
	nng_socket_set_ms(*sock, NNG_OPT_SENDTIMEO, 10000);
	/* In the background: the server may still be starting. */
	if ((rv = nng_dial(*sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		nng_close(*sock);
		*sock = (nng_socket)NNG_SOCKET_INITIALIZER;
	}
	return rv;
}

static void *
lp_client_main(void *arg)
{
	lp_client *c = arg;
	uint64_t cursor = 0;

	while (!atomic_load(&c->p->stop)) {
		uint8_t req[LP_POLL_LEN], *reply = NULL;
		size_t len = 0;
		uint32_t n;

		req[0] = 'P';
		req[1] = (uint8_t)c->recv->room;
		put32(req + 2, c->id);
		put64(req + 6, cursor);
		put32(req + 14, LP_WAIT_MS);
		if (nng_send(c->sock, req, sizeof(req), 0) != 0 ||
		    nng_recv(c->sock, &reply, &len, NNG_FLAG_ALLOC) != 0) {
			atomic_fetch_add(&c->p->errors, 1);
			break;
		}
		n = len >= 4 ? get32(reply) : 0;
		if (len != 4 + (size_t)n * (8 + FO_TEXT_LEN)) {
			atomic_fetch_add(&c->p->errors, 1);
			nng_free(reply, len);
			break;
		}
		for (uint32_t i = 0; i < n; i++) {
			const uint8_t *m = reply + 4 + (size_t)i * (8 + FO_TEXT_LEN);
			uint64_t a, sent;

			cursor = get64(m);
			if (fo_parse((const char *)m + 8, FO_TEXT_LEN, &a, &sent))
				fo_observe(c->recv, cursor, sent);
		}
		nng_free(reply, len);
	}
	return NULL;
}

/* One message to room carrying sent_ns (0: set-up traffic). */
static bool
lp_publish(lpoll *p, int thread, int room, uint64_t sent_ns, char *err, size_t errlen)
{
	uint8_t req[LP_SEND_LEN], *reply = NULL;
	char text[FO_TEXT_LEN + 1];
	size_t len = 0;
	int rv;

	req[0] = 'S';
	req[1] = (uint8_t)room;
	fo_payload(text, 0, sent_ns);
	memcpy(req + 2, text, FO_TEXT_LEN);
	if ((rv = nng_send(p->senders[thread % p->nsenders], req, sizeof(req), 0)) != 0 ||
	    (rv = nng_recv(p->senders[thread % p->nsenders], &reply, &len, NNG_FLAG_ALLOC)) !=
		    0) {
		snprintf(err, errlen, "long-poll floor send: %s", nng_strerror(rv));
		return false;
	}
	if (len == 8) {
		uint64_t seq = get64(reply);

		pthread_mutex_lock(&p->mtx);
		if (seq > p->last[room])
			p->last[room] = seq;
		pthread_mutex_unlock(&p->mtx);
	}
	nng_free(reply, len);
	if (len != 8)
		snprintf(err, errlen, "long-poll floor send: a %zu-byte reply", len);
	return len == 8;
}

bool
lpoll_send(void *sys, int thread, int room, char *err, size_t errlen)
{
	return lp_publish(sys, thread, room, bench_now_ns(), err, errlen);
}

void
lpoll_last(void *sys, uint64_t *last)
{
	lpoll *p = sys;

	pthread_mutex_lock(&p->mtx);
	memcpy(last, p->last, sizeof(p->last));
	pthread_mutex_unlock(&p->mtx);
}

pid_t
lpoll_pid(void *sys)
{
	return sys != NULL ? ((lpoll *)sys)->pid : 0;
}

int
lpoll_errors(void *sys)
{
	return sys != NULL ? atomic_load(&((lpoll *)sys)->errors) : 0;
}

void
lpoll_teardown(void *sys)
{
	lpoll *p = sys;

	if (p == NULL)
		return;
	atomic_store(&p->stop, true);
	/* A message to every room answers every poll; else they end at the
	 * poll's deadline, or the socket's receive timeout if the server died. */
	for (int r = 0; r < p->rooms && p->nsenders > 0; r++) {
		char err[100];

		lp_publish(p, 0, r, 0, err, sizeof(err));
	}
	for (int i = 0; i < p->n; i++)
		if (p->clients[i].started)
			pthread_join(p->clients[i].th, NULL);
	for (int i = 0; i < p->n; i++)
		if (p->clients[i].sock.id != 0)
			nng_close(p->clients[i].sock);
	for (int i = 0; i < p->nsenders; i++)
		nng_close(p->senders[i]);
	if (p->pid > 0)
		bench_child_stop(p->pid, 10000, NULL);
	if (p->tmp[0] != '\0')
		bench_rmtree(p->tmp);
	pthread_mutex_destroy(&p->mtx);
	free(p->clients);
	free(p);
}

void *
lpoll_setup(const bench_opts *o, const fo_case *c, fo_recv *rs, bool threads, bool log,
	    char *err, size_t errlen)
{
	lpoll *p = calloc(1, sizeof(*p));
	const char *argv[] = {o->self, "__lpoll-server", NULL, NULL, NULL, NULL};
	uint64_t last[FO_MAX_ROOMS];
	pthread_attr_t attr;
	int rv = 0;

	if (p == NULL || c->rooms * c->members > LP_CLIENTS ||
	    (p->clients = calloc((size_t)(c->rooms * c->members), sizeof(*p->clients))) == NULL) {
		snprintf(err, errlen, "more than %d receivers, or out of memory", LP_CLIENTS);
		free(p);
		return NULL;
	}
	pthread_mutex_init(&p->mtx, NULL);
	bench_addr(p->url, sizeof(p->url));
	argv[2] = p->url;
	argv[3] = p->tmp;
	argv[4] = threads ? (log ? "threads-log" : "threads-lmdb")
			  : (log ? "callbacks-log" : "callbacks-lmdb");
	if (!bench_tmpdir(o, "lpoll-data", p->tmp, sizeof(p->tmp))) {
		snprintf(err, errlen, "mkdtemp failed");
		p->tmp[0] = '\0';
		goto fail;
	}
	if ((p->pid = bench_spawn(argv, NULL)) < 0) {
		snprintf(err, errlen, "cannot start the long-poll server");
		p->pid = 0;
		goto fail;
	}
	for (int i = 0; i < LP_SENDERS; i++) {
		if ((rv = lp_dial(&p->senders[i], p->url)) != 0)
			goto fail_nng;
		p->nsenders = i + 1;
	}
	p->n = c->rooms * c->members;
	p->rooms = c->rooms;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);	/* up to 3 x 1,000 of them */
	for (int i = 0; i < p->n; i++) {
		lp_client *cl = &p->clients[i];

		cl->p = p;
		cl->recv = &rs[i];
		cl->id = (uint32_t)i;
		if ((rv = lp_dial(&cl->sock, p->url)) != 0)
			break;
		if (pthread_create(&cl->th, &attr, lp_client_main, cl) != 0) {
			rv = NNG_ENOMEM;
			break;
		}
		cl->started = true;
	}
	pthread_attr_destroy(&attr);
	if (rv != 0)
		goto fail_nng;
	/* Every receiver has polled once it has heard a message sent after. */
	for (int r = 0; r < c->rooms; r++)
		if (!lp_publish(p, 0, r, 0, err, errlen))
			goto fail;
	lpoll_last(p, last);
	if (!fo_wait_caught_up(rs, p->n, last, 60000000000ull)) {
		snprintf(err, errlen, "long-poll receivers did not hear the set-up messages in 60 s");
		goto fail;
	}
	return p;

fail_nng:
	snprintf(err, errlen, "long-poll floor on %s: %s", p->url, nng_strerror(rv));
fail:
	lpoll_teardown(p);
	return NULL;
}

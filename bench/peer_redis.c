/*
 * peer_redis.c — Redis Streams as Parley's durable peer (see peers.h):
 * XADD with the AOF fsynced before every reply is Parley's Send, XREAD
 * BLOCK from a cursor is its Poll.
 *
 * Redis stream ids are timestamps, not a gap-free sequence, and concurrent
 * senders' XADDs interleave in any order: every sender tags its messages
 * with its own gap-free count and receivers check them with
 * fo_observe_tagged (exactly once, in order per sender, nothing missing).
 */
#define _GNU_SOURCE
#include "peers.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#define XREAD_BLOCK_MS 2000
#define XREAD_COUNT 1000
#define SETUP_TAG (FO_TAGS - 1)

static const char *const redis_paths[] = {"/usr/bin/redis-server", "/usr/sbin/redis-server",
					  "/usr/local/bin/redis-server", NULL};

bool
redis_available(char *why, size_t len)
{
	if (peer_find(redis_paths) != NULL)
		return true;
	snprintf(why, len, "no redis-server (install the Debian package redis-server)");
	return false;
}

bool
redis_start(peer_server *s, const bench_opts *o, char *err, size_t errlen)
{
	char port[16];
	const char *argv[40];
	int n = 0;

	memset(s, 0, sizeof(*s));
	s->name = "redis-server";
	if (!redis_available(err, errlen))
		return false;
	if (!bench_tmpdir(o, "redis", s->tmp, sizeof(s->tmp))) {
		snprintf(err, errlen, "mkdtemp failed");
		return false;
	}
	snprintf(s->log, sizeof(s->log), "%s/redis.log", s->tmp);
	s->port = bench_free_port();
	snprintf(port, sizeof(port), "%d", s->port);
	argv[n++] = peer_find(redis_paths);
	argv[n++] = "--port";
	argv[n++] = port;
	argv[n++] = "--bind";
	argv[n++] = "127.0.0.1";
	argv[n++] = "--dir";
	argv[n++] = s->tmp;
	argv[n++] = "--appendonly";
	argv[n++] = "yes";
	argv[n++] = "--appendfsync";
	argv[n++] = "always";
	argv[n++] = "--save";
	argv[n++] = "";
	argv[n++] = "--auto-aof-rewrite-percentage";
	argv[n++] = "0";
	argv[n++] = "--protected-mode";
	argv[n++] = "no";
	argv[n++] = "--daemonize";
	argv[n++] = "no";
	argv[n++] = "--maxclients";
	argv[n++] = "10000";
	argv[n] = NULL;
	return peer_spawn(s, argv, err, errlen);
}

static redisContext *
rconnect(const peer_server *s, char *err, size_t errlen)
{
	struct timeval tv = {.tv_sec = 30};
	redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);

	if (c == NULL || c->err) {
		snprintf(err, errlen, "cannot connect to redis: %s", c ? c->errstr : "out of memory");
		if (c != NULL)
			redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	return c;
}

/* XADD key * m payload; the entry's reply checked. */
static bool
xadd(redisContext *c, const char *key, const char *payload, size_t len, char *err,
     size_t errlen)
{
	redisReply *r = redisCommand(c, "XADD %s * m %b", key, payload, len);
	bool ok = r != NULL && r->type == REDIS_REPLY_STRING;

	if (!ok)
		snprintf(err, errlen, "XADD %s: %s", key,
			 r == NULL ? c->errstr : r->type == REDIS_REPLY_ERROR ? r->str : "odd reply");
	if (r != NULL)
		freeReplyObject(r);
	return ok;
}

/* depth XADDs in one round trip, to streams first, first + 1, ... of nkeys. */
static bool
xadd_pipelined(redisContext *c, int first, int nkeys, int depth, const char *payload,
	       size_t len, char *err, size_t errlen)
{
	bool ok = true;

	for (int k = 0; k < depth; k++)
		redisAppendCommand(c, "XADD send-r%d * m %b", (first + k) % nkeys, payload, len);
	for (int k = 0; k < depth; k++) {
		redisReply *r = NULL;

		if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL) {
			snprintf(err, errlen, "XADD pipelined: %s", c->errstr);
			return false;
		}
		if (ok && r->type != REDIS_REPLY_STRING) {
			snprintf(err, errlen, "XADD pipelined: %s",
				 r->type == REDIS_REPLY_ERROR ? r->str : "odd reply");
			ok = false;
		}
		freeReplyObject(r);
	}
	return ok;
}

/* ---- closed-loop XADD -------------------------------------------------------------- */

typedef struct xload {
	const peer_server *s;
	int index, nkeys, depth;
	size_t text_len;
	uint64_t dur_ns;
	samples lat;
	double rate;
	int errors;
	char err[200];
} xload;

static void *
xload_main(void *arg)
{
	xload *t = arg;
	redisContext *c = rconnect(t->s, t->err, sizeof(t->err));
	char key[32], text[256];
	uint64_t start, end, i = 0;

	if (c == NULL) {
		t->errors++;
		return NULL;
	}
	snprintf(key, sizeof(key), "send-r%d", t->index % t->nkeys);
	memset(text, 'x', sizeof(text));
	if (!xadd(c, key, text, t->text_len, t->err, sizeof(t->err))) {
		t->errors++;
		goto out;
	}
	start = bench_now_ns();
	end = start + t->dur_ns;
	do {
		uint64_t t0 = bench_now_ns();
		char err[200];

		if (t->depth > 1 ? !xadd_pipelined(c, t->index, t->nkeys, t->depth, text,
						   t->text_len, err, sizeof(err))
				 : !xadd(c, key, text, t->text_len, err, sizeof(err))) {
			if (t->errors++ == 0)
				snprintf(t->err, sizeof(t->err), "%s", err);
			if (t->errors > 100 || c->err)
				break;
			continue;
		}
		samples_add(&t->lat, bench_now_ns() - t0);
	} while (bench_now_ns() < end && ++i < 10000000);
	t->rate = (double)t->lat.count * (double)t->depth * 1e9 / (double)(bench_now_ns() - start);
out:
	redisFree(c);
	return NULL;
}

double
redis_xadd_load(const peer_server *s, int senders, int nkeys, int depth, size_t text_len,
		uint64_t dur_ns, samples *lat, int *errors, char *err, size_t errlen)
{
	xload *t = calloc((size_t)senders, sizeof(*t));
	double rate = 0;

	if (t == NULL || text_len > 256) {
		free(t);
		(*errors)++;
		snprintf(err, errlen, "out of memory or text too long");
		return 0;
	}
	for (int i = 0; i < senders; i++) {
		t[i] = (xload){.s = s, .index = i, .nkeys = nkeys, .depth = depth < 1 ? 1 : depth,
			       .text_len = text_len, .dur_ns = dur_ns};
		samples_init(&t[i].lat, lat->cap / (size_t)senders + 1);
	}
	if (!bench_run_threads(senders, xload_main, t, sizeof(*t)))
		(*errors)++;
	for (int i = 0; i < senders; i++) {
		samples_merge(lat, &t[i].lat);
		rate += t[i].rate;
		if (t[i].errors && *errors == 0)
			snprintf(err, errlen, "%s", t[i].err);
		*errors += t[i].errors;
		samples_free(&t[i].lat);
	}
	free(t);
	return rate;
}

/* ---- the fan-out system ------------------------------------------------------------ */

typedef struct rrecv {
	struct rsys *sys;
	fo_recv *r;
	redisContext *c;
	char key[32];
	char cursor[64];
	int errors;
	char first[200];
} rrecv;

typedef struct rsys {
	int nrecv;
	rrecv *rr;
	pthread_t *threads;
	int nthreads;
	atomic_bool stop;
	redisContext *senders[FO_SENDERS];
	char keys[FO_MAX_ROOMS][32];
	uint64_t count[FO_TAGS][FO_MAX_ROOMS];	/* [tag][room]: only that sender writes */
	pthread_mutex_t mtx;
	uint64_t last[FO_MAX_ROOMS];		/* [mtx] XADDs acked per room */
} rsys;

static void
recv_error(rrecv *p, const char *what)
{
	if (p->errors++ == 0)
		snprintf(p->first, sizeof(p->first), "%s", what);
}

/* One XREAD reply: [[key, [[id, [field, value, ...]], ...]]]. */
static void
take_entries(rrecv *p, const redisReply *rep)
{
	const redisReply *entries;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 1 ||
	    rep->element[0]->type != REDIS_REPLY_ARRAY || rep->element[0]->elements != 2 ||
	    (entries = rep->element[0]->element[1])->type != REDIS_REPLY_ARRAY) {
		recv_error(p, "XREAD: unexpected reply shape");
		return;
	}
	for (size_t i = 0; i < entries->elements; i++) {
		const redisReply *e = entries->element[i], *f;
		uint64_t tagk, sent;

		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING ||
		    (f = e->element[1])->type != REDIS_REPLY_ARRAY || f->elements != 2 ||
		    f->element[1]->type != REDIS_REPLY_STRING ||
		    e->element[0]->len >= sizeof(p->cursor)) {
			recv_error(p, "XREAD: unexpected entry shape");
			return;
		}
		memcpy(p->cursor, e->element[0]->str, e->element[0]->len);
		p->cursor[e->element[0]->len] = '\0';
		if (!fo_parse(f->element[1]->str, f->element[1]->len, &tagk, &sent)) {
			recv_error(p, "XREAD: a payload not ours");
			continue;
		}
		fo_observe_tagged(p->r, (unsigned)(tagk >> 40), tagk & ((1ull << 40) - 1), sent);
	}
}

static void *
rrecv_main(void *arg)
{
	rrecv *p = arg;

	while (!p->sys->stop) {
		redisReply *rep = redisCommand(p->c, "XREAD COUNT %d BLOCK %d STREAMS %s %s",
					       XREAD_COUNT, XREAD_BLOCK_MS, p->key, p->cursor);

		if (rep == NULL) {
			if (!p->sys->stop)
				recv_error(p, p->c->errstr);
			break;		/* the connection is unusable */
		}
		if (rep->type == REDIS_REPLY_ERROR)
			recv_error(p, rep->str);
		else if (rep->type != REDIS_REPLY_NIL)
			take_entries(p, rep);
		freeReplyObject(rep);
	}
	return NULL;
}

static bool
send_tagged(rsys *q, int tag, int conn, int room, uint64_t sent, char *err, size_t errlen)
{
	char payload[FO_TEXT_LEN + 1];

	fo_payload(payload, (uint64_t)tag << 40 | q->count[tag][room], sent);
	if (!xadd(q->senders[conn], q->keys[room], payload, FO_TEXT_LEN, err, errlen))
		return false;
	q->count[tag][room]++;
	pthread_mutex_lock(&q->mtx);
	q->last[room]++;
	pthread_mutex_unlock(&q->mtx);
	return true;
}

bool
rfo_send(void *sys, int thread, int room, char *err, size_t errlen)
{
	if (thread >= FO_SENDERS || thread >= SETUP_TAG) {
		snprintf(err, errlen, "redis peer: driver thread %d has no connection", thread);
		return false;
	}
	return send_tagged(sys, thread, thread, room, bench_now_ns(), err, errlen);
}

void
rfo_last(void *sys, uint64_t *last)
{
	rsys *q = sys;

	pthread_mutex_lock(&q->mtx);
	memcpy(last, q->last, sizeof(q->last));
	pthread_mutex_unlock(&q->mtx);
}

int
rfo_errors(void *sys, char *first, size_t len)
{
	rsys *q = sys;
	int n = 0;

	for (int i = 0; i < q->nrecv; i++) {
		if (q->rr[i].errors && n == 0)
			snprintf(first, len, "%s", q->rr[i].first);
		n += q->rr[i].errors;
	}
	return n;
}

void
rfo_teardown(void *sys)
{
	rsys *q = sys;

	if (q == NULL)
		return;
	/* A receiver blocked in XREAD wakes when its socket is shut down. */
	q->stop = true;
	for (int i = 0; i < q->nthreads; i++)
		shutdown(q->rr[i].c->fd, SHUT_RDWR);
	for (int i = 0; i < q->nthreads; i++)
		pthread_join(q->threads[i], NULL);
	for (int i = 0; i < q->nrecv; i++)
		if (q->rr[i].c != NULL)
			redisFree(q->rr[i].c);
	for (int i = 0; i < FO_SENDERS; i++)
		if (q->senders[i] != NULL)
			redisFree(q->senders[i]);
	pthread_mutex_destroy(&q->mtx);
	free(q->threads);
	free(q->rr);
	free(q);
}

void *
rfo_setup(const peer_server *s, int case_index, const fo_case *c, fo_recv *rs, char *err,
	  size_t errlen)
{
	rsys *q = calloc(1, sizeof(*q));
	int n = c->rooms * c->members;
	uint64_t last[FO_MAX_ROOMS];
	pthread_attr_t attr;

	if (q == NULL || (q->rr = calloc((size_t)n, sizeof(*q->rr))) == NULL ||
	    (q->threads = calloc((size_t)n, sizeof(*q->threads))) == NULL) {
		if (q != NULL)
			free(q->rr);
		free(q);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&q->mtx, NULL);
	for (int r = 0; r < c->rooms; r++)
		snprintf(q->keys[r], sizeof(q->keys[r]), "fo%d-r%d", case_index, r);
	for (int i = 0; i < FO_SENDERS; i++)
		if ((q->senders[i] = rconnect(s, err, errlen)) == NULL)
			goto fail;
	/* Every receiver reads its room's stream from the start. */
	for (int i = 0; i < n; i++) {
		rrecv *p = &q->rr[i];

		q->nrecv = i + 1;
		p->sys = q;
		p->r = &rs[i];
		snprintf(p->key, sizeof(p->key), "%s", q->keys[rs[i].room]);
		snprintf(p->cursor, sizeof(p->cursor), "0-0");
		if ((p->c = rconnect(s, err, errlen)) == NULL)
			goto fail;
	}
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (int i = 0; i < n; i++) {
		if (pthread_create(&q->threads[i], &attr, rrecv_main, &q->rr[i]) != 0) {
			pthread_attr_destroy(&attr);
			snprintf(err, errlen, "cannot start receiver thread %d", i);
			goto fail;
		}
		q->nthreads = i + 1;
	}
	pthread_attr_destroy(&attr);
	for (int r = 0; r < c->rooms; r++)
		if (!send_tagged(q, SETUP_TAG, 0, r, 0, err, errlen))
			goto fail;
	rfo_last(q, last);
	if (!fo_wait_caught_up(rs, n, last, 60000000000ull)) {
		snprintf(err, errlen, "redis receivers did not all catch up after set-up");
		goto fail;
	}
	return q;

fail:
	rfo_teardown(q);
	return NULL;
}

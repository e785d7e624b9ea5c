/*
 * base_pubsub.c — the fan-out floor: one raw nng PUB socket in this
 * process, one SUB socket (own tcp connection over 127.0.0.1) per receiver,
 * no persistence and no broker. Subscribers are driven by aio callbacks on
 * nng's threads. nng's PUB drops for a subscriber whose queue is full; such
 * losses are counted, not hidden.
 */
#include "fanout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>

typedef struct nng_sub {
	nng_socket sock;
	nng_aio *aio;
	fo_recv *recv;
} nng_sub;

typedef struct nngps {
	nng_socket pub;
	char url[PD_ADDR];
	int nsubs;
	nng_sub *subs;
	pthread_mutex_t room_mtx[FO_MAX_ROOMS];
	uint64_t seq[FO_MAX_ROOMS];
} nngps;

static void
sub_cb(void *arg)
{
	nng_sub *s = arg;
	nng_msg *msg;
	uint64_t seq, sent;
	const char *body, *space;
	size_t len;

	/* A SUB receive fails only when it is stopped or its socket closed:
	 * never re-arm then, or stopping would chase the callback. */
	if (nng_aio_result(s->aio) != 0)
		return;
	msg = nng_aio_get_msg(s->aio);
	body = nng_msg_body(msg);
	len = nng_msg_len(msg);
	/* "r<room> <seq> <sent> xxx": skip the topic. */
	space = memchr(body, ' ', len);
	if (space != NULL && fo_parse(space + 1, len - (size_t)(space + 1 - body), &seq, &sent))
		fo_observe(s->recv, seq, sent);
	nng_msg_free(msg);
	nng_recv_aio(s->sock, s->aio);
}

bool
nngps_send(void *sys, int thread, int room, char *err, size_t errlen)
{
	nngps *p = sys;
	char buf[16 + FO_TEXT_LEN + 1];
	int n, rv;

	pthread_mutex_lock(&p->room_mtx[room]);
	n = snprintf(buf, 16, "r%d ", room);
	fo_payload(buf + n, ++p->seq[room], bench_now_ns());
	rv = nng_send(p->pub, buf, (size_t)n + FO_TEXT_LEN, 0);
	pthread_mutex_unlock(&p->room_mtx[room]);
	if (rv != 0)
		snprintf(err, errlen, "nng pub send: %s", nng_strerror(rv));
	return rv == 0;
}

/* Set-up traffic: a message that carries no send time. */
static void
warm(nngps *p, int room)
{
	char buf[16 + FO_TEXT_LEN + 1];
	int n;

	pthread_mutex_lock(&p->room_mtx[room]);
	n = snprintf(buf, 16, "r%d ", room);
	fo_payload(buf + n, ++p->seq[room], 0);
	nng_send(p->pub, buf, (size_t)n + FO_TEXT_LEN, 0);
	pthread_mutex_unlock(&p->room_mtx[room]);
}

void
nngps_last(void *sys, uint64_t *last)
{
	nngps *p = sys;

	for (int r = 0; r < FO_MAX_ROOMS; r++) {
		pthread_mutex_lock(&p->room_mtx[r]);
		last[r] = p->seq[r];
		pthread_mutex_unlock(&p->room_mtx[r]);
	}
}

void
nngps_teardown(void *sys)
{
	nngps *p = sys;

	if (p == NULL)
		return;
	for (int i = 0; i < p->nsubs; i++) {
		if (p->subs[i].aio != NULL)
			nng_aio_stop(p->subs[i].aio);
		nng_close(p->subs[i].sock);
		if (p->subs[i].aio != NULL)
			nng_aio_free(p->subs[i].aio);
	}
	nng_close(p->pub);
	for (int r = 0; r < FO_MAX_ROOMS; r++)
		pthread_mutex_destroy(&p->room_mtx[r]);
	free(p->subs);
	free(p);
}

void *
nngps_setup(const fo_case *c, fo_recv *rs, char *err, size_t errlen)
{
	nngps *p = calloc(1, sizeof(*p));
	int n = c->rooms * c->members, rv;
	uint64_t until;
	bool all;

	if (p == NULL || (p->subs = calloc((size_t)n, sizeof(*p->subs))) == NULL) {
		free(p);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (int r = 0; r < FO_MAX_ROOMS; r++)
		pthread_mutex_init(&p->room_mtx[r], NULL);
	bench_addr(p->url, sizeof(p->url));
	if ((rv = nng_pub0_open(&p->pub)) != 0 ||
	    (rv = nng_socket_set_int(p->pub, NNG_OPT_SENDBUF, 8192)) != 0 ||
	    (rv = nng_listen(p->pub, p->url, NULL, 0)) != 0)
		goto fail;
	for (int i = 0; i < n; i++) {
		nng_sub *s = &p->subs[i];
		char topic[16];

		s->recv = &rs[i];
		snprintf(topic, sizeof(topic), "r%d ", rs[i].room);
		if ((rv = nng_sub0_open(&s->sock)) != 0)
			goto fail;
		p->nsubs = i + 1;
		if ((rv = nng_socket_set(s->sock, NNG_OPT_SUB_SUBSCRIBE, topic, strlen(topic))) != 0 ||
		    (rv = nng_socket_set_int(s->sock, NNG_OPT_RECVBUF, 8192)) != 0 ||
		    (rv = nng_aio_alloc(&s->aio, sub_cb, s)) != 0 ||
		    (rv = nng_dial(s->sock, p->url, NULL, 0)) != 0)
			goto fail;
		nng_recv_aio(s->sock, s->aio);
	}
	/* Subscribers connect asynchronously on the PUB side, and PUB may drop:
	 * publish set-up rounds until every receiver has heard the latest one,
	 * then start everyone's sequence from there. */
	until = bench_now_ns() + 60000000000ull;
	do {
		uint64_t last[FO_MAX_ROOMS];

		for (int r = 0; r < c->rooms; r++)
			warm(p, r);
		nngps_last(p, last);
		all = fo_wait_caught_up(rs, n, last, 3000000000ull);
		if (all)
			fo_resync(rs, n, last);
	} while (!all && bench_now_ns() < until);
	if (!all) {
		snprintf(err, errlen, "nng subscribers did not all hear set-up messages in 60 s");
		nngps_teardown(p);
		return NULL;
	}
	return p;

fail:
	snprintf(err, errlen, "nng pub/sub on %s: %s", p->url, nng_strerror(rv));
	nngps_teardown(p);
	return NULL;
}

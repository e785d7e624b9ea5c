/*
 * fanout_parley.c — Parley as a fan-out system (see fanout.h): rooms made
 * for the case, one session per receiver long-polled by its own thread over
 * its own connection (or one Subscribe stream over HTTP per receiver),
 * durable Sends from FO_SENDERS connections.
 */
#include "fanout.h"
#include "peers.h"

#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLL_WAIT_MS 2000	/* long polls: idle receivers cost the server little */

typedef struct precv {
	struct pfo *sys;
	fo_recv *r;
	rpc_client *c;
	const char *token;
	char sid[PA_SESSION];
	int fd;			/* the Subscribe stream's socket, or -1 */
	const char *room;
	int errors;
	rpc_status first;
} precv;

typedef struct pfo {
	const pd_daemon *d;
	const fo_users *u;
	int nrooms;
	char rooms[FO_MAX_ROOMS][32];
	int nrecv;
	precv *pr;
	pthread_t *threads;
	int nthreads;
	atomic_bool stop;
	rpc_client *senders[FO_SENDERS];
	pthread_mutex_t mtx;
	uint64_t last[FO_MAX_ROOMS];
	uint64_t cmid;
	int case_index;
	int http_port;		/* receivers Subscribe over HTTP when > 0 */
} pfo;

static void
on_event(void *arg, const char *room, uint64_t seq, bool chat, const char *text)
{
	precv *p = arg;
	uint64_t zero, sent = 0;

	if (seq == 0 || strcmp(room, p->room) != 0)
		return;		/* presence is ephemeral; other rooms are not ours */
	if (chat && !fo_parse(text, strlen(text), &zero, &sent))
		sent = 0;
	fo_observe(p->r, seq, sent);
}

/* One Subscribe stream for the receiver's whole life: it ends only when
 * the bench shuts its socket down. */
static void
stream_main(precv *p)
{
	char err[200];

	if (!hs_run(p->fd, on_event, p, err, sizeof(err)) || !p->sys->stop) {
		if (p->sys->stop)
			return;
		p->errors++;
		p->first.code = RPC_UNAVAILABLE;
		snprintf(p->first.message, sizeof(p->first.message), "%s",
			 err[0] ? err : "Subscribe stream ended");
	}
}

static void *
recv_main(void *arg)
{
	precv *p = arg;

	if (p->fd >= 0) {
		stream_main(p);
		return NULL;
	}
	while (!p->sys->stop) {
		rpc_status st = {0};

		if (pa_poll(p->c, p->token, p->sid, POLL_WAIT_MS, on_event, p, NULL, &st) == RPC_OK)
			continue;
		if (p->sys->stop)
			break;		/* its session was closed under it */
		if (p->errors++ == 0)
			p->first = st;
		if (p->errors > 50)
			break;
		bench_sleep_ns(10000000);
	}
	return NULL;
}

static bool
send_text(pfo *s, int thread, int room, uint64_t sent, char *err, size_t errlen)
{
	char text[FO_TEXT_LEN + 1], cmid[64];
	rpc_status st = {0};
	uint64_t seq = 0;

	fo_payload(text, 0, sent);
	snprintf(cmid, sizeof(cmid), "fo%d-%llu", s->case_index,
		 (unsigned long long)__atomic_add_fetch(&s->cmid, 1, __ATOMIC_RELAXED));
	if (pa_send(s->senders[thread % FO_SENDERS], s->u->sender, s->rooms[room], text, cmid,
		    &seq, &st) != RPC_OK) {
		snprintf(err, errlen, "Send to %s: %s %s", s->rooms[room], rpc_code_name(st.code),
			 st.message);
		return false;
	}
	pthread_mutex_lock(&s->mtx);
	if (seq > s->last[room])
		s->last[room] = seq;
	pthread_mutex_unlock(&s->mtx);
	return true;
}

bool
pfo_send(void *sys, int thread, int room, char *err, size_t errlen)
{
	return send_text(sys, thread, room, bench_now_ns(), err, errlen);
}

void
pfo_last(void *sys, uint64_t *last)
{
	pfo *s = sys;

	pthread_mutex_lock(&s->mtx);
	memcpy(last, s->last, sizeof(s->last));
	pthread_mutex_unlock(&s->mtx);
}

int
pfo_poll_errors(void *sys, rpc_status *first)
{
	pfo *s = sys;
	int n = 0;

	for (int i = 0; i < s->nrecv; i++) {
		if (s->pr[i].errors && n == 0)
			*first = s->pr[i].first;
		n += s->pr[i].errors;
	}
	return n;
}

void
pfo_teardown(void *sys)
{
	pfo *s = sys;

	if (s == NULL)
		return;
	/* Closing a session ends its pending long poll; then its thread sees
	 * stop and returns. */
	s->stop = true;
	for (int i = 0; i < s->nrecv; i++) {
		rpc_status st;

		if (s->pr[i].c != NULL && s->pr[i].sid[0] != '\0')
			pa_close(s->pr[i].c, s->pr[i].token, s->pr[i].sid, &st);
		if (s->pr[i].fd >= 0)
			shutdown(s->pr[i].fd, SHUT_RDWR);
	}
	for (int i = 0; i < s->nthreads; i++)
		pthread_join(s->threads[i], NULL);
	for (int i = 0; i < s->nrecv; i++)
		if (s->pr[i].fd >= 0)
			close(s->pr[i].fd);
	for (int i = 0; i < s->nrecv; i++)
		rpc_client_close(s->pr[i].c);
	for (int i = 0; i < FO_SENDERS; i++)
		rpc_client_close(s->senders[i]);
	pthread_mutex_destroy(&s->mtx);
	free(s->threads);
	free(s->pr);
	free(s);
}

void *
pfo_setup(const pd_daemon *d, const fo_users *u, int case_index, const fo_case *c,
	  fo_recv *rs, char *err, size_t errlen)
{
	return pfo_setup_http(d, u, case_index, c, rs, 0, err, errlen);
}

void *
pfo_setup_http(const pd_daemon *d, const fo_users *u, int case_index, const fo_case *c,
	       fo_recv *rs, int http_port, char *err, size_t errlen)
{
	pfo *s = calloc(1, sizeof(*s));
	int n = c->rooms * c->members;
	pthread_attr_t attr;
	rpc_client *rooms = NULL;
	rpc_status st = {0};

	if (s == NULL || (s->pr = calloc((size_t)n, sizeof(*s->pr))) == NULL ||
	    (s->threads = calloc((size_t)n, sizeof(*s->threads))) == NULL) {
		if (s != NULL)
			free(s->pr);
		free(s);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->d = d;
	s->u = u;
	s->nrooms = c->rooms;
	s->case_index = case_index;
	s->http_port = http_port;
	for (int i = 0; i < n; i++)
		s->pr[i].fd = -1;
	pthread_mutex_init(&s->mtx, NULL);
	for (int i = 0; i < FO_SENDERS; i++)
		if ((s->senders[i] = pa_client(d->messaging)) == NULL)
			goto fail_msg;

	/* The rooms, with the sender and every receiving user in them. */
	if ((rooms = pa_client(d->rooms)) == NULL)
		goto fail_msg;
	for (int r = 0; r < c->rooms; r++) {
		snprintf(s->rooms[r], sizeof(s->rooms[r]), "fo%d-r%d", case_index, r);
		if (pa_create_join(rooms, u->sender, s->rooms[r], &st) != RPC_OK)
			goto fail_rpc;
		for (int k = 0; k < u->n && k < c->members; k++)
			if (pa_join(rooms, u->recv[k], s->rooms[r], &st) != RPC_OK)
				goto fail_rpc;
	}
	rpc_client_close(rooms);
	rooms = NULL;

	/* One session, connection and thread per receiver. */
	for (int i = 0; i < n; i++) {
		precv *p = &s->pr[i];
		const char *room;

		s->nrecv = i + 1;
		p->sys = s;
		p->r = &rs[i];
		p->token = u->recv[(i % c->members) % u->n];
		p->room = room = s->rooms[rs[i].room];
		if (http_port > 0) {
			if ((p->fd = hs_open(http_port, p->token, room, err, errlen)) < 0) {
				pfo_teardown(s);
				return NULL;
			}
			continue;
		}
		if ((p->c = pa_client(d->messaging)) == NULL)
			goto fail_msg;
		if (pa_open(p->c, p->token, &room, 1, p->sid, &st) != RPC_OK)
			goto fail_rpc;
	}
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (int i = 0; i < n; i++) {
		if (pthread_create(&s->threads[i], &attr, recv_main, &s->pr[i]) != 0) {
			pthread_attr_destroy(&attr);
			snprintf(err, errlen, "cannot start receiver thread %d", i);
			pfo_teardown(s);
			return NULL;
		}
		s->nthreads = i + 1;
	}
	pthread_attr_destroy(&attr);

	/* One unmeasured message per room; every receiver must see it. */
	for (int r = 0; r < c->rooms; r++)
		if (!send_text(s, 0, r, 0, err, errlen)) {
			pfo_teardown(s);
			return NULL;
		}
	{
		uint64_t last[FO_MAX_ROOMS];

		pfo_last(s, last);
		if (!fo_wait_caught_up(rs, n, last, 60000000000ull)) {
			snprintf(err, errlen, "Parley receivers did not all catch up after set-up "
					      "(%d poll errors)", pfo_poll_errors(s, &st));
			pfo_teardown(s);
			return NULL;
		}
	}
	return s;

fail_rpc:
	snprintf(err, errlen, "set-up call failed: %s %s", rpc_code_name(st.code), st.message);
	rpc_client_close(rooms);
	pfo_teardown(s);
	return NULL;
fail_msg:
	snprintf(err, errlen, "cannot open a client");
	rpc_client_close(rooms);
	pfo_teardown(s);
	return NULL;
}

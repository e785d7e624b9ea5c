/*
 * base_nng.c — the RPC floor: a raw nng REQ/REP echo server (a child
 * process, like parleyd) and REQ clients that time round trips of the same
 * frame sizes Parley's calls use.
 *
 * The server serves through ECHO_CONTEXTS nng contexts driven by aio
 * callbacks: no decoding, no worker hand-off, nothing but the transport.
 *
 * With a data directory the server is the floor of DESIGN.md's Send
 * instead: every request is durable in LMDB before its reply. Requests
 * queue for one writer thread (lgc_submit) that puts each request's
 * records (byte 4 says how many, 1 if 0) into one table, commits them all
 * in one synced transaction (group commit) and then replies: what
 * Parley's Send does with no protocol, checks or other tables behind it.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#define ECHO_CONTEXTS 64
#define ECHO_MAX_REPLY (64 * 1024)
#define ECHO_MAX_RECORDS 100	/* durable: records a request, as SendBatch */

/* ---- the server (child process) ------------------------------------------- */

typedef struct echo_slot {
	lgc_item commit;	/* durable: first, so that done finds the slot */
	nng_ctx ctx;
	nng_aio *aio;
	atomic_bool sending;	/* set by whichever thread replies, read by nng's */
	uint32_t want;		/* durable: reply bytes */
} echo_slot;

static bool echo_durable;

static void
echo_reply(echo_slot *s, nng_msg *msg, uint32_t want)
{
	if (nng_msg_realloc(msg, want) != 0) {
		nng_msg_free(msg);
		nng_ctx_recv(s->ctx, s->aio);
		return;
	}
	nng_aio_set_msg(s->aio, msg);
	s->sending = true;
	nng_ctx_send(s->ctx, s->aio);
}

/* On the writer's thread, once the request is durable. */
static void
echo_committed(lgc_item *it)
{
	echo_slot *s = (echo_slot *)it;

	echo_reply(s, nng_aio_get_msg(s->aio), s->want);
}

static void
echo_cb(void *arg)
{
	echo_slot *s = arg;
	nng_msg *msg;
	uint32_t want;

	if (nng_aio_result(s->aio) != 0) {
		if (s->sending)
			nng_msg_free(nng_aio_get_msg(s->aio));
		if (nng_aio_result(s->aio) == NNG_ECLOSED ||
		    nng_aio_result(s->aio) == NNG_ECANCELED)
			return;
		s->sending = false;
		nng_ctx_recv(s->ctx, s->aio);
		return;
	}
	if (s->sending) {
		s->sending = false;
		nng_ctx_recv(s->ctx, s->aio);
		return;
	}
	msg = nng_aio_get_msg(s->aio);
	want = 0;
	if (nng_msg_len(msg) >= 4) {
		const uint8_t *b = nng_msg_body(msg);
		want = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	}
	if (want > ECHO_MAX_REPLY)
		want = ECHO_MAX_REPLY;
	if (!echo_durable) {
		echo_reply(s, msg, want);
		return;
	}
	s->want = want;
	s->commit.records = nng_msg_len(msg) >= 5 ? ((const uint8_t *)nng_msg_body(msg))[4] : 0;
	if (s->commit.records < 1 || s->commit.records > ECHO_MAX_RECORDS)
		s->commit.records = 1;
	s->commit.done = echo_committed;
	nng_aio_set_msg(s->aio, msg);
	lgc_submit(&s->commit);
}

int
echo_child_main(const char *url, const char *dir, const char *mode)
{
	static echo_slot slots[ECHO_CONTEXTS];
	nng_socket sock;
	sigset_t sigs;
	int sig, rv;

	bench_child_signals(&sigs);
	if (dir != NULL && (rv = lgc_start(dir, strcmp(mode, "log") == 0, NULL)) != 0) {
		fprintf(stderr, "durable echo server: %s in %s: error %d\n", mode, dir, rv);
		return 1;
	}
	echo_durable = dir != NULL;
	if ((rv = nng_rep0_open(&sock)) != 0 ||
	    (rv = nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, 4 * ECHO_MAX_REPLY)) != 0 ||
	    (rv = nng_listen(sock, url, NULL, 0)) != 0) {
		fprintf(stderr, "echo server: %s: %s\n", url, nng_strerror(rv));
		return 1;
	}
	for (int i = 0; i < ECHO_CONTEXTS; i++) {
		if (nng_ctx_open(&slots[i].ctx, sock) != 0 ||
		    nng_aio_alloc(&slots[i].aio, echo_cb, &slots[i]) != 0)
			return 1;
		nng_ctx_recv(slots[i].ctx, slots[i].aio);
	}
	while (sigwait(&sigs, &sig) != 0)
		;
	nng_close(sock);
	return 0;
}

bool
echo_start(echo_server *e, const bench_opts *o, echo_kind kind)
{
	const char *argv[] = {o->self, "__echo-server", e->url, e->tmp,
			      kind == ECHO_LOG ? "log" : "lmdb", NULL};
	pid_t pid;

	bench_addr(e->url, sizeof(e->url));
	e->tmp[0] = '\0';
	if (kind != ECHO_PLAIN && !bench_tmpdir(o, "echo-data", e->tmp, sizeof(e->tmp))) {
		perror("parley-bench: mkdtemp");
		return false;
	}
	if (kind == ECHO_PLAIN)
		argv[3] = NULL;
	if ((pid = bench_spawn(argv, NULL)) < 0) {
		echo_stop(e);
		return false;
	}
	e->pid = pid;

	/* Up when one round trip works. */
	for (int i = 0; i < 200; i++) {
		samples s;
		int errors = 0;

		samples_init(&s, 4);
		echo_load(e->url, 1, 8, 8, 1, 1, &s, &errors);
		samples_free(&s);
		if (errors == 0)
			return true;
		bench_sleep_ns(25000000);
	}
	fprintf(stderr, "parley-bench: echo server on %s did not come up\n", e->url);
	echo_stop(e);
	return false;
}

void
echo_stop(echo_server *e)
{
	if (e->pid > 0)
		bench_child_stop(e->pid, 10000, NULL);
	e->pid = 0;
	if (e->tmp[0] != '\0')
		bench_rmtree(e->tmp);
	e->tmp[0] = '\0';
}

/* ---- the clients -------------------------------------------------------------- */

typedef struct echo_thread {
	const char *url;
	size_t req_len, reply_len;
	int records;
	uint64_t dur_ns;
	samples lat;
	uint64_t calls;
	double rate;
	int errors;
} echo_thread;

static void *
echo_thread_main(void *arg)
{
	echo_thread *t = arg;
	size_t req_len = t->req_len < 5 ? 5 : t->req_len;
	uint8_t *buf = calloc(1, req_len);
	nng_socket sock;
	uint64_t start, end;
	int rv;

	if (buf == NULL || (rv = nng_req0_open(&sock)) != 0) {
		free(buf);
		t->errors++;
		return NULL;
	}
	buf[0] = (uint8_t)(t->reply_len >> 24);
	buf[1] = (uint8_t)(t->reply_len >> 16);
	buf[2] = (uint8_t)(t->reply_len >> 8);
	buf[3] = (uint8_t)t->reply_len;
	buf[4] = (uint8_t)t->records;
	nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 5000);
	nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, 5000);
	if ((rv = nng_dial(sock, t->url, NULL, 0)) != 0) {
		t->errors++;
		goto out;
	}
	start = bench_now_ns();
	end = start + t->dur_ns;
	/* At least one call; then until the time is up or the cap is reached. */
	do {
		uint64_t t0 = bench_now_ns();
		void *reply = NULL;
		size_t len = 0;

		if ((rv = nng_send(sock, buf, req_len, 0)) != 0 ||
		    (rv = nng_recv(sock, &reply, &len, NNG_FLAG_ALLOC)) != 0) {
			t->errors++;
			break;
		}
		nng_free(reply, len);
		if (len != t->reply_len) {
			t->errors++;
			break;
		}
		samples_add(&t->lat, bench_now_ns() - t0);
		t->calls++;
	} while (bench_now_ns() < end && t->calls < 10000000);
	t->rate = (double)t->calls * 1e9 / (double)(bench_now_ns() - start);
out:
	nng_close(sock);
	free(buf);
	return NULL;
}

double
echo_load(const char *url, int clients, size_t req_len, size_t reply_len, int records,
	  uint64_t dur_ns, samples *lat, int *errors)
{
	echo_thread *t = calloc((size_t)clients, sizeof(*t));
	double rate = 0;

	if (t == NULL) {
		(*errors)++;
		return 0;
	}
	for (int i = 0; i < clients; i++) {
		t[i].url = url;
		t[i].req_len = req_len;
		t[i].reply_len = reply_len;
		t[i].records = records;
		t[i].dur_ns = dur_ns;
		samples_init(&t[i].lat, lat->cap / (size_t)clients + 1);
	}
	if (!bench_run_threads(clients, echo_thread_main, t, sizeof(*t)))
		(*errors)++;
	for (int i = 0; i < clients; i++) {
		samples_merge(lat, &t[i].lat);
		rate += t[i].rate;
		*errors += t[i].errors;
		samples_free(&t[i].lat);
	}
	free(t);
	return rate;
}

/*
 * scen_sessions.c — many concurrently open messaging sessions: server
 * memory (VmRSS) and threads per session, the time to open them all, and
 * Poll latency while they are open, against Health/Check on the same
 * endpoint at the same moment (the RPC floor of that server).
 *
 * Then every session gets a long Poll waiting on it (idle_polls.c), as idle
 * clients keep one, and the server's CPU is read over a quiet window: an
 * idle session must cost no CPU whatever its count.
 *
 * Each repetition uses a fresh parleyd, so RSS deltas are not flattered by
 * memory an earlier run freed. Sessions are spread 100 to a room, and in
 * one case all in one room. With --ab, the second parleyd is measured the
 * same way in each repetition, right after the first.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPEN_THREADS 16
#define PER_ROOM 100
#define MAX_ROOMS 128

typedef struct open_ctx {
	const char *url;
	char tokens[2][PA_TOKEN];
	char rooms[MAX_ROOMS][32];
	int nrooms;
	int n;
	char (*sids)[PA_SESSION];
} open_ctx;

typedef struct open_thread {
	open_ctx *c;
	int index;
	int errors;
	rpc_status first;
} open_thread;

static void *
open_main(void *arg)
{
	open_thread *t = arg;
	open_ctx *c = t->c;
	rpc_client *cli = pa_client(c->url);

	if (cli == NULL) {
		t->errors++;
		return NULL;
	}
	for (int i = t->index; i < c->n && t->errors < 20; i += OPEN_THREADS) {
		const char *room = c->rooms[i % c->nrooms];
		rpc_status st = {0};

		if (pa_open(cli, c->tokens[i % 2], &room, 1, c->sids[i], &st) != RPC_OK) {
			if (t->errors++ == 0)
				t->first = st;
		}
	}
	rpc_client_close(cli);
	return NULL;
}

typedef struct size_rows {
	brow *rss, *thr, *per_kib, *per_thr, *open_s, *rate, *p50, *p99;
	brow *idle_cpu, *idle_answered, *per_kib_polling;
} size_rows;

/* With a Poll waiting on each session: the server's CPU over a quiet
 * window, and the RSS per session then. */
static void
idle_window(breport *r, const bench_opts *o, pd_daemon *d, open_ctx *c, long rss0,
	    size_rows *rows)
{
	const char **toks = calloc((size_t)c->n, sizeof(*toks));
	double window_s = o->quick ? 1.0 : 3.0, cpu0, cpu1;
	uint64_t a0, a1;
	idle_polls *ip = NULL;
	long rss;

	if (toks == NULL) {
		rep_fail(r, "out of memory");
		return;
	}
	for (int i = 0; i < c->n; i++)
		toks[i] = c->tokens[i % 2];
	if ((ip = idle_polls_start(c->url, toks, (const char(*)[PA_SESSION])c->sids, c->n)) ==
	    NULL) {
		rep_fail(r, "%d sessions: cannot keep Polls waiting", c->n);
		goto out;
	}
	/* Settled: every Poll arrived and what the sessions held (presence
	 * of the other user) went out: nothing answered for 1 s (at most
	 * 30 s of waiting). */
	for (int quiet = 0, waited = 0; quiet < 4 && waited < 120; waited++) {
		uint64_t before = idle_polls_answered(ip);

		bench_sleep_ns(250000000);
		quiet = idle_polls_answered(ip) == before ? quiet + 1 : 0;
	}
	a0 = idle_polls_answered(ip);
	cpu0 = bench_proc_cpu_s(d->pid);
	bench_sleep_ns((uint64_t)(window_s * 1e9));
	cpu1 = bench_proc_cpu_s(d->pid);
	a1 = idle_polls_answered(ip);
	rss = bench_proc_status(d->pid, "VmRSS");
	if (idle_polls_failed(ip) > 0)
		rep_fail(r, "%d sessions: %llu idle Polls failed", c->n,
			 (unsigned long long)idle_polls_failed(ip));
	rstat_add(&rows->idle_cpu->parley, (cpu1 - cpu0) * 100.0 / window_s);
	rstat_add(&rows->idle_answered->parley, (double)(a1 - a0));
	rstat_add(&rows->per_kib_polling->parley, (double)(rss - rss0) / c->n);
	printf("  %d sessions, a Poll waiting on each: %.1f %% of a core, %llu answered in "
	       "%.0f s, RSS %ld KiB\n",
	       c->n, (cpu1 - cpu0) * 100.0 / window_s, (unsigned long long)(a1 - a0), window_s,
	       rss);
out:
	idle_polls_stop(ip);
	free(toks);
}

static void
one_rep(breport *r, const bench_opts *o, int n, int per_room, size_rows *rows, bool last)
{
	char maxs[32];
	/* All n sessions belong to 2 users: the per-user cap must not bite. */
	const char *extra[] = {"--max-sessions", maxs, "--max-user-sessions", maxs,
			       "--session-idle", "3600", "--max-conn-calls", maxs, NULL};
	static open_ctx c;
	open_thread th[OPEN_THREADS];
	rpc_client *auth = NULL, *rooms = NULL, *m = NULL;
	int k = o->quick ? 50 : 300, errors = 0;
	long rss0, thr0, rss1, thr1;
	samples plat, hlat;
	uint64_t t0, t1;
	pd_daemon d;
	rpc_status st = {0};

	snprintf(maxs, sizeof(maxs), "%d", n + 100);
	memset(&c, 0, sizeof(c));
	samples_init(&plat, (size_t)k);
	samples_init(&hlat, (size_t)k);
	if (!pd_start(&d, o, "auth,rooms,messaging", extra)) {
		rep_fail(r, "parleyd did not start");
		goto free;
	}
	rep_set_fs(r, d.dir);
	c.url = d.messaging;
	c.n = n;
	c.nrooms = (n + per_room - 1) / per_room;
	if (c.nrooms > MAX_ROOMS)
		c.nrooms = MAX_ROOMS;
	if ((c.sids = calloc((size_t)n, sizeof(*c.sids))) == NULL ||
	    (auth = pa_client(d.auth)) == NULL || (rooms = pa_client(d.rooms)) == NULL ||
	    (m = pa_client(d.messaging)) == NULL || !pa_user(auth, "sess0", c.tokens[0]) ||
	    !pa_user(auth, "sess1", c.tokens[1])) {
		rep_fail(r, "set-up failed");
		goto out;
	}
	for (int i = 0; i < c.nrooms; i++) {
		snprintf(c.rooms[i], sizeof(c.rooms[i]), "sess-r%d", i);
		if (pa_create_join(rooms, c.tokens[0], c.rooms[i], &st) != RPC_OK ||
		    pa_join(rooms, c.tokens[1], c.rooms[i], &st) != RPC_OK) {
			rep_fail(r, "room set-up: %s %s", rpc_code_name(st.code), st.message);
			goto out;
		}
	}
	bench_sleep_ns(200000000);
	rss0 = bench_proc_status(d.pid, "VmRSS");
	thr0 = bench_proc_status(d.pid, "Threads");

	memset(th, 0, sizeof(th));
	for (int i = 0; i < OPEN_THREADS; i++) {
		th[i].c = &c;
		th[i].index = i;
	}
	t0 = bench_now_ns();
	bench_run_threads(OPEN_THREADS, open_main, th, sizeof(th[0]));
	t1 = bench_now_ns();
	for (int i = 0; i < OPEN_THREADS; i++) {
		if (th[i].errors && errors == 0)
			st = th[i].first;
		errors += th[i].errors;
	}
	if (errors) {
		rep_fail(r, "%d sessions: %d Opens failed, first: %s %s", n, errors,
			 rpc_code_name(st.code), st.message);
		goto out;
	}
	bench_sleep_ns(500000000);	/* let session workers settle */
	rss1 = bench_proc_status(d.pid, "VmRSS");
	thr1 = bench_proc_status(d.pid, "Threads");

	/* Poll (wait 0) on sessions spread over all of them, after one untimed
	 * Poll that drains each one's backlog; Health/Check interleaved. */
	for (int j = 0; j < k; j++) {
		int i = (int)((uint64_t)j * (uint64_t)n / (uint64_t)k);
		const char *tok = c.tokens[i % 2];
		uint64_t a;

		if (pa_poll(m, tok, c.sids[i], 0, NULL, NULL, NULL, &st) != RPC_OK) {
			errors++;
			continue;
		}
		a = bench_now_ns();
		if (pa_poll(m, tok, c.sids[i], 0, NULL, NULL, NULL, &st) != RPC_OK) {
			errors++;
			continue;
		}
		samples_add(&plat, bench_now_ns() - a);
		a = bench_now_ns();
		if (pa_health(m, &st) == RPC_OK)
			samples_add(&hlat, bench_now_ns() - a);
		else
			errors++;
	}
	if (errors)
		rep_fail(r, "%d sessions: %d Polls failed, last: %s %s", n, errors,
			 rpc_code_name(st.code), st.message);

	rstat_add(&rows->rss->parley, (double)rss1 / 1024);
	rstat_add(&rows->rss->b, (double)rss0 / 1024);
	rstat_add(&rows->thr->parley, (double)thr1);
	rstat_add(&rows->thr->b, (double)thr0);
	rstat_add(&rows->per_kib->parley, (double)(rss1 - rss0) / n);
	rstat_add(&rows->per_thr->parley, (double)(thr1 - thr0) / n);
	rstat_add(&rows->open_s->parley, (double)(t1 - t0) / 1e9);
	rstat_add(&rows->rate->parley, (double)n * 1e9 / (double)(t1 - t0));
	rstat_add(&rows->p50->parley, samples_pct_us(&plat, 50));
	rstat_add(&rows->p50->b, samples_pct_us(&hlat, 50));
	rstat_add(&rows->p99->parley, samples_pct_us(&plat, 99));
	rstat_add(&rows->p99->b, samples_pct_us(&hlat, 99));
	printf("  %d sessions: RSS %ld -> %ld KiB, threads %ld -> %ld, opened in %.2f s\n", n,
	       rss0, rss1, thr0, thr1, (double)(t1 - t0) / 1e9);
	if (!errors)
		idle_window(r, o, &d, &c, rss0, rows);
	if (last) {
		rep_fact(r, "largest_rss_anon_kib", (double)bench_proc_status(d.pid, "RssAnon"));
		rep_fact(r, "largest_rss_file_kib", (double)bench_proc_status(d.pid, "RssFile"));
		rep_fact(r, "largest_vm_size_kib", (double)bench_proc_status(d.pid, "VmSize"));
	}
out:
	rpc_client_close(auth);
	rpc_client_close(rooms);
	rpc_client_close(m);
	free(c.sids);
	pd_stop(&d);
free:
	samples_free(&plat);
	samples_free(&hlat);
}

int
scen_sessions(const bench_opts *o)
{
	static const int full[] = {1000, 10000, 10000};
	static const int full_per_room[] = {PER_ROOM, PER_ROOM, 10000};
	static const int quick[] = {100};
	static const int quick_per_room[] = {PER_ROOM};
	const int *sizes = o->quick ? quick : full;
	const int *per_room = o->quick ? quick_per_room : full_per_room;
	int nsizes = o->quick ? 1 : 3, nd = o->parleyd_b != NULL ? 2 : 1;
	bench_opts ob = *o;
	breport r;

	ob.parleyd = o->parleyd_b;
	rep_begin(&r, "sessions", o);
	for (int s = 0; s < nsizes; s++) {
		size_rows rows[2];

		for (int k = 0; k < nd; k++) {
			char name[64];
			size_rows *w = &rows[k];

			snprintf(name, sizeof(name), "%d sessions%s%s", sizes[s],
				 per_room[s] > PER_ROOM ? ", 1 room" : "",
				 k == 1 ? ", --ab parleyd" : "");
			w->rss = rep_row_vs(&r, name, "server RSS", "MiB", "idle parleyd");
			w->thr = rep_row_vs(&r, name, "server threads", "count", "idle parleyd");
			w->per_kib = rep_row(&r, name, "RSS per session", "KiB");
			w->per_thr = rep_row(&r, name, "threads per session", "count");
			w->open_s = rep_row(&r, name, "time to open all", "s");
			w->rate = rep_row(&r, name, "opens/s (16 clients)", "1/s");
			w->p50 = rep_row_vs(&r, name, "Poll(wait 0) p50", "us", "Health/Check");
			w->p99 = rep_row_vs(&r, name, "Poll(wait 0) p99", "us", "Health/Check");
			w->idle_cpu = rep_row(&r, name, "server CPU, a Poll waiting on each",
					      "% core");
			w->idle_answered = rep_row(&r, name, "Polls answered in the window",
						   "count");
			w->per_kib_polling = rep_row(&r, name, "RSS per session, Polls waiting",
						     "KiB");
		}
		for (int rep = 0; rep < o->reps; rep++)
			for (int k = 0; k < nd; k++)
				one_rep(&r, k == 0 ? o : &ob, sizes[s], per_room[s], &rows[k],
					s == nsizes - 1 && rep == o->reps - 1 && k == 0);
		if (!o->quick && sizes[s] == 10000 && per_room[s] == PER_ROOM)
			printf("  10,000 sessions: %.0f MiB (target < 1024 MiB)\n",
			       rstat_median(&rows[0].rss->parley));
	}
	rep_note(&r, "a fresh parleyd per repetition; sessions opened by 16 clients, 100 per "
		     "room (or all in one), over 2 users; RSS is VmRSS (anonymous + file pages: "
		     "the LMDB map counts as far as it is touched); baseline columns for "
		     "RSS/threads are the same daemon before the sessions were opened");
	rep_note(&r, "then a Poll (wait 30 s) is kept waiting on every session from one "
		     "connection, until none has come back for 1 s; server CPU is utime+stime "
		     "over %s s after that, as %% of one core",
		     o->quick ? "1" : "3");
	return rep_finish(&r);
}

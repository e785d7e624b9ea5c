/*
 * scen_fanout.c — rooms x members fan-out. Three systems are set up side by
 * side for each case: Parley (durable Send, sessions long-polled), raw nng
 * PUB/SUB (the floor, no persistence) and Mosquitto QoS 0 (a broker, no
 * persistence). Each phase — a fixed offered rate, then flat out — runs
 * rep by rep on the three in turn, so a noisy machine hits all alike.
 *
 * Every receiver checks its room's sequence: Parley must lose nothing and
 * duplicate nothing (a failure otherwise); the baselines' losses are
 * reported as they are.
 */
#include "fanout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { SYS_PARLEY, SYS_NNG, SYS_MQTT, NSYS };

static const char *const sys_names[NSYS] = {"Parley", "nng PUB/SUB", "Mosquitto QoS0"};

typedef struct fo_sys {
	void *h;
	fo_recv *rs;
	fo_send_fn send;
	void (*last)(void *, uint64_t *);
	bool on;
} fo_sys;

typedef struct phase_rows {
	brow *rate[NSYS], *p50[NSYS], *p99[NSYS], *lost[NSYS];
} phase_rows;

/* Rows for one case and phase: Parley against each baseline. */
static void
make_rows(breport *r, const char *name, phase_rows *pr)
{
	memset(pr, 0, sizeof(*pr));
	for (int s = SYS_NNG; s < NSYS; s++) {
		pr->rate[s] = rep_row_vs(r, name, "deliveries/s", "1/s", sys_names[s]);
		pr->p50[s] = rep_row_vs(r, name, "send->recv p50", "us", sys_names[s]);
		pr->p99[s] = rep_row_vs(r, name, "send->recv p99", "us", sys_names[s]);
		pr->lost[s] = rep_row_vs(r, name, "lost", "msgs", sys_names[s]);
		pr->lost[s]->no_ratio = true;
	}
	pr->lost[SYS_PARLEY] = rep_row(r, name, "duplicates", "msgs");
}

static void
record(phase_rows *pr, int s, const fo_result *res)
{
	if (s == SYS_PARLEY) {
		for (int b = SYS_NNG; b < NSYS; b++) {
			rstat_add(&pr->rate[b]->parley, res->per_s);
			rstat_add(&pr->p50[b]->parley, res->p50_us);
			rstat_add(&pr->p99[b]->parley, res->p99_us);
			rstat_add(&pr->lost[b]->parley, (double)res->lost);
		}
		rstat_add(&pr->lost[SYS_PARLEY]->parley, (double)res->dup);
		return;
	}
	rstat_add(&pr->rate[s]->b, res->per_s);
	rstat_add(&pr->p50[s]->b, res->p50_us);
	rstat_add(&pr->p99[s]->b, res->p99_us);
	rstat_add(&pr->lost[s]->b, (double)(res->lost + res->dup));
}

static bool
make_users(breport *r, const pd_daemon *d, fo_users *u, int n)
{
	rpc_client *auth = pa_client(d->auth);
	bool ok = auth != NULL && pa_user(auth, "fosender", u->sender);

	for (int i = 0; ok && i < n; i++) {
		char name[32];

		snprintf(name, sizeof(name), "forecv%02d", i);
		ok = pa_user(auth, name, u->recv[i]);
		u->n = i + 1;
	}
	rpc_client_close(auth);
	if (!ok)
		rep_fail(r, "cannot set up the fan-out users");
	return ok;
}

static void
run_case(breport *r, const bench_opts *o, const pd_daemon *d, const fo_users *u, int ci,
	 const fo_case *c)
{
	int n = c->rooms * c->members;
	size_t cap = 2000000 / (size_t)n > 1000 ? 2000000 / (size_t)n : 1000;
	double offered = (o->quick ? 2000.0 : 5000.0);	/* deliveries/s at the fixed rate */
	uint64_t fixed_ns = o->quick ? 500000000ull : 4000000000ull;
	uint64_t flat_ns = o->quick ? 500000000ull : 3000000000ull;
	uint64_t flat_cap = (o->quick ? 20000u : 200000u) / (uint64_t)c->members;
	fo_sys sys[NSYS] = {{0}};
	char why[300] = "";
	char label[64];

	sys[SYS_PARLEY] = (fo_sys){.send = pfo_send, .last = pfo_last};
	sys[SYS_NNG] = (fo_sys){.send = nngps_send, .last = nngps_last};
	sys[SYS_MQTT] = (fo_sys){.send = mqtt_send, .last = mqtt_last};
	for (int s = 0; s < NSYS; s++) {
		if ((sys[s].rs = calloc((size_t)n, sizeof(fo_recv))) == NULL)
			goto out;
		for (int i = 0; i < n; i++)
			fo_recv_init(&sys[s].rs[i], i / c->members, false, cap);
	}
	printf("  %dx%d: setting up %d receivers per system\n", c->rooms, c->members, n);
	sys[SYS_PARLEY].h = pfo_setup(d, u, ci, c, sys[SYS_PARLEY].rs, why, sizeof(why));
	if (sys[SYS_PARLEY].h == NULL) {
		rep_fail(r, "%dx%d: Parley set-up: %s", c->rooms, c->members, why);
		goto out;
	}
	sys[SYS_NNG].h = nngps_setup(c, sys[SYS_NNG].rs, why, sizeof(why));
	if (sys[SYS_NNG].h == NULL)
		rep_note(r, "%dx%d: nng PUB/SUB baseline not measured: %s", c->rooms, c->members,
			 why);
	if (mqtt_available(why, sizeof(why)))
		sys[SYS_MQTT].h = mqtt_setup(o, c, sys[SYS_MQTT].rs, why, sizeof(why));
	if (sys[SYS_MQTT].h == NULL)
		rep_note(r, "%dx%d: Mosquitto baseline skipped: %s", c->rooms, c->members, why);
	for (int s = 0; s < NSYS; s++) {
		sys[s].on = sys[s].h != NULL;
		fo_reset(sys[s].rs, n);
	}

	for (int flat = 0; flat <= 1; flat++) {
		phase_rows pr;

		if (flat)
			snprintf(label, sizeof(label), "%dx%d flat out", c->rooms, c->members);
		else
			snprintf(label, sizeof(label), "%dx%d at %.0f msg/s", c->rooms, c->members,
				 offered / c->members);
		make_rows(r, label, &pr);
		for (int rep = 0; rep < o->reps; rep++) {
			fo_drive parley_drive = {0};

			for (int s = 0; s < NSYS; s++) {
				fo_drive dr = {.rooms = c->rooms, .flat = flat,
					       .rate = offered / c->members, .dur_ns = flat ? flat_ns : fixed_ns,
					       .cap = flat_cap};
				uint64_t last[FO_MAX_ROOMS], t0;
				fo_result res;

				if (!sys[s].on)
					continue;
				if (s == SYS_PARLEY) {
					/* Durable sends block for their ack: many at once. */
					dr.threads = flat ? (c->rooms > 4 ? c->rooms : 4) : 8;
				} else {
					dr.threads = 2;
					/* Flat out: the same messages Parley got acked. */
					if (flat)
						dr.quota = parley_drive.sent;
				}
				t0 = bench_now_ns();
				fo_run(&dr, sys[s].send, sys[s].h);
				sys[s].last(sys[s].h, last);
				fo_harvest(sys[s].rs, n, last, t0,
					   s == SYS_PARLEY ? 15000000000ull : 1000000000ull,
					   120000000000ull, &res);
				if (s == SYS_PARLEY)
					parley_drive = dr;
				record(&pr, s, &res);
				printf("    %-26s rep %d %-15s %9.0f deliveries/s  p50 %8.0f us  p99 %8.0f "
				       "us  delivered %llu lost %llu dup %llu\n",
				       label, rep + 1, sys_names[s], res.per_s, res.p50_us, res.p99_us,
				       (unsigned long long)res.delivered,
				       (unsigned long long)res.lost, (unsigned long long)res.dup);
				if (dr.errors)
					rep_fail(r, "%s: %s: %d failed sends, first: %s", label,
						 sys_names[s], dr.errors, dr.err);
				if (s == SYS_PARLEY && (res.lost || res.dup || !res.complete))
					rep_fail(r, "%s: Parley lost %llu and duplicated %llu messages%s",
						 label, (unsigned long long)res.lost,
						 (unsigned long long)res.dup,
						 res.complete ? "" : " (receivers did not catch up)");
			}
		}
	}
	{
		rpc_status first = {0};
		int errs = pfo_poll_errors(sys[SYS_PARLEY].h, &first);

		if (errs)
			rep_fail(r, "%dx%d: %d failed Polls, first: %s %s", c->rooms, c->members, errs,
				 rpc_code_name(first.code), first.message);
	}
out:
	pfo_teardown(sys[SYS_PARLEY].h);
	nngps_teardown(sys[SYS_NNG].h);
	mqtt_teardown(sys[SYS_MQTT].h);
	for (int s = 0; s < NSYS; s++) {
		for (int i = 0; sys[s].rs != NULL && i < n; i++)
			fo_recv_free(&sys[s].rs[i]);
		free(sys[s].rs);
	}
}

int
scen_fanout(const bench_opts *o)
{
	static const fo_case full[] = {{1, 10}, {1, 100}, {10, 100}, {1, 1000}};
	static const fo_case quick[] = {{1, 10}, {2, 25}};
	const fo_case *cases = o->quick ? quick : full;
	int ncases = o->quick ? 2 : 4, maxn = 0;
	fo_case custom[8];
	char contexts[32], max_sessions[32], why[300];
	const char *extra[12];
	static fo_users users;
	pd_daemon d;
	breport r;

	rep_begin(&r, "fanout", o);
	if (o->fanout_cases != NULL) {
		if ((ncases = fo_parse_cases(o->fanout_cases, custom, 8, 5000, why, sizeof(why))) < 0) {
			rep_fail(&r, "%s", why);
			return rep_finish(&r);
		}
		cases = custom;
	}
	for (int i = 0; i < ncases; i++)
		maxn = cases[i].rooms * cases[i].members > maxn ? cases[i].rooms * cases[i].members
								 : maxn;
	/* Every receiver holds a long poll open: room for all of them. */
	snprintf(contexts, sizeof(contexts), "%d", maxn + 256);
	snprintf(max_sessions, sizeof(max_sessions), "%d", 2 * maxn + 100);
	extra[0] = "--contexts";
	extra[1] = contexts;
	extra[2] = "--max-sessions";
	extra[3] = max_sessions;
	/* Custom cases put up to 250 receivers on one of the FO_USERS users;
	 * no per-user cap beyond the global one. */
	extra[4] = "--max-user-sessions";
	extra[5] = max_sessions;
	/* Every receiver is a connection of its own, all from 127.0.0.1. */
	extra[6] = "--max-conns-per-peer";
	extra[7] = contexts;
	extra[8] = "--max-conns";
	extra[9] = contexts;
	extra[10] = NULL;
	if (!pd_start(&d, o, "auth,rooms,messaging", extra)) {
		rep_fail(&r, "parleyd did not start");
		return rep_finish(&r);
	}
	rep_set_fs(&r, d.dir);
	if (!mqtt_available(why, sizeof(why)))
		rep_note(&r, "Mosquitto baseline skipped: %s", why);
	rep_note(&r, "fixed rate: %.0f deliveries/s offered (messages/s = that / members) for "
		     "%.1f s; flat out: Parley's senders (4 or one per room) for %.1f s, capped at "
		     "%u deliveries; the baselines then publish exactly the messages Parley got "
		     "acked, as fast as they can",
		 o->quick ? 2000.0 : 5000.0, o->quick ? 0.5 : 4.0, o->quick ? 0.5 : 3.0,
		 o->quick ? 20000u : 200000u);
	rep_note(&r, "Parley persists every message before its ack and delivers through "
		     "long-polled sessions; nng PUB/SUB and Mosquitto QoS 0 keep nothing. "
		     "baseline 'lost' counts drops and reorders; Parley's must be 0");
	if (make_users(&r, &d, &users, FO_USERS < maxn ? FO_USERS : maxn))
		for (int i = 0; i < ncases; i++)
			run_case(&r, o, &d, &users, i, &cases[i]);
	pd_stop(&d);
	return rep_finish(&r);
}

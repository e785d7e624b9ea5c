/*
 * scen_send.c — durable Messaging/Send with 1, 16 and 64 concurrent
 * senders (each its own connection), against raw LMDB committing and
 * syncing once per message on the same filesystem: the ratio is what
 * group commit buys.
 *
 * Messages per commit: parleyd's LMDB transaction id counts its write
 * transactions; read before and after each run (mdb_env_info on the data
 * dir, read-only and lock-free), messages / commits is exact for a run in
 * which Sends are the only writes.
 */
#include "bench.h"

#include <stdio.h>
#include <string.h>

#include "parley/v1/events.pb-c.h"

#define SEND_USERS 4
#define SEND_ROOMS 8
#define SEND_TEXT 64

typedef struct send_ctx {
	char tokens[SEND_USERS][PA_TOKEN];
	char rooms[SEND_ROOMS][32];
	int run;
} send_ctx;

static send_ctx ctx;

static rpc_code
do_send(rpc_client *c, void *arg, int thread, uint64_t i, rpc_status *st)
{
	char text[SEND_TEXT + 1], cmid[64];
	uint64_t seq;

	snprintf(cmid, sizeof(cmid), "s%d-%d-%llu", ctx.run, thread, (unsigned long long)i);
	snprintf(text, sizeof(text), "%-*s", SEND_TEXT, cmid);
	return pa_send(c, ctx.tokens[thread % SEND_USERS], ctx.rooms[thread % SEND_ROOMS], text,
		       cmid, &seq, st);
}

/* The size of the event Parley stores for one such message. */
static size_t
event_size(void)
{
	Parley__V1__Event ev = PARLEY__V1__EVENT__INIT;
	Parley__V1__ChatMessage m = PARLEY__V1__CHAT_MESSAGE__INIT;
	char text[SEND_TEXT + 1];

	memset(text, 'x', SEND_TEXT);
	text[SEND_TEXT] = '\0';
	m.text = text;
	m.client_msg_id = "s1-15-1234567";
	ev.room_id = "send-r0";
	ev.seq = 123456;
	ev.ts_ms = rpc_wall_ms();
	ev.sender = "sender0";
	ev.body_case = PARLEY__V1__EVENT__BODY_MESSAGE;
	ev.message = &m;
	return parley__v1__event__get_packed_size(&ev);
}

int
scen_send(const bench_opts *o)
{
	static const int sender_counts[] = {1, 16, 64};
	uint64_t dur = o->quick ? 300000000ull : 3000000000ull;
	size_t msg_len = event_size();
	const char *extra[] = {"--contexts", "512", NULL};
	char lmdb_dir[400], err[300] = "";
	rpc_client *auth = NULL, *rooms = NULL;
	pd_daemon d;
	breport r;

	rep_begin(&r, "send", o);
	if (!pd_start(&d, o, "auth,rooms,messaging", extra)) {
		rep_fail(&r, "parleyd did not start");
		return rep_finish(&r);
	}
	rep_set_fs(&r, d.dir);
	/* The baseline's environment sits beside parleyd's data: same disk. */
	snprintf(lmdb_dir, sizeof(lmdb_dir), "%s/lmdb-baseline", d.tmp);
	bench_mkdirs(lmdb_dir);
	if ((auth = pa_client(d.auth)) == NULL || (rooms = pa_client(d.rooms)) == NULL) {
		rep_fail(&r, "no client");
		goto out;
	}
	for (int u = 0; u < SEND_USERS; u++) {
		char name[32];
		rpc_status st = {0};

		snprintf(name, sizeof(name), "sender%d", u);
		if (!pa_user(auth, name, ctx.tokens[u])) {
			rep_fail(&r, "cannot set up %s", name);
			goto out;
		}
		for (int k = 0; k < SEND_ROOMS; k++) {
			snprintf(ctx.rooms[k], sizeof(ctx.rooms[k]), "send-r%d", k);
			if (pa_create_join(rooms, ctx.tokens[u], ctx.rooms[k], &st) != RPC_OK) {
				rep_fail(&r, "%s cannot join %s: %s %s", name, ctx.rooms[k],
					 rpc_code_name(st.code), st.message);
				goto out;
			}
		}
	}
	if (lmdb_last_txnid(d.dir) == 0)
		rep_note(&r, "cannot read parleyd's LMDB transaction id: messages per commit "
			     "not measured");

	for (size_t k = 0; k < sizeof(sender_counts) / sizeof(sender_counts[0]); k++) {
		int senders = sender_counts[k];
		char name[64];
		brow *rate, *p50, *p99, *mpc;

		snprintf(name, sizeof(name), "Send, %d sender%s", senders, senders > 1 ? "s" : "");
		rate = rep_row_vs(&r, name, "acked", "msgs/s", "LMDB 1 commit/msg");
		p50 = rep_row_vs(&r, name, "p50 ack latency", "us", "LMDB commit");
		p99 = rep_row_vs(&r, name, "p99 ack latency", "us", "LMDB commit");
		mpc = rep_row(&r, name, "messages per commit", "msgs");
		for (int rep = 0; rep < o->reps; rep++) {
			samples lat;
			int errors = 0;
			rpc_status first = {0};
			uint64_t tx0, tx1, n;
			double v;

			ctx.run++;
			samples_init(&lat, 500000);
			tx0 = lmdb_last_txnid(d.dir);
			v = pa_load(d.messaging, senders, do_send, NULL, dur, &lat, &errors, &first);
			tx1 = lmdb_last_txnid(d.dir);
			if (errors)
				rep_fail(&r, "%s: %d failed sends, first: %s %s", name, errors,
					 rpc_code_name(first.code), first.message);
			rstat_add(&rate->parley, v);
			rstat_add(&p50->parley, samples_pct_us(&lat, 50));
			rstat_add(&p99->parley, samples_pct_us(&lat, 99));
			/* + the untimed warm-up Send of each sender */
			n = lat.count + (uint64_t)senders;
			if (tx0 != 0 && tx1 > tx0)
				rstat_add(&mpc->parley, (double)n / (double)(tx1 - tx0));

			samples_reset(&lat);
			n = lmdb_baseline(lmdb_dir, msg_len, dur, &lat, err, sizeof(err));
			if (err[0] != '\0' && n == 0)
				rep_fail(&r, "raw LMDB baseline: %s", err);
			rstat_add(&rate->b, (double)lat.count * 1e9 / (double)dur);
			rstat_add(&p50->b, samples_pct_us(&lat, 50));
			rstat_add(&p99->b, samples_pct_us(&lat, 99));
			samples_free(&lat);
			err[0] = '\0';
		}
		printf("  %-20s %8.0f msgs/s (raw LMDB %6.0f)  p50 %.0f us  %.1f msgs/commit\n",
		       name, rstat_median(&rate->parley), rstat_median(&rate->b),
		       rstat_median(&p50->parley), rstat_median(&mpc->parley));
	}
	rep_note(&r, "senders spread over %d users and %d rooms; %d-byte texts; the baseline "
		     "commits one %zu-byte value (the size of the stored event) per synced "
		     "transaction, single writer, in %s",
		 SEND_USERS, SEND_ROOMS, SEND_TEXT, msg_len, lmdb_dir);
	rep_note(&r, "messages per commit = acked Sends / LMDB transactions parleyd committed "
		     "in the run (its last txnid, read from the data dir)");
out:
	rpc_client_close(auth);
	rpc_client_close(rooms);
	pd_stop(&d);
	return rep_finish(&r);
}

/*
 * scen_peers.c — Parley against the servers a user might pick instead:
 * Redis Streams with the AOF fsynced before every reply (the durable peer:
 * XADD is Send, XREAD BLOCK from a cursor is Poll), InspIRCd (IRC) and
 * Mosquitto QoS 1 (in-memory chat and pub/sub), each started here with its
 * own temp dir and free port when installed.
 *
 * Measured for each, with the same client machinery (fanout.h) and rep by
 * rep in turn so a noisy machine hits all alike:
 *   - durable sends/s and p50 ack at 1, 16, 64 closed-loop senders and in
 *     batches of 16: Parley Send (SendBatch), Redis XADD (pipelined), raw
 *     nng REQ/REP of Send's frame sizes (the transport's ceiling), and the
 *     same with an LMDB group commit or a log fdatasync behind it (Send's
 *     floors, base_nng.c);
 *   - send->receive p50/p99 and server CPU per delivery at 1 room x 10
 *     members, 100 msg/s, 1 x 100 at 50 msg/s and 1 x 1,000 at 5 msg/s:
 *     Parley Poll, Parley Subscribe over HTTP, Redis, IRC, MQTT, and the
 *     floors of DESIGN.md's delivery shape (base_lpoll.c);
 *   - deliveries/s flat out at 1 x 100.
 * Lost and duplicated messages are counted for every system; Parley's,
 * Redis's and the floors' must be 0 (a failure otherwise).
 *
 * Server CPU is utime + stime of the server process over the phase (from
 * sending the first message to the last delivery), divided by deliveries.
 */
#include "peers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley/v1/messaging.pb-c.h"
#include "parley/v1/rpc.pb-c.h"

/* C_POLLB: Parley Send and Poll on the parleyd given with --ab (before/after). */
/* C_FLOOR, C_FLOORCB: the floors of DESIGN.md's delivery shape, with and
 * without a worker thread per client (base_lpoll.c); C_FLOORLOG: without
 * one and with an append-only log instead of LMDB. C_NNG and C_NNGDB:
 * C_NNGLOG: the floors of the sends rows (no fan-out system). */
enum {
	C_POLL,
	C_HTTP,
	C_REDIS,
	C_IRC,
	C_MQTT,
	C_POLLB,
	C_FLOOR,
	C_FLOORCB,
	C_FLOORLOG,
	C_NNG,
	C_NNGDB,
	C_NNGLOG,
	NCOL
};

static const char *const col_names[NCOL] = {
	"Parley Poll",
	"Parley Subscribe/HTTP",
	"Redis Streams",
	"IRC (InspIRCd)",
	"Mosquitto QoS1",
	"Parley Poll, --ab parleyd",
	"floor: LMDB, thread per client",
	"floor: LMDB, no threads",
	"floor: log, no threads",
	"raw nng REQ/REP",
	"raw nng + LMDB commit",
	"raw nng + log fdatasync"};

/* Parley and Redis persist before they ack, and the floor keeps every
 * message: they must lose nothing. */
static bool
durable(int c)
{
	return c == C_POLL || c == C_HTTP || c == C_REDIS || c == C_POLLB ||
	       (c >= C_FLOOR && c <= C_FLOORLOG);
}

#define MAX_MEASURES 40
#define PEERS_INMEM_MAX 100	/* receivers the IRC and MQTT drivers set up */

typedef struct measure {
	char name[64];		/* "1x10, 100 msg/s" */
	char metric[32];	/* "send->recv p50" */
	char unit[16];
	bool counts;		/* lost, duplicated: no ratios */
	rstat v[NCOL];
} measure;

typedef struct peers_run {
	breport r;
	const bench_opts *o;
	measure m[MAX_MEASURES];
	int nm;
	pd_daemon d;
	pd_daemon db;		/* the --ab parleyd, when given (db.pid > 0) */
	fo_users users_b;
	int http_port;
	peer_server redis, irc;
	bool redis_on, irc_on;
	fo_users users;
} peers_run;

static measure *
new_measure(peers_run *p, const char *name, const char *metric, const char *unit,
	    bool counts)
{
	measure *m = &p->m[p->nm < MAX_MEASURES - 1 ? p->nm++ : p->nm];

	memset(m, 0, sizeof(*m));
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->metric, sizeof(m->metric), "%s", metric);
	snprintf(m->unit, sizeof(m->unit), "%s", unit);
	m->counts = counts;
	return m;
}

/* ---- durable sends ------------------------------------------------------------------- */

#define SEND_ROOMS 8
#define SEND_TEXT 64

static char send_token[PA_TOKEN], send_token_b[PA_TOKEN]; /* b: the --ab parleyd's */
static char send_rooms[SEND_ROOMS][32];
static int send_run;

/* arg: the sender's token on the parleyd measured. */
static rpc_code
do_send(rpc_client *c, void *arg, int thread, uint64_t i, rpc_status *st)
{
	char text[SEND_TEXT + 1], cmid[64];
	uint64_t seq;

	snprintf(cmid, sizeof(cmid), "pe%d-%d-%llu", send_run, thread, (unsigned long long)i);
	snprintf(text, sizeof(text), "%-*s", SEND_TEXT, cmid);
	return pa_send(c, arg, send_rooms[thread % SEND_ROOMS], text, cmid, &seq, st);
}

/* SEND_BATCH Sends in one SendBatch call, over the rooms in turn. */
#define SEND_BATCH 16

static rpc_code
do_send_batch(rpc_client *c, void *arg, int thread, uint64_t i, rpc_status *st)
{
	char text[SEND_TEXT + 1], cmid[48];

	snprintf(cmid, sizeof(cmid), "pb%d-%d-%llu", send_run, thread, (unsigned long long)i);
	snprintf(text, sizeof(text), "%-*s", SEND_TEXT, cmid);
	return pa_send_batch(c, arg, send_rooms, SEND_ROOMS, text, cmid, SEND_BATCH, st);
}

/* The sender and its rooms on the --ab parleyd; false with a failure noted. */
static bool
setup_sends_b(peers_run *p)
{
	rpc_client *rooms = pa_client(p->db.rooms), *auth = pa_client(p->db.auth);
	rpc_status st = {0};
	bool ok = rooms != NULL && auth != NULL && pa_user(auth, "pesender", send_token_b);

	for (int k = 0; ok && k < SEND_ROOMS; k++)
		ok = pa_create_join(rooms, send_token_b, send_rooms[k], &st) == RPC_OK;
	if (!ok)
		rep_fail(&p->r, "sends: cannot set up the sender on the --ab parleyd: %s",
			 st.message);
	rpc_client_close(rooms);
	rpc_client_close(auth);
	return ok;
}

/* The frames of one Send on the wire: envelope with method, body, deadline,
 * id and the bearer token; the reply's status, body and id. */
static void
send_frames(int batch, size_t *req_len, size_t *reply_len)
{
	Parley__V1__SendRequest req = PARLEY__V1__SEND_REQUEST__INIT, *reqs[SEND_BATCH];
	Parley__V1__SendResponse resp = PARLEY__V1__SEND_RESPONSE__INIT, *resps[SEND_BATCH];
	Parley__V1__SendBatchRequest breq = PARLEY__V1__SEND_BATCH_REQUEST__INIT;
	Parley__V1__SendBatchResponse bresp = PARLEY__V1__SEND_BATCH_RESPONSE__INIT;
	Parley__V1__RpcRequest env = PARLEY__V1__RPC_REQUEST__INIT;
	Parley__V1__RpcRequest__MetadataEntry auth = PARLEY__V1__RPC_REQUEST__METADATA_ENTRY__INIT,
					      *authp = &auth;
	Parley__V1__RpcResponse out = PARLEY__V1__RPC_RESPONSE__INIT;
	Parley__V1__Status status = PARLEY__V1__STATUS__INIT;
	char text[SEND_TEXT + 1], bearer[PA_TOKEN + 8];
	uint8_t body[SEND_BATCH * 160], rbody[SEND_BATCH * 32];

	memset(text, 'x', SEND_TEXT);
	text[SEND_TEXT] = '\0';
	req.room_id = send_rooms[0];
	req.text = text;
	req.client_msg_id = "pe1-15-1234567";
	snprintf(bearer, sizeof(bearer), "Bearer %s", send_token);
	auth.key = "authorization";
	auth.value = bearer;
	for (int k = 0; k < SEND_BATCH; k++) {
		reqs[k] = &req;
		resps[k] = &resp;
	}
	breq.messages = reqs;
	breq.n_messages = (size_t)batch;
	bresp.results = resps;
	bresp.n_results = (size_t)batch;
	resp.seq = 123456;
	resp.ts_ms = rpc_wall_ms();
	env.method = batch > 0 ? "/parley.v1.Messaging/SendBatch" : "/parley.v1.Messaging/Send";
	env.body.len = protobuf_c_message_pack(batch > 0 ? &breq.base : &req.base, body);
	env.body.data = body;
	env.timeout_ms = 29999;
	env.request_id = (uint64_t)rpc_wall_ms() << 16;
	env.metadata = &authp;
	env.n_metadata = 1;
	*req_len = parley__v1__rpc_request__get_packed_size(&env);
	out.status = &status;
	out.body.len = protobuf_c_message_pack(batch > 0 ? &bresp.base : &resp.base, rbody);
	out.body.data = rbody;
	out.request_id = env.request_id;
	*reply_len = parley__v1__rpc_response__get_packed_size(&out);
}

/* One floor's row of a sends case: rate and p50 into column col. */
static void
floor_sends(peers_run *p, const echo_server *e, int col, const char *name, int n, int per,
	    size_t req_len, size_t reply_len, uint64_t dur, measure *rate, measure *p50)
{
	samples lat;
	int errors = 0;
	double v;

	if (e->pid <= 0)
		return;
	samples_init(&lat, 500000);
	v = per * echo_load(e->url, n, req_len, reply_len, per, dur, &lat, &errors);
	if (errors)
		rep_note(&p->r, "%s: %s: %d errors", name, col_names[col], errors);
	rstat_add(&rate->v[col], v);
	rstat_add(&p50->v[col], samples_pct_us(&lat, 50));
	samples_free(&lat);
}

/* floors: the servers of columns C_NNG to C_NNGLOG, in that order. */
static void
run_sends(peers_run *p, const echo_server *floors)
{
	/* senders, and Sends per call (0: Send; n: SendBatch of n, and Redis
	 * pipelining n XADDs per round trip). */
	static const struct {
		int senders, batch;
	} cases[] = {{1, 0}, {16, 0}, {64, 0}, {1, SEND_BATCH}};
	uint64_t dur = p->o->quick ? 300000000ull : 3000000000ull;
	size_t req_len, reply_len, breq_len, breply_len;
	bool ab;
	rpc_client *rooms = pa_client(p->d.rooms), *auth = pa_client(p->d.auth);
	rpc_status st = {0};

	if (rooms == NULL || auth == NULL || !pa_user(auth, "pesender", send_token)) {
		rep_fail(&p->r, "sends: cannot set up the sender");
		goto out;
	}
	for (int k = 0; k < SEND_ROOMS; k++) {
		snprintf(send_rooms[k], sizeof(send_rooms[k]), "pe-send-r%d", k);
		if (pa_create_join(rooms, send_token, send_rooms[k], &st) != RPC_OK) {
			rep_fail(&p->r, "sends: cannot join %s: %s", send_rooms[k], st.message);
			goto out;
		}
	}
	ab = p->db.pid > 0 && setup_sends_b(p);
	send_frames(0, &req_len, &reply_len);
	send_frames(SEND_BATCH, &breq_len, &breply_len);
	rep_note(&p->r, "sends: closed loop, each sender its own connection, %d-byte texts over "
			"%d rooms (Parley) / %d streams (Redis); raw nng echoes %zu-byte requests "
			"with %zu-byte replies (a Send's frames) with no work behind them",
		 SEND_TEXT, SEND_ROOMS, SEND_ROOMS, req_len, reply_len);
	rep_note(&p->r, "sends: raw nng + LMDB commit is the same echo with Send's durability "
			"and nothing else: requests group-committed by one writer thread into one "
			"LMDB table (a 96-byte record each, over %d rooms), synced, then answered "
			"by a replier thread; Parley's floor under DESIGN.md's 'durable in LMDB "
			"before the reply'",
		 SEND_ROOMS);
	rep_note(&p->r, "sends: raw nng + log fdatasync is the same with an append-only file, "
			"one write and one fdatasync a batch (Redis's AOF)");
	rep_note(&p->r, "sends in batches of %d: Parley SendBatch (%d Sends a call, one "
			"transaction), Redis %d XADDs pipelined a round trip, raw nng %zu-byte "
			"requests with %zu-byte replies (a SendBatch's frames); p50 is per call",
		 SEND_BATCH, SEND_BATCH, SEND_BATCH, breq_len, breply_len);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		int n = cases[k].senders, batch = cases[k].batch, per = batch > 0 ? batch : 1;
		pa_load_fn fn = batch > 0 ? do_send_batch : do_send;
		char name[64];
		measure *rate, *p50, *mpc;

		snprintf(name, sizeof(name), "durable sends, %d sender%s%s", n, n > 1 ? "s" : "",
			 batch > 0 ? ", batches of 16" : "");
		rate = new_measure(p, name, "acked", "msgs/s", false);
		p50 = new_measure(p, name, batch > 0 ? "p50 call latency" : "p50 ack latency", "us",
				  false);
		mpc = new_measure(p, name, "Parley msgs per commit", "msgs", true);
		for (int rep = 0; rep < p->o->reps; rep++) {
			samples lat;
			int errors = 0;
			char err[200] = "";
			rpc_status first = {0};
			uint64_t tx0, tx1;
			double v;

			samples_init(&lat, 500000);
			send_run++;
			tx0 = lmdb_last_txnid(p->d.dir);
			v = per * pa_load(p->d.messaging, n, fn, send_token, dur, &lat, &errors,
					  &first);
			tx1 = lmdb_last_txnid(p->d.dir);
			if (errors)
				rep_fail(&p->r, "%s: Parley: %d failed sends, first: %s %s", name,
					 errors, rpc_code_name(first.code), first.message);
			rstat_add(&rate->v[C_POLL], v);
			rstat_add(&p50->v[C_POLL], samples_pct_us(&lat, 50));
			if (tx0 != 0 && tx1 > tx0)
				rstat_add(&mpc->v[C_POLL], (double)(lat.count + (uint64_t)n) * per /
							       (double)(tx1 - tx0));

			if (ab) {
				samples_reset(&lat);
				errors = 0;
				tx0 = lmdb_last_txnid(p->db.dir);
				v = per * pa_load(p->db.messaging, n, fn, send_token_b, dur, &lat,
						  &errors, &first);
				tx1 = lmdb_last_txnid(p->db.dir);
				if (errors && first.code == RPC_UNIMPLEMENTED) {
					rep_note(&p->r, "%s: the --ab parleyd has no SendBatch", name);
					v = 0;
				} else if (errors)
					rep_fail(&p->r, "%s: --ab Parley: %d failed sends, first: %s %s",
						 name, errors, rpc_code_name(first.code),
						 first.message);
				if (v > 0) {
					rstat_add(&rate->v[C_POLLB], v);
					rstat_add(&p50->v[C_POLLB], samples_pct_us(&lat, 50));
				}
				if (v > 0 && tx0 != 0 && tx1 > tx0)
					rstat_add(&mpc->v[C_POLLB],
						  (double)(lat.count + (uint64_t)n) * per /
						      (double)(tx1 - tx0));
			}
			if (p->redis_on) {
				samples_reset(&lat);
				errors = 0;
				v = redis_xadd_load(&p->redis, n, SEND_ROOMS, per, SEND_TEXT, dur, &lat,
						    &errors, err, sizeof(err));
				if (errors)
					rep_fail(&p->r, "%s: Redis: %d failed XADDs, first: %s", name,
						 errors, err);
				rstat_add(&rate->v[C_REDIS], v);
				rstat_add(&p50->v[C_REDIS], samples_pct_us(&lat, 50));
			}
			samples_free(&lat);
			for (int c = C_NNG; c <= C_NNGLOG; c++)
				floor_sends(p, &floors[c - C_NNG], c, name, n, per,
					    batch > 0 ? breq_len : req_len,
					    batch > 0 ? breply_len : reply_len, dur, rate, p50);
			printf("  %-26s rep %d  Parley %7.0f/s  --ab %7.0f/s  Redis %7.0f/s  raw nng "
			       "%7.0f/s  + LMDB %7.0f/s  + log %7.0f/s\n",
			       name, rep + 1, rate->v[C_POLL].v[rep],
			       rate->v[C_POLLB].n > rep ? rate->v[C_POLLB].v[rep] : 0,
			       rate->v[C_REDIS].n > rep ? rate->v[C_REDIS].v[rep] : 0,
			       rate->v[C_NNG].n > rep ? rate->v[C_NNG].v[rep] : 0,
			       rate->v[C_NNGDB].n > rep ? rate->v[C_NNGDB].v[rep] : 0,
			       rate->v[C_NNGLOG].n > rep ? rate->v[C_NNGLOG].v[rep] : 0);
		}
	}
out:
	rpc_client_close(rooms);
	rpc_client_close(auth);
}

/* ---- fan-out: the five systems ---------------------------------------------------- */

typedef struct fsys {
	void *h;
	fo_recv *rs;
	fo_send_fn send;
	void (*last)(void *, uint64_t *);
	pid_t pid;		/* the server whose CPU is counted */
} fsys;

typedef struct phase_m {
	measure *p50, *p99, *cpu, *rate, *lost, *dup;
} phase_m;

static void
setup_systems(peers_run *p, int ci, const fo_case *c, fsys *sys, int n)
{
	char why[300] = "";

	sys[C_POLL] = (fsys){.send = pfo_send, .last = pfo_last, .pid = p->d.pid};
	sys[C_HTTP] = (fsys){.send = pfo_send, .last = pfo_last, .pid = p->d.pid};
	sys[C_REDIS] = (fsys){.send = rfo_send, .last = rfo_last, .pid = p->redis.pid};
	sys[C_IRC] = (fsys){.send = ifo_send, .last = ifo_last, .pid = p->irc.pid};
	sys[C_MQTT] = (fsys){.send = mqtt_send, .last = mqtt_last};
	sys[C_POLLB] = (fsys){.send = pfo_send, .last = pfo_last, .pid = p->db.pid};
	sys[C_FLOOR] = (fsys){.send = lpoll_send, .last = lpoll_last};
	sys[C_FLOORCB] = (fsys){.send = lpoll_send, .last = lpoll_last};
	sys[C_FLOORLOG] = (fsys){.send = lpoll_send, .last = lpoll_last};
	for (int s = 0; s < C_NNG; s++) {
		if ((sys[s].rs = calloc((size_t)n, sizeof(fo_recv))) == NULL)
			return;
		for (int i = 0; i < n; i++)
			fo_recv_init(&sys[s].rs[i], i / c->members, false, 20000); /* >= a phase */
	}
	printf("  %dx%d: setting up %d receivers per system\n", c->rooms, c->members, n);
	if ((sys[C_POLL].h = pfo_setup(&p->d, &p->users, ci, c, sys[C_POLL].rs, why,
				       sizeof(why))) == NULL)
		rep_fail(&p->r, "%dx%d: Parley Poll set-up: %s", c->rooms, c->members, why);
	if ((sys[C_HTTP].h = pfo_setup_http(&p->d, &p->users, ci + 50, c, sys[C_HTTP].rs,
					    p->http_port, why, sizeof(why))) == NULL)
		rep_fail(&p->r, "%dx%d: Parley Subscribe set-up: %s", c->rooms, c->members, why);
	if (p->db.pid > 0 &&
	    (sys[C_POLLB].h = pfo_setup(&p->db, &p->users_b, ci, c, sys[C_POLLB].rs, why,
					sizeof(why))) == NULL)
		rep_fail(&p->r, "%dx%d: --ab parleyd set-up: %s", c->rooms, c->members, why);
	if (p->redis_on &&
	    (sys[C_REDIS].h = rfo_setup(&p->redis, ci, c, sys[C_REDIS].rs, why, sizeof(why))) ==
		    NULL)
		rep_fail(&p->r, "%dx%d: Redis set-up: %s", c->rooms, c->members, why);
	for (int s = C_FLOOR; s <= C_FLOORLOG; s++) {
		if ((sys[s].h = lpoll_setup(p->o, c, sys[s].rs, s == C_FLOOR, s == C_FLOORLOG, why,
					    sizeof(why))) == NULL)
			rep_fail(&p->r, "%dx%d: %s set-up: %s", c->rooms, c->members, col_names[s],
				 why);
		sys[s].pid = lpoll_pid(sys[s].h);
	}
	/* The IRC and MQTT drivers set receivers up one by one: InspIRCd took
	 * seconds a client beyond ~900 in a channel, and the libmosquitto
	 * driver's one loop did not get 1,000 subscribed within a minute. */
	if (n > PEERS_INMEM_MAX) {
		rep_note(&p->r, "%dx%d: IRC and Mosquitto not measured (more than %d receivers)",
			 c->rooms, c->members, PEERS_INMEM_MAX);
	} else {
		if (p->irc_on && (sys[C_IRC].h = ifo_setup(&p->irc, ci, c, sys[C_IRC].rs, why,
							   sizeof(why))) == NULL)
			rep_fail(&p->r, "%dx%d: IRC set-up: %s", c->rooms, c->members, why);
		if (!mqtt_available(why, sizeof(why)) ||
		    (sys[C_MQTT].h = mqtt_setup_qos(p->o, c, sys[C_MQTT].rs, 1, why,
						    sizeof(why))) == NULL)
			rep_note(&p->r, "%dx%d: Mosquitto not measured: %s", c->rooms, c->members,
				 why);
	}
	sys[C_MQTT].pid = mqtt_broker_pid(sys[C_MQTT].h);
	for (int s = 0; s < C_NNG; s++)
		if (sys[s].h != NULL)
			fo_reset(sys[s].rs, n);
}

static void
teardown_systems(fsys *sys, int n)
{
	pfo_teardown(sys[C_POLL].h);
	pfo_teardown(sys[C_HTTP].h);
	pfo_teardown(sys[C_POLLB].h);
	rfo_teardown(sys[C_REDIS].h);
	ifo_teardown(sys[C_IRC].h);
	mqtt_teardown(sys[C_MQTT].h);
	lpoll_teardown(sys[C_FLOOR].h);
	lpoll_teardown(sys[C_FLOORCB].h);
	lpoll_teardown(sys[C_FLOORLOG].h);
	for (int s = 0; s < C_NNG; s++) {
		for (int i = 0; sys[s].rs != NULL && i < n; i++)
			fo_recv_free(&sys[s].rs[i]);
		free(sys[s].rs);
	}
}

/* Receivers' own errors (failed Polls, broken streams, odd lines). */
static void
check_receivers(peers_run *p, const fo_case *c, fsys *sys)
{
	char first[300] = "";
	rpc_status st = {0};
	int n;

	for (int s = C_POLL; s <= C_POLLB; s++)
		if ((s == C_POLL || s == C_HTTP || s == C_POLLB) && sys[s].h != NULL &&
		    (n = pfo_poll_errors(sys[s].h, &st)) != 0)
			rep_fail(&p->r, "%dx%d: %s: %d receiver errors, first: %s %s", c->rooms,
				 c->members, col_names[s], n, rpc_code_name(st.code), st.message);
	if (sys[C_REDIS].h != NULL && (n = rfo_errors(sys[C_REDIS].h, first, sizeof(first))) != 0)
		rep_fail(&p->r, "%dx%d: Redis: %d receiver errors, first: %s", c->rooms, c->members,
			 n, first);
	for (int s = C_FLOOR; s <= C_FLOORLOG; s++)
		if ((n = lpoll_errors(sys[s].h)) != 0)
			rep_fail(&p->r, "%dx%d: %s: %d receiver errors", c->rooms, c->members,
				 col_names[s], n);
	if (sys[C_IRC].h != NULL && (n = ifo_errors(sys[C_IRC].h, first, sizeof(first))) != 0)
		rep_note(&p->r, "%dx%d: IRC: %d receiver errors, first: %s", c->rooms, c->members, n,
			 first);
}

static void
run_phase(peers_run *p, const fo_case *c, fsys *sys, bool flat, double msg_rate,
	  phase_m *pm, int rep)
{
	const bench_opts *o = p->o;
	int n = c->rooms * c->members;
	char label[64];

	if (flat)
		snprintf(label, sizeof(label), "%dx%d flat out", c->rooms, c->members);
	else
		snprintf(label, sizeof(label), "%dx%d at %.0f msg/s", c->rooms, c->members, msg_rate);
	for (int s = 0; s < C_NNG; s++) {
		fo_drive dr = {.rooms = c->rooms, .flat = flat, .rate = msg_rate,
			       .threads = flat ? 4 : 8,
			       .dur_ns = flat ? (o->quick ? 300000000ull : 3000000000ull)
					      : (o->quick ? 500000000ull : 5000000000ull),
			       .cap = (uint64_t)(o->quick ? 20000 : 300000) / (uint64_t)c->members};
		uint64_t last[FO_MAX_ROOMS], t0;
		double cpu0, cpu1;
		fo_result res;

		if (sys[s].h == NULL)
			continue;
		cpu0 = bench_proc_cpu_s(sys[s].pid);
		t0 = bench_now_ns();
		fo_run(&dr, sys[s].send, sys[s].h);
		sys[s].last(sys[s].h, last);
		/* Nothing arriving for 15 s ends the wait: on a loaded machine the
		 * in-memory servers stall for seconds too, and their late messages
		 * would show as lost here and duplicated in the next phase. */
		fo_harvest(sys[s].rs, n, last, t0, 15000000000ull, 120000000000ull, &res);
		cpu1 = bench_proc_cpu_s(sys[s].pid);
		if (flat) {
			rstat_add(&pm->rate->v[s], res.per_s);
		} else {
			rstat_add(&pm->p50->v[s], res.p50_us);
			rstat_add(&pm->p99->v[s], res.p99_us);
			if (cpu0 >= 0 && cpu1 >= 0 && res.delivered > 0)
				rstat_add(&pm->cpu->v[s], (cpu1 - cpu0) * 1e6 / (double)res.delivered);
		}
		rstat_add(&pm->lost->v[s], (double)res.lost);
		rstat_add(&pm->dup->v[s], (double)res.dup);
		printf("    %-20s rep %d %-22s %9.0f deliveries/s  p50 %8.0f us  p99 %8.0f us  "
		       "cpu %6.1f us/delivery  delivered %llu lost %llu dup %llu\n",
		       label, rep + 1, col_names[s], res.per_s, res.p50_us, res.p99_us,
		       res.delivered ? (cpu1 - cpu0) * 1e6 / (double)res.delivered : 0,
		       (unsigned long long)res.delivered, (unsigned long long)res.lost,
		       (unsigned long long)res.dup);
		if (dr.errors)
			rep_fail(&p->r, "%s: %s: %d failed sends, first: %s", label, col_names[s],
				 dr.errors, dr.err);
		if (durable(s) && (res.lost || res.dup || !res.complete))
			rep_fail(&p->r, "%s: %s lost %llu and duplicated %llu messages%s", label,
				 col_names[s], (unsigned long long)res.lost,
				 (unsigned long long)res.dup,
				 res.complete ? "" : " (receivers did not catch up)");
	}
}

static void
run_case(peers_run *p, int ci, const fo_case *c, double msg_rate, bool flat_too)
{
	int n = c->rooms * c->members;
	fsys sys[NCOL] = {{0}};
	phase_m fixed = {0}, flat = {0};
	char name[64];

	snprintf(name, sizeof(name), "%dx%d, %.0f msg/s", c->rooms, c->members, msg_rate);
	fixed.p50 = new_measure(p, name, "send->recv p50", "us", false);
	fixed.p99 = new_measure(p, name, "send->recv p99", "us", false);
	fixed.cpu = new_measure(p, name, "server CPU per delivery", "us", false);
	fixed.lost = new_measure(p, name, "lost", "msgs", true);
	fixed.dup = new_measure(p, name, "duplicated", "msgs", true);
	if (flat_too) {
		snprintf(name, sizeof(name), "%dx%d, flat out", c->rooms, c->members);
		flat.rate = new_measure(p, name, "deliveries/s", "1/s", false);
		flat.lost = new_measure(p, name, "lost", "msgs", true);
		flat.dup = new_measure(p, name, "duplicated", "msgs", true);
	}
	setup_systems(p, ci, c, sys, n);
	for (int rep = 0; rep < p->o->reps; rep++) {
		run_phase(p, c, sys, false, msg_rate, &fixed, rep);
		if (flat_too)
			run_phase(p, c, sys, true, msg_rate, &flat, rep);
	}
	check_receivers(p, c, sys);
	teardown_systems(sys, n);
}

/* ---- results ----------------------------------------------------------------------- */

/* Report rows: Parley Poll against each other column; then the per-rep
 * ratios of Parley (Poll, Subscribe) to Redis. */
static void
emit_rows(peers_run *p)
{
	for (int i = 0; i < p->nm; i++) {
		measure *m = &p->m[i];

		for (int s = 0; s < NCOL; s++) {
			brow *row;
			char metric[64];

			if (m->v[s].n == 0 || (s == C_POLL && !m->counts))
				continue;
			if (m->counts) {
				snprintf(metric, sizeof(metric), "%s, %s", m->metric, col_names[s]);
				row = rep_row(&p->r, m->name, metric, m->unit);
				row->parley = m->v[s];
				continue;
			}
			row = rep_row_vs(&p->r, m->name, m->metric, m->unit, col_names[s]);
			row->parley = m->v[C_POLL];
			row->b = m->v[s];
		}
		for (int s = C_POLL; s <= C_HTTP && !m->counts; s++) {
			brow *row;
			int reps = m->v[s].n < m->v[C_REDIS].n ? m->v[s].n : m->v[C_REDIS].n;

			if (reps == 0)
				continue;
			row = rep_row(&p->r, m->name,
				      s == C_POLL ? "Poll/Redis per rep" : "Subscribe/Redis per rep",
				      "x");
			for (int k = 0; k < reps; k++)
				if (m->v[C_REDIS].v[k] != 0)
					rstat_add(&row->parley, m->v[s].v[k] / m->v[C_REDIS].v[k]);
		}
	}
}

static void
cell(char *buf, size_t len, const rstat *s)
{
	double med = rstat_median(s), lo = rstat_min(s), hi = rstat_max(s);

	if (s->n == 0)
		snprintf(buf, len, " ");
	else if (med >= 100 || med == 0)
		snprintf(buf, len, "%.0f (%.0f–%.0f)", med, lo, hi);
	else
		snprintf(buf, len, "%.1f (%.1f–%.1f)", med, lo, hi);
}

/* The table, Markdown: medians (min–max) and Parley Poll / Redis
 * as the median of the per-rep ratios. */
static void
print_summary(peers_run *p)
{
	bool used[NCOL] = {false};

	for (int i = 0; i < p->nm; i++)
		for (int s = 0; s < NCOL; s++)
			used[s] |= p->m[i].v[s].n > 0;
	printf("\n| measure |");
	for (int s = 0; s < NCOL; s++)
		if (used[s])
			printf(" %s |", col_names[s]);
	printf(" Poll / Redis (per rep) |\n|---|");
	for (int s = 0; s < NCOL; s++)
		if (used[s])
			printf("---|");
	printf("---|\n");
	for (int i = 0; i < p->nm; i++) {
		measure *m = &p->m[i];
		char c[64], ratio[64] = " ";
		rstat rr = {0};

		printf("| %s: %s [%s] |", m->name, m->metric, m->unit);
		for (int s = 0; s < NCOL; s++) {
			if (!used[s])
				continue;
			cell(c, sizeof(c), &m->v[s]);
			printf(" %s |", c);
		}
		for (int k = 0; !m->counts && k < m->v[C_POLL].n && k < m->v[C_REDIS].n; k++)
			if (m->v[C_REDIS].v[k] != 0)
				rstat_add(&rr, m->v[C_POLL].v[k] / m->v[C_REDIS].v[k]);
		if (rr.n)
			snprintf(ratio, sizeof(ratio), "%.2f× (%.2f–%.2f)", rstat_median(&rr),
				 rstat_min(&rr), rstat_max(&rr));
		printf(" %s |\n", ratio);
	}
}

int
scen_peers(const bench_opts *o)
{
	static peers_run run;
	/* Each case at its rate in msg/s, and whether flat out too. The
	 * default: issue 15's rows, and 1,000 members at the 5,000 deliveries/s
	 * of 1 x 100. --cases: those at 5,000 deliveries/s, fixed rate only. */
	static struct {
		fo_case c;
		double rate;
		bool flat;
	} cases[8] = {{{1, 10}, 100, false}, {{1, 100}, 50, true}, {{1, 1000}, 5, false}};
	peers_run *p = &run;
	char contexts[32], sessions[32], http[64], why[300] = "";
	const char *extra[24];
	/* The sends rows' floors, columns C_NNG to C_NNGLOG. */
	static const echo_kind floor_kinds[] = {ECHO_PLAIN, ECHO_LMDB, ECHO_LOG};
	echo_server floors[3] = {{0}};
	int k = 0, ncases = 3, maxn = 0;

	memset(p, 0, sizeof(*p));
	p->o = o;
	rep_begin(&p->r, "peers", o);
	if (o->quick) {
		cases[0].flat = true; /* CI: that each works */
		ncases = 1;
	}
	if (o->fanout_cases != NULL) {
		fo_case custom[8];

		if ((ncases = fo_parse_cases(o->fanout_cases, custom, 8, 1000, why, sizeof(why))) <
		    0) {
			rep_fail(&p->r, "%s", why);
			return rep_finish(&p->r);
		}
		for (int i = 0; i < ncases; i++) {
			cases[i].c = custom[i];
			cases[i].rate = 5000.0 / (custom[i].rooms * custom[i].members);
			cases[i].flat = false;
		}
	}
	for (int i = 0; i < ncases; i++)
		if (cases[i].c.rooms * cases[i].c.members > maxn)
			maxn = cases[i].c.rooms * cases[i].c.members;
	/* Two receiver systems of up to maxn each hold a call or stream open. */
	snprintf(contexts, sizeof(contexts), "%d", 2 * maxn + 256);
	snprintf(sessions, sizeof(sessions), "%d", 4 * maxn + 100);
	p->http_port = bench_free_port();
	snprintf(http, sizeof(http), "http://127.0.0.1:%d", p->http_port);
	extra[k++] = "--contexts";
	extra[k++] = contexts;
	extra[k++] = "--max-sessions";
	extra[k++] = sessions;
	extra[k++] = "--max-user-sessions";
	extra[k++] = sessions;
	extra[k++] = "--max-conns-per-peer";
	extra[k++] = contexts;
	extra[k++] = "--max-conns";
	extra[k++] = contexts;
	extra[k++] = "--http-listen";
	extra[k++] = http;
	extra[k++] = "--http-max-connections";
	extra[k++] = contexts;
	extra[k++] = "--http-max-per-ip";
	extra[k++] = contexts;
	extra[k] = NULL;
	if (!pd_start(&p->d, o, "auth,rooms,messaging", extra)) {
		rep_fail(&p->r, "parleyd did not start");
		return rep_finish(&p->r);
	}
	rep_set_fs(&p->r, p->d.dir);
	if (o->parleyd_b != NULL) {
		bench_opts ob = *o;

		ob.parleyd = o->parleyd_b;
		extra[k - 6] = NULL;	/* no HTTP face: only its Poll is measured */
		if (!pd_start(&p->db, &ob, "auth,rooms,messaging", extra))
			rep_fail(&p->r, "the --ab parleyd (%s) did not start", o->parleyd_b);
		else
			rep_note(&p->r, "'Parley Poll, --ab parleyd' is %s, measured rep by rep "
					"with %s", o->parleyd_b, o->parleyd);
		extra[k - 6] = "--http-listen";
	}
	if (!(p->redis_on = redis_start(&p->redis, o, why, sizeof(why))))
		rep_fail(&p->r, "Redis, the durable peer, not measured: %s", why);
	if (!(p->irc_on = irc_start(&p->irc, o, why, sizeof(why))))
		rep_note(&p->r, "IRC not measured: %s", why);
	for (int i = 0; i < 3; i++)
		if (!echo_start(&floors[i], o, floor_kinds[i]))
			rep_note(&p->r, "%s not measured: its server did not start",
				 col_names[C_NNG + i]);
	rep_note(&p->r, "Redis: appendonly yes, appendfsync always, no RDB, no automatic AOF "
			"rewrite, data dir beside parleyd's; InspIRCd: no DNS/ident, flood limits "
			"off; Mosquitto: QoS 1 publish and subscribe, no persistence");
	rep_note(&p->r, "fan-out floors: DESIGN.md's delivery shape with nothing else: sends "
			"group-committed and synced into one LMDB table, then acked and published "
			"by a replier thread, once a batch; long polls over nng REQ/REP answered by "
			"a worker thread per client ('thread per client') or parked and answered "
			"by the replier ('no threads'); messages served from memory; no protobuf "
			"or tokens (bench/base_lpoll.c)");
	rep_note(&p->r, "fan-out floors: 'log' is durable in an append-only file (one write and "
			"one fdatasync a batch, as Redis's AOF) instead of LMDB");
	rep_note(&p->r, "fan-out: fixed rate from 8 sender threads for %.1f s, flat out from 4 "
			"for %.1f s capped at %d deliveries; Parley and Redis senders wait for a "
			"durable ack, IRC and MQTT ones do not; server CPU = utime+stime of the "
			"server process over the phase / deliveries (10 ms ticks; parleyd's "
			"includes its idle receivers of the other Parley system)",
		 o->quick ? 0.5 : 5.0, o->quick ? 0.3 : 3.0, o->quick ? 20000 : 300000);

	run_sends(p, floors);
	{
		rpc_client *auth = pa_client(p->d.auth);
		bool ok = auth != NULL && pa_user(auth, "fosender", p->users.sender);

		for (int i = 0; ok && i < 10; i++) {
			char name[32];

			snprintf(name, sizeof(name), "forecv%02d", i);
			ok = pa_user(auth, name, p->users.recv[i]);
			p->users.n = i + 1;
		}
		rpc_client_close(auth);
		if (ok && p->db.pid > 0) {
			auth = pa_client(p->db.auth);
			ok = auth != NULL && pa_user(auth, "fosender", p->users_b.sender);
			for (int i = 0; ok && i < 10; i++) {
				char name[32];

				snprintf(name, sizeof(name), "forecv%02d", i);
				ok = pa_user(auth, name, p->users_b.recv[i]);
				p->users_b.n = i + 1;
			}
			rpc_client_close(auth);
		}
		if (!ok)
			rep_fail(&p->r, "cannot set up the fan-out users");
		else if (o->sends_only)
			rep_note(&p->r, "--sends-only: no fan-out rows");
		else
			for (int i = 0; i < ncases; i++)
				run_case(p, i, &cases[i].c, cases[i].rate, cases[i].flat);
	}
	emit_rows(p);
	print_summary(p);
	for (int i = 0; i < 3; i++)
		echo_stop(&floors[i]);
	peer_stop(&p->redis);
	peer_stop(&p->irc);
	if (p->db.pid > 0)
		pd_stop(&p->db);
	pd_stop(&p->d);
	return rep_finish(&p->r);
}

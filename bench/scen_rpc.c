/*
 * scen_rpc.c — round trips: Health/Check and Auth/Validate against parleyd's
 * auth endpoint, 1 and 16 concurrent clients, each interleaved rep by rep
 * with a raw nng REQ/REP echo of the same frame sizes (the floor).
 */
#include "bench.h"

#include <stdio.h>
#include <string.h>

#include "parley/v1/auth.pb-c.h"
#include "parley/v1/health.pb-c.h"
#include "parley/v1/rpc.pb-c.h"

typedef struct rpc_case {
	const char *name;	/* "Health/Check" */
	pa_load_fn fn;
	size_t req_len, reply_len;	/* the envelopes' packed sizes */
} rpc_case;

static char token[PA_TOKEN];

static rpc_code
do_health(rpc_client *c, void *arg, int thread, uint64_t i, rpc_status *st)
{
	return pa_health(c, st);
}

static rpc_code
do_validate(rpc_client *c, void *arg, int thread, uint64_t i, rpc_status *st)
{
	return pa_validate(c, token, st);
}

/* The sizes of the frames Parley's client and server exchange for a call
 * whose request and reply bodies are req/resp: the same envelopes packed
 * here, with an id and deadline as large as the client's. */
static void
frame_sizes(const char *method, const ProtobufCMessage *req, const ProtobufCMessage *resp,
	    size_t *req_len, size_t *reply_len)
{
	Parley__V1__RpcRequest env = PARLEY__V1__RPC_REQUEST__INIT;
	Parley__V1__RpcResponse out = PARLEY__V1__RPC_RESPONSE__INIT;
	Parley__V1__Status status = PARLEY__V1__STATUS__INIT;
	uint8_t body[512], rbody[512];

	env.method = (char *)method;
	env.body.len = protobuf_c_message_pack(req, body);
	env.body.data = body;
	env.timeout_ms = 29999;
	env.request_id = (uint64_t)rpc_wall_ms() << 16;
	*req_len = parley__v1__rpc_request__get_packed_size(&env);
	out.status = &status;
	out.body.len = protobuf_c_message_pack(resp, rbody);
	out.body.data = rbody;
	out.request_id = env.request_id;
	*reply_len = parley__v1__rpc_response__get_packed_size(&out);
}

static void
measure(breport *r, const bench_opts *o, const char *url, const echo_server *echo,
	const rpc_case *rc, int clients, uint64_t dur_ns)
{
	char name[64];
	brow *p50, *p99, *rate;

	snprintf(name, sizeof(name), "%s, %d client%s", rc->name, clients, clients > 1 ? "s" : "");
	p50 = rep_row_vs(r, name, "p50 latency", "us", "raw nng");
	p99 = rep_row_vs(r, name, "p99 latency", "us", "raw nng");
	rate = rep_row_vs(r, name, "throughput", "calls/s", "raw nng");
	for (int rep = 0; rep < o->reps; rep++) {
		samples lat;
		int errors = 0;
		rpc_status first = {0};
		double v;

		/* Parley, then the floor, rep by rep: drift on a shared machine
		 * hits both alike. */
		samples_init(&lat, 400000);
		v = pa_load(url, clients, rc->fn, NULL, dur_ns, &lat, &errors, &first);
		if (errors)
			rep_fail(r, "%s: %d failed calls, first: %s %s", name, errors,
				 rpc_code_name(first.code), first.message);
		rstat_add(&p50->parley, samples_pct_us(&lat, 50));
		rstat_add(&p99->parley, samples_pct_us(&lat, 99));
		rstat_add(&rate->parley, v);

		samples_reset(&lat);
		errors = 0;
		v = echo_load(echo->url, clients, rc->req_len, rc->reply_len, 1, dur_ns, &lat, &errors);
		if (errors)
			rep_fail(r, "%s: raw nng echo had %d errors", name, errors);
		rstat_add(&p50->b, samples_pct_us(&lat, 50));
		rstat_add(&p99->b, samples_pct_us(&lat, 99));
		rstat_add(&rate->b, v);
		samples_free(&lat);
	}
	printf("  %-28s p50 %.1f us (raw %.1f)  %.0f calls/s (raw %.0f)\n", name,
	       rstat_median(&p50->parley), rstat_median(&p50->b), rstat_median(&rate->parley),
	       rstat_median(&rate->b));
}

int
scen_rpc(const bench_opts *o)
{
	static const int client_counts[] = {1, 16};
	Parley__V1__HealthCheckRequest hreq = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	Parley__V1__HealthCheckResponse hresp = PARLEY__V1__HEALTH_CHECK_RESPONSE__INIT;
	Parley__V1__ValidateRequest vreq = PARLEY__V1__VALIDATE_REQUEST__INIT;
	Parley__V1__ValidateResponse vresp = PARLEY__V1__VALIDATE_RESPONSE__INIT;
	uint64_t dur = o->quick ? 250000000ull : 3000000000ull;
	rpc_case cases[2] = {
		{"Health/Check", do_health, 0, 0},
		{"Auth/Validate", do_validate, 0, 0},
	};
	echo_server echo = {0};
	pd_daemon d;
	breport r;
	rpc_client *auth;

	rep_begin(&r, "rpc", o);
	if (!pd_start(&d, o, "auth", NULL)) {
		rep_fail(&r, "parleyd did not start");
		return rep_finish(&r);
	}
	rep_set_fs(&r, d.dir);
	if ((auth = pa_client(d.auth)) == NULL || !pa_user(auth, "benchrpc", token)) {
		rep_fail(&r, "cannot set up a user");
		goto out;
	}
	rpc_client_close(auth);
	if (!echo_start(&echo, o, ECHO_PLAIN)) {
		rep_fail(&r, "the raw nng echo server did not start");
		goto out;
	}

	hresp.status = PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	frame_sizes("/parley.v1.Health/Check", &hreq.base, &hresp.base, &cases[0].req_len,
		    &cases[0].reply_len);
	vreq.token = token;
	vresp.user_id = "benchrpc";
	vresp.expires_at_ms = rpc_wall_ms() + 86400000;
	frame_sizes("/parley.v1.Auth/Validate", &vreq.base, &vresp.base, &cases[1].req_len,
		    &cases[1].reply_len);
	rep_note(&r, "raw nng frames: Health/Check %zu B request, %zu B reply; "
		     "Auth/Validate %zu B request, %zu B reply (Parley's envelopes packed alike)",
		 cases[0].req_len, cases[0].reply_len, cases[1].req_len, cases[1].reply_len);
	rep_note(&r, "each client has its own connection; %.2f s per repetition; parleyd and "
		     "the echo server are separate processes on 127.0.0.1",
		 (double)dur / 1e9);

	for (size_t c = 0; c < sizeof(client_counts) / sizeof(client_counts[0]); c++)
		for (size_t k = 0; k < 2; k++)
			measure(&r, o, d.auth, &echo, &cases[k], client_counts[c], dur);

out:
	echo_stop(&echo);
	pd_stop(&d);
	return rep_finish(&r);
}

/*
 * scen_login.c — logins/s at 2 x cores concurrency against the ceiling the
 * password hash allows: cores / (one Argon2id verify with interactive
 * limits), the verify timed here in the same run. Peak server RSS (VmHWM)
 * shows what concurrent hashes cost in memory.
 */
#include "bench.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#define LOGIN_USERS_MAX 64

static char users[LOGIN_USERS_MAX][32];

static rpc_code
do_login(rpc_client *c, void *arg, int thread, uint64_t i, rpc_status *st)
{
	char pw[128], token[PA_TOKEN];

	pa_password(users[thread], pw, sizeof(pw));
	return pa_login(c, users[thread], pw, token, st);
}

/* Median of three single-threaded verifies of a fresh interactive hash, in
 * seconds; 0 on failure. */
static double
verify_seconds(void)
{
	static const char pw[] = "bench-password-reference";
	char hash[crypto_pwhash_STRBYTES];
	double t[3];

	if (crypto_pwhash_str(hash, pw, sizeof(pw) - 1, crypto_pwhash_OPSLIMIT_INTERACTIVE,
			      crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
		return 0;
	for (int i = 0; i < 3; i++) {
		uint64_t t0 = bench_now_ns();

		if (crypto_pwhash_str_verify(hash, pw, sizeof(pw) - 1) != 0)
			return 0;
		t[i] = (double)(bench_now_ns() - t0) / 1e9;
	}
	if (t[0] > t[1]) {
		double x = t[0];
		t[0] = t[1];
		t[1] = x;
	}
	return t[2] < t[0] ? t[0] : t[2] > t[1] ? t[1] : t[2];
}

int
scen_login(const bench_opts *o)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int conc = (int)(2 * cores > LOGIN_USERS_MAX ? LOGIN_USERS_MAX : 2 * cores);
	uint64_t dur = o->quick ? 1000000000ull : 5000000000ull;
	char name[64], token[PA_TOKEN];
	brow *rate, *p50, *p99, *hwm;
	rpc_client *auth = NULL;
	long rss0;
	pd_daemon d;
	breport r;

	rep_begin(&r, "login", o);
	if (sodium_init() < 0) {
		rep_fail(&r, "libsodium did not initialise");
		return rep_finish(&r);
	}
	if (!pd_start(&d, o, "auth", NULL)) {
		rep_fail(&r, "parleyd did not start");
		return rep_finish(&r);
	}
	rep_set_fs(&r, d.dir);
	rss0 = bench_proc_status(d.pid, "VmRSS");
	if ((auth = pa_client(d.auth)) == NULL) {
		rep_fail(&r, "no client");
		goto out;
	}
	for (int i = 0; i < conc; i++) {
		snprintf(users[i], sizeof(users[i]), "login%02d", i);
		if (!pa_user(auth, users[i], token)) {
			rep_fail(&r, "cannot set up user %s", users[i]);
			goto out;
		}
	}

	snprintf(name, sizeof(name), "Login, %d clients", conc);
	rate = rep_row_vs(&r, name, "throughput", "logins/s", "ceiling cores/verify");
	p50 = rep_row_vs(&r, name, "p50 latency", "ms", "one verify");
	p99 = rep_row(&r, name, "p99 latency", "ms");
	hwm = rep_row(&r, "parleyd", "peak RSS (VmHWM)", "MiB");
	for (int rep = 0; rep < o->reps; rep++) {
		double hash_s = verify_seconds();
		samples lat;
		int errors = 0;
		rpc_status first = {0};
		double v;

		if (hash_s <= 0) {
			rep_fail(&r, "Argon2id reference hash failed");
			break;
		}
		rstat_add(&rate->b, (double)cores / hash_s);
		rstat_add(&p50->b, hash_s * 1000);
		samples_init(&lat, 100000);
		v = pa_load(d.auth, conc, do_login, NULL, dur, &lat, &errors, &first);
		if (errors)
			rep_fail(&r, "%d failed logins, first: %s %s", errors,
				 rpc_code_name(first.code), first.message);
		rstat_add(&rate->parley, v);
		rstat_add(&p50->parley, samples_pct_us(&lat, 50) / 1000);
		rstat_add(&p99->parley, samples_pct_us(&lat, 99) / 1000);
		rstat_add(&hwm->parley, (double)bench_proc_status(d.pid, "VmHWM") / 1024);
		samples_free(&lat);
		printf("  rep %d: %.1f logins/s, ceiling %.1f (verify %.1f ms)\n", rep + 1, v,
		       (double)cores / hash_s, hash_s * 1000);
	}
	rep_fact(&r, "cores", (double)cores);
	rep_fact(&r, "concurrency", conc);
	rep_fact(&r, "idle_rss_mib", (double)rss0 / 1024);
	rep_fact(&r, "argon2id_memlimit_mib", (double)crypto_pwhash_MEMLIMIT_INTERACTIVE / 1048576);
	rep_note(&r, "the ceiling is cores / one crypto_pwhash_str_verify (OPSLIMIT/MEMLIMIT "
		     "INTERACTIVE) timed in this process between repetitions; peak RSS includes "
		     "the %d registrations and reflects up to %d concurrent %zu MiB hashes",
		 conc, conc, (size_t)(crypto_pwhash_MEMLIMIT_INTERACTIVE >> 20));
out:
	rpc_client_close(auth);
	pd_stop(&d);
	return rep_finish(&r);
}

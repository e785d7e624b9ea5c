/*
 * parley-bench — Parley's load generator. Each scenario starts its own
 * parleyd (temp data dir, free 127.0.0.1 ports), measures it and a baseline
 * in the same run, prints a table and writes JSON; see bench.h.
 *
 * Exit status: 0 when every scenario ran and every check held (no lost or
 * duplicated message, no failed call), 1 otherwise, 2 for bad usage.
 * Timings are reported, never asserted.
 */
#define _GNU_SOURCE
#include "fanout.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#ifndef PARLEYD_PATH
#define PARLEYD_PATH "parleyd"
#endif
#ifndef BENCH_RESULTS_DIR
#define BENCH_RESULTS_DIR "bench/results"
#endif

static bench_opts opts;

static const struct scenario {
	const char *name;
	int (*run)(const bench_opts *o);
	const char *needs;	/* services parleyd must have, comma-separated */
	const char *what;
} scenarios[] = {
	{"rpc", scen_rpc, "auth", "Health/Check and Auth/Validate vs raw nng REQ/REP"},
	{"send", scen_send, "auth,rooms,messaging", "durable Send vs one LMDB commit per message"},
	{"fanout", scen_fanout, "auth,rooms,messaging",
	 "rooms x members delivery vs nng PUB/SUB and Mosquitto QoS 0"},
	{"sessions", scen_sessions, "auth,rooms,messaging", "open sessions: memory, threads, Poll"},
	{"login", scen_login, "auth", "logins/s vs cores / one Argon2id verify"},
	{"peers", scen_peers, "auth,rooms,messaging",
	 "vs Redis Streams (AOF always), InspIRCd and Mosquitto QoS 1"},
};
#define NSCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

static void
usage(FILE *out)
{
	fprintf(out, "usage: parley-bench [options] SCENARIO\n\nscenarios:\n");
	for (size_t i = 0; i < NSCENARIOS; i++)
		fprintf(out, "  %-9s %s\n", scenarios[i].name, scenarios[i].what);
	fprintf(out,
		"  all       every scenario in turn\n\noptions:\n"
		"  --quick         a short smoke version of each scenario (CI)\n"
		"  --reps N        repetitions per measurement (default 3, at least 3)\n"
		"  --parleyd PATH  the daemon to measure (default %s)\n"
		"  --out DIR       where JSON results go (default %s)\n"
		"  --cases LIST    fanout and peers: rooms x members cases, e.g. 1x10,10x100\n"
		"                  (peers: each at 5,000 deliveries/s, at most 1,000 receivers)\n"
		"  --ab PATH       peers and sessions: also measure this parleyd, rep by rep with\n"
		"                  --parleyd (a before/after of one change in the same run)\n"
		"  --sends-only    peers only: the durable-sends rows, no fan-out\n"
		"  --tmp DIR       scratch space; the data dir's filesystem is measured (default $TMPDIR or /tmp)\n",
		PARLEYD_PATH, BENCH_RESULTS_DIR);
}

static void
cleanup(void)
{
	bench_children_kill();
	bench_rmtree(opts.tmproot);
}

static void
on_signal(int sig)
{
	bench_children_kill();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Which of the services a scenario needs parleyd lacks ("" if none). */
static void
missing_services(const char *needs, char *out, size_t len)
{
	char buf[128];

	out[0] = '\0';
	snprintf(buf, sizeof(buf), "%s", needs);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save))
		if (!pd_has_service(&opts, t))
			snprintf(out + strlen(out), len - strlen(out), "%s%s", out[0] ? "," : "", t);
}

static int
run_one(const struct scenario *s, bool from_all)
{
	char missing[128];

	missing_services(s->needs, missing, sizeof(missing));
	if (missing[0] != '\0') {
		if (from_all) {
			printf("\n== %s ==\nNOT RUN: %s has no %s service yet (needs %s)\n", s->name,
			       opts.parleyd, missing, s->needs);
			return 0;
		}
		fprintf(stderr, "parley-bench: %s needs the %s service(s), which %s does not run\n",
			s->name, missing, opts.parleyd);
		return 1;
	}
	return s->run(&opts) != 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"quick", no_argument, NULL, 'q'},	 {"reps", required_argument, NULL, 'r'},
		{"parleyd", required_argument, NULL, 'p'}, {"out", required_argument, NULL, 'o'},
		{"tmp", required_argument, NULL, 't'},	 {"help", no_argument, NULL, 'h'},
		{"cases", required_argument, NULL, 'c'},
		{"ab", required_argument, NULL, 'a'},
		{"sends-only", no_argument, NULL, 's'},
		{NULL, 0, NULL, 0},
	};
	const char *tmp = getenv("TMPDIR");
	static char self[4096];
	struct rlimit rl;
	int opt, failed = 0;
	ssize_t n;

	if ((argc == 3 || argc == 5) && strcmp(argv[1], "__echo-server") == 0)
		return echo_child_main(argv[2], argc == 5 ? argv[3] : NULL,
				       argc == 5 ? argv[4] : NULL);
	if (argc == 5 && strcmp(argv[1], "__lpoll-server") == 0)
		return lpoll_child_main(argv[2], argv[3], argv[4]);

	opts.reps = BENCH_MIN_REPS;
	opts.parleyd = getenv("PARLEYD") ? getenv("PARLEYD") : PARLEYD_PATH;
	opts.outdir = BENCH_RESULTS_DIR;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'q': opts.quick = true; break;
		case 'r': opts.reps = atoi(optarg); break;
		case 'p': opts.parleyd = optarg; break;
		case 'o': opts.outdir = optarg; break;
		case 't': tmp = optarg; break;
		case 'c': opts.fanout_cases = optarg; break;
		case 'a': opts.parleyd_b = optarg; break;
		case 's': opts.sends_only = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind + 1 != argc || opts.reps < BENCH_MIN_REPS || opts.reps > BENCH_MAX_REPS) {
		if (opts.reps < BENCH_MIN_REPS || opts.reps > BENCH_MAX_REPS)
			fprintf(stderr, "parley-bench: --reps must be %d..%d\n", BENCH_MIN_REPS,
				BENCH_MAX_REPS);
		usage(stderr);
		return 2;
	}
	if (access(opts.parleyd, X_OK) != 0) {
		fprintf(stderr, "parley-bench: cannot run parleyd at %s (use --parleyd)\n",
			opts.parleyd);
		return 2;
	}
	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) <= 0) {
		perror("parley-bench: /proc/self/exe");
		return 1;
	}
	self[n] = '\0';
	opts.self = self;

	/* Many sockets: raise the descriptor limit as far as we may. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	snprintf(opts.tmproot, sizeof(opts.tmproot), "%s/parley-bench-XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(opts.tmproot) == NULL) {
		perror("parley-bench: mkdtemp");
		return 1;
	}
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (strcmp(argv[optind], "all") == 0) {
		for (size_t i = 0; i < NSCENARIOS; i++)
			failed += run_one(&scenarios[i], true);
		printf("\nparley-bench all%s: %d scenario(s) failed\n", opts.quick ? " --quick" : "",
		       failed);
		return failed ? 1 : 0;
	}
	for (size_t i = 0; i < NSCENARIOS; i++)
		if (strcmp(argv[optind], scenarios[i].name) == 0)
			return run_one(&scenarios[i], false);
	fprintf(stderr, "parley-bench: no scenario '%s'\n", argv[optind]);
	usage(stderr);
	return 2;
}

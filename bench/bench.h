/*
 * bench.h — parley-bench: the load generator and its scenarios.
 *
 * Every scenario measures Parley and a baseline side by side in the same
 * run, repeats each measurement (medians of at least BENCH_MIN_REPS, with
 * min and max), prints a table and writes JSON with the machine's facts.
 * Every load loop is bounded in time and count; all traffic goes to
 * 127.0.0.1.
 *
 * Threads: a breport and a pd_daemon belong to the scenario's main thread.
 * The samples type is single-writer; scenarios give each load thread its
 * own and merge after joining.
 */
#ifndef PARLEY_BENCH_H
#define PARLEY_BENCH_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "client.h"

#define BENCH_MIN_REPS 3
#define BENCH_MAX_REPS 9

typedef struct bench_opts {
	bool quick;
	int reps;		/* >= BENCH_MIN_REPS */
	const char *parleyd;	/* the daemon binary */
	const char *outdir;	/* where the JSON results go */
	const char *self;	/* our own binary, for helper child processes */
	char tmproot[256];	/* this run's scratch directory */
	const char *fanout_cases; /* "RxM,RxM": fanout's rooms x members, or NULL */
	const char *parleyd_b;	/* peers: a second parleyd measured alongside (--ab) */
	bool sends_only;	/* peers: the durable-sends rows only (--sends-only) */
} bench_opts;

/* ---- time and samples (util.c) ------------------------------------------ */

uint64_t bench_now_ns(void);		/* CLOCK_MONOTONIC, system-wide */
void bench_sleep_ns(uint64_t ns);
void bench_sleep_until_ns(uint64_t t);

/* Latencies in nanoseconds; at most cap of them are kept (count goes on). */
typedef struct samples {
	uint64_t *v;
	size_t n, cap;
	uint64_t count;
} samples;

void samples_init(samples *s, size_t cap);
void samples_free(samples *s);
void samples_add(samples *s, uint64_t ns);
void samples_merge(samples *into, const samples *from);
void samples_reset(samples *s);
/* The p-th percentile (0..100) in microseconds; 0 when empty. Sorts s. */
double samples_pct_us(samples *s, double p);

/* One value per repetition. */
typedef struct rstat {
	double v[BENCH_MAX_REPS];
	int n;
} rstat;

void rstat_add(rstat *r, double v);
double rstat_median(const rstat *r);
double rstat_min(const rstat *r);
double rstat_max(const rstat *r);

/* Runs fn(arg + i*size) on n threads with small stacks and joins them all.
 * Returns false if a thread could not be started (those that did are
 * joined). */
bool bench_run_threads(int n, void *(*fn)(void *), void *args, size_t size);

/* A tcp port on 127.0.0.1 nobody listens on right now. */
int bench_free_port(void);
void bench_addr(char *buf, size_t len);	/* "tcp://127.0.0.1:<free port>" */

/* /proc/<pid>/status field ("VmRSS", "VmHWM", "Threads") as a number (kB
 * for sizes); -1 if absent. */
long bench_proc_status(pid_t pid, const char *field);

/* CPU time (user + system) process pid has used so far, in seconds, from
 * /proc/<pid>/stat (clock-tick resolution, usually 10 ms); -1 if unreadable. */
double bench_proc_cpu_s(pid_t pid);

/* Creates dir (and parents); removes a tree. */
bool bench_mkdirs(const char *dir);
void bench_rmtree(const char *dir);
/* A fresh directory under o->tmproot: prefix-XXXXXX. */
bool bench_tmpdir(const bench_opts *o, const char *prefix, char *out, size_t len);

/* Child processes we started: killed at exit whatever happens. */
void bench_child_track(pid_t pid, bool add);
void bench_children_kill(void);
/* Waits for pid up to timeout_ms; exit status, or -1 on timeout. */
int bench_child_wait(pid_t pid, int timeout_ms);
/* Stops a child: SIGTERM, up to term_ms for it to exit, then SIGKILL (and
 * 10 s more). Says so on stderr before the SIGKILL when what names it. */
void bench_child_stop(pid_t pid, int term_ms, const char *what);

/*
 * Starts argv (argv[0] a path, NULL-terminated) as a tracked child, killed
 * if we die, with stdout and stderr appended to log (NULL: left as ours).
 * Its pid, or -1 when fork fails.
 */
pid_t bench_spawn(const char *const *argv, const char *log);
/* For a child server (a hidden subcommand): dies with the bench, and
 * blocks SIGTERM and SIGINT into sigs for it to sigwait on. Before any
 * thread is started. */
void bench_child_signals(sigset_t *sigs);
/*
 * bench_spawn, then waits (10 s at most) until 127.0.0.1:port accepts a
 * TCP connection. true with *pid the server's. false with err ("fork
 * failed", or "<name> did not come up on 127.0.0.1:<port> (see <log>)")
 * and *pid the child still to stop, or 0 when there is none (it exited:
 * reaped here).
 */
bool bench_spawn_server(const char *const *argv, const char *log, const char *name, int port,
			pid_t *pid, char *err, size_t errlen);

/* ---- results (report.c) ------------------------------------------------- */

typedef struct brow {
	char name[64];		/* "Health/Check, 16 clients" */
	char metric[48];	/* "p50 latency" */
	char unit[16];		/* "us", "calls/s" */
	rstat parley;
	bool has_base;
	char base[40];		/* "raw nng REQ/REP" */
	rstat b;
	bool no_ratio;		/* counts (lost, ...): a ratio means nothing */
} brow;

#define REPORT_ROWS 384
#define REPORT_NOTES 24
#define REPORT_FACTS 24

typedef struct breport {
	const char *scenario;
	const bench_opts *o;
	brow rows[REPORT_ROWS];
	int nrows;
	bool spilled;		/* rows were left out: said once on stderr */
	char notes[REPORT_NOTES][400];
	int nnotes;
	struct {
		char key[48];
		double val;
	} facts[REPORT_FACTS];
	int nfacts;
	int failures;
	char fs_dir[300];	/* whose filesystem the JSON names */
	char fs[64];		/* its type, read when set */
	double load_start[3];
	uint64_t t0_ns;
} breport;

void rep_begin(breport *r, const char *scenario, const bench_opts *o);
/* A new row; fill r->parley (and has_base, base, b) with rstat_add. */
brow *rep_row(breport *r, const char *name, const char *metric, const char *unit);
/* A row whose baseline is named. */
brow *rep_row_vs(breport *r, const char *name, const char *metric, const char *unit,
		 const char *base);
void rep_note(breport *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rep_fact(breport *r, const char *key, double val);
/* A check that failed: printed now, counted, and the run exits non-zero. */
void rep_fail(breport *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rep_set_fs(breport *r, const char *dir);
/* Prints the table, writes the JSON; returns the number of failures. */
int rep_finish(breport *r);

/* ---- parleyd (daemon.c) ------------------------------------------------- */

#define PD_ADDR 64

typedef struct pd_daemon {
	pid_t pid;
	char tmp[280];		/* scratch directory of this daemon */
	char dir[300];		/* its data directory (tmp/data) */
	char log[300];
	char services[128];
	char auth[PD_ADDR], rooms[PD_ADDR], history[PD_ADDR], messaging[PD_ADDR];
	char events[PD_ADDR], room_events[PD_ADDR], rooms_internal[PD_ADDR];
} pd_daemon;

/* True if the parleyd binary runs service name (asks its --help). */
bool pd_has_service(const bench_opts *o, const char *name);
/* Starts parleyd with services (comma list) on fresh 127.0.0.1 ports and a
 * fresh data dir, extra arguments (NULL-terminated, may be NULL), and waits
 * until its endpoints answer Health/Check. */
bool pd_start(pd_daemon *d, const bench_opts *o, const char *services,
	      const char *const *extra);
/* SIGTERM, wait, SIGKILL if it hangs; removes its scratch directory. */
void pd_stop(pd_daemon *d);
bool pd_wait_serving(const char *url, int timeout_ms);

/* ---- Parley calls (parley_api.c) ---------------------------------------- */

#define PA_TOKEN 128
#define PA_SESSION 128

/* ---- idle long Polls (idle_polls.c) --------------------------------------- */

/* Keeps a Poll (wait 30 s) waiting on each of n sessions (tokens[i],
 * sids[i]) from one connection to url, sending it again whenever it comes
 * back (unless it failed). NULL on failure. The server needs --max-conn-calls above n. */
typedef struct idle_polls idle_polls;
idle_polls *idle_polls_start(const char *url, const char *const *tokens,
			     const char (*sids)[PA_SESSION], int n);
uint64_t idle_polls_answered(idle_polls *p);	/* Polls that came back so far */
uint64_t idle_polls_failed(idle_polls *p);	/* ...with an error status */
void idle_polls_stop(idle_polls *p);

rpc_client *pa_client(const char *url);	/* NULL on failure (message printed) */
rpc_code pa_health(rpc_client *c, rpc_status *st);
rpc_code pa_register(rpc_client *auth, const char *user, const char *pw, rpc_status *st);
rpc_code pa_login(rpc_client *auth, const char *user, const char *pw, char token[PA_TOKEN],
		  rpc_status *st);
rpc_code pa_validate(rpc_client *auth, const char *token, rpc_status *st);
/* Creates the room (an existing one is fine) and joins it. */
rpc_code pa_create_join(rpc_client *rooms, const char *token, const char *room,
			rpc_status *st);
rpc_code pa_join(rpc_client *rooms, const char *token, const char *room, rpc_status *st);
rpc_code pa_send(rpc_client *m, const char *token, const char *room, const char *text,
		 const char *cmid, uint64_t *seq, rpc_status *st);
/* SendBatch of n texts (n <= 100), message k to rooms[k % nrooms], each
 * with client_msg_id cmid_prefix-k. */
rpc_code pa_send_batch(rpc_client *m, const char *token, char (*rooms)[32], int nrooms,
		       const char *text, const char *cmid_prefix, int n, rpc_status *st);
/* Opens a session over rooms, each from since_seq 0 (the whole timeline). */
rpc_code pa_open(rpc_client *m, const char *token, const char *const *rooms, int nrooms,
		 char sid[PA_SESSION], rpc_status *st);
/* fn sees each event: room, seq (0 = ephemeral), whether it is a chat
 * message, and its text. */
typedef void (*pa_event_fn)(void *arg, const char *room, uint64_t seq, bool chat,
			    const char *text);
rpc_code pa_poll(rpc_client *m, const char *token, const char *sid, uint32_t wait_ms,
		 pa_event_fn fn, void *arg, int *nevents, rpc_status *st);
rpc_code pa_close(rpc_client *m, const char *token, const char *sid, rpc_status *st);
/* The password the bench gives user. */
void pa_password(const char *user, char *pw, size_t len);
/* Registers and logs in; prints and returns false on error. */
bool pa_user(rpc_client *auth, const char *user, char token[PA_TOKEN]);

/*
 * Closed-loop load: clients threads, each with its own connection (its own
 * rpc_client), call fn back to back for dur_ns (at least once each), after
 * one untimed warm-up call. i counts the thread's calls. Latencies go into
 * lat; returns the sum of the threads' calls per second. Failed calls are
 * counted in *errors and the first one's status kept in *first.
 */
typedef rpc_code (*pa_load_fn)(rpc_client *c, void *arg, int thread, uint64_t i,
			       rpc_status *st);
double pa_load(const char *url, int clients, pa_load_fn fn, void *arg, uint64_t dur_ns,
	       samples *lat, int *errors, rpc_status *first);

/* ---- baselines ----------------------------------------------------------- */

/* base_nng.c: a raw nng REQ/REP echo server in a child process (our own
 * binary, hidden subcommand). A request's first 4 bytes (big-endian) say
 * how long the reply is. A durable one (its data in tmp, on the
 * filesystem of parleyd's data) makes byte 4's count of records (1 if 0)
 * durable in one group commit before it replies (lgc_*): in LMDB, Send's
 * floor, or in an append-only log, one fdatasync, as Redis's AOF. */
typedef enum { ECHO_PLAIN, ECHO_LMDB, ECHO_LOG } echo_kind;
typedef struct echo_server {
	pid_t pid;
	char url[PD_ADDR];
	char tmp[300];		/* durable: the data's directory, else "" */
} echo_server;
bool echo_start(echo_server *e, const bench_opts *o, echo_kind kind);
void echo_stop(echo_server *e);
/* The hidden subcommand; dir NULL: no durability, else mode "lmdb" or "log". */
int echo_child_main(const char *url, const char *dir, const char *mode);
/* Runs clients threads of REQ round trips of req_len/reply_len bytes (and
 * records records a request, for a durable server) for dur_ns each (at
 * least one call); fills lat (merged) and returns the sum of the threads'
 * calls per second. */
double echo_load(const char *url, int clients, size_t req_len, size_t reply_len, int records,
		 uint64_t dur_ns, samples *lat, int *errors);

/* base_lmdb.c: one synced LMDB commit per message of msg_len bytes for
 * dur_ns in dir; fills lat, returns commits. */
uint64_t lmdb_baseline(const char *dir, size_t msg_len, uint64_t dur_ns, samples *lat,
		       char *err, size_t errlen);
/*
 * The floor servers' group commit (one per process, for a child server):
 * lgc_start opens an environment in dir (or, with log, a file dir/log)
 * and starts the writer thread (0, or an LMDB or errno code); lgc_submit
 * queues an item, whose records the writer puts into one table (96-byte
 * values, over 8 rooms in turn) in one synced transaction with whatever
 * else is queued (or appends them to the log with one write and one
 * fdatasync, as Redis's AOF does) and starts on the next; a replier thread
 * calls done for the committed items in the order submitted, then
 * batch_done (if not NULL) once for them all, as Parley's writer hands
 * its batches to a replier. A failed commit ends the process.
 */
typedef struct lgc_item {
	struct lgc_item *next;
	int records;
	void (*done)(struct lgc_item *it);
} lgc_item;
int lgc_start(const char *dir, bool log, void (*batch_done)(void));
void lgc_submit(lgc_item *it);
/* The last committed transaction id of the environment in dir, read
 * without a transaction; 0 if it cannot be read. */
uint64_t lmdb_last_txnid(const char *dir);

/* ---- scenarios ----------------------------------------------------------- */

int scen_rpc(const bench_opts *o);
int scen_send(const bench_opts *o);
int scen_fanout(const bench_opts *o);
int scen_sessions(const bench_opts *o);
int scen_login(const bench_opts *o);
int scen_peers(const bench_opts *o);

#endif

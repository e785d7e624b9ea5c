/*
 * harness.h — black-box test support: start real parleyd processes on free
 * tcp ports with a fresh data directory, wait until they answer Health/Check,
 * stop or kill them, and check results with messages that say what failed.
 *
 * Single-threaded use per th_daemon. TH_CHECK may be used from any thread:
 * a failure prints and exits the whole test process with status 1.
 */
#ifndef PARLEY_TEST_HARNESS_H
#define PARLEY_TEST_HARNESS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "client.h"

#define TH_ADDR_MAX 64

typedef struct th_daemon {
	pid_t pid;
	char dir[256];		/* data directory; kept across th_restart */
	/* Listen addresses. Empty: th_start picks tcp://127.0.0.1:PORT (http://
	 * for http). SCHEME, "://", a star, then an optional PATH (as in
	 * wss://STAR/history): it picks 127.0.0.1:PORT for the star. */
	char auth[TH_ADDR_MAX];
	char rooms[TH_ADDR_MAX];
	char history[TH_ADDR_MAX];
	char messaging[TH_ADDR_MAX];
	char events[TH_ADDR_MAX];
	char room_events[TH_ADDR_MAX];
	char rooms_internal[TH_ADDR_MAX];
	char http[TH_ADDR_MAX];	/* --http-listen: http://127.0.0.1:PORT, or "none" */
	char services[128];
	const char *extra[16];	/* extra parleyd arguments, NULL-terminated */
	bool default_internal;	/* leave the internal endpoints (events, room
				 * events, rooms feed) at parleyd's defaults */
	const char *wrap[12];	/* a command parleyd runs under (argv, before
				 * parleyd's own), NULL-terminated */
	char log[300];		/* parleyd's stderr goes here */
} th_daemon;

#define TH_CHECK(cond, ...)                                                          \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, \
				#cond);                                              \
			fprintf(stderr, __VA_ARGS__);                                \
			fprintf(stderr, "\n");                                       \
			th_abort();                                                  \
		}                                                                    \
	} while (0)

/* Checks that a call ended with `want`; prints the status otherwise. */
#define TH_CODE(got, want, st)                                                       \
	do {                                                                         \
		rpc_code th_got_ = (got);                                            \
		TH_CHECK(th_got_ == (want), "got %s (%s), want %s",                   \
			 rpc_code_name(th_got_), (st)->message, rpc_code_name(want));  \
	} while (0)

/* True if a line of the daemon's log contains needle. */
bool th_log_has(const th_daemon *d, const char *needle);
/* How many lines of d's log hold needle. */
int th_log_count(const th_daemon *d, const char *needle);

/* Kills every daemon this process started, then exits 1. */
void th_abort(void) __attribute__((noreturn));

/* A tcp port nobody listens on right now. */
int th_free_port(void);

/*
 * Starts parleyd with services (NULL = all) on fresh ports and a fresh data
 * directory (unless d->dir is set), plus d->extra arguments. Waits until
 * every started endpoint answers Health/Check. false on failure.
 */
bool th_start(th_daemon *d, const char *services);

/* Stops with SIGTERM and waits; returns the exit status (or -1). */
int th_stop(th_daemon *d);

/* Waits up to timeout_ms for a daemon already told to stop (a second
 * SIGTERM would make it stop at once, exit 1); returns its exit status,
 * or -1 after killing it with -9. */
int th_wait_exit(th_daemon *d, int timeout_ms);

/* kill -9, and waits for the process. */
void th_kill9(th_daemon *d);

/* Starts again on the same ports and data directory. */
bool th_restart(th_daemon *d);

/* Removes the data directory. */
void th_cleanup(th_daemon *d);

/* Polls Health/Check at url until SERVING or timeout_ms passes. */
bool th_wait_serving(const char *url, int timeout_ms);

/* Opens a client or fails the test. */
rpc_client *th_client(const char *url);

/* Registers user (password "password-<user>") and logs in; writes the token
 * (at most 64 bytes) into token. Fails the test on error. */
void th_register_login(rpc_client *auth, const char *user, char *token, size_t len);

/* A unique-enough name: prefix + pid + counter, lower-case. */
const char *th_name(const char *prefix);

/* The KiB of a memory field of /proc/<pid>/status ("VmRSS", "RssAnon"), or
 * -1 when the file or the field cannot be read. */
long th_proc_kib(pid_t pid, const char *field);

/* The CPU time (utime + stime) process pid has used so far, in clock ticks
 * (sysconf(_SC_CLK_TCK) a second), from /proc/<pid>/stat; -1 when it cannot
 * be read. */
long th_proc_cpu_ticks(pid_t pid);

#endif

/*
 * peers.h — the servers a user might pick instead of Parley, driven by the
 * same fan-out machinery (fanout.h) for `parley-bench peers`: Redis Streams
 * with AOF fsync always (the durable peer), InspIRCd (IRC) and Mosquitto
 * QoS 1 (in fanout.h); and Parley's Subscribe stream over HTTP.
 *
 * Each server is a child process started here on a free 127.0.0.1 port
 * with its own temp directory and config; peer_stop ends it. Receivers are
 * one connection and one thread each, like Parley's long-polling ones;
 * senders one connection per driver thread (Redis: acks are durable and
 * per call) or per room (IRC: one ordered stream per room, like Mosquitto).
 *
 * Threads: each setup/teardown pair belongs to the scenario's thread; the
 * send functions are called from several driver threads at once; the
 * receivers' threads call fo_observe and fo_observe_tagged.
 */
#ifndef PARLEY_BENCH_PEERS_H
#define PARLEY_BENCH_PEERS_H

#include "fanout.h"

typedef struct peer_server {
	const char *name;	/* "redis-server" */
	pid_t pid;
	int port;
	char tmp[300];
	char log[400];
} peer_server;

/* ---- processes and sockets (peers.c) ------------------------------------------ */

/* Starts argv (argv[0] a path) with stdout and stderr to s->log, killed if
 * we die; waits until 127.0.0.1:s->port accepts a connection. */
bool peer_spawn(peer_server *s, const char *const *argv, char *err, size_t errlen);
/* SIGTERM, wait, SIGKILL if it hangs; removes its temp directory. */
void peer_stop(peer_server *s);
/* A connected TCP socket to 127.0.0.1:port with TCP_NODELAY; -1 on failure. */
int peer_connect(int port);
/* Writes all of buf; false on error. */
bool peer_write_all(int fd, const void *buf, size_t len);
/* The first executable of paths, or NULL. */
const char *peer_find(const char *const *paths);

/* Buffered line reader over a socket (IRC). */
typedef struct peer_lines {
	int fd;
	size_t off, len;	/* unread bytes: buf[off, len) */
	char buf[16384];
} peer_lines;

/* The next line without its CR LF into out (cut at max - 1 bytes); its
 * length, or -1 on EOF or error. */
int peer_line(peer_lines *l, char *out, size_t max);

/* ---- Redis Streams (peer_redis.c) ------------------------------------------------ */

bool redis_available(char *why, size_t len);
/* redis-server with appendonly yes, appendfsync always, no RDB snapshots
 * and no automatic AOF rewrite (which would land in random repetitions). */
bool redis_start(peer_server *s, const bench_opts *o, char *err, size_t errlen);
/*
 * Closed-loop durable appends: senders threads, each its own connection,
 * XADD a text_len-byte message to one of nkeys streams back to back for
 * dur_ns (after one untimed warm-up); with depth > 1, depth XADDs
 * pipelined per round trip (to the sender's nkeys streams in turn).
 * Latencies of the round trips into lat; returns the sum of the threads'
 * XADDs per second. Failures counted in *errors, the first one's text in err.
 */
double redis_xadd_load(const peer_server *s, int senders, int nkeys, int depth,
		       size_t text_len, uint64_t dur_ns, samples *lat, int *errors, char *err,
		       size_t errlen);

/* The fan-out system: XADD from one connection per driver thread, each
 * receiver XREAD BLOCK from its own cursor on its own connection. */
void *rfo_setup(const peer_server *s, int case_index, const fo_case *c, fo_recv *rs,
		char *err, size_t errlen);
bool rfo_send(void *sys, int thread, int room, char *err, size_t errlen);
void rfo_last(void *sys, uint64_t *last);
/* Failed reads so far; the first one's text in first. */
int rfo_errors(void *sys, char *first, size_t len);
void rfo_teardown(void *sys);

/* ---- IRC (peer_irc.c) --------------------------------------------------------------- */

bool irc_available(char *why, size_t len);
/* InspIRCd with no DNS or ident lookups and flood limits out of the way. */
bool irc_start(peer_server *s, const bench_opts *o, char *err, size_t errlen);
/* Receivers are clients joined to the room's channel; one publisher client
 * per room sends PRIVMSG under a lock, so its seqs are in order. */
void *ifo_setup(const peer_server *s, int case_index, const fo_case *c, fo_recv *rs,
		char *err, size_t errlen);
bool ifo_send(void *sys, int thread, int room, char *err, size_t errlen);
void ifo_last(void *sys, uint64_t *last);
int ifo_errors(void *sys, char *first, size_t len);
void ifo_teardown(void *sys);

/* ---- Parley's Subscribe over HTTP (http_sub.c) ------------------------------------ */

/*
 * Opens Messaging/Subscribe (Connect server stream, application/connect+proto)
 * over room from seq 0 at http://127.0.0.1:port with token; returns the
 * connected socket once the response headers said 200, else -1 with err.
 */
int hs_open(int port, const char *token, const char *room, char *err, size_t errlen);
/*
 * Reads the stream on fd until it ends or fails, calling fn for every
 * event. Returns false with err on a transport or protocol error or an
 * end-of-stream carrying an error; true when the stream ended cleanly.
 */
bool hs_run(int fd, pa_event_fn fn, void *arg, char *err, size_t errlen);

#endif

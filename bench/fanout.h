/*
 * fanout.h — what the fan-out scenario's three systems (Parley, raw nng
 * PUB/SUB, Mosquitto QoS 0) share: receivers that check every room's
 * sequence (lost, duplicated, out of order) and time send→receive, a
 * driver that sends at a fixed offered rate or flat out, and the harvest
 * that waits for delivery and totals a phase.
 *
 * Locking: each fo_recv has its own mutex; the system's delivery thread
 * (or callback) calls fo_observe, the coordinator calls fo_harvest. A
 * system's send function is called from several driver threads at once.
 */
#ifndef PARLEY_BENCH_FANOUT_H
#define PARLEY_BENCH_FANOUT_H

#include <pthread.h>

#include "bench.h"

#define FO_MAX_ROOMS 16
#define FO_TEXT_LEN 64	/* every message's payload is padded to this */
#define FO_TAGS 64	/* senders a tagged system tells apart (see fo_observe_tagged) */

typedef struct fo_recv {
	pthread_mutex_t mtx;
	int room;
	bool synced;		/* false: the first seq seen sets next (baselines join late) */
	uint64_t next;		/* next seq expected */
	/* this phase: */
	uint64_t got, lost, dup;
	uint64_t last_ns;
	samples lat;
	/* tagged systems only: */
	uint64_t pos;		/* the synthetic seq: messages accounted for so far */
	uint64_t tag_next[FO_TAGS]; /* per sender: the next count expected */
} fo_recv;

void fo_recv_init(fo_recv *r, int room, bool synced, size_t cap);
void fo_recv_free(fo_recv *r);
/* One persisted event of r's room: seq, and the send time the payload
 * carries (0 = not a measured message: set-up traffic). */
void fo_observe(fo_recv *r, uint64_t seq, uint64_t sent_ns);
/*
 * For systems with no gap-free per-room sequence of their own (Redis stream
 * ids are timestamps): every sender tags its messages with its own gap-free
 * count k (tag < FO_TAGS, k from 0). A count out of turn is a loss (ahead)
 * or a duplicate (behind); each message accounted for advances a synthetic
 * seq (r->pos) that fo_observe checks as usual, so `last` for the harvest
 * is the number of messages acked in the room since the receiver began.
 */
void fo_observe_tagged(fo_recv *r, unsigned tag, uint64_t k, uint64_t sent_ns);
uint64_t fo_next(fo_recv *r);
/* Marks n receivers synced at last[room] (the next seq expected is
 * last + 1) and forgets their phase counters: for baselines whose set-up
 * traffic may be dropped. */
void fo_resync(fo_recv *rs, int n, const uint64_t *last);
/* Forgets the phase counters and samples of n receivers (after set-up). */
void fo_reset(fo_recv *rs, int n);
bool fo_synced(fo_recv *r);

/* Formats a payload "<a> <b> x..." of FO_TEXT_LEN bytes; parses it back. */
void fo_payload(char *buf, uint64_t a, uint64_t b);
bool fo_parse(const char *s, size_t len, uint64_t *a, uint64_t *b);

/* A system under test sends one message to room from driver thread
 * `thread`; false (with err) on failure. */
typedef bool (*fo_send_fn)(void *sys, int thread, int room, char *err, size_t errlen);

typedef struct fo_drive {
	int threads;
	int rooms;
	bool flat;		/* flat out, else fixed rate */
	double rate;		/* fixed: messages per second over all rooms */
	uint64_t dur_ns;	/* how long to send (both modes) */
	uint64_t cap;		/* flat: at most this many messages in all */
	const uint64_t *quota;	/* flat, optional: exactly quota[room] per room,
				 * one thread per room, no time limit */
	/* out: */
	uint64_t sent[FO_MAX_ROOMS];
	int errors;
	char err[200];
} fo_drive;

/* Sends as d says through fn; returns when every thread has finished. */
void fo_run(fo_drive *d, fo_send_fn fn, void *sys);

typedef struct fo_result {
	uint64_t delivered;	/* measured messages received, over all receivers */
	uint64_t lost, dup;
	double per_s;		/* delivered / (last receive - phase start) */
	double p50_us, p99_us;
	bool complete;		/* every receiver reached its room's last seq */
} fo_result;

/*
 * Waits until each receiver has seen its room's seq last[room] (or nothing
 * has progressed for idle_ns, or max_ns passed), then totals the phase that
 * began at t0 and resets the receivers' phase counters. Receivers that fall
 * short count the missing seqs as lost.
 */
void fo_harvest(fo_recv *rs, int n, const uint64_t *last, uint64_t t0, uint64_t idle_ns,
		uint64_t max_ns, fo_result *res);

/* Waits until every receiver is synced and at or past last[room];
 * false on timeout. */
bool fo_wait_caught_up(fo_recv *rs, int n, const uint64_t *last, uint64_t timeout_ns);

/* ---- the baselines' systems ------------------------------------------------- */

typedef struct fo_case {
	int rooms, members;
} fo_case;

/* Parses --cases ("1x10,10x100": rooms x members, rooms 1-FO_MAX_ROOMS, at
 * most max_receivers a case) into out (at most max cases). Returns how
 * many, or -1 with the reason in err. */
int fo_parse_cases(const char *s, fo_case *out, int max, int max_receivers, char *err,
		   size_t errlen);

/* fanout_parley.c: Parley itself. Receivers are sessions (Open over their
 * room, from seq 0) long-polled by one thread and one connection each;
 * senders Send durably through FO_SENDERS connections. */
#define FO_USERS 20
#define FO_SENDERS 16

typedef struct fo_users {
	char sender[PA_TOKEN];		/* token of the user who sends */
	int n;
	char recv[FO_USERS][PA_TOKEN];	/* receivers' users, round robin */
} fo_users;

void *pfo_setup(const pd_daemon *d, const fo_users *u, int case_index, const fo_case *c,
		fo_recv *rs, char *err, size_t errlen);
/* The same with Subscribe streams over HTTP at 127.0.0.1:http_port as the
 * receivers (http_sub.c), when http_port > 0. */
void *pfo_setup_http(const pd_daemon *d, const fo_users *u, int case_index, const fo_case *c,
		     fo_recv *rs, int http_port, char *err, size_t errlen);
bool pfo_send(void *sys, int thread, int room, char *err, size_t errlen);
void pfo_last(void *sys, uint64_t *last);
/* Failed Polls so far; the first one's status in *first. */
int pfo_poll_errors(void *sys, rpc_status *first);
void pfo_teardown(void *sys);

/* base_pubsub.c: raw nng PUB in this process, one SUB socket per receiver. */
void *nngps_setup(const fo_case *c, fo_recv *rs, char *err, size_t errlen);
bool nngps_send(void *sys, int thread, int room, char *err, size_t errlen);
void nngps_last(void *sys, uint64_t *last);
void nngps_teardown(void *sys);

/* base_mqtt.c: a mosquitto broker child, one client per receiver, one
 * publisher per room. mqtt_available says why not, when not. */
bool mqtt_available(char *why, size_t len);
void *mqtt_setup(const bench_opts *o, const fo_case *c, fo_recv *rs, char *err,
		 size_t errlen);
/* The same at QoS qos (0 or 1): subscriptions and publishes alike. */
void *mqtt_setup_qos(const bench_opts *o, const fo_case *c, fo_recv *rs, int qos, char *err,
		     size_t errlen);
pid_t mqtt_broker_pid(void *sys);
bool mqtt_send(void *sys, int thread, int room, char *err, size_t errlen);
void mqtt_last(void *sys, uint64_t *last);
void mqtt_teardown(void *sys);

/* base_lpoll.c: the floor of DESIGN.md's delivery shape: sends synced into
 * LMDB before they are published, long polls over nng REQ/REP answered by
 * a worker thread per client (threads), or without one: parked and
 * answered by the writer; with log, durable in an append-only file instead
 * of LMDB (see the file). A child process with its
 * environment in a temp dir on the data's filesystem. At most 1,100
 * receivers; one REQ connection and thread each. */
void *lpoll_setup(const bench_opts *o, const fo_case *c, fo_recv *rs, bool threads, bool log,
		  char *err, size_t errlen);
bool lpoll_send(void *sys, int thread, int room, char *err, size_t errlen);
void lpoll_last(void *sys, uint64_t *last);
pid_t lpoll_pid(void *sys);
/* Failed or malformed polls so far. */
int lpoll_errors(void *sys);
void lpoll_teardown(void *sys);
/* The hidden subcommand; mode "threads-lmdb", "callbacks-lmdb",
 * "callbacks-log" or "threads-log". */
int lpoll_child_main(const char *url, const char *dir, const char *mode);

#endif

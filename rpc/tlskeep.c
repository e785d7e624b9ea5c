/*
 * tlskeep.c — see tlskeep.h.
 *
 * One thread, started with the first kept listener and gone with the last.
 * Every KEEP_EVERY_MS it takes nng's statistics (longer apart when taking
 * them is slow: they hold every pipe of the process) and looks at each
 * kept listener's "other" errors. Those count the stopping error, and also
 * errors after which the listener goes on, so a move is only a reason to
 * look: the keeper connects to the listener (a canary of the peer protocol,
 * presenting our own certificate, checking nothing of the server) and
 * watches the listener's "accept" count. A canary whose connection came up
 * at our end without the listener counting it proves the listener stopped:
 * it is closed and started again. A canary that could not get through the
 * handshake (a CA that did not sign our own certificate) proves nothing;
 * the listener is started again then too, but at most once a
 * RESTART_GAP_MS, since that drops every client of it.
 */
#include "tlskeep.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include "log.h"
#include "metrics.h"
#include "rpc.h"
#include "tls.h"

#define KEEP_EVERY_MS 2000
/* Taking the statistics may use at most 1 % of the thread's time. */
#define KEEP_COST_FACTOR 100
#define CANARY_UP_MS 3000     /* for the canary's handshake */
#define CANARY_COUNT_MS 3000  /* then for the listener to count it (generous:
				 * a wrong verdict drops every client of it) */
#define REBIND_MS 3000	      /* for the closed listener's port to come free */
#define RESTART_GAP_MS 30000  /* between restarts a canary could not justify */
#define KEEP_MAX 64	      /* listeners looked at in one round */

struct kept {
	struct kept *next;
	nng_socket sock;
	nng_listener l;
	uint64_t other;	     /* its "other" errors when last looked at */
	int64_t restarted;   /* rpc_now_ms of the last unproven restart */
	bool down;	     /* closed, and starting it again failed: retried */
	char url[256];
};

static pthread_mutex_t keep_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t keep_cv;	/* [keep_mtx] made once, by keep_cv_init */
static pthread_once_t keep_cv_once = PTHREAD_ONCE_INIT;
static struct kept *kept;	/* [keep_mtx] */
static bool running;		/* [keep_mtx] the thread exists */
static bool busy;		/* [keep_mtx] it is looking, outside the lock */
static rpc_metric *restarts_metric;

static void
keep_cv_init(void)
{
	rpc_cond_init(&keep_cv);
}

static uint64_t
stat_of(nng_stat *listener, const char *name)
{
	nng_stat *s = nng_stat_find(listener, name);

	return s != NULL ? nng_stat_value(s) : 0;
}

/*
 * The statistics of listener l under stat (a scope "listener" whose "id"
 * is l's). Not nng_stat_find_listener: in nng 1.5 it matched the scope of
 * another listener once one had been closed and started again.
 */
static nng_stat *
listener_stats(nng_stat *stat, nng_listener l)
{
	nng_stat *id;

	if (nng_stat_type(stat) != NNG_STAT_SCOPE)
		return NULL;
	if (strcmp(nng_stat_name(stat), "listener") == 0 &&
	    (id = nng_stat_find(stat, "id")) != NULL &&
	    nng_stat_value(id) == (uint64_t)nng_listener_id(l))
		return stat;
	for (nng_stat *c = nng_stat_child(stat); c != NULL; c = nng_stat_next(c)) {
		nng_stat *found = listener_stats(c, l);

		if (found != NULL)
			return found;
	}
	return NULL;
}

/* The listener's count name, in a fresh snapshot; 0 when it is gone. */
static uint64_t
count_now(nng_listener l, const char *name)
{
	nng_stat *stats, *ls;
	uint64_t v = 0;

	if (nng_stats_get(&stats) != 0)
		return 0;
	if ((ls = listener_stats(stats, l)) != NULL)
		v = stat_of(ls, name);
	nng_stats_free(stats);
	return v;
}

/* Where a canary reaches l: its bound address, loopback for a wildcard. */
static bool
canary_url(nng_listener l, char *url, size_t len)
{
	nng_sockaddr sa;
	char host[INET6_ADDRSTRLEN];

	if (nng_listener_get_addr(l, NNG_OPT_LOCADDR, &sa) != 0)
		return false;
	if (sa.s_family == NNG_AF_INET) {
		struct in_addr a = {.s_addr = sa.s_in.sa_addr};

		if (a.s_addr == htonl(INADDR_ANY))
			a.s_addr = htonl(INADDR_LOOPBACK);
		inet_ntop(AF_INET, &a, host, sizeof(host));
		snprintf(url, len, "tls+tcp://%s:%u", host, ntohs(sa.s_in.sa_port));
		return true;
	}
	if (sa.s_family == NNG_AF_INET6) {
		struct in6_addr a;

		memcpy(&a, sa.s_in6.sa_addr, sizeof(a));
		if (IN6_IS_ADDR_UNSPECIFIED(&a))
			a = in6addr_loopback;
		inet_ntop(AF_INET6, &a, host, sizeof(host));
		snprintf(url, len, "tls+tcp://[%s]:%u", host, ntohs(sa.s_in6.sa_port));
		return true;
	}
	return false;
}

/* The canary's connection is up at our end (one canary at a time: only
 * the keeper thread makes them). */
static atomic_bool canary_is_up;

static void
canary_up(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	(void)p;
	(void)ev;
	(void)arg;
	atomic_store(&canary_is_up, true);
}

enum verdict { ALIVE, STOPPED, UNKNOWN };

/* Connects to listener l of s, whose "accept" count was accept0. */
static enum verdict
canary(nng_socket s, nng_listener l, uint64_t accept0)
{
	nng_tls_config *cfg = NULL;
	nng_socket c;
	nng_dialer d;
	enum verdict v = UNKNOWN;
	char url[300], *peer = NULL;
	rpc_status st = {0};
	int rv;

	if (!canary_url(l, url, sizeof(url)) ||
	    nng_socket_get_string(s, NNG_OPT_PEERNAME, &peer) != 0)
		return UNKNOWN;
	if (strcmp(peer, "req") == 0)
		rv = nng_req0_open(&c);
	else if (strcmp(peer, "sub") == 0)
		rv = nng_sub0_open(&c);
	else
		rv = NNG_ENOTSUP;
	nng_strfree(peer);
	if (rv != 0)
		return UNKNOWN;
	atomic_store(&canary_is_up, false);
	nng_pipe_notify(c, NNG_PIPE_EV_ADD_POST, canary_up, NULL);
	if (rpc_tls_probe_config(url, &cfg, &st) == 0 && nng_dialer_create(&d, c, url) == 0 &&
	    nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg) == 0 &&
	    nng_dialer_start(d, NNG_FLAG_NONBLOCK) == 0) {
		for (int64_t until = rpc_now_ms() + CANARY_UP_MS; !atomic_load(&canary_is_up) &&
								  rpc_now_ms() < until;)
			nng_msleep(20);
		for (int64_t until = rpc_now_ms() + CANARY_COUNT_MS;
		     atomic_load(&canary_is_up) && v == UNKNOWN;) {
			if (count_now(l, "accept") > accept0)
				v = ALIVE;
			else if (rpc_now_ms() >= until)
				v = STOPPED;
			else
				nng_msleep(50);
		}
	}
	nng_close(c);
	if (cfg != NULL)
		nng_tls_config_free(cfg);
	return v;
}

/* Closes l and starts a listener on url again; the new one in *nl. */
static bool
restart(nng_socket s, nng_listener l, const char *url, const char *why, nng_listener *nl)
{
	rpc_status st = {0};
	int rv;

	nng_listener_close(l);
	for (int64_t until = rpc_now_ms() + REBIND_MS;;) {
		if ((rv = rpc_tls_listener_start(s, url, nl, &st)) == 0)
			break;
		if (rv != NNG_EADDRINUSE || rpc_now_ms() >= until) {
			plog_error("tls", "%s stopped accepting connections (%s), and starting it "
				   "again failed: %s", url, why, st.message);
			return false;
		}
		nng_msleep(50);
	}
	rpc_counter_add(rpc_metrics_counter_cached(
				&restarts_metric, "parley_tls_listener_restarts_total",
				"tls+tcp:// listeners started again after nng stopped them "
				"accepting (a client that dropped during the handshake).",
				NULL),
			1);
	plog_warn("tls", "%s stopped accepting connections (%s); started it again (its "
		  "connections were dropped and redial)", url, why);
	return true;
}

/* Looks at each kept listener once; returns when to look again (ms). */
static int64_t
look(void)
{
	struct kept copy[KEEP_MAX];
	int n = 0;
	int64_t t0 = rpc_now_ms(), cost;
	nng_stat *stats;

	pthread_mutex_lock(&keep_mtx);
	for (struct kept *k = kept; k != NULL && n < KEEP_MAX; k = k->next)
		copy[n++] = *k;
	pthread_mutex_unlock(&keep_mtx);
	if (nng_stats_get(&stats) != 0)
		return KEEP_EVERY_MS;
	cost = rpc_now_ms() - t0;
	for (int i = 0; i < n; i++) {
		struct kept *e = &copy[i];
		nng_stat *ls = listener_stats(stats, e->l);
		uint64_t other = ls != NULL ? stat_of(ls, "other") : e->other;
		nng_listener nl = e->l;
		enum verdict v;


		if (e->down) {
			rpc_status st = {0};

			if (rpc_tls_listener_start(e->sock, e->url, &nl, &st) != 0)
				continue;
			plog_info("tls", "%s accepts connections again", e->url);
			e->down = false;
			e->other = 0;
			other = 0;
		}
		if (other == e->other) {
			if (nng_listener_id(nl) == nng_listener_id(e->l))
				continue;
			goto update; /* started again just now */
		}
		e->other = other;
		v = canary(e->sock, e->l, stat_of(ls, "accept"));
		if (v == STOPPED) {
			e->down = !restart(e->sock, e->l, e->url, "a handshake failed", &nl);
			e->other = 0;
		} else if (v == UNKNOWN && rpc_now_ms() - e->restarted >= RESTART_GAP_MS) {
			e->down = !restart(e->sock, e->l, e->url,
					   "a handshake failed, and a check could not tell: our "
					   "own certificate does not get through its --tls-ca",
					   &nl);
			e->other = 0;
			e->restarted = rpc_now_ms();
		}
	update:
		pthread_mutex_lock(&keep_mtx);
		for (struct kept *k = kept; k != NULL; k = k->next)
			if (nng_socket_id(k->sock) == nng_socket_id(e->sock) &&
			    nng_listener_id(k->l) == nng_listener_id(e->l)) {
				k->l = nl;
				k->other = e->other;
				k->restarted = e->restarted;
				k->down = e->down;
			}
		pthread_mutex_unlock(&keep_mtx);
	}
	nng_stats_free(stats);
	return cost * KEEP_COST_FACTOR > KEEP_EVERY_MS ? cost * KEEP_COST_FACTOR : KEEP_EVERY_MS;
}

static void *
keeper_main(void *arg)
{
	int64_t every = KEEP_EVERY_MS;

	(void)arg;
	pthread_mutex_lock(&keep_mtx);
	while (kept != NULL) {
		int64_t until = rpc_now_ms() + every;

		while (kept != NULL && rpc_now_ms() < until)
			rpc_cond_wait_until(&keep_cv, &keep_mtx, until);
		if (kept == NULL)
			break;
		busy = true;
		pthread_mutex_unlock(&keep_mtx);
		every = look();
		pthread_mutex_lock(&keep_mtx);
		busy = false;
		pthread_cond_broadcast(&keep_cv);
	}
	running = false;
	pthread_cond_broadcast(&keep_cv);
	pthread_mutex_unlock(&keep_mtx);
	return NULL;
}

void
rpc_tls_keep(nng_socket s, nng_listener l, const char *url)
{
	struct kept *k = calloc(1, sizeof(*k));
	pthread_t t;

	if (k == NULL) {
		plog_warn("tls", "out of memory: %s is not watched for nng stopping it", url);
		return;
	}
	pthread_once(&keep_cv_once, keep_cv_init);
	k->sock = s;
	k->l = l;
	k->restarted = rpc_now_ms() - RESTART_GAP_MS;
	snprintf(k->url, sizeof(k->url), "%s", url);
	pthread_mutex_lock(&keep_mtx);
	k->next = kept;
	kept = k;
	if (!running) {
		if (pthread_create(&t, NULL, keeper_main, NULL) == 0) {
			pthread_detach(t);
			running = true;
		} else {
			plog_warn("tls", "cannot start a thread: %s is not watched for nng "
				  "stopping it", url);
		}
	}
	pthread_mutex_unlock(&keep_mtx);
}

void
rpc_tls_forget(nng_socket s)
{
	pthread_once(&keep_cv_once, keep_cv_init);
	pthread_mutex_lock(&keep_mtx);
	while (busy)
		pthread_cond_wait(&keep_cv, &keep_mtx);
	for (struct kept **p = &kept; *p != NULL;) {
		struct kept *k = *p;

		if (nng_socket_id(k->sock) == nng_socket_id(s)) {
			*p = k->next;
			free(k);
		} else {
			p = &k->next;
		}
	}
	pthread_cond_broadcast(&keep_cv);
	/* The last one gone: the thread leaves before nng may be finished. */
	while (kept == NULL && running)
		pthread_cond_wait(&keep_cv, &keep_mtx);
	pthread_mutex_unlock(&keep_mtx);
}

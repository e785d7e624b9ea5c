/* conns.c — see conns.h. */
#include "conns.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "tsan.h"

#define NBUCKETS 1024
/* A refused connection (over the per-address cap) is kept this long after
 * its last refusal, so that the refusal can be read, then closed. */
#define REFUSED_LINGER_MS 2000
#define SWEEP_MAX_MS 1000
/* Replies waiting on one connection that show its peer is not reading
 * them (a reader takes them as fast as they come, a few at most). */
#define REPLIES_BACKED_UP 8

struct conn {
	struct conn *next;	/* in its bucket */
	uint32_t id;
	bool has_addr;		/* an IP peer: counted per address */
	bool refused;		/* over the per-address cap */
	bool closing;		/* closed by us, not yet gone: no longer counted */
	uint8_t addr[16];	/* IPv4 mapped into IPv6 */
	char addr_text[48];
	int calls;		/* in flight, replies not yet gone */
	int replies;		/* handed to nng, not yet taken by the connection */
	size_t reply_bytes;
	int64_t last_active;	/* monotonic ms: created, last call or reply */
};

struct rpc_conns {
	nng_socket sock;
	char name[32];
	rpc_limits lim;
	pthread_mutex_t mtx;
	pthread_cond_t cv;	/* stop */
	struct conn *buckets[NBUCKETS];
	int count;
	bool stop;
	bool sweeping;
	bool keep_local;	/* conns_keep_local */
	void (*on_removed)(void *arg);
	void *on_removed_arg;
	pthread_t sweeper;
	int64_t last_warn;	/* warnings: at most one a second (a flood is one event) */
	int unwarned;		/* suppressed since */
};

static void __attribute__((format(printf, 2, 3)))
warn_limited(rpc_conns *c, const char *fmt, ...)
{
	char line[256];
	int64_t now = rpc_now_ms();
	int unwarned;
	va_list ap;

	pthread_mutex_lock(&c->mtx);
	if (now - c->last_warn < 1000) {
		c->unwarned++;
		pthread_mutex_unlock(&c->mtx);
		return;
	}
	c->last_warn = now;
	unwarned = c->unwarned;
	c->unwarned = 0;
	pthread_mutex_unlock(&c->mtx);
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (unwarned > 0)
		plog_warn(c->name, "%s (and %d more like it)", line, unwarned);
	else
		plog_warn(c->name, "%s", line);
}

static struct conn **
slot_of(rpc_conns *c, uint32_t id)
{
	struct conn **pp = &c->buckets[id % NBUCKETS];

	while (*pp != NULL && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

static struct conn *
find(rpc_conns *c, uint32_t id)
{
	return *slot_of(c, id);
}

/* The peer's IP address; false for transports without one (inproc, ipc). */
static bool
peer_addr(nng_pipe p, uint8_t addr[16], char *text, size_t len)
{
	nng_sockaddr sa;

	if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0)
		return false;
	memset(addr, 0, 16);
	if (sa.s_family == NNG_AF_INET) {
		addr[10] = addr[11] = 0xff;
		memcpy(addr + 12, &sa.s_in.sa_addr, 4);
		inet_ntop(AF_INET, &sa.s_in.sa_addr, text, (socklen_t)len);
		return true;
	}
	if (sa.s_family == NNG_AF_INET6) {
		memcpy(addr, sa.s_in6.sa_addr, 16);
		inet_ntop(AF_INET6, sa.s_in6.sa_addr, text, (socklen_t)len);
		return true;
	}
	return false;
}

/* Counts open connections from addr; caller holds mtx. */
static void
count_peer_locked(rpc_conns *c, const uint8_t addr[16], int *open, int *refused)
{
	*open = *refused = 0;
	for (int b = 0; b < NBUCKETS; b++)
		for (struct conn *k = c->buckets[b]; k != NULL; k = k->next)
			if (k->has_addr && !k->closing && memcmp(k->addr, addr, 16) == 0)
				(*(k->refused ? refused : open))++;
}

/* The connection idle longest (no call in flight), or NULL. */
static struct conn *
idlest_locked(rpc_conns *c)
{
	struct conn *best = NULL;

	for (int b = 0; b < NBUCKETS; b++)
		for (struct conn *k = c->buckets[b]; k != NULL; k = k->next)
			if (k->calls == 0 && !k->closing && (k->has_addr || !c->keep_local) &&
			    (best == NULL || k->last_active < best->last_active))
				best = k;
	return best;
}

static void
pipe_added(nng_pipe p, rpc_conns *c)
{
	struct conn *k = calloc(1, sizeof(*k));
	uint32_t evict = 0;
	const char *why = NULL;

	if (k == NULL) {
		nng_pipe_close(p);
		return;
	}
	k->id = (uint32_t)nng_pipe_id(p);
	k->last_active = rpc_now_ms();
	k->has_addr = peer_addr(p, k->addr, k->addr_text, sizeof(k->addr_text));
	if (!k->has_addr)
		snprintf(k->addr_text, sizeof(k->addr_text), "a local peer");

	pthread_mutex_lock(&c->mtx);
	if (k->has_addr) {
		int open, refused;

		count_peer_locked(c, k->addr, &open, &refused);
		if (open >= c->lim.max_per_peer) {
			/* Kept to tell the peer why, up to as many again. */
			if (refused >= c->lim.max_per_peer)
				why = "too many connections from its address";
			k->refused = true;
		}
	}
	if (why == NULL && c->count >= c->lim.max_conns) {
		struct conn *old = idlest_locked(c);

		if (old != NULL) {
			/* It gives way: uncounted now, gone at its REM event. */
			evict = old->id;
			old->closing = true;
			c->count--;
		} else
			why = "connection limit reached and none idle";
	}
	if (why == NULL) {
		struct conn **pp = slot_of(c, k->id);

		*pp = k;
		c->count++;
	}
	pthread_mutex_unlock(&c->mtx);

	if (why != NULL) {
		warn_limited(c, "closing a new connection from %s: %s", k->addr_text, why);
		free(k);
		nng_pipe_close(p);
		return;
	}
	if (k->refused)
		warn_limited(c, "connection from %s over the limit of %d per address: its calls "
			     "are refused", k->addr_text, c->lim.max_per_peer);
	if (evict != 0)
		conns_close_pipe(c, evict, "idle longest while the connection limit was reached");
}

static void
pipe_removed(nng_pipe p, rpc_conns *c)
{
	uint32_t id = (uint32_t)nng_pipe_id(p);
	struct conn *k;

	pthread_mutex_lock(&c->mtx);
	struct conn **pp = slot_of(c, id);
	if ((k = *pp) != NULL) {
		*pp = k->next;
		if (!k->closing)
			c->count--;
	}
	pthread_mutex_unlock(&c->mtx);
	free(k);
	if (c->on_removed != NULL)
		c->on_removed(c->on_removed_arg);
}

static void
pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	rpc_tsan_acquire(arg); /* see conns_open */
	if (ev == NNG_PIPE_EV_ADD_PRE)
		pipe_added(p, arg);
	else if (ev == NNG_PIPE_EV_REM_POST)
		pipe_removed(p, arg);
	rpc_tsan_release(arg);
}

/* Closes idle connections, and refused ones once their refusal had time to
 * be read. */
static void *
sweeper_main(void *arg)
{
	rpc_conns *c = arg;
	int period = c->lim.idle_ms > 0 && c->lim.idle_ms / 4 < SWEEP_MAX_MS ? c->lim.idle_ms / 4
									    : SWEEP_MAX_MS;

	if (period < 10)
		period = 10;
	pthread_mutex_lock(&c->mtx);
	while (!c->stop) {
		uint32_t doomed[64];
		int n = 0;
		int64_t now = rpc_now_ms();

		for (int b = 0; b < NBUCKETS && n < 64; b++)
			for (struct conn *k = c->buckets[b]; k != NULL && n < 64; k = k->next) {
				if (k->calls > 0)
					continue;
				if ((k->refused && now - k->last_active >= REFUSED_LINGER_MS) ||
				    (c->lim.idle_ms > 0 && now - k->last_active >= c->lim.idle_ms))
					doomed[n++] = k->id;
			}
		if (n > 0) {
			pthread_mutex_unlock(&c->mtx);
			for (int i = 0; i < n; i++)
				nng_pipe_close((nng_pipe){.id = doomed[i]});
			pthread_mutex_lock(&c->mtx);
			if (n == 64)
				continue; /* more may be due */
		}
		rpc_cond_wait_until(&c->cv, &c->mtx, rpc_now_ms() + period);
	}
	pthread_mutex_unlock(&c->mtx);
	return NULL;
}

/*
 * Closing a connection while nng is reading or writing on it can wedge
 * nng 1.5's reaper for good (fixed upstream in 1.6, nanomsg/nng#1636): the
 * tcp transport resubmits a partial read or write on an aio that close has
 * just stopped, the operation never completes, and the pipe's teardown
 * waits for it forever -- and with it every later teardown in the process
 * and nng_close. A busy peer (a flood, or a stalled one taking its replies
 * in dribbles) is therefore cut at the socket: shutdown(2) makes every
 * operation on it fail, nng takes the error path (which never resubmits)
 * and closes the pipe itself. The descriptor is found by the pipe's two
 * addresses; non-tcp pipes (inproc, ipc) are closed the ordinary way.
 */
struct fd_entry {
	int fd;
	struct sockaddr_storage local, remote;
};

static bool
same_addr(const nng_sockaddr *a, const struct sockaddr_storage *b)
{
	if (a->s_family == NNG_AF_INET && b->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)b;
		return a->s_in.sa_port == in->sin_port && a->s_in.sa_addr == in->sin_addr.s_addr;
	}
	if (a->s_family == NNG_AF_INET6 && b->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)b;
		return a->s_in6.sa_port == in6->sin6_port &&
		       memcmp(a->s_in6.sa_addr, &in6->sin6_addr, 16) == 0;
	}
	return false;
}

/* Every connected socket of this process; *n entries, malloc'd (NULL if
 * none or out of memory). */
static struct fd_entry *
fd_table(int *n)
{
	struct fd_entry *t = NULL;
	int cap = 0;
	struct dirent *e;
	DIR *d = opendir("/proc/self/fd");

	*n = 0;
	if (d == NULL)
		return NULL;
	while ((e = readdir(d)) != NULL) {
		struct fd_entry ent = {.fd = atoi(e->d_name)};
		socklen_t ll = sizeof(ent.local), rl = sizeof(ent.remote);

		if (e->d_name[0] == '.' || ent.fd == dirfd(d) ||
		    getsockname(ent.fd, (struct sockaddr *)&ent.local, &ll) != 0 ||
		    getpeername(ent.fd, (struct sockaddr *)&ent.remote, &rl) != 0)
			continue;
		if (*n == cap) {
			struct fd_entry *bigger = realloc(t, sizeof(*t) * (size_t)(cap ? 2 * cap : 64));
			if (bigger == NULL)
				break;
			t = bigger;
			cap = cap ? 2 * cap : 64;
		}
		t[(*n)++] = ent;
	}
	closedir(d);
	return t;
}

/* Cuts pipe as described above. */
static void
cut_pipe(nng_pipe p, const struct fd_entry *t, int n)
{
	nng_sockaddr la, ra;

	if (nng_pipe_get_addr(p, NNG_OPT_LOCADDR, &la) == 0 &&
	    nng_pipe_get_addr(p, NNG_OPT_REMADDR, &ra) == 0)
		for (int i = 0; i < n; i++)
			if (same_addr(&la, &t[i].local) && same_addr(&ra, &t[i].remote)) {
				shutdown(t[i].fd, SHUT_RDWR);
				return;
			}
	nng_pipe_close(p);
}

int
conns_open(rpc_conns **cp, nng_socket sock, const rpc_limits *limits, const char *name,
	   rpc_status *st)
{
	rpc_conns *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	c->sock = sock;
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->lim = *limits;
	pthread_mutex_init(&c->mtx, NULL);
	rpc_cond_init(&c->cv);
	if (pthread_create(&c->sweeper, NULL, sweeper_main, c) != 0) {
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mtx);
		free(c);
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "cannot start a thread");
	}
	c->sweeping = true;
	rpc_tsan_release(c); /* pipe_event runs on nng's threads */
	nng_pipe_notify(sock, NNG_PIPE_EV_ADD_PRE, pipe_event, c);
	nng_pipe_notify(sock, NNG_PIPE_EV_REM_POST, pipe_event, c);
	*cp = c;
	return RPC_OK;
}

void
conns_close_all(rpc_conns *c)
{
	uint32_t *ids;
	int n = 0;

	pthread_mutex_lock(&c->mtx);
	ids = malloc(sizeof(*ids) * (size_t)(c->count > 0 ? c->count : 1));
	for (int b = 0; ids != NULL && b < NBUCKETS; b++)
		for (struct conn *k = c->buckets[b]; k != NULL; k = k->next)
			if (!k->closing) /* uncounted, and being cut already */
				ids[n++] = k->id;
	pthread_mutex_unlock(&c->mtx);
	/* A closed pipe leaves the table at its REM event, from nng's reaper:
	 * cut them all, without waiting for that. (Out of memory: nng_close
	 * closes them too, only later.) */
	if (n > 0) {
		int nfd;
		struct fd_entry *t = fd_table(&nfd);

		for (int i = 0; i < n; i++)
			cut_pipe((nng_pipe){.id = ids[i]}, t, nfd);
		free(t);
	}
	free(ids);
}

void
conns_free(rpc_conns *c)
{
	if (c == NULL)
		return;
	rpc_tsan_acquire(c); /* the socket is closed: no pipe_event runs any more */
	pthread_mutex_lock(&c->mtx);
	c->stop = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mtx);
	if (c->sweeping)
		pthread_join(c->sweeper, NULL);
	for (int b = 0; b < NBUCKETS; b++)
		while (c->buckets[b] != NULL) {
			struct conn *k = c->buckets[b];
			c->buckets[b] = k->next;
			free(k);
		}
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mtx);
	free(c);
}

conn_verdict
conns_call_begin(rpc_conns *c, uint32_t pipe, char *msg, size_t len)
{
	conn_verdict v = CONN_ADMIT;
	struct conn *k;

	pthread_mutex_lock(&c->mtx);
	if ((k = find(c, pipe)) != NULL) {
		k->last_active = rpc_now_ms();
		if (k->refused) {
			snprintf(msg, len,
				 "too many connections from %s (limit %d per address); close idle "
				 "ones and retry",
				 k->addr_text, c->lim.max_per_peer);
			v = CONN_REFUSE;
		} else if (k->calls >= c->lim.max_calls && k->replies >= REPLIES_BACKED_UP) {
			v = CONN_CUT;
		} else if (k->calls >= c->lim.max_calls) {
			snprintf(msg, len,
				 "too many calls in flight on this connection (limit %d); wait "
				 "for replies before sending more",
				 c->lim.max_calls);
			v = CONN_REFUSE;
		}
		k->calls++;
	}
	pthread_mutex_unlock(&c->mtx);
	return v;
}

void
conns_call_end(rpc_conns *c, uint32_t pipe)
{
	struct conn *k;

	pthread_mutex_lock(&c->mtx);
	if ((k = find(c, pipe)) != NULL && k->calls > 0) {
		k->calls--;
		k->last_active = rpc_now_ms();
	}
	pthread_mutex_unlock(&c->mtx);
}

bool
conns_send_begin(rpc_conns *c, uint32_t pipe, size_t bytes)
{
	bool ok = true;
	struct conn *k;

	pthread_mutex_lock(&c->mtx);
	if ((k = find(c, pipe)) != NULL) {
		if (k->replies >= c->lim.max_replies ||
		    k->reply_bytes + bytes > c->lim.max_reply_bytes) {
			ok = false;
		} else {
			k->replies++;
			k->reply_bytes += bytes;
		}
	}
	pthread_mutex_unlock(&c->mtx);
	return ok;
}

void
conns_send_end(rpc_conns *c, uint32_t pipe, size_t bytes)
{
	struct conn *k;

	pthread_mutex_lock(&c->mtx);
	if ((k = find(c, pipe)) != NULL && k->replies > 0) {
		k->replies--;
		k->reply_bytes -= bytes < k->reply_bytes ? bytes : k->reply_bytes;
	}
	pthread_mutex_unlock(&c->mtx);
}

void
conns_close_pipe(rpc_conns *c, uint32_t pipe, const char *why)
{
	char addr[48] = "?";
	struct conn *k;

	pthread_mutex_lock(&c->mtx);
	if ((k = find(c, pipe)) != NULL) {
		snprintf(addr, sizeof(addr), "%s", k->addr_text);
		if (!k->closing)
			c->count--;
		k->closing = true;
	}
	pthread_mutex_unlock(&c->mtx);
	if (k == NULL)
		return; /* already gone */
	warn_limited(c, "closing the connection from %s: %s", addr, why);
	{
		int nfd;
		struct fd_entry *t = fd_table(&nfd);

		cut_pipe((nng_pipe){.id = pipe}, t, nfd);
		free(t);
	}
}

int
conns_count(rpc_conns *c)
{
	int n;

	pthread_mutex_lock(&c->mtx);
	n = c->count;
	pthread_mutex_unlock(&c->mtx);
	return n;
}

void
conns_keep_local(rpc_conns *c)
{
	c->keep_local = true;
	rpc_tsan_release(c); /* read by pipe_event, on nng's threads */
}

void
conns_on_removed(rpc_conns *c, void (*fn)(void *arg), void *arg)
{
	c->on_removed = fn;
	c->on_removed_arg = arg;
	rpc_tsan_release(c); /* read by pipe_event, on nng's threads */
}

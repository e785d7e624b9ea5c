/*
 * parleyd — runs any subset of Parley's services in one process (all by
 * default) on one LMDB environment in the data directory.
 *
 * Every address and setting is a flag and an environment variable; flags
 * win. SIGINT/SIGTERM: stop taking calls, answer those in flight, close
 * LMDB, exit 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "opsmetrics.h"
#include "auth/auth.h"
#include "check.h"
#include "gateway/gateway.h"
#include "history/history.h"
#include "messaging/messaging.h"
#include "log.h"
#include "rooms/rooms.h"
#include "svc.h"
#include "tls.h"
#include "version.h"

/* Each service the daemon can run: typed start/shutdown/stop behind one
 * shape. Later services add a row. */
typedef struct service_def {
	const char *name;
	int (*start)(const parley_config *cfg, void **handle, rpc_status *st);
	void (*shutdown)(void *handle);
	void (*stop)(void *handle);
	const char *const *listen; /* the config field naming its address */
} service_def;

#define SERVICE_ADAPTER(svc)                                                             \
	static int svc##_start_any(const parley_config *cfg, void **h, rpc_status *st)    \
	{                                                                                  \
		return svc##_service_start(cfg, (svc##_service **)h, st);                  \
	}                                                                                  \
	static void svc##_shutdown_any(void *h) { svc##_service_shutdown(h); }             \
	static void svc##_stop_any(void *h) { svc##_service_stop(h); }

SERVICE_ADAPTER(auth)
SERVICE_ADAPTER(rooms)
SERVICE_ADAPTER(messaging)
SERVICE_ADAPTER(history)

static parley_config cfg;
static const char *service_list;
static bool http_explicit; /* --http-listen or PARLEY_HTTP_LISTEN was given */

static bool wanted(const char *list, const char *name);

/* The HTTP face: the services of this process are called in-process; in
 * the gateway role, the others at their --auth/--rooms/... addresses. */
static int
gateway_start_any(const parley_config *c, void **h, rpc_status *st)
{
	bool remote = wanted(service_list, "gateway");
	gateway_targets t = {
	    .auth = wanted(service_list, "auth") ? c->auth_listen : remote ? c->auth_addr : NULL,
	    .rooms = wanted(service_list, "rooms") ? c->rooms_listen : remote ? c->rooms_addr : NULL,
	    .history = wanted(service_list, "history") ? c->history_listen
						       : remote ? c->history_addr : NULL,
	    .messaging = wanted(service_list, "messaging") ? c->messaging_listen
							   : remote ? c->messaging_addr : NULL,
	};

	return gateway_start(c, &t, (gateway **)h, st);
}
static void gateway_shutdown_any(void *h) { gateway_shutdown(h); }
static void gateway_stop_any(void *h) { gateway_stop(h); }

static const service_def services[] = {
	{"auth", auth_start_any, auth_shutdown_any, auth_stop_any, &cfg.auth_listen},
	{"rooms", rooms_start_any, rooms_shutdown_any, rooms_stop_any, &cfg.rooms_listen},
	{"messaging", messaging_start_any, messaging_shutdown_any, messaging_stop_any,
	 &cfg.messaging_listen},
	{"history", history_start_any, history_shutdown_any, history_stop_any,
	 &cfg.history_listen},
	/* Last: it calls the others, so it starts after and stops before them. */
	{"gateway", gateway_start_any, gateway_shutdown_any, gateway_stop_any, &cfg.http_listen},
};
#define NSERVICES (sizeof(services) / sizeof(services[0]))

/* Reads and checks the TLS files now, so that a bad one stops the start
 * with its name instead of failing every handshake later. */
static bool
tls_setup(void)
{
	rpc_tls_opts o = {.cert_file = cfg.tls_cert, .key_file = cfg.tls_key, .ca_file = cfg.tls_ca};
	rpc_status st;

	if (rpc_tls_configure(&o, &st) != RPC_OK) {
		plog_error("parleyd", "%s", st.message);
		return false;
	}
	return true;
}

/* The gateway is a role run when named (or for the HTTP face of the
 * all-in-one daemon), never part of "all". */
static bool
is_role(const service_def *d)
{
	return d->start == gateway_start_any;
}

/* How long an orderly stop may take after SIGINT/SIGTERM. Past it the
 * process exits at once: every acknowledged write is already synced, and
 * LMDB needs no close to stay consistent, so what is lost is only the
 * courtesy of answering calls still in flight. The bound exists because
 * nng 1.5 can wait forever to close a connection torn down in the middle
 * of a read or write (fixed upstream in 1.6). More signals meanwhile are
 * taken and ignored: the stop is under way. */
#define SHUTDOWN_LIMIT_S 15

static void *
shutdown_watchdog(void *arg)
{
	const sigset_t *sigs = arg;
	struct timespec limit;

	clock_gettime(CLOCK_MONOTONIC, &limit);
	limit.tv_sec += SHUTDOWN_LIMIT_S;
	for (;;) {
		struct timespec now, left;

		clock_gettime(CLOCK_MONOTONIC, &now);
		left.tv_sec = limit.tv_sec - now.tv_sec;
		left.tv_nsec = limit.tv_nsec - now.tv_nsec;
		if (left.tv_nsec < 0) {
			left.tv_sec--;
			left.tv_nsec += 1000000000L;
		}
		if (left.tv_sec < 0)
			break;
		if (sigtimedwait(sigs, NULL, &left) < 0 && errno == EAGAIN)
			break;
	}
	plog_error("parleyd", "shutdown still not finished after %d s: stopping now "
		   "(acknowledged data is safe on disk)", SHUTDOWN_LIMIT_S);
	_exit(0);
	return NULL;
}

/* Bounds the stop that follows: see SHUTDOWN_LIMIT_S. */
static void
start_shutdown_watchdog(sigset_t *sigs)
{
	pthread_attr_t attr;
	pthread_t t;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, shutdown_watchdog, sigs) != 0)
		plog_error("parleyd", "cannot start the shutdown watchdog: the stop is unbounded");
	pthread_attr_destroy(&attr);
}

static const char *
env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);

	return v != NULL && v[0] != '\0' ? v : dflt;
}

static unsigned long
parse_number(const char *flag, const char *s, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v > max) {
		fprintf(stderr, "parleyd: %s: '%s' is not a number up to %lu\n", flag, s, max);
		exit(2);
	}
	return v;
}

static void
usage(FILE *out)
{
	fprintf(out,
		"usage: parleyd [options]\n"
		"       parleyd check [--data-dir DIR]   report damaged data, exit 1 if any\n"
		"  --services LIST        services to run, comma-separated (default: all:");
	for (size_t i = 0; i < NSERVICES; i++)
		if (!is_role(&services[i]))
			fprintf(out, "%s%s", i ? "," : " ", services[i].name);
	fprintf(out,
		")   [PARLEY_SERVICES]\n"
		"                         'gateway': serve over HTTP the services not run here, at\n"
		"                         their --auth/--rooms/--history/--messaging addresses\n"
		"  --data-dir DIR         data directory (default ./data)   [PARLEY_DATA_DIR]\n"
		"  --map-size MIB         LMDB map size (default 1024)     [PARLEY_MAP_SIZE_MB]\n"
		"  --auth-listen URL      (default " PARLEY_DEFAULT_AUTH ")   [PARLEY_AUTH_LISTEN]\n"
		"  --rooms-listen URL     (default " PARLEY_DEFAULT_ROOMS ")   [PARLEY_ROOMS_LISTEN]\n"
		"  --history-listen URL   (default " PARLEY_DEFAULT_HISTORY ")   [PARLEY_HISTORY_LISTEN]\n"
		"  --messaging-listen URL (default " PARLEY_DEFAULT_MESSAGING ")   [PARLEY_MESSAGING_LISTEN]\n"
		"  --events-listen URL    messaging PUB backbone (default " PARLEY_DEFAULT_EVENTS
		")   [PARLEY_EVENTS_LISTEN]\n"
		"  --room-events-listen URL  rooms PUB of membership changes (default "
		PARLEY_DEFAULT_ROOM_EVENTS ")   [PARLEY_ROOM_EVENTS_LISTEN]\n"
		"  --rooms-internal-listen URL  rooms' internal RoomsFeed endpoint (default "
		PARLEY_DEFAULT_ROOMS_INTERNAL ")   [PARLEY_ROOMS_INTERNAL_LISTEN]\n"
		"  --auth URL             where other services reach auth (default: --auth-listen)   [PARLEY_AUTH]\n"
		"  --rooms URL            where other services reach rooms (default: --rooms-listen)   [PARLEY_ROOMS]\n"
		"  --room-events URL      where messaging subscribes to rooms (default: --room-events-listen)   [PARLEY_ROOM_EVENTS]\n"
		"  --rooms-internal URL   where messaging reaches RoomsFeed (default: --rooms-internal-listen)   [PARLEY_ROOMS_INTERNAL]\n"
		"  --history URL          where the gateway reaches history (default: --history-listen)   [PARLEY_HISTORY]\n"
		"  --messaging URL        where the gateway and rooms (who is online) reach messaging (default: --messaging-listen)   [PARLEY_MESSAGING]\n"
		"  --http-listen URL      HTTP face: Connect protocol, web page; 'none' turns it off (default\n"
		"                         http://127.0.0.1:8080 when running all services or the gateway;\n"
		"                         a process running some services serves HTTP only when given it)   [PARLEY_HTTP_LISTEN]\n"
		"  --http-max-connections N  open HTTP connections at most (default 1000)   [PARLEY_HTTP_MAX_CONNECTIONS]\n"
		"  --http-max-per-ip N    HTTP connections from one address at most (default 100)   [PARLEY_HTTP_MAX_PER_IP]\n"
		"  --web-root DIR         serve the web page at / from DIR instead of the copy built in   [PARLEY_WEB_ROOT]\n"
		"  --tls-cert FILE        certificate (PEM) for tls+tcp://, wss:// and https:// listeners   [PARLEY_TLS_CERT]\n"
		"  --tls-key FILE         its private key (PEM)   [PARLEY_TLS_KEY]\n"
		"  --tls-ca FILE          CA (PEM): listeners require client certificates it signed; dialled servers must chain to it (default: system CAs)   [PARLEY_TLS_CA]\n"
		"  --token-ttl SECONDS    session token lifetime (default 86400)   [PARLEY_TOKEN_TTL]\n"
		"  --session-idle SECONDS messaging session expiry without Poll (default 60)   [PARLEY_SESSION_IDLE]\n"
		"  --max-sessions N       cap on open messaging sessions (default 20000)   [PARLEY_MAX_SESSIONS]\n"
		"  --max-user-sessions N  cap on one user's open messaging sessions (default 100)   [PARLEY_MAX_USER_SESSIONS]\n"
		"  --workers N            handler threads per endpoint (default 16)   [PARLEY_WORKERS]\n"
		"  --contexts N           calls in flight per endpoint (default 256)   [PARLEY_CONTEXTS]\n"
		"  --max-conns N          connections per endpoint; when full the idlest gives way (default 4096,\n"
		"                         lowered to fit the descriptor limit)   [PARLEY_MAX_CONNS]\n"
		"  --max-conns-per-peer N connections per endpoint from one IP address (default 512)   [PARLEY_MAX_CONNS_PER_PEER]\n"
		"  --max-conn-calls N     calls in flight on one connection (default 128)   [PARLEY_MAX_CONN_CALLS]\n"
		"  --conn-idle SECONDS    close connections with no call this long (default 300)   [PARLEY_CONN_IDLE]\n"
		"  --metrics-listen URL   http(s)://HOST:PORT serving GET /metrics and /healthz only\n"
		"                         (the HTTP face serves /metrics too)   [PARLEY_METRICS_LISTEN]\n"
		"  --log-format FORMAT    text (default) or json, one object per line   [PARLEY_LOG_FORMAT]\n"
		"  --version              print the version and git commit, and exit\n"
		"  --help\n"
		"or: parleyd SUBCOMMAND ...\n");
	parleyd_admin_usage(out);
}

/* True if host (no brackets) is a loopback address or "localhost". */
static bool
loopback_host(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (strcmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/*
 * Internal endpoints (the events PUB, the rooms PUB, RoomsFeed) carry every
 * room's messages and memberships to whoever connects, with no login: they
 * are for Parley's own services only. Accepted: inproc:// and ipc://;
 * tcp:// and ws:// on a loopback host; tls+tcp:// and wss:// only with
 * --tls-ca (every peer must present a certificate that CA signed). Anything
 * else ends the daemon here, naming the flag.
 */
static void
check_internal(const char *flag, const char *env, const char *url)
{
	static const char *const plain[] = {"tcp://", "tcp4://", "tcp6://", "ws://"};
	char host[256];
	const char *h, *end;
	size_t n;

	if (url == NULL || strncmp(url, "inproc://", 9) == 0 || strncmp(url, "ipc://", 6) == 0)
		return;
	if (strncmp(url, "tls+tcp://", 10) == 0 || strncmp(url, "tls+tcp4://", 11) == 0 ||
	    strncmp(url, "tls+tcp6://", 11) == 0 || strncmp(url, "wss://", 6) == 0) {
		if (cfg.tls_ca != NULL)
			return;
		fprintf(stderr,
			"parleyd: %s (%s) %s: an internal endpoint over TLS needs --tls-ca, so "
			"that only Parley's own services (with certificates that CA signed) "
			"connect\n",
			flag, env, url);
		exit(2);
	}
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		if (strncmp(url, plain[i], strlen(plain[i])) != 0)
			continue;
		h = url + strlen(plain[i]);
		n = strcspn(h, "/"); /* the authority, before any ws path */
		if (*h == '[') { /* [v6]:port */
			h++;
			end = memchr(h, ']', n - 1);
		} else {
			for (end = h + n; end > h && *end != ':';)
				end--;
			end = *end == ':' ? end : NULL;
		}
		n = end != NULL ? (size_t)(end - h) : 0;
		if (n > 0 && n < sizeof(host)) {
			memcpy(host, h, n);
			host[n] = '\0';
			if (loopback_host(host))
				return;
		}
		break;
	}
	fprintf(stderr,
		"parleyd: %s (%s) %s: internal endpoints carry every room's events to anyone who "
		"connects; use inproc:// or ipc://, tcp:// or ws:// on a loopback address "
		"(127.0.0.0/8, ::1, localhost), or tls+tcp:// with --tls-ca (mutual TLS)\n",
		flag, env, url);
	exit(2);
}

static bool
wanted(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; *p != '\0';) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (len == n && strncmp(p, name, n) == 0)
			return true;
		p += len + (comma ? 1 : 0);
	}
	return false;
}

/* True if list names a service that keeps data (not only the gateway). */
static bool
runs_a_service(const char *list)
{
	for (size_t i = 0; i < NSERVICES; i++)
		if (!is_role(&services[i]) && wanted(list, services[i].name))
			return true;
	return false;
}

/*
 * Whether this process serves HTTP: never with --http-listen none; always
 * in the gateway role; otherwise by default only when it runs every
 * service (the all-in-one daemon), so that several single-service
 * processes on one host do not all claim the default port; a process
 * running some services serves them when given --http-listen.
 */
static bool
http_wanted(const char *list)
{
	bool all = true;

	if (gateway_http_disabled(cfg.http_listen))
		return false;
	if (wanted(list, "gateway"))
		return true;
	for (size_t i = 0; i < NSERVICES; i++)
		if (!is_role(&services[i]))
			all &= wanted(list, services[i].name);
	return all || (http_explicit && runs_a_service(list));
}

static void
check_service_list(const char *list)
{
	for (const char *p = list; *p != '\0';) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		bool known = false;

		for (size_t i = 0; i < NSERVICES; i++)
			known |= strlen(services[i].name) == len &&
				 strncmp(services[i].name, p, len) == 0;
		if (!known) {
			fprintf(stderr, "parleyd: unknown service '%.*s'\n", (int)len, p);
			exit(2);
		}
		p += len + (comma ? 1 : 0);
	}
}

int
main(int argc, char **argv)
{
	enum {
		OPT_SERVICES = 256, OPT_DATA, OPT_MAP, OPT_AUTH_L, OPT_ROOMS_L, OPT_HIST_L,
		OPT_MSG_L, OPT_EV_L, OPT_REV_L, OPT_RINT_L, OPT_AUTH, OPT_ROOMS, OPT_REV, OPT_RINT,
		OPT_TTL, OPT_IDLE,
		OPT_MAXS, OPT_MAXUS, OPT_WORKERS, OPT_CONTEXTS, OPT_HTTP_L, OPT_TLS_CERT,
		OPT_TLS_KEY, OPT_TLS_CA, OPT_HIST, OPT_MSG, OPT_HTTP_MAXC, OPT_HTTP_MAXIP,
		OPT_WEB_ROOT,
		OPT_MAXC, OPT_MAXCP, OPT_MAXCC, OPT_CONN_IDLE, OPT_HELP,
		OPT_VERSION, OPT_LOG_FORMAT, OPT_METRICS_L,
	};
	static const struct option longopts[] = {
		{"services", required_argument, NULL, OPT_SERVICES},
		{"data-dir", required_argument, NULL, OPT_DATA},
		{"map-size", required_argument, NULL, OPT_MAP},
		{"auth-listen", required_argument, NULL, OPT_AUTH_L},
		{"rooms-listen", required_argument, NULL, OPT_ROOMS_L},
		{"history-listen", required_argument, NULL, OPT_HIST_L},
		{"messaging-listen", required_argument, NULL, OPT_MSG_L},
		{"events-listen", required_argument, NULL, OPT_EV_L},
		{"room-events-listen", required_argument, NULL, OPT_REV_L},
		{"rooms-internal-listen", required_argument, NULL, OPT_RINT_L},
		{"auth", required_argument, NULL, OPT_AUTH},
		{"rooms", required_argument, NULL, OPT_ROOMS},
		{"room-events", required_argument, NULL, OPT_REV},
		{"rooms-internal", required_argument, NULL, OPT_RINT},
		{"messaging", required_argument, NULL, OPT_MSG},
		{"token-ttl", required_argument, NULL, OPT_TTL},
		{"session-idle", required_argument, NULL, OPT_IDLE},
		{"max-sessions", required_argument, NULL, OPT_MAXS},
		{"max-user-sessions", required_argument, NULL, OPT_MAXUS},
		{"workers", required_argument, NULL, OPT_WORKERS},
		{"contexts", required_argument, NULL, OPT_CONTEXTS},
		{"http-listen", required_argument, NULL, OPT_HTTP_L},
		{"tls-cert", required_argument, NULL, OPT_TLS_CERT},
		{"tls-key", required_argument, NULL, OPT_TLS_KEY},
		{"tls-ca", required_argument, NULL, OPT_TLS_CA},
		{"max-conns", required_argument, NULL, OPT_MAXC},
		{"max-conns-per-peer", required_argument, NULL, OPT_MAXCP},
		{"max-conn-calls", required_argument, NULL, OPT_MAXCC},
		{"conn-idle", required_argument, NULL, OPT_CONN_IDLE},
		{"history", required_argument, NULL, OPT_HIST},
		{"http-max-connections", required_argument, NULL, OPT_HTTP_MAXC},
		{"http-max-per-ip", required_argument, NULL, OPT_HTTP_MAXIP},
		{"web-root", required_argument, NULL, OPT_WEB_ROOT},
		{"help", no_argument, NULL, OPT_HELP},
		{"version", no_argument, NULL, OPT_VERSION},
		{"log-format", required_argument, NULL, OPT_LOG_FORMAT},
		{"metrics-listen", required_argument, NULL, OPT_METRICS_L},
		{NULL, 0, NULL, 0},
	};
	static char all[256];
	const char *list, *log_format, *metrics_listen;
	gateway *metrics_gw = NULL;
	unsigned long map_mb;
	void *handles[NSERVICES] = {0};
	store_opts sopts = {0};
	char detail[512];
	store_err serr;
	sigset_t sigs;
	int sig, opt, rc = 0;
	rpc_limits lim = {0};
	unsigned long conn_idle_s;
	long nofile, fd_budget;

	if (argc > 1 && strcmp(argv[1], "check") == 0)
		return parley_check_main(argc - 1, argv + 1);
	if (argc > 1 && argv[1][0] != '-' && (rc = parleyd_admin(argc - 1, argv + 1)) >= 0)
		return rc;
	rc = 0;
	for (size_t i = 0; i < NSERVICES; i++)
		if (!is_role(&services[i]))
			snprintf(all + strlen(all), sizeof(all) - strlen(all), "%s%s",
				 i ? "," : "", services[i].name);
	list = env_or("PARLEY_SERVICES", all);
	cfg.data_dir = env_or("PARLEY_DATA_DIR", "./data");
	map_mb = parse_number("PARLEY_MAP_SIZE_MB", env_or("PARLEY_MAP_SIZE_MB", "1024"), 1ul << 24);
	cfg.auth_listen = env_or("PARLEY_AUTH_LISTEN", PARLEY_DEFAULT_AUTH);
	cfg.rooms_listen = env_or("PARLEY_ROOMS_LISTEN", PARLEY_DEFAULT_ROOMS);
	cfg.history_listen = env_or("PARLEY_HISTORY_LISTEN", PARLEY_DEFAULT_HISTORY);
	cfg.messaging_listen = env_or("PARLEY_MESSAGING_LISTEN", PARLEY_DEFAULT_MESSAGING);
	cfg.events_listen = env_or("PARLEY_EVENTS_LISTEN", PARLEY_DEFAULT_EVENTS);
	cfg.room_events_listen = env_or("PARLEY_ROOM_EVENTS_LISTEN", PARLEY_DEFAULT_ROOM_EVENTS);
	cfg.rooms_internal_listen = env_or("PARLEY_ROOMS_INTERNAL_LISTEN", PARLEY_DEFAULT_ROOMS_INTERNAL);
	cfg.auth_addr = env_or("PARLEY_AUTH", NULL);
	cfg.rooms_addr = env_or("PARLEY_ROOMS", NULL);
	cfg.room_events_addr = env_or("PARLEY_ROOM_EVENTS", NULL);
	cfg.rooms_internal_addr = env_or("PARLEY_ROOMS_INTERNAL", NULL);
	cfg.history_addr = env_or("PARLEY_HISTORY", NULL);
	cfg.messaging_addr = env_or("PARLEY_MESSAGING", NULL);
	cfg.token_ttl_s = (uint32_t)parse_number("PARLEY_TOKEN_TTL", env_or("PARLEY_TOKEN_TTL", "86400"), 1u << 30);
	cfg.session_idle_s = (uint32_t)parse_number("PARLEY_SESSION_IDLE", env_or("PARLEY_SESSION_IDLE", "60"), 86400);
	cfg.max_sessions = (uint32_t)parse_number("PARLEY_MAX_SESSIONS", env_or("PARLEY_MAX_SESSIONS", "20000"), 1000000);
	cfg.max_user_sessions = (uint32_t)parse_number("PARLEY_MAX_USER_SESSIONS", env_or("PARLEY_MAX_USER_SESSIONS", "100"), 1000000);
	cfg.workers = (int)parse_number("PARLEY_WORKERS", env_or("PARLEY_WORKERS", "16"), 1024);
	cfg.contexts = (int)parse_number("PARLEY_CONTEXTS", env_or("PARLEY_CONTEXTS", "256"), 100000);
	cfg.http_listen = env_or("PARLEY_HTTP_LISTEN", PARLEY_DEFAULT_HTTP);
	http_explicit = env_or("PARLEY_HTTP_LISTEN", NULL) != NULL;
	cfg.http_max_connections = (unsigned)parse_number("PARLEY_HTTP_MAX_CONNECTIONS", env_or("PARLEY_HTTP_MAX_CONNECTIONS", "1000"), 100000);
	cfg.http_max_per_ip = (unsigned)parse_number("PARLEY_HTTP_MAX_PER_IP", env_or("PARLEY_HTTP_MAX_PER_IP", "100"), 100000);
	cfg.web_root = env_or("PARLEY_WEB_ROOT", NULL);
	cfg.tls_cert = env_or("PARLEY_TLS_CERT", NULL);
	cfg.tls_key = env_or("PARLEY_TLS_KEY", NULL);
	cfg.tls_ca = env_or("PARLEY_TLS_CA", NULL);
	lim.max_conns = (int)parse_number("PARLEY_MAX_CONNS", env_or("PARLEY_MAX_CONNS", "4096"), 1000000);
	lim.max_per_peer = (int)parse_number("PARLEY_MAX_CONNS_PER_PEER", env_or("PARLEY_MAX_CONNS_PER_PEER", "512"), 1000000);
	lim.max_calls = (int)parse_number("PARLEY_MAX_CONN_CALLS", env_or("PARLEY_MAX_CONN_CALLS", "128"), 1000000);
	conn_idle_s = parse_number("PARLEY_CONN_IDLE", env_or("PARLEY_CONN_IDLE", "300"), 86400);
	log_format = env_or("PARLEY_LOG_FORMAT", "text");
	metrics_listen = env_or("PARLEY_METRICS_LISTEN", NULL);

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_SERVICES: list = optarg; break;
		case OPT_DATA: cfg.data_dir = optarg; break;
		case OPT_MAP: map_mb = parse_number("--map-size", optarg, 1ul << 24); break;
		case OPT_AUTH_L: cfg.auth_listen = optarg; break;
		case OPT_ROOMS_L: cfg.rooms_listen = optarg; break;
		case OPT_HIST_L: cfg.history_listen = optarg; break;
		case OPT_MSG_L: cfg.messaging_listen = optarg; break;
		case OPT_EV_L: cfg.events_listen = optarg; break;
		case OPT_REV_L: cfg.room_events_listen = optarg; break;
		case OPT_RINT_L: cfg.rooms_internal_listen = optarg; break;
		case OPT_AUTH: cfg.auth_addr = optarg; break;
		case OPT_ROOMS: cfg.rooms_addr = optarg; break;
		case OPT_REV: cfg.room_events_addr = optarg; break;
		case OPT_RINT: cfg.rooms_internal_addr = optarg; break;
		case OPT_MSG: cfg.messaging_addr = optarg; break;
		case OPT_TTL: cfg.token_ttl_s = (uint32_t)parse_number("--token-ttl", optarg, 1u << 30); break;
		case OPT_IDLE: cfg.session_idle_s = (uint32_t)parse_number("--session-idle", optarg, 86400); break;
		case OPT_MAXS: cfg.max_sessions = (uint32_t)parse_number("--max-sessions", optarg, 1000000); break;
		case OPT_MAXUS: cfg.max_user_sessions = (uint32_t)parse_number("--max-user-sessions", optarg, 1000000); break;
		case OPT_WORKERS: cfg.workers = (int)parse_number("--workers", optarg, 1024); break;
		case OPT_CONTEXTS: cfg.contexts = (int)parse_number("--contexts", optarg, 100000); break;
		case OPT_HTTP_L: cfg.http_listen = optarg; http_explicit = true; break;
		case OPT_HIST: cfg.history_addr = optarg; break;
		case OPT_HTTP_MAXC: cfg.http_max_connections = (unsigned)parse_number("--http-max-connections", optarg, 100000); break;
		case OPT_HTTP_MAXIP: cfg.http_max_per_ip = (unsigned)parse_number("--http-max-per-ip", optarg, 100000); break;
		case OPT_WEB_ROOT: cfg.web_root = optarg; break;
		case OPT_TLS_CERT: cfg.tls_cert = optarg; break;
		case OPT_TLS_KEY: cfg.tls_key = optarg; break;
		case OPT_TLS_CA: cfg.tls_ca = optarg; break;
		case OPT_MAXC: lim.max_conns = (int)parse_number("--max-conns", optarg, 1000000); break;
		case OPT_MAXCP: lim.max_per_peer = (int)parse_number("--max-conns-per-peer", optarg, 1000000); break;
		case OPT_MAXCC: lim.max_calls = (int)parse_number("--max-conn-calls", optarg, 1000000); break;
		case OPT_CONN_IDLE: conn_idle_s = parse_number("--conn-idle", optarg, 86400); break;
		case OPT_HELP:
		case 'h': usage(stdout); return 0;
		case OPT_LOG_FORMAT: log_format = optarg; break;
		case OPT_METRICS_L: metrics_listen = optarg; break;
		case OPT_VERSION: printf("parleyd %s (commit %s)\n", parley_version, parley_commit); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	check_service_list(list);
	if (!plog_set_format(log_format)) {
		fprintf(stderr, "parleyd: --log-format: '%s' is neither text nor json\n", log_format);
		return 2;
	}
	if (map_mb == 0 || cfg.token_ttl_s == 0 || cfg.session_idle_s == 0 ||
	    cfg.max_sessions == 0 || cfg.max_user_sessions == 0 || cfg.workers == 0 || cfg.contexts == 0 ||
	    lim.max_conns == 0 || lim.max_per_peer == 0 || lim.max_calls == 0 || conn_idle_s == 0 ||
	    cfg.http_max_connections == 0 || cfg.http_max_per_ip == 0) {
		fprintf(stderr, "parleyd: sizes, counts and durations must be at least 1\n");
		return 2;
	}
	if (cfg.auth_addr == NULL)
		cfg.auth_addr = cfg.auth_listen;
	if (cfg.rooms_addr == NULL)
		cfg.rooms_addr = cfg.rooms_listen;
	if (cfg.room_events_addr == NULL)
		cfg.room_events_addr = cfg.room_events_listen;
	if (cfg.rooms_internal_addr == NULL)
		cfg.rooms_internal_addr = cfg.rooms_internal_listen;
	if (wanted(list, "rooms")) {
		check_internal("--room-events-listen", "PARLEY_ROOM_EVENTS_LISTEN",
			       cfg.room_events_listen);
		check_internal("--rooms-internal-listen", "PARLEY_ROOMS_INTERNAL_LISTEN",
			       cfg.rooms_internal_listen);
	}
	if (wanted(list, "messaging")) {
		check_internal("--events-listen", "PARLEY_EVENTS_LISTEN", cfg.events_listen);
		check_internal("--room-events", "PARLEY_ROOM_EVENTS", cfg.room_events_addr);
		check_internal("--rooms-internal", "PARLEY_ROOMS_INTERNAL", cfg.rooms_internal_addr);
	}

	/* Descriptors are what a flood of connections exhausts: take all the
	 * system allows, and cap every endpoint's connections so that all of
	 * them full still leave RPC_FD_RESERVE for the store, logs and our own
	 * outgoing connections (8 endpoints at most). */
	nofile = rpc_raise_fd_limit();
	fd_budget = (nofile - RPC_FD_RESERVE) / 8;
	if (fd_budget < 16)
		fd_budget = 16;
	if (lim.max_conns > fd_budget) {
		plog_info("parleyd", "connections per endpoint lowered from %d to %ld to fit the "
			  "descriptor limit (%ld)", lim.max_conns, fd_budget, nofile);
		lim.max_conns = (int)fd_budget;
	}
	lim.idle_ms = (int)(conn_idle_s * 1000);
	rpc_set_limits(&lim);
	if (cfg.history_addr == NULL)
		cfg.history_addr = cfg.history_listen;
	if (cfg.messaging_addr == NULL)
		cfg.messaging_addr = cfg.messaging_listen;
	service_list = list;
	if (!http_wanted(list))
		cfg.http_listen = "none";

	/* Signals go to the main thread only: block them before any thread
	 * starts, then wait for them here. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* After the mask: checking the files starts nng's threads. */
	if (!tls_setup())
		return 1;

	/* Only a history service on its own opens the store read-only: the
	 * writer is a messaging service in another process. */
	sopts.map_size = (size_t)map_mb << 20;
	sopts.read_only = wanted(list, "history") && !wanted(list, "messaging") &&
			  !wanted(list, "auth") && !wanted(list, "rooms");
	serr = runs_a_service(list) ? store_open(&cfg.env, cfg.data_dir, &sopts, detail,
						  sizeof(detail))
				    : STORE_OK; /* a gateway alone keeps no data */
	if (serr != STORE_OK) {
		plog_error("parleyd", "cannot open storage: %s (%s)", store_strerror(serr), detail);
		return 1;
	}

	for (size_t i = 0; i < NSERVICES; i++) {
		rpc_status st = {0};

		if (is_role(&services[i]) ? gateway_http_disabled(cfg.http_listen)
					   : !wanted(list, services[i].name))
			continue;
		if (services[i].start(&cfg, &handles[i], &st) != RPC_OK) {
			plog_error("parleyd", "cannot start %s: %s", services[i].name, st.message);
			rc = 1;
			goto stop;
		}
		plog_info("parleyd", "%s serving on %s", services[i].name, *services[i].listen);
	}
	{
		rpc_status st = {0};

		if (opsmetrics_start(&cfg, metrics_listen, &metrics_gw, &st) != RPC_OK) {
			plog_error("parleyd", "cannot serve metrics: %s", st.message);
			rc = 1;
			goto stop;
		}
		if (metrics_listen != NULL)
			plog_info("parleyd", "metrics on %s", metrics_listen);
	}
	plog_info("parleyd", "started (pid %ld, data in %s)", (long)getpid(), cfg.data_dir);

	while (sigwait(&sigs, &sig) != 0)
		;
	plog_info("parleyd", "%s: shutting down", strsignal(sig));
	start_shutdown_watchdog(&sigs);

stop:
	/* Stop taking calls everywhere first, then take services apart in
	 * reverse order of start. */
	for (size_t i = NSERVICES; i-- > 0;)
		if (handles[i] != NULL)
			services[i].shutdown(handles[i]);
	for (size_t i = NSERVICES; i-- > 0;)
		if (handles[i] != NULL)
			services[i].stop(handles[i]);
	opsmetrics_stop(&cfg, metrics_gw);
	store_close(cfg.env);
	plog_info("parleyd", "stopped");
	return rc;
}

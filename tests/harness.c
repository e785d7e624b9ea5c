/* harness.c — see harness.h. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>

#include "parley/v1/auth.pb-c.h"
#include "parley/v1/health.pb-c.h"

#ifndef PARLEYD_PATH
#error "PARLEYD_PATH must name the parleyd binary"
#endif

#define MAX_DAEMONS 16
#define LOG_TAIL_LINES 40
static pid_t live[MAX_DAEMONS];
/* The logs of the daemons this test started: shown when it fails, since
 * a failure in CI is read from its output alone. */
static char logs[MAX_DAEMONS][300];

static void
note_log(const char *log)
{
	for (int i = 0; i < MAX_DAEMONS; i++) {
		if (strcmp(logs[i], log) == 0)
			return;
		if (logs[i][0] == '\0') {
			snprintf(logs[i], sizeof(logs[i]), "%s", log);
			return;
		}
	}
}

static void
print_tail(const char *log)
{
	char *lines[LOG_TAIL_LINES] = {0};
	char *line = NULL;
	size_t cap = 0, n = 0;
	FILE *f = fopen(log, "r");

	if (f == NULL)
		return;
	while (getline(&line, &cap, f) > 0) {
		free(lines[n % LOG_TAIL_LINES]);
		lines[n++ % LOG_TAIL_LINES] = strdup(line);
	}
	fclose(f);
	free(line);
	fprintf(stderr, "---- the last %zu lines of %s ----\n",
		n < LOG_TAIL_LINES ? n : (size_t)LOG_TAIL_LINES, log);
	for (size_t i = n < LOG_TAIL_LINES ? 0 : n - LOG_TAIL_LINES; i < n; i++) {
		if (lines[i % LOG_TAIL_LINES] != NULL)
			fputs(lines[i % LOG_TAIL_LINES], stderr);
		free(lines[i % LOG_TAIL_LINES]);
		lines[i % LOG_TAIL_LINES] = NULL;
	}
}

static void
track(pid_t pid, bool add)
{
	for (int i = 0; i < MAX_DAEMONS; i++) {
		if (add && live[i] == 0) {
			live[i] = pid;
			return;
		}
		if (!add && live[i] == pid) {
			live[i] = 0;
			return;
		}
	}
}

#if defined(PARLEY_ASAN)
/* nng frees closed sockets, dialers and connections on its reaper thread
 * after nng_close returns: at exit, wait for that (nng_fini) before the
 * leak checker looks, so it sees only what is ours. Registered after the
 * sanitizer's own exit hook, so it runs before it. */
static void
fini_nng(void)
{
	nng_fini();
}

__attribute__((constructor)) static void
th_init(void)
{
	atexit(fini_nng);
}
#endif

void
th_abort(void)
{
	for (int i = 0; i < MAX_DAEMONS; i++)
		if (live[i] > 0)
			kill(live[i], SIGKILL);
	fflush(stdout);
	for (int i = 0; i < MAX_DAEMONS && logs[i][0] != '\0'; i++)
		print_tail(logs[i]);
	_exit(1);
}

/* The lowest port the kernel hands out as a connection's source port:
 * picking below it, no outgoing connection can take a port between our
 * check and the daemon's bind. */
static int
ephemeral_low(void)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	int low = 32768, high;

	if (f != NULL) {
		if (fscanf(f, "%d %d", &low, &high) != 2 || low <= 11000)
			low = 32768;
		fclose(f);
	}
	return low;
}

int
th_free_port(void)
{
	static unsigned seed;
	int low = ephemeral_low();

	/* From the kernel: tests started together (ctest -j) must not walk the
	 * same sequence of ports, as getpid() ^ time let them. */
	while (seed == 0)
		if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
			seed = (unsigned)getpid() * 2654435761u ^ (unsigned)rpc_wall_ms();
	for (int tries = 0; tries < 1000; tries++) {
		struct sockaddr_in sa = {.sin_family = AF_INET};
		int port = 10000 + (int)(rand_r(&seed) % (unsigned)(low - 10000));
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		bool ok;

		if (fd < 0) {
			perror("th_free_port");
			th_abort();
		}
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sa.sin_port = htons((uint16_t)port);
		ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(fd);
		if (ok)
			return port;
	}
	fprintf(stderr, "th_free_port: no free port below %d\n", low);
	th_abort();
}

static void
pick(char *addr, const char *scheme)
{
	if (addr[0] == '\0')
		snprintf(addr, TH_ADDR_MAX, "%s://127.0.0.1:%d", scheme, th_free_port());
}

/* addr from a test's pattern (SCHEME, "://", a star, an optional PATH):
 * 127.0.0.1 and a free port in place of the star. */
static void
pick_like(char *addr, const char *pattern)
{
	const char *star = strstr(pattern, "://*");

	snprintf(addr, TH_ADDR_MAX, "%.*s://127.0.0.1:%d%s", (int)(star - pattern), pattern,
		 th_free_port(), star + 4);
}

/* An http://127.0.0.1:PORT address accepts connections (the HTTP face
 * starts after the services). */
static bool
http_up(const char *url)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	const char *colon = strrchr(url, ':');
	int fd, ok;

	if (strcmp(url, "none") == 0 || colon == NULL)
		return true;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		return false;
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

bool
th_wait_serving(const char *url, int timeout_ms)
{
	Parley__V1__HealthCheckRequest req = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	rpc_client *c;
	rpc_status st;
	int64_t until = rpc_now_ms() + timeout_ms;
	bool ok = false;

	if (rpc_client_open(&c, url, &st) != RPC_OK)
		return false;
	while (!ok && rpc_now_ms() < until) {
		Parley__V1__HealthCheckResponse *resp;
		rpc_call_opts o = {.timeout_ms = 500};

		if (rpc_client_call(c, &parley__v1__health__descriptor, "Check", &req.base,
				    (ProtobufCMessage **)&resp, &o, &st) == RPC_OK) {
			ok = resp->status ==
			     PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
			protobuf_c_message_free_unpacked(&resp->base, NULL);
		}
		if (!ok)
			usleep(20000);
	}
	rpc_client_close(c);
	return ok;
}

static bool
runs(const th_daemon *d, const char *name)
{
	return d->services[0] == '\0' || strstr(d->services, name) != NULL;
}

static bool
spawn(th_daemon *d)
{
	const char *argv[80];
	int n = 0;
	pid_t pid;

	for (int i = 0; i < 12 && d->wrap[i] != NULL; i++)
		argv[n++] = d->wrap[i];
	argv[n++] = PARLEYD_PATH;
	argv[n++] = "--data-dir";
	argv[n++] = d->dir;
	if (d->services[0] != '\0') {
		argv[n++] = "--services";
		argv[n++] = d->services;
	}
	argv[n++] = "--auth-listen";
	argv[n++] = d->auth;
	argv[n++] = "--rooms-listen";
	argv[n++] = d->rooms;
	argv[n++] = "--history-listen";
	argv[n++] = d->history;
	argv[n++] = "--messaging-listen";
	argv[n++] = d->messaging;
	if (!d->default_internal) {
		argv[n++] = "--events-listen";
		argv[n++] = d->events;
		argv[n++] = "--room-events-listen";
		argv[n++] = d->room_events;
		argv[n++] = "--rooms-internal-listen";
		argv[n++] = d->rooms_internal;
	}
	argv[n++] = "--http-listen";
	argv[n++] = d->http;
	for (int i = 0; i < 16 && d->extra[i] != NULL && n < 78; i++)
		argv[n++] = d->extra[i];
	argv[n] = NULL;

	snprintf(d->log, sizeof(d->log), "%s.log", d->dir);
	note_log(d->log);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		/* Die with the test, and keep ctest's pipes free, so a failed
		 * test never leaves a daemon behind holding them open. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	d->pid = pid;
	track(pid, true);

	/* Wait for each endpoint the daemon runs. */
	static const struct {
		const char *name;
		size_t off;
	} eps[] = {
		{"auth", offsetof(th_daemon, auth)},
		{"rooms", offsetof(th_daemon, rooms)},
		{"history", offsetof(th_daemon, history)},
		{"messaging", offsetof(th_daemon, messaging)},
	};
	int64_t until = rpc_now_ms() + 15000;
	for (size_t i = 0; i < sizeof(eps) / sizeof(eps[0]); i++) {
		if (!runs(d, eps[i].name))
			continue;
		while (!th_wait_serving((const char *)d + eps[i].off, 200)) {
			int status;

			if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
				track(d->pid, false);
				d->pid = 0;
				fprintf(stderr, "parleyd exited before %s came up; see %s\n",
					eps[i].name, d->log);
				return false;
			}
			if (rpc_now_ms() >= until) {
				fprintf(stderr, "parleyd %s did not come up; see %s\n",
					eps[i].name, d->log);
				return false;
			}
		}
	}
	while (!http_up(d->http)) {
		int status;

		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			track(d->pid, false);
			d->pid = 0;
			fprintf(stderr, "parleyd exited before its HTTP face came up; see %s\n",
				d->log);
			return false;
		}
		if (rpc_now_ms() >= until) {
			fprintf(stderr, "parleyd's HTTP face did not come up; see %s\n", d->log);
			return false;
		}
		usleep(20000);
	}
	/* What answered may be another test's daemon on a port ours could not
	 * take: only our daemon's own word that it started counts, said by
	 * this process (the log is appended to: after th_restart it still
	 * holds the started line of the daemon before). */
	char started[64];

	snprintf(started, sizeof(started), "parleyd: started (pid %ld,", (long)d->pid);
	while (!th_log_has(d, started)) {
		int status;

		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			track(d->pid, false);
			d->pid = 0;
			fprintf(stderr, "parleyd exited before it started; see %s\n", d->log);
			return false;
		}
		if (rpc_now_ms() >= until) {
			fprintf(stderr, "parleyd did not say it started; see %s\n", d->log);
			return false;
		}
		usleep(10000);
	}
	return true;
}

int
th_log_count(const th_daemon *d, const char *needle)
{
	FILE *f = fopen(d->log, "r");
	char *line = NULL;
	size_t cap = 0;
	int n = 0;

	if (f == NULL)
		return 0;
	while (getline(&line, &cap, f) > 0)
		n += strstr(line, needle) != NULL;
	free(line);
	fclose(f);
	return n;
}

bool
th_log_has(const th_daemon *d, const char *needle)
{
	return th_log_count(d, needle) > 0;
}

bool
th_start(th_daemon *d, const char *services)
{
	/* A test talks to daemons that may hang up on it (that is often the
	 * point): a write then fails with EPIPE for the test to check, never a
	 * SIGPIPE that ends it. */
	signal(SIGPIPE, SIG_IGN);
	if (d->dir[0] == '\0') {
		const char *tmp = getenv("TMPDIR");
		snprintf(d->dir, sizeof(d->dir), "%s/parley-test-XXXXXX", tmp ? tmp : "/tmp");
		if (mkdtemp(d->dir) == NULL) {
			perror("mkdtemp");
			return false;
		}
	}
	snprintf(d->services, sizeof(d->services), "%s", services ? services : "");
	/* Ports we pick may still be taken by someone else in between (tests
	 * run in parallel): then pick those again. Ports the test chose stay;
	 * a test's address with a star for its host gets its port from us too. */
	char *addrs[] = {d->auth,   d->rooms,	    d->history,	      d->messaging,
			 d->events, d->room_events, d->rooms_internal, d->http};
	char pattern[sizeof(addrs) / sizeof(addrs[0])][TH_ADDR_MAX];
	bool mine[sizeof(addrs) / sizeof(addrs[0])];

	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		snprintf(pattern[i], sizeof(pattern[i]), "%s",
			 strstr(addrs[i], "://*") != NULL ? addrs[i] : "");
		mine[i] = addrs[i][0] == '\0' || pattern[i][0] != '\0';
	}
	for (int attempt = 0;; attempt++) {
		for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
			if (pattern[i][0] != '\0')
				pick_like(addrs[i], pattern[i]);
			else if (mine[i])
				addrs[i][0] = '\0';
			pick(addrs[i], addrs[i] == d->http ? "http" : "tcp");
		}
		if (spawn(d))
			return true;
		if (attempt == 4 || d->pid != 0 || !th_log_has(d, "Address in use"))
			return false;
		fprintf(stderr, "a port was taken meanwhile; trying other ports\n");
		if (truncate(d->log, 0) != 0)
			perror("truncate"); /* the old lines stay: harmless */
	}
}

static int
reap(th_daemon *d, int timeout_ms)
{
	int64_t until = rpc_now_ms() + timeout_ms;
	int status;

	while (rpc_now_ms() < until) {
		pid_t r = waitpid(d->pid, &status, WNOHANG);
		if (r == d->pid) {
			track(d->pid, false);
			d->pid = 0;
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		usleep(10000);
	}
	return -1;
}

int
th_stop(th_daemon *d)
{
	int rc;

	if (d->pid <= 0)
		return -1;
	kill(d->pid, SIGTERM);
	rc = reap(d, 20000);
	if (rc == -1)
		th_kill9(d);
	return rc;
}

int
th_wait_exit(th_daemon *d, int timeout_ms)
{
	int rc;

	if (d->pid <= 0)
		return -1;
	rc = reap(d, timeout_ms);
	if (rc == -1)
		th_kill9(d);
	return rc;
}

void
th_kill9(th_daemon *d)
{
	if (d->pid <= 0)
		return;
	kill(d->pid, SIGKILL);
	reap(d, 20000);
}

bool
th_restart(th_daemon *d)
{
	if (d->pid > 0)
		th_stop(d);
	return spawn(d);
}

void
th_cleanup(th_daemon *d)
{
	char cmd[600];

	if (d->pid > 0)
		th_stop(d);
	if (d->dir[0] != '\0' && getenv("PARLEY_TEST_KEEP") == NULL) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s.log'", d->dir, d->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", d->dir);
	}
}

rpc_client *
th_client(const char *url)
{
	rpc_client *c;
	rpc_status st;

	TH_CHECK(rpc_client_open(&c, url, &st) == RPC_OK, "%s", st.message);
	return c;
}

/* Calls method, honouring RESOURCE_EXHAUSTED's retry_after_ms as a
 * well-behaved client does (auth lets one address have only a few password
 * checks in flight; many test threads share 127.0.0.1), for a minute at
 * most. */
static rpc_code
call_patiently(rpc_client *auth, const char *method, const ProtobufCMessage *req,
	       ProtobufCMessage **resp, rpc_status *st)
{
	/* Argon2id on a busy machine can be slow: allow the longest deadline. */
	rpc_call_opts o = {.timeout_ms = RPC_MAX_TIMEOUT_MS};
	int64_t give_up = rpc_now_ms() + 60000;
	rpc_code code;

	while ((code = rpc_client_call(auth, &parley__v1__auth__descriptor, method, req, resp, &o,
				       st)) == RPC_RESOURCE_EXHAUSTED &&
	       st->retry_after_ms > 0 && rpc_now_ms() + st->retry_after_ms < give_up)
		usleep(st->retry_after_ms * 1000u);
	return code;
}

void
th_register_login(rpc_client *auth, const char *user, char *token, size_t len)
{
	Parley__V1__RegisterRequest reg = PARLEY__V1__REGISTER_REQUEST__INIT;
	Parley__V1__LoginRequest login = PARLEY__V1__LOGIN_REQUEST__INIT;
	ProtobufCMessage *resp;
	char pw[64];
	rpc_status st;
	rpc_code code;

	snprintf(pw, sizeof(pw), "password-%s", user);
	reg.user_id = (char *)user;
	reg.password = pw;
	reg.display_name = (char *)user;
	code = call_patiently(auth, "Register", &reg.base, &resp, &st);
	TH_CHECK(code == RPC_OK || code == RPC_ALREADY_EXISTS, "register %s: %s %s", user,
		 rpc_code_name(code), st.message);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	login.user_id = (char *)user;
	login.password = pw;
	code = call_patiently(auth, "Login", &login.base, &resp, &st);
	TH_CODE(code, RPC_OK, &st);
	snprintf(token, len, "%s", ((Parley__V1__LoginResponse *)resp)->token);
	protobuf_c_message_free_unpacked(resp, NULL);
}

const char *
th_name(const char *prefix)
{
	static __thread char buf[64];
	static int counter;

	snprintf(buf, sizeof(buf), "%s%ld%d", prefix, (long)getpid() % 100000,
		 __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
	return buf;
}

long
th_proc_kib(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t n = strlen(field);
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, n) == 0 && line[n] == ':') {
			kib = strtol(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kib;
}

long
th_proc_cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Fields after the command name, which may hold spaces: ") state ..." */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (long)(ut + st);
}

/* util.c — time, samples, threads, ports, /proc, files and child processes for
 * parley-bench. */
#define _GNU_SOURCE
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t
bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
bench_sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
			      .tv_nsec = (long)(ns % 1000000000u)};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

void
bench_sleep_until_ns(uint64_t t)
{
	struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u),
			      .tv_nsec = (long)(t % 1000000000u)};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* ---- samples ------------------------------------------------------------- */

void
samples_init(samples *s, size_t cap)
{
	s->v = malloc(cap * sizeof(*s->v));
	s->cap = s->v != NULL ? cap : 0;
	s->n = 0;
	s->count = 0;
}

void
samples_free(samples *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

void
samples_add(samples *s, uint64_t ns)
{
	if (s->n < s->cap)
		s->v[s->n++] = ns;
	s->count++;
}

void
samples_merge(samples *into, const samples *from)
{
	size_t room = into->cap - into->n;
	size_t take = from->n < room ? from->n : room;

	memcpy(into->v + into->n, from->v, take * sizeof(*from->v));
	into->n += take;
	into->count += from->count;
}

void
samples_reset(samples *s)
{
	s->n = 0;
	s->count = 0;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

double
samples_pct_us(samples *s, double p)
{
	size_t i;

	if (s->n == 0)
		return 0;
	qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
	i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
	if (i >= s->n)
		i = s->n - 1;
	return (double)s->v[i] / 1000.0;
}

/* ---- per-repetition values ------------------------------------------------ */

void
rstat_add(rstat *r, double v)
{
	if (r->n < BENCH_MAX_REPS)
		r->v[r->n++] = v;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double
rstat_median(const rstat *r)
{
	double v[BENCH_MAX_REPS];

	if (r->n == 0)
		return 0;
	memcpy(v, r->v, (size_t)r->n * sizeof(double));
	qsort(v, (size_t)r->n, sizeof(double), cmp_double);
	return r->n % 2 ? v[r->n / 2] : (v[r->n / 2 - 1] + v[r->n / 2]) / 2;
}

double
rstat_min(const rstat *r)
{
	double m = r->n ? r->v[0] : 0;

	for (int i = 1; i < r->n; i++)
		m = r->v[i] < m ? r->v[i] : m;
	return m;
}

double
rstat_max(const rstat *r)
{
	double m = r->n ? r->v[0] : 0;

	for (int i = 1; i < r->n; i++)
		m = r->v[i] > m ? r->v[i] : m;
	return m;
}

/* ---- threads --------------------------------------------------------------- */

bool
bench_run_threads(int n, void *(*fn)(void *), void *args, size_t size)
{
	pthread_t *t = calloc((size_t)n, sizeof(*t));
	pthread_attr_t attr;
	int started = 0;

	if (t == NULL)
		return false;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (; started < n; started++)
		if (pthread_create(&t[started], &attr, fn, (char *)args + (size_t)started * size) != 0)
			break;
	pthread_attr_destroy(&attr);
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	free(t);
	if (started < n)
		fprintf(stderr, "parley-bench: could start only %d of %d threads\n", started, n);
	return started == n;
}

/* ---- ports and /proc --------------------------------------------------------- */

int
bench_free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

void
bench_addr(char *buf, size_t len)
{
	snprintf(buf, len, "tcp://127.0.0.1:%d", bench_free_port());
}

long
bench_proc_status(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t flen = strlen(field);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
			v = strtol(line + flen + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

double
bench_proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long utime, stime;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The name (field 2) may hold spaces and parentheses: fields 14 and 15
	 * are the 12th and 13th after the last ')'. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
		   &stime) != 2)
		return -1;
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- files ----------------------------------------------------------------- */

bool
bench_mkdirs(const char *dir)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "%s", dir);
	for (char *p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return false;
		*p = '/';
	}
	return mkdir(buf, 0755) == 0 || errno == EEXIST;
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

void
bench_rmtree(const char *dir)
{
	if (dir[0] != '\0' && getenv("PARLEY_BENCH_KEEP") == NULL)
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

bool
bench_tmpdir(const bench_opts *o, const char *prefix, char *out, size_t len)
{
	snprintf(out, len, "%s/%s-XXXXXX", o->tmproot, prefix);
	return mkdtemp(out) != NULL;
}

/* ---- children ---------------------------------------------------------------- */

#define MAX_CHILDREN 32
static pid_t children[MAX_CHILDREN];
static pthread_mutex_t children_mtx = PTHREAD_MUTEX_INITIALIZER;

void
bench_child_track(pid_t pid, bool add)
{
	pthread_mutex_lock(&children_mtx);
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (add && children[i] == 0) {
			children[i] = pid;
			break;
		}
		if (!add && children[i] == pid) {
			children[i] = 0;
			break;
		}
	}
	pthread_mutex_unlock(&children_mtx);
}

void
bench_children_kill(void)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] > 0) {
			kill(children[i], SIGKILL);
			waitpid(children[i], NULL, 0);
			children[i] = 0;
		}
}

int
bench_child_wait(pid_t pid, int timeout_ms)
{
	uint64_t until = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
	int status;

	while (bench_now_ns() < until) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid) {
			bench_child_track(pid, false);
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		if (r < 0) {
			bench_child_track(pid, false);
			return -1;
		}
		bench_sleep_ns(5000000);
	}
	return -1;
}

void
bench_child_stop(pid_t pid, int term_ms, const char *what)
{
	kill(pid, SIGTERM);
	if (bench_child_wait(pid, term_ms) == -1) {
		if (what != NULL)
			fprintf(stderr, "parley-bench: %s %ld did not stop; killing it\n", what,
				(long)pid);
		kill(pid, SIGKILL);
		bench_child_wait(pid, 10000);
	}
}

pid_t
bench_spawn(const char *const *argv, const char *log)
{
	sigset_t stop, was;
	pid_t pid, parent = getpid();

	/* A child stopped before it has exec'd must not run our handler, which
	 * kills every server we started: it gets the default action. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	fflush(stdout);
	fflush(stderr);
	pthread_sigmask(SIG_BLOCK, &stop, &was);
	if ((pid = fork()) < 0) {
		pthread_sigmask(SIG_SETMASK, &was, NULL);
		return -1;
	}
	if (pid == 0) {
		int fd = log != NULL ? open(log, O_WRONLY | O_CREAT | O_APPEND, 0644) : -1;

		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		pthread_sigmask(SIG_SETMASK, &was, NULL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)	/* we died before the line above */
			_exit(127);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	bench_child_track(pid, true);
	pthread_sigmask(SIG_SETMASK, &was, NULL);
	return pid;
}

/* true when 127.0.0.1:port accepts a TCP connection now. */
static bool
accepts(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool up;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	up = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return up;
}

bool
bench_spawn_server(const char *const *argv, const char *log, const char *name, int port,
		   pid_t *pid, char *err, size_t errlen)
{
	if ((*pid = bench_spawn(argv, log)) < 0) {
		*pid = 0;
		snprintf(err, errlen, "fork failed");
		return false;
	}
	for (int i = 0; i < 400; i++) {
		if (accepts(port))
			return true;
		if (waitpid(*pid, NULL, WNOHANG) == *pid) {	/* it exited */
			bench_child_track(*pid, false);
			*pid = 0;
			break;
		}
		bench_sleep_ns(25000000);
	}
	snprintf(err, errlen, "%s did not come up on 127.0.0.1:%d (see %s)", name, port, log);
	return false;
}

void
bench_child_signals(sigset_t *sigs)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	sigemptyset(sigs);
	sigaddset(sigs, SIGTERM);
	sigaddset(sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, sigs, NULL);
}

/*
 * lifecycle_test.c — parleyd as an operator sees it: flags, log lines, and a
 * SIGTERM that answers the calls in flight before exiting 0.
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "parley/v1/auth.pb-c.h"

struct inflight {
	const char *url;
	rpc_code code;
	char message[256];
};

static pthread_barrier_t connected;

static void *
slow_login(void *p)
{
	struct inflight *f = p;
	Parley__V1__LoginRequest login = PARLEY__V1__LOGIN_REQUEST__INIT;
	rpc_client *c = th_client(f->url);
	ProtobufCMessage *resp = NULL;
	rpc_call_opts o = {.timeout_ms = 20000};
	rpc_status st;

	/* Connected before the login goes out, so the login reaches the
	 * server within microseconds of the barrier. */
	TH_CHECK(th_wait_serving(f->url, 20000), "connect");
	pthread_barrier_wait(&connected);
	login.user_id = "someone";
	login.password = "not-the-password";
	f->code = rpc_client_call(c, &parley__v1__auth__descriptor, "Login", &login.base, &resp,
				  &o, &st);
	snprintf(f->message, sizeof(f->message), "%s", st.message);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	rpc_client_close(c);
	return NULL;
}

static bool
log_has(const th_daemon *d, const char *needle)
{
	char buf[16384];
	FILE *f = fopen(d->log, "r");
	size_t n;

	if (f == NULL)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return strstr(buf, needle) != NULL;
}

static void
test_sigterm_answers_inflight(void)
{
	th_daemon d = {0};
	struct inflight f[8];
	pthread_t t[8];

	TH_CHECK(th_start(&d, "auth"), "start");
	pthread_barrier_init(&connected, NULL, 9);
	for (int i = 0; i < 8; i++) {
		f[i] = (struct inflight){.url = d.auth, .code = RPC_UNKNOWN};
		pthread_create(&t[i], NULL, slow_login, &f[i]);
	}
	pthread_barrier_wait(&connected);
	/* Eight Argon2id checks on at most one per core take far longer than
	 * this: at SIGTERM some are hashing and the rest are queued. */
	usleep(50000);
	TH_CHECK(th_stop(&d) == 0, "exit status 0 after SIGTERM");
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		/* Every call in flight is answered (a wrong password), not
		 * dropped by the shutdown. */
		TH_CHECK(f[i].code == RPC_UNAUTHENTICATED, "call %d: %s %s", i,
			 rpc_code_name(f[i].code), f[i].message);
	}
	pthread_barrier_destroy(&connected);
	TH_CHECK(log_has(&d, "auth serving on"), "start line");
	TH_CHECK(log_has(&d, "shutting down"), "stop line");
	TH_CHECK(log_has(&d, "stopped"), "stopped line");
	th_cleanup(&d);
	printf("ok SIGTERM answers calls in flight and exits 0\n");
}

static int
run_parleyd(const char *const *args)
{
	const char *argv[16];
	int n = 0, status;
	pid_t pid;

	argv[n++] = getenv("PARLEYD");
	for (; *args != NULL; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		freopen("/dev/null", "w", stderr);
		freopen("/dev/null", "w", stdout);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_bad_flags(void)
{
	static const char *const help[] = {"--help", NULL};
	static const char *const unknown[] = {"--no-such-flag", NULL};
	static const char *const bad_service[] = {"--services", "auth,nope", NULL};
	static const char *const bad_number[] = {"--workers", "many", NULL};
	static const char *const zero[] = {"--workers", "0", NULL};
	static const char *const bad_dir[] = {"--data-dir", "/proc/parley-cannot-be-here",
					      "--services", "auth", NULL};

	TH_CHECK(getenv("PARLEYD") != NULL, "PARLEYD set by ctest");
	TH_CHECK(run_parleyd(help) == 0, "--help");
	TH_CHECK(run_parleyd(unknown) == 2, "unknown flag");
	TH_CHECK(run_parleyd(bad_service) == 2, "unknown service");
	TH_CHECK(run_parleyd(bad_number) == 2, "not a number");
	TH_CHECK(run_parleyd(zero) == 2, "zero workers");
	TH_CHECK(run_parleyd(bad_dir) == 1, "unusable data dir");
	printf("ok flags are checked\n");
}

static void
test_port_in_use(void)
{
	th_daemon a = {0};
	char dir[300];

	TH_CHECK(th_start(&a, "auth"), "start a");
	snprintf(dir, sizeof(dir), "%s/second", a.dir);
	/* A second daemon on a's port refuses to start: exit 1. */
	const char *const args[] = {"--services", "auth", "--data-dir", dir, "--auth-listen",
				    a.auth, NULL};
	TH_CHECK(run_parleyd(args) == 1, "second daemon on the same port must fail");
	TH_CHECK(th_wait_serving(a.auth, 5000), "the first one is unharmed");
	th_cleanup(&a);
	printf("ok a taken port is a clear error\n");
}

int
main(void)
{
	test_bad_flags();
	test_sigterm_answers_inflight();
	test_port_in_use();
	return 0;
}

/*
 * peers_test.c — one peer must never take an endpoint away from the others,
 * nor hold up a shutdown. Each attack runs against a real parleyd from raw
 * tcp sockets speaking SP by hand (nothing of ours shapes the frames), while
 * a well-behaved rpc client keeps calling; the daemon is stopped after each
 * attack and must exit 0.
 *
 *   - a peer pipelining requests and never reading a reply: another
 *     client's Health/Check keeps succeeding within its normal deadline,
 *     and the flooder is cut off (it cannot be otherwise: its replies pile
 *     up unread);
 *   - a flood of idle connections beyond --max-conns: a new client gets in
 *     (the idlest connection gives way) and the daemon's descriptors stay
 *     bounded;
 *   - more connections from one address than --max-conns-per-peer: the
 *     extra client's call is refused with a message that says so;
 *   - a frame declaring 600 MB sent to the events PUB and to the rooms PUB:
 *     the peer is dropped after the frame header and RSS does not grow;
 *   - SIGTERM while a peer sits on thousands of unread replies: the daemon
 *     exits (the time seen is printed; the bound checked is generous).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "harness.h"
#include "tsan.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/health.pb-c.h"
#include "parley/v1/rpc.pb-c.h"

#define SP_REQ 0x30
#define SP_SUB 0x21

static int
port_of(const char *url)
{
	const char *colon = strrchr(url, ':');

	TH_CHECK(colon != NULL, "a tcp url: %s", url);
	return atoi(colon + 1);
}

/* Connects to 127.0.0.1:port and exchanges SP headers as protocol proto;
 * -1 if the server closed the connection instead. rcvbuf > 0 shrinks the
 * receive buffer first (so that unread replies back up early). */
static int
sp_connect(int port, uint16_t proto, int rcvbuf)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	uint8_t hdr[8] = {0, 'S', 'P', 0, (uint8_t)(proto >> 8), (uint8_t)proto, 0, 0};
	uint8_t peer[8];
	struct pollfd pfd;
	size_t got = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	TH_CHECK(fd >= 0, "socket: %s", strerror(errno));
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	TH_CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect: %s",
		 strerror(errno));
	TH_CHECK(write(fd, hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr), "SP header");
	pfd = (struct pollfd){.fd = fd, .events = POLLIN};
	while (got < sizeof(peer) && poll(&pfd, 1, 10000) == 1) {
		ssize_t n = read(fd, peer + got, sizeof(peer) - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got < sizeof(peer)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One REQ frame: length, request id (high bit set), RpcRequest. */
static size_t
req_frame(uint8_t *buf, size_t cap, uint32_t id, const char *service)
{
	Parley__V1__RpcRequest env = PARLEY__V1__RPC_REQUEST__INIT;
	Parley__V1__HealthCheckRequest h = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	uint8_t body[256];
	uint64_t len;
	size_t n;

	h.service = (char *)service;
	env.method = "/parley.v1.Health/Check";
	env.body.data = body;
	env.body.len = parley__v1__health_check_request__pack(&h, body);
	n = parley__v1__rpc_request__get_packed_size(&env);
	TH_CHECK(12 + n <= cap, "frame fits");
	len = 4 + n;
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)(len >> (56 - 8 * i));
	id |= 0x80000000u;
	for (int i = 0; i < 4; i++)
		buf[8 + i] = (uint8_t)(id >> (24 - 8 * i));
	parley__v1__rpc_request__pack(&env, buf + 12);
	return 12 + n;
}

/* Health/Check through a fresh rpc client, with the normal deadline. */
/* Health/Check on client c. */
static rpc_code
health_on(rpc_client *c, rpc_status *st)
{
	Parley__V1__HealthCheckRequest req = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	rpc_call_opts opts = {.timeout_ms = 5000};
	rpc_code code;

	code = rpc_client_call(c, &parley__v1__health__descriptor, "Check", &req.base, &resp,
			       &opts, st);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

/* Health/Check on a connection of its own. */
static rpc_code
health(const char *url, rpc_status *st)
{
	rpc_client *c = th_client(url);
	rpc_code code = health_on(c, st);

	rpc_client_close(c);
	return code;
}

static long
rss_kib(pid_t pid)
{
	long kib = th_proc_kib(pid, "VmRSS");

	TH_CHECK(kib >= 0, "VmRSS of /proc/%d/status", (int)pid);
	return kib;
}

static int
open_fds(pid_t pid)
{
	char path[64];
	struct dirent *e;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	TH_CHECK((d = opendir(path)) != NULL, "%s", path);
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* ---- a peer that pipelines and never reads ---------------------------------- */

struct flooder {
	int port;
	int max_frames;	/* stop after this many (0: until cut off) */
	int fd;		/* kept open when max_frames is reached */
	long sent;
	bool cut_off;	/* the server closed the connection */
	bool throttled;	/* the server stopped taking its requests for a while */
	bool stop;
};

#define FLOOD_STALL_S 10

static void *
flood_main(void *arg)
{
	struct flooder *f = arg;
	uint8_t frame[512];
	/* Replies of ~150 bytes (NOT_FOUND naming the service) fill the
	 * buffers sooner than empty ones. */
	char service[120];

	memset(service, 'x', sizeof(service) - 1);
	service[sizeof(service) - 1] = '\0';
	f->fd = sp_connect(f->port, SP_REQ, 4096);
	TH_CHECK(f->fd >= 0, "flooder connects");
	{
		/* A server may also bound the flood by no longer reading it:
		 * a send that cannot go out for this long says so. */
		struct timeval tv = {.tv_sec = FLOOD_STALL_S};

		setsockopt(f->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE) &&
	       (f->max_frames == 0 || f->sent < f->max_frames)) {
		size_t n = req_frame(frame, sizeof(frame), (uint32_t)f->sent, service);
		ssize_t w = send(f->fd, frame, n, MSG_NOSIGNAL);

		if (w != (ssize_t)n) {
			bool stalled = (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) ||
				       (w >= 0 && w < (ssize_t)n);

			__atomic_store_n(stalled ? &f->throttled : &f->cut_off, true,
					 __ATOMIC_RELEASE);
			break;
		}
		f->sent++;
	}
	return NULL;
}

static void
test_pipelining_flood(void)
{
	th_daemon d = {0};
	struct flooder f = {0};
	rpc_client *other;
	int64_t until;
	pthread_t t;
	rpc_status st;
	int ok = 0;

	TH_CHECK(th_start(&d, "auth"), "start parleyd");
	other = th_client(d.auth);
	f.port = port_of(d.auth);
	TH_CHECK(pthread_create(&t, NULL, flood_main, &f) == 0, "thread");
	/* While the flood is on (it stops only when cut off), every call of
	 * another client, on its one connection, is answered within its
	 * normal deadline. */
	until = rpc_now_ms() + 120000; /* a liveness bound, not a timing: */
	for (int i = 0; i < 20 || !(__atomic_load_n(&f.cut_off, __ATOMIC_ACQUIRE) ||
				    __atomic_load_n(&f.throttled, __ATOMIC_ACQUIRE));
	     i++) {
		TH_CODE(health_on(other, &st), RPC_OK, &st);
		ok++;
		TH_CHECK(rpc_now_ms() < until, "the flooder is never cut off nor held back");
	}
	__atomic_store_n(&f.stop, true, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	close(f.fd);
	if (f.cut_off)
		TH_CHECK(th_log_has(&d, "it leaves its replies unread") ||
				 th_log_has(&d, "it took no reply in the send timeout"),
			 "the log says why the flooder was cut off");
	TH_CODE(health(d.auth, &st), RPC_OK, &st);
	rpc_client_close(other);
	TH_CHECK(th_stop(&d) == 0, "parleyd exits 0");
	th_cleanup(&d);
	printf("ok a peer pipelining %ld requests without reading is %s; %d calls of "
	       "another client answered meanwhile\n",
	       f.sent, f.cut_off ? "cut off" : "no longer read", ok);
}

/* ---- idle connections ------------------------------------------------------------ */

#define IDLE_CAP 32
#define IDLE_FLOOD 200

static void
test_idle_flood(void)
{
	th_daemon d = {0};
	int fds[IDLE_FLOOD], n = 0, before;
	rpc_status st;

	d.extra[0] = "--max-conns";
	d.extra[1] = "32";
	d.extra[2] = "--max-conns-per-peer";
	d.extra[3] = "100000";
	TH_CHECK(th_start(&d, "auth"), "start parleyd");
	before = open_fds(d.pid);
	for (int i = 0; i < IDLE_FLOOD; i++) {
		/* A connection turned away closes at once: keep what stays. */
		int fd = sp_connect(port_of(d.auth), SP_REQ, 0);
		if (fd >= 0)
			fds[n++] = fd;
	}
	TH_CODE(health(d.auth, &st), RPC_OK, &st);
	/* Connections given way are closed by nng's reaper thread, a moment
	 * after: wait for it (generously; no time is asserted). */
	for (int64_t until = rpc_now_ms() + 20000;
	     open_fds(d.pid) > before + IDLE_CAP + 8 && rpc_now_ms() < until;)
		usleep(20000);
	TH_CHECK(open_fds(d.pid) <= before + IDLE_CAP + 8,
		 "descriptors bounded by the cap: %d open, %d before the flood", open_fds(d.pid),
		 before);
	TH_CHECK(th_log_has(&d, "idle longest while the connection limit was reached"),
		 "the log says why connections were closed");
	for (int i = 0; i < n; i++)
		close(fds[i]);
	TH_CHECK(th_stop(&d) == 0, "parleyd exits 0");
	th_cleanup(&d);
	printf("ok %d idle connections against a cap of %d: a new client still gets in\n",
	       IDLE_FLOOD, IDLE_CAP);
}

/* ---- per-address cap ----------------------------------------------------------------- */

static void
test_per_peer_cap(void)
{
	Parley__V1__HealthCheckRequest req = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	th_daemon d = {0};
	rpc_client *held[4];
	ProtobufCMessage *resp = NULL;
	rpc_call_opts opts = {.timeout_ms = 5000};
	rpc_status st;

	d.extra[0] = "--max-conns-per-peer";
	d.extra[1] = "4";
	TH_CHECK(th_start(&d, "auth"), "start parleyd");
	/* Four connections held. th_start's own probe connections may still
	 * be counted for a moment after they closed (nng reaps them on its
	 * own thread): a refusal that names the cap is retried until then. */
	for (int i = 0; i < 4; i++) {
		int64_t until = rpc_now_ms() + 20000;
		rpc_code code;

		held[i] = th_client(d.auth);
		while ((code = rpc_client_call(held[i], &parley__v1__health__descriptor, "Check",
					       &req.base, &resp, &opts, &st)) == RPC_RESOURCE_EXHAUSTED &&
		       strstr(st.message, "too many connections") != NULL && rpc_now_ms() < until) {
			rpc_client_close(held[i]);
			usleep(50000);
			held[i] = th_client(d.auth);
		}
		TH_CODE(code, RPC_OK, &st);
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	TH_CODE(health(d.auth, &st), RPC_RESOURCE_EXHAUSTED, &st);
	TH_CHECK(strstr(st.message, "too many connections from 127.0.0.1 (limit 4 per address)") !=
			 NULL,
		 "the refusal says why: '%s'", st.message);
	rpc_client_close(held[0]);
	for (int i = 1; i < 4; i++)
		rpc_client_close(held[i]);
	TH_CHECK(th_stop(&d) == 0, "parleyd exits 0");
	th_cleanup(&d);
	printf("ok a fifth connection from one address is refused: %s\n", st.message);
}

/* ---- huge frames to the PUB sockets ------------------------------------------------- */

/* Declares a 600 MB frame and sends up to 64 MiB of it; returns how many
 * bytes went before the server closed the connection. */
static long
huge_frame(int port)
{
	static uint8_t chunk[1 << 16];
	uint64_t declared = 600ull << 20;
	uint8_t hdr[8];
	long sent = 0;
	int fd = sp_connect(port, SP_SUB, 0);

	TH_CHECK(fd >= 0, "connects to the PUB");
	for (int i = 0; i < 8; i++)
		hdr[i] = (uint8_t)(declared >> (56 - 8 * i));
	if (send(fd, hdr, sizeof(hdr), MSG_NOSIGNAL) != (ssize_t)sizeof(hdr)) {
		close(fd);
		return 0;
	}
	while (sent < (64l << 20)) {
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		ssize_t w;

		/* A server that reads nothing more leaves us blocked: that
		 * is a drop too (the buffers hold what was sent). */
		if (poll(&pfd, 1, 3000) != 1 || (pfd.revents & (POLLERR | POLLHUP)))
			break;
		w = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w <= 0 && errno != EAGAIN)
			break;
		sent += w > 0 ? w : 0;
	}
	close(fd);
	return sent;
}

static void
test_huge_frames_to_pubs(void)
{
	th_daemon d = {0};
	const char *names[] = {"events PUB", "rooms PUB"};
	long before, after, sent;
	rpc_status st;

	TH_CHECK(th_start(&d, NULL), "start parleyd");
	for (int i = 0; i < 2; i++) {
		before = rss_kib(d.pid);
		sent = huge_frame(port_of(i == 0 ? d.events : d.room_events));
		after = rss_kib(d.pid);
		TH_CHECK(sent < (32l << 20), "%s: the peer is dropped, not read (%ld bytes taken)",
			 names[i], sent);
		TH_CHECK(after - before < 16 * 1024, "%s: RSS grew from %ld to %ld KiB", names[i],
			 before, after);
		printf("ok %s drops a peer declaring a 600 MB frame (%ld bytes taken, RSS %ld -> "
		       "%ld KiB)\n",
		       names[i], sent, before, after);
	}
	TH_CODE(health(d.messaging, &st), RPC_OK, &st);
	TH_CHECK(th_stop(&d) == 0, "parleyd exits 0");
	th_cleanup(&d);
}

/* ---- shutdown with a stalled peer ------------------------------------------------------- */

static void
test_sigterm_with_stalled_peer(void)
{
	th_daemon d = {0};
	struct flooder f = {0};
	int64_t t0, took;
	int status, rc = -1;

	TH_CHECK(th_start(&d, "auth"), "start parleyd");
	f.port = port_of(d.auth);
	f.max_frames = 20000;
	flood_main(&f);
	/* It stays connected with its replies unread (unless the server cut
	 * it off already, which is the bound working early). */
	t0 = rpc_now_ms();
	kill(d.pid, SIGTERM);
	while (rpc_now_ms() - t0 < 60000) {
		if (waitpid(d.pid, &status, WNOHANG) == d.pid) {
			rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			break;
		}
		usleep(10000);
	}
	took = rpc_now_ms() - t0;
	close(f.fd);
	TH_CHECK(rc == 0, "parleyd exits 0 on SIGTERM with a stalled peer (rc %d after %lld ms)",
		 rc, (long long)took);
	d.pid = 0;
	th_cleanup(&d);
	printf("ok SIGTERM with a peer sitting on %ld unread requests: exited in %lld ms\n",
	       f.sent, (long long)took);
}

/* ---- deferred calls have their own budget ------------------------------------------------ */

#define LOGINS 24

struct rawcall {
	nng_ctx ctx;
	nng_aio *aio;
};

static int logins_done, logins_at_health;

/* Counts logins that ran (a password check), not those refused at once. */
static void
login_done(void *arg)
{
	struct rawcall *r = arg;
	nng_msg *m;
	Parley__V1__RpcResponse *resp;

	rpc_tsan_acquire(r); /* from raw_call, through nng */
	m = nng_aio_result(r->aio) == 0 ? nng_aio_get_msg(r->aio) : NULL;
	resp = m ? parley__v1__rpc_response__unpack(NULL, nng_msg_len(m), nng_msg_body(m)) : NULL;
	if (resp != NULL && resp->status != NULL &&
	    resp->status->code == PARLEY__V1__CODE__UNAUTHENTICATED)
		__atomic_add_fetch(&logins_done, 1, __ATOMIC_SEQ_CST);
	if (resp != NULL)
		parley__v1__rpc_response__free_unpacked(resp, NULL);
	rpc_tsan_release(r); /* to raw_reply, after nng_aio_wait */
}

static void
health_done(void *arg)
{
	(void)arg;
	__atomic_store_n(&logins_at_health, __atomic_load_n(&logins_done, __ATOMIC_SEQ_CST),
			 __ATOMIC_SEQ_CST);
}

static void
raw_call(nng_socket s, struct rawcall *r, void (*cb)(void *), const char *method,
	 const ProtobufCMessage *body)
{
	Parley__V1__RpcRequest env = PARLEY__V1__RPC_REQUEST__INIT;
	uint8_t buf[512];
	nng_aio *send;
	nng_msg *m;

	env.method = (char *)method;
	env.body.data = buf;
	env.body.len = protobuf_c_message_pack(body, buf);
	env.timeout_ms = 60000;
	TH_CHECK(nng_ctx_open(&r->ctx, s) == 0 && nng_aio_alloc(&send, NULL, NULL) == 0 &&
			 nng_aio_alloc(&r->aio, cb, r) == 0,
		 "ctx");
	TH_CHECK(nng_msg_alloc(&m, parley__v1__rpc_request__get_packed_size(&env)) == 0, "alloc");
	parley__v1__rpc_request__pack(&env, nng_msg_body(m));
	nng_aio_set_msg(send, m);
	nng_ctx_send(r->ctx, send);
	nng_aio_wait(send);
	TH_CHECK(nng_aio_result(send) == 0, "send");
	nng_aio_free(send);
	rpc_tsan_release(r); /* the callback runs on nng's thread */
	nng_ctx_recv(r->ctx, r->aio);
}

static rpc_code
raw_reply(struct rawcall *r, char *msg, size_t len)
{
	Parley__V1__RpcResponse *resp;
	rpc_code code;

	nng_aio_wait(r->aio);
	rpc_tsan_acquire(r); /* its callback is over */
	TH_CHECK(nng_aio_result(r->aio) == 0, "a reply");
	resp = parley__v1__rpc_response__unpack(NULL, nng_msg_len(nng_aio_get_msg(r->aio)),
						nng_msg_body(nng_aio_get_msg(r->aio)));
	TH_CHECK(resp != NULL, "well-formed");
	code = resp->status ? (rpc_code)resp->status->code : RPC_OK;
	snprintf(msg, len, "%s", resp->status && resp->status->message ? resp->status->message : "");
	parley__v1__rpc_response__free_unpacked(resp, NULL);
	nng_msg_free(nng_aio_get_msg(r->aio));
	nng_aio_free(r->aio);
	nng_ctx_close(r->ctx);
	return code;
}

/* With 4 contexts and 24 logins deferred to the password hashers, a
 * Health/Check sent behind them on the same connection is answered before
 * the logins are: deferred calls gave their contexts back. (Before, it
 * waited until 20 of them were done.) Which came first is recorded as the
 * replies arrive. */
static void
test_deferred_budget(void)
{
	Parley__V1__LoginRequest login = PARLEY__V1__LOGIN_REQUEST__INIT;
	Parley__V1__HealthCheckRequest h = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	struct rawcall calls[LOGINS + 1];
	th_daemon d = {0};
	nng_socket s;
	char user[32], msg[256];
	int budget_refusals = 0, at_health;

	d.extra[0] = "--contexts";
	d.extra[1] = "4";
	TH_CHECK(th_start(&d, "auth"), "start parleyd");
	TH_CHECK(nng_req0_open(&s) == 0 && nng_dial(s, d.auth, NULL, 0) == 0, "dial");
	nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	for (int i = 0; i < LOGINS; i++) {
		snprintf(user, sizeof(user), "nobody%d", i);
		login.user_id = user;
		login.password = "wrong-password";
		raw_call(s, &calls[i], login_done, "/parley.v1.Auth/Login", &login.base);
	}
	raw_call(s, &calls[LOGINS], health_done, "/parley.v1.Health/Check", &h.base);
	TH_CODE(raw_reply(&calls[LOGINS], msg, sizeof(msg)), RPC_OK, &(rpc_status){0});
	for (int i = 0; i < LOGINS; i++) {
		rpc_code code = raw_reply(&calls[i], msg, sizeof(msg));

		TH_CHECK(code == RPC_UNAUTHENTICATED || code == RPC_RESOURCE_EXHAUSTED,
			 "login %d: %s %s", i, rpc_code_name(code), msg);
		/* Refused by the runtime's deferred budget or, before it, by
		 * auth's own bounds on password checks (the hash queue, checks
		 * in flight per address): either way said in words. */
		if (code == RPC_RESOURCE_EXHAUSTED &&
		    (strstr(msg, "too many calls waiting") != NULL ||
		     strstr(msg, "password checks in progress") != NULL ||
		     strstr(msg, "in progress from your address") != NULL))
			budget_refusals++;
	}
	at_health = __atomic_load_n(&logins_at_health, __ATOMIC_SEQ_CST); /* set on nng's thread */
	TH_CHECK(at_health < 4,
		 "Health answered after %d of %d password checks: it waited behind deferred calls",
		 at_health, LOGINS);
	TH_CHECK(budget_refusals > 0, "logins beyond the budgets are refused, saying so");
	nng_close(s);
	TH_CHECK(th_stop(&d) == 0, "parleyd exits 0");
	th_cleanup(&d);
	printf("ok Health answered after %d password checks of %d logins; %d refused beyond "
	       "the budget\n",
	       at_health, LOGINS, budget_refusals);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (getenv("PEERS_ONLY_FLOOD") != NULL) {
		test_pipelining_flood();
		return 0;
	}
	test_deferred_budget();
	test_per_peer_cap();
	test_huge_frames_to_pubs();
	test_idle_flood();
	test_pipelining_flood();
	test_sigterm_with_stalled_peer();
	return 0;
}

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

#include "harness.h"
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
static rpc_code
health(const char *url, rpc_status *st)
{
	Parley__V1__HealthCheckRequest req = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	rpc_call_opts opts = {.timeout_ms = 5000};
	rpc_client *c = th_client(url);
	rpc_code code;

	code = rpc_client_call(c, &parley__v1__health__descriptor, "Check", &req.base, &resp,
			       &opts, st);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	rpc_client_close(c);
	return code;
}

static long
rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	TH_CHECK((f = fopen(path, "r")) != NULL, "%s", path);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld", &kib) == 1)
			break;
	fclose(f);
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
	bool stop;
};

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
	while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE) &&
	       (f->max_frames == 0 || f->sent < f->max_frames)) {
		size_t n = req_frame(frame, sizeof(frame), (uint32_t)f->sent, service);
		ssize_t w = send(f->fd, frame, n, MSG_NOSIGNAL);

		if (w != (ssize_t)n) {
			__atomic_store_n(&f->cut_off, true, __ATOMIC_RELEASE);
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
	pthread_t t;
	rpc_status st;
	int ok = 0;

	TH_CHECK(th_start(&d, "auth"), "start parleyd");
	f.port = port_of(d.auth);
	TH_CHECK(pthread_create(&t, NULL, flood_main, &f) == 0, "thread");
	/* While the flood is on (it stops only when cut off), every call of
	 * another client is answered within its normal deadline. */
	for (int i = 0; i < 20 || !__atomic_load_n(&f.cut_off, __ATOMIC_ACQUIRE); i++) {
		TH_CODE(health(d.auth, &st), RPC_OK, &st);
		ok++;
		TH_CHECK(i < 100000, "the flooder is never cut off");
	}
	__atomic_store_n(&f.stop, true, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	close(f.fd);
	TH_CHECK(th_log_has(&d, "it leaves its replies unread") ||
			 th_log_has(&d, "it took no reply in the send timeout"),
		 "the log says why the flooder was cut off");
	TH_CODE(health(d.auth, &st), RPC_OK, &st);
	TH_CHECK(th_stop(&d) == 0, "parleyd exits 0");
	th_cleanup(&d);
	printf("ok a peer pipelining %ld requests without reading is cut off; %d calls of "
	       "another client answered meanwhile\n",
	       f.sent, ok);
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
	/* th_start's own probe clients are gone; four connections held. */
	for (int i = 0; i < 4; i++) {
		held[i] = th_client(d.auth);
		TH_CODE(rpc_client_call(held[i], &parley__v1__health__descriptor, "Check",
					&req.base, &resp, &opts, &st),
			RPC_OK, &st);
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

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (getenv("PEERS_ONLY_FLOOD") != NULL) {
		test_pipelining_flood();
		return 0;
	}
	test_per_peer_cap();
	test_huge_frames_to_pubs();
	test_idle_flood();
	test_pipelining_flood();
	test_sigterm_with_stalled_peer();
	return 0;
}

/*
 * shutdown_attack_test.c — SIGTERM still ends parleyd after the attacks
 * that once hung it in nng_close: unauthenticated SUB peers on the events
 * PUB declaring 600 MB frames (now refused by size: the PUB drops them),
 * a peer pipelining tens of thousands of requests it never reads, and
 * sessions expiring under --session-idle 1. The daemon must exit 0; the
 * wait is generous (60 s, a bound for a hang, not a timing) and the time
 * seen is printed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mx_util.h"
#include "store.h"

#define PIPELINED 50000

/* A raw tcp connection to url ("tcp://127.0.0.1:port") that has done the
 * SP handshake as protocol proto. */
static int
sp_connect(const char *url, uint16_t proto)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	uint8_t hs[8] = {0, 'S', 'P', 0, (uint8_t)(proto >> 8), (uint8_t)proto, 0, 0}, peer[8];
	size_t got = 0;
	int fd;

	sa.sin_port = htons((uint16_t)atoi(strrchr(url, ':') + 1));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	TH_CHECK((fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0, "socket");
	TH_CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s", url);
	TH_CHECK(write(fd, hs, sizeof(hs)) == sizeof(hs), "handshake");
	while (got < sizeof(peer)) {
		ssize_t n = read(fd, peer + got, sizeof(peer) - got);

		TH_CHECK(n > 0, "handshake reply from %s", url);
		got += (size_t)n;
	}
	return fd;
}

/* True once the daemon has closed fd (read gives EOF or a reset). */
static bool
closed_by_peer(int fd)
{
	char buf[256];
	ssize_t n;

	do
		n = read(fd, buf, sizeof(buf));
	while (n > 0);
	return n == 0 || errno == ECONNRESET;
}

int
main(void)
{
	static const char *const extra[] = {"--session-idle", "1", NULL};
	static uint8_t chunk[65536];
	char room[65], sid[65];
	const char *rooms[1] = {room};
	Parley__V1__PollResponse *p;
	uint8_t frame[8 + 12];
	int subs[2], req, status;
	int64_t t0, took;
	rpc_status st;
	uint64_t head;
	mx_user u;
	size_t sent = 0;

	/* The daemon hangs up on the attackers mid-write: that is an EPIPE to
	 * check, not a signal that ends the test. */
	signal(SIGPIPE, SIG_IGN);

	mx_start(extra);
	mx_user_new(&u, "term");
	snprintf(room, sizeof(room), "%s", th_name("term"));
	TH_CODE(mx_create_room(&u, room, &st), RPC_OK, &st);

	/* 1. SUB peers on the events PUB declaring 600 MB frames. */
	memset(chunk, 'x', sizeof(chunk));
	for (int i = 0; i < 2; i++) {
		uint8_t len[8];

		subs[i] = sp_connect(mx_d.events, 0x21);
		store_be64_put(len, 600ull << 20);
		TH_CHECK(write(subs[i], len, 8) == 8, "declare");
		/* The daemon may hang up at once: a short write is the point. */
		if (write(subs[i], chunk, sizeof(chunk)) < 0)
			TH_CHECK(errno == ECONNRESET || errno == EPIPE, "write: %s", strerror(errno));
	}
	for (int i = 0; i < 2; i++) {
		TH_CHECK(closed_by_peer(subs[i]), "the PUB hangs up on a 600 MB frame");
		close(subs[i]);
	}
	printf("ok the events PUB hangs up on peers declaring 600 MB frames\n");

	/* 2. A peer pipelining requests it never reads, then gone. */
	req = sp_connect(mx_d.messaging, 0x30);
	store_be64_put(frame, 12);
	memcpy(frame + 8, "\x80\x00\x00\x01garbage!", 12);
	{
		int fl = 1;

		setsockopt(req, SOL_SOCKET, SO_RCVBUF, &fl, sizeof(fl));
	}
	for (; sent < PIPELINED; sent++) {
		struct timeval tv = {.tv_sec = 2};

		setsockopt(req, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (write(req, frame, sizeof(frame)) != sizeof(frame))
			break; /* the daemon stopped reading: it has enough */
	}
	close(req);
	printf("ok pipelined %zu unread requests\n", sent);

	/* 3. Sessions that expire: opened, polled, left to idle out. */
	for (int i = 0; i < 3; i++) {
		TH_CODE(mx_open(&u, 1, rooms, NULL, sid, &head, &st), RPC_OK, &st);
		TH_CODE(mx_poll(&u, sid, 0, 0, &p, &st), RPC_OK, &st);
		protobuf_c_message_free_unpacked(&p->base, NULL);
	}
	/* A Poll keeps a session alive: look less often than it expires. */
	do
		usleep(1500000);
	while (mx_poll(&u, sid, 0, 0, &p, &st) == RPC_OK &&
	       (protobuf_c_message_free_unpacked(&p->base, NULL), true));
	TH_CHECK(st.code == RPC_NOT_FOUND, "the session expired: %s", st.message);

	/* Now SIGTERM. */
	rpc_client_close(mx_auth);
	rpc_client_close(mx_rooms);
	rpc_client_close(mx_msg);
	rpc_client_close(mx_hist);
	t0 = rpc_now_ms();
	kill(mx_d.pid, SIGTERM);
	for (;;) {
		pid_t r = waitpid(mx_d.pid, &status, WNOHANG);

		if (r == mx_d.pid)
			break;
		TH_CHECK(rpc_now_ms() - t0 < 60000, "parleyd still running 60 s after SIGTERM");
		usleep(20000);
	}
	took = rpc_now_ms() - t0;
	mx_d.pid = 0;
	TH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "parleyd exits 0 (status %d)",
		 status);
	printf("ok SIGTERM after the attacks: exited 0 in %lld ms\n", (long long)took);
	th_cleanup(&mx_d);
	return 0;
}

/*
 * pub_flood_test.c — the internal PUB sockets (the events PUB, the rooms
 * PUB) hold a flood of SUB connections to the connection caps of the REP
 * endpoints (issue 14, item 3): a real parleyd with
 * --max-conns-per-peer 4 --max-conns 16, and raw SP/TCP subscribers.
 *
 *   - 12 subscribers from 127.0.0.1 on each PUB: 4 stay, 8 are closed
 *     (over the per-address cap; the daemon's log says so);
 *   - one subscriber from each of 40 more addresses (127.0.0.2 ...): the
 *     socket never holds more than its cap, the longest-connected giving
 *     way; the newest still gets the events;
 *   - through all that the process's own in-process subscribers stay: a
 *     message sent afterwards reaches a waiting Poll;
 *   - and the daemon stops cleanly.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mx_util.h"

#define PER_PEER 4
#define MAX_CONNS 16
#define FLOOD 12
#define ADDRS 40

static int
port_of(const char *url)
{
	const char *c = strrchr(url, ':');

	TH_CHECK(c != NULL, "a port in %s", url);
	return atoi(c + 1);
}

/* A SUB0 connection over SP/TCP from src to 127.0.0.1:port: the SP
 * header sent; the server's header read if it comes. fd, or -1. */
static int
sp_dial(int port, const char *src)
{
	static const unsigned char hdr[8] = {0, 'S', 'P', 0, 0x00, 0x21, 0, 0}; /* SUB0 */
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct sockaddr_in s = {.sin_family = AF_INET};
	unsigned char got[8];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	TH_CHECK(fd >= 0, "socket: %s", strerror(errno));
	inet_pton(AF_INET, src, &s.sin_addr);
	TH_CHECK(bind(fd, (struct sockaddr *)&s, sizeof(s)) == 0, "bind %s: %s", src,
		 strerror(errno));
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	TH_CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect: %s", strerror(errno));
	TH_CHECK(write(fd, hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr), "SP header");
	/* The server's header, unless it closes at once. */
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, 10000) == 1)
		(void)recv(fd, got, sizeof(got), MSG_WAITALL);
	return fd;
}

/* Whether the server closed fd (EOF or reset); frames it sent are read
 * and dropped. */
static bool
sp_closed(int fd)
{
	unsigned char buf[4096];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == 0)
			return true;
		if (n < 0)
			return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
	}
}

/* Waits (bounded) until want of fds[0..n) are closed; returns how many are. */
static int
wait_closed(const int *fds, int n, int want)
{
	int closed = 0;

	for (int round = 0; round < 400; round++) { /* 20 s */
		closed = 0;
		for (int i = 0; i < n; i++)
			closed += sp_closed(fds[i]);
		if (closed >= want)
			break;
		usleep(50 * 1000);
	}
	return closed;
}

/* Waits (bounded) for a frame on fd: true when one came. */
static bool
sp_gets_frame(int fd)
{
	unsigned char buf[256];
	struct pollfd p = {.fd = fd, .events = POLLIN};

	if (poll(&p, 1, 10000) != 1)
		return false;
	return recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0;
}

/* One PUB endpoint: 12 from one address, then one from each of 40. own:
 * the daemon's own subscribers from 127.0.0.1 over tcp (messaging
 * subscribes to the rooms PUB at its tcp address, in this test's setup). */
static void
flood(const char *what, const char *url, int own, const mx_user *sender, const char *room)
{
	int port = port_of(url), one[FLOOD], many[ADDRS], open = 0, newest = -1;
	uint64_t seq;
	rpc_status st;
	int closed;

	for (int i = 0; i < FLOOD; i++)
		one[i] = sp_dial(port, "127.0.0.1");
	closed = wait_closed(one, FLOOD, FLOOD - PER_PEER + own);
	TH_CHECK(closed == FLOOD - PER_PEER + own,
		 "%s: %d of %d connections from one address closed, want %d", what, closed, FLOOD,
		 FLOOD - PER_PEER + own);
	printf("ok %s: %d of %d SUB connections from one address closed, %d kept\n", what,
	       closed, FLOOD, PER_PEER - own);

	/* Many addresses: the socket stays within its cap. */
	for (int i = 0; i < ADDRS; i++) {
		char src[32];

		snprintf(src, sizeof(src), "127.0.0.%d", 2 + i);
		many[i] = sp_dial(port, src);
	}
	/* Counted: the daemon's own subscriber, the ones kept, the 40; the
	 * longest-connected give way. Wait (bounded) until the test holds at
	 * most MAX_CONNS - 1 of them. */
	for (int round = 0; round < 400; round++) { /* 20 s */
		open = 0;
		newest = -1;
		for (int i = 0; i < FLOOD; i++)
			open += !sp_closed(one[i]);
		for (int i = 0; i < ADDRS; i++)
			if (!sp_closed(many[i])) {
				open++;
				newest = i;
			}
		if (open <= MAX_CONNS - 1)
			break;
		usleep(50 * 1000);
	}
	TH_CHECK(open <= MAX_CONNS - 1, "%s: %d subscribers open, cap %d with the daemon's own",
		 what, open, MAX_CONNS);
	TH_CHECK(newest == ADDRS - 1, "%s: the newest subscriber was cut (newest open: %d)", what,
		 newest);
	/* It gets the events (a PUB sends everything; SUB filters). */
	if (strcmp(what, "events PUB") == 0) {
		TH_CODE(mx_send(sender, room, "through the flood", NULL, &seq, NULL, &st), RPC_OK,
			&st);
	} else {
		TH_CODE(mx_leave(sender, room, &st), RPC_OK, &st);
		TH_CODE(mx_join(sender, room, &st), RPC_OK, &st);
	}
	TH_CHECK(sp_gets_frame(many[ADDRS - 1]), "%s: the newest subscriber gets events", what);
	printf("ok %s: %d subscribers from %d addresses held to %d connections\n", what,
	       ADDRS, ADDRS, open);
	for (int i = 0; i < FLOOD; i++)
		close(one[i]);
	for (int i = 0; i < ADDRS; i++)
		close(many[i]);
}

int
main(void)
{
	static const char *const extra[] = {"--max-conns-per-peer", "4", "--max-conns", "16", NULL};
	char room[65], sid[65];
	const char *rooms[1] = {room};
	Parley__V1__PollResponse *p;
	uint64_t head, seq;
	rpc_status st;
	mx_user u[2];
	bool got = false;

	mx_start(extra);
	mx_users_new(u, 2, "pf");
	snprintf(room, sizeof(room), "%s", th_name("pf"));
	TH_CODE(mx_create_room(&u[0], room, &st), RPC_OK, &st);

	flood("events PUB", mx_d.events, 0, &u[0], room);
	flood("rooms PUB", mx_d.room_events, 1, &u[1], room);
	TH_CHECK(th_log_has(&mx_d, "over the limit of 4 per address"),
		 "the daemon's log names the per-address limit");

	/* The daemon's own subscribers were never cut: membership reaches
	 * messaging, a message reaches a waiting Poll. */
	mx_wait_membership(&u[0], room, u[1].name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED);
	TH_CODE(mx_open(&u[1], 1, rooms, NULL, sid, &head, &st), RPC_OK, &st);
	TH_CODE(mx_send(&u[0], room, "after the flood", "", &seq, NULL, &st), RPC_OK, &st);
	while (!got) {
		TH_CODE(mx_poll(&u[1], sid, 10000, 0, &p, &st), RPC_OK, &st);
		TH_CHECK(p->n_events > 0, "the message never came");
		for (size_t i = 0; i < p->n_events; i++)
			got |= p->events[i]->seq == seq;
		protobuf_c_message_free_unpacked(&p->base, NULL);
	}
	printf("ok live delivery after the floods\n");
	mx_stop();
	printf("ok the daemon stops cleanly\n");
	return 0;
}

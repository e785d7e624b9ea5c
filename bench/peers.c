/* peers.c — child processes and plain sockets for the peer servers (see peers.h). */
#define _GNU_SOURCE
#include "peers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

const char *
peer_find(const char *const *paths)
{
	for (; *paths != NULL; paths++)
		if (access(*paths, X_OK) == 0)
			return *paths;
	return NULL;
}

int
peer_connect(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

bool
peer_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

int
peer_line(peer_lines *l, char *out, size_t max)
{
	for (;;) {
		char *start = l->buf + l->off, *nl = memchr(start, '\n', l->len - l->off);

		if (nl != NULL) {
			size_t n = (size_t)(nl - start), keep = n;

			if (keep > 0 && start[keep - 1] == '\r')
				keep--;
			if (keep >= max)
				keep = max - 1;
			memcpy(out, start, keep);
			out[keep] = '\0';
			l->off += n + 1;	/* no move per line: the reader keeps up */
			return (int)keep;
		}
		/* Compact only to refill. */
		memmove(l->buf, start, l->len - l->off);
		l->len -= l->off;
		l->off = 0;
		if (l->len == sizeof(l->buf))
			l->len = 0;	/* a line longer than the buffer: drop it */
		ssize_t got = recv(l->fd, l->buf + l->len, sizeof(l->buf) - l->len, 0);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return -1;
		l->len += (size_t)got;
	}
}

bool
peer_spawn(peer_server *s, const char *const *argv, char *err, size_t errlen)
{
	if (bench_spawn_server(argv, s->log, s->name, s->port, &s->pid, err, errlen))
		return true;
	peer_stop(s);
	return false;
}

void
peer_stop(peer_server *s)
{
	if (s->pid > 0) {
		bench_child_stop(s->pid, 10000, NULL);
		s->pid = 0;
	}
	bench_rmtree(s->tmp);
	s->tmp[0] = '\0';
}

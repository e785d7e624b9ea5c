/*
 * internal_endpoints_test.c — the internal endpoints (the events PUB, the
 * rooms PUB, RoomsFeed) are nobody's business but Parley's: a parleyd left
 * at its defaults listens on no tcp port but its four public ones (the
 * internal hops are in process) and still delivers live events; an internal
 * endpoint on a non-loopback plaintext address, or on TLS without --tls-ca,
 * is refused at start with a message naming the flag.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mx_util.h"

/* The tcp ports pid listens on: its socket inodes matched against the
 * LISTEN entries of /proc/net/tcp and tcp6. Returns how many. */
static int
listening_ports(pid_t pid, int *ports, int max)
{
	unsigned long inodes[1024];
	int ninodes = 0, n = 0;
	char path[64], link[64], line[512];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
	TH_CHECK((d = opendir(path)) != NULL, "open %s", path);
	while ((e = readdir(d)) != NULL && ninodes < 1024) {
		char fd[400];
		ssize_t len;
		unsigned long ino;

		snprintf(fd, sizeof(fd), "%s/%s", path, e->d_name);
		len = readlink(fd, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = '\0';
		if (sscanf(link, "socket:[%lu]", &ino) == 1)
			inodes[ninodes++] = ino;
	}
	closedir(d);
	for (int v6 = 0; v6 < 2; v6++) {
		FILE *f = fopen(v6 ? "/proc/net/tcp6" : "/proc/net/tcp", "r");

		if (f == NULL)
			continue;
		while (fgets(line, sizeof(line), f) != NULL) {
			char local[128];
			unsigned st, port;
			unsigned long ino;

			/* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
			if (sscanf(line, " %*s %127s %*s %x %*s %*s %*s %*s %*s %lu", local, &st,
				   &ino) != 3 ||
			    st != 0x0A)
				continue;
			if (sscanf(strrchr(local, ':') + 1, "%x", &port) != 1)
				continue;
			for (int i = 0; i < ninodes; i++)
				if (inodes[i] == ino && n < max)
					ports[n++] = (int)port;
		}
		fclose(f);
	}
	return n;
}

static int
port_of(const char *url)
{
	return atoi(strrchr(url, ':') + 1);
}

/* Runs parleyd with args (NULL-terminated, after the binary); returns its
 * exit status and its stderr in out. */
static int
run_parleyd(const char *const *args, char *out, size_t len)
{
	const char *parleyd = getenv("PARLEYD");
	char cmd[2048];
	size_t n = 0, r;
	int status, o;
	FILE *p;

	TH_CHECK(parleyd != NULL, "PARLEYD names the daemon (set by ctest)");
	o = snprintf(cmd, sizeof(cmd), "'%s'", parleyd);
	for (int i = 0; args[i] != NULL; i++)
		o += snprintf(cmd + o, sizeof(cmd) - (size_t)o, " '%s'", args[i]);
	snprintf(cmd + o, sizeof(cmd) - (size_t)o, " 2>&1");
	TH_CHECK((p = popen(cmd, "r")) != NULL, "popen");
	while (n + 1 < len && (r = fread(out + n, 1, len - 1 - n, p)) > 0)
		n += r;
	out[n] = '\0';
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
refused(const char *flag, const char *url, const char *want)
{
	const char *args[] = {"--data-dir", "/nonexistent/parley-never-opened", flag, url, NULL};
	char out[4096];

	TH_CHECK(run_parleyd(args, out, sizeof(out)) == 2, "%s %s must be refused:\n%s", flag, url,
		 out);
	TH_CHECK(strstr(out, flag) != NULL && strstr(out, url) != NULL && strstr(out, want) != NULL,
		 "the message names the flag, the address and '%s':\n%s", want, out);
	printf("ok %s %s refused\n", flag, url);
}

int
main(void)
{
	char room[65], sid[65];
	const char *rooms[1] = {room};
	int ports[64], n, pub[4];
	Parley__V1__PollResponse *p;
	uint64_t head, seq;
	rpc_status st;
	mx_user u[2];

	/* Defaults: the internal hops in process, nothing on tcp for them. */
	mx_d.default_internal = true;
	mx_start(NULL);
	pub[0] = port_of(mx_d.auth);
	pub[1] = port_of(mx_d.rooms);
	pub[2] = port_of(mx_d.history);
	pub[3] = port_of(mx_d.messaging);
	n = listening_ports(mx_d.pid, ports, 64);
	TH_CHECK(n >= 4, "the daemon's public endpoints listen (%d ports)", n);
	for (int i = 0; i < n; i++) {
		bool public = ports[i] == port_of(mx_d.http); /* the HTTP face */

		for (int k = 0; k < 4; k++)
			public |= ports[i] == pub[k];
		TH_CHECK(public, "parleyd listens on tcp port %d, which is not a public endpoint",
			 ports[i]);
		TH_CHECK(ports[i] < 5205 || ports[i] > 5207, "parleyd listens on %d", ports[i]);
	}
	printf("ok a default parleyd listens on its %d public ports only\n", n);

	/* ...and the in-process hops work: membership reaches messaging, a
	 * message reaches a waiting Poll. */
	mx_users_new(u, 2, "inp");
	snprintf(room, sizeof(room), "%s", th_name("inp"));
	TH_CODE(mx_create_room(&u[0], room, &st), RPC_OK, &st);
	TH_CODE(mx_join(&u[1], room, &st), RPC_OK, &st);
	mx_wait_membership(&u[0], room, u[1].name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED);
	TH_CODE(mx_open(&u[1], 1, rooms, NULL, sid, &head, &st), RPC_OK, &st);
	TH_CODE(mx_send(&u[0], room, "in process", "", &seq, NULL, &st), RPC_OK, &st);
	for (;;) {
		bool got = false;

		TH_CODE(mx_poll(&u[1], sid, 10000, 0, &p, &st), RPC_OK, &st);
		for (size_t i = 0; i < p->n_events; i++)
			got |= p->events[i]->seq == seq;
		TH_CHECK(p->n_events > 0, "the message never came");
		protobuf_c_message_free_unpacked(&p->base, NULL);
		if (got)
			break;
	}
	printf("ok live delivery over the in-process hops\n");
	mx_stop();

	refused("--events-listen", "tcp://0.0.0.0:5205", "loopback");
	refused("--room-events-listen", "tcp://192.0.2.7:5206", "loopback");
	refused("--rooms-internal-listen", "ws://[2001:db8::1]:5207/feed", "loopback");
	refused("--rooms-internal", "tcp://rooms.example:5207", "loopback");
	refused("--events-listen", "tls+tcp://0.0.0.0:5205", "needs --tls-ca");
	return 0;
}

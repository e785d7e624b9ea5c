/*
 * peer_irc.c — an IRC server (InspIRCd) as a chat peer (see peers.h): a
 * room is a channel, a message a PRIVMSG, a receiver a client joined to
 * the channel. Nothing is persisted and a late joiner sees nothing before
 * its JOIN: the in-memory chat server a user might also pick.
 *
 * The server runs with no DNS or ident lookups and with flood protection
 * out of the way (no fake lag, a command rate and queues far beyond the
 * bench's; publishers are opers with no-fakelag/no-throttle privileges).
 * Even so, a single client flooding a channel flat out is paced in
 * one-second steps with the server nearly idle: the flat-out IRC row
 * measures that pacing, not InspIRCd's capacity (see bench/README.md).
 */
#define _GNU_SOURCE
#include "peers.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const irc_paths[] = {"/usr/sbin/inspircd", "/usr/bin/inspircd",
					"/usr/local/sbin/inspircd", NULL};

bool
irc_available(char *why, size_t len)
{
	if (peer_find(irc_paths) != NULL)
		return true;
	snprintf(why, len, "no inspircd (install the Debian package inspircd)");
	return false;
}

bool
irc_start(peer_server *s, const bench_opts *o, char *err, size_t errlen)
{
	char conf[400];
	const char *argv[8];
	int n = 0;
	FILE *f;

	memset(s, 0, sizeof(*s));
	s->name = "inspircd";
	if (!irc_available(err, errlen))
		return false;
	if (!bench_tmpdir(o, "inspircd", s->tmp, sizeof(s->tmp))) {
		snprintf(err, errlen, "mkdtemp failed");
		return false;
	}
	snprintf(s->log, sizeof(s->log), "%s/inspircd.out", s->tmp);
	snprintf(conf, sizeof(conf), "%s/inspircd.conf", s->tmp);
	s->port = bench_free_port();
	if ((f = fopen(conf, "w")) == NULL) {
		snprintf(err, errlen, "cannot write %s", conf);
		return false;
	}
	fprintf(f,
		"<server name=\"bench.local\" description=\"parley-bench peer\" network=\"bench\">\n"
		"<admin name=\"bench\" nick=\"bench\" email=\"bench@localhost\">\n"
		"<bind address=\"127.0.0.1\" port=\"%d\" type=\"clients\">\n"
		/* flood limits: none the bench can reach */
		"<connect name=\"bench\" allow=\"127.0.0.1\" timeout=\"60\" threshold=\"1000000\" "
		"pingfreq=\"3600\" hardsendq=\"67108864\" softsendq=\"16777216\" "
		"recvq=\"16777216\" localmax=\"100000\" globalmax=\"100000\" "
		"commandrate=\"1000000000\" fakelag=\"off\" maxchans=\"100\" limit=\"100000\" "
		"useident=\"no\" resolvehostnames=\"no\">\n"
		/* no reverse DNS per connection; no ident module is loaded */
		"<performance nouserdns=\"yes\" softlimit=\"20000\" clonesonconnect=\"no\" "
		"quietbursts=\"yes\">\n"
		"<pid file=\"%s/inspircd.pid\">\n"
		"<log method=\"file\" type=\"* -USERINPUT -USEROUTPUT\" level=\"sparse\" "
		"target=\"%s/inspircd.log\">\n"
		"<channels users=\"100\" opers=\"100\">\n"
		/* publishers become opers whose input is never throttled */
		"<class name=\"bench\" privs=\"users/flood/no-fakelag "
		"users/flood/increased-buffers users/flood/no-throttle\" commands=\"*\">\n"
		"<type name=\"bench\" classes=\"bench\">\n"
		"<oper name=\"bench\" password=\"bench\" host=\"*@*\" type=\"bench\">\n",
		s->port, s->tmp, s->tmp);
	if (fclose(f) != 0) {
		snprintf(err, errlen, "cannot write %s", conf);
		return false;
	}
	argv[n++] = peer_find(irc_paths);
	argv[n++] = "--nofork";
	argv[n++] = "--config";
	argv[n++] = conf;
	if (geteuid() == 0)
		argv[n++] = "--runasroot";	/* containers: it refuses root otherwise */
	argv[n] = NULL;
	return peer_spawn(s, argv, err, errlen);
}

/* ---- clients --------------------------------------------------------------------- */

typedef struct irecv {
	struct isys *sys;
	fo_recv *r;
	peer_lines in;
	int errors;
	char first[200];
} irecv;

typedef struct isys {
	int nrecv;
	irecv *ir;
	pthread_t *threads;
	int nthreads;
	atomic_bool stop;
	int npubs;
	int pub[FO_MAX_ROOMS];
	peer_lines pub_in[FO_MAX_ROOMS];	/* read by its drain thread */
	pthread_t drain[FO_MAX_ROOMS];
	int ndrains;
	pthread_mutex_t room_mtx[FO_MAX_ROOMS];
	uint64_t seq[FO_MAX_ROOMS];	/* [room_mtx] */
	char chan[FO_MAX_ROOMS][32];
} isys;

/* The command of a server line ":prefix CMD ..." (or "CMD ..."), and the
 * rest after it. */
static bool
is_cmd(const char *line, const char *cmd, const char **rest)
{
	const char *p = line;
	size_t n = strlen(cmd);

	if (*p == ':') {
		p = strchr(p, ' ');
		if (p == NULL)
			return false;
		p++;
	}
	if (strncmp(p, cmd, n) != 0 || (p[n] != ' ' && p[n] != '\0'))
		return false;
	if (rest != NULL)
		*rest = p + n;
	return true;
}

/* Answers a PING; true if line was one. */
static bool
pong(int fd, const char *line)
{
	const char *rest;
	char out[600];

	if (!is_cmd(line, "PING", &rest))
		return false;
	snprintf(out, sizeof(out), "PONG%s\r\n", rest);
	peer_write_all(fd, out, strlen(out));
	return true;
}

/* Registers nick (as an oper when oper) and joins chan: returns once the
 * server ended the NAMES list of the channel (366), so every later PRIVMSG
 * reaches this client. */
static bool
irc_login(peer_lines *in, const char *nick, const char *chan, bool oper, char *err,
	  size_t errlen)
{
	char line[1024], cmd[300];
	bool welcomed = false;

	snprintf(cmd, sizeof(cmd), "NICK %s\r\nUSER %s 0 * :%s\r\n", nick, nick, nick);
	if (!peer_write_all(in->fd, cmd, strlen(cmd)))
		goto io;
	while (peer_line(in, line, sizeof(line)) >= 0) {
		if (pong(in->fd, line))
			continue;
		if (!welcomed && is_cmd(line, "001", NULL)) {
			welcomed = true;
			snprintf(cmd, sizeof(cmd), "%sJOIN %s\r\n", oper ? "OPER bench bench\r\n" : "",
				 chan);
			if (!peer_write_all(in->fd, cmd, strlen(cmd)))
				goto io;
		} else if (is_cmd(line, "491", NULL) || is_cmd(line, "464", NULL)) {
			snprintf(err, errlen, "IRC %s: OPER refused: %s", nick, line);
			return false;
		} else if (welcomed && is_cmd(line, "366", NULL)) {
			return true;
		} else if (is_cmd(line, "ERROR", NULL) || is_cmd(line, "433", NULL) ||
			   is_cmd(line, "465", NULL)) {
			snprintf(err, errlen, "IRC %s: %s", nick, line);
			return false;
		}
	}
io:
	snprintf(err, errlen, "IRC %s: connection lost while registering", nick);
	return false;
}

static void *
irecv_main(void *arg)
{
	irecv *p = arg;
	char line[1024];

	while (peer_line(&p->in, line, sizeof(line)) >= 0) {
		const char *rest, *text;
		uint64_t seq, sent;

		if (pong(p->in.fd, line) || !is_cmd(line, "PRIVMSG", &rest))
			continue;
		if ((text = strstr(rest, " :")) == NULL ||
		    !fo_parse(text + 2, strlen(text + 2), &seq, &sent)) {
			if (p->errors++ == 0)
				snprintf(p->first, sizeof(p->first), "odd PRIVMSG: %.150s", line);
			continue;
		}
		fo_observe(p->r, seq, sent);
	}
	if (!p->sys->stop && p->errors++ == 0)
		snprintf(p->first, sizeof(p->first), "connection lost");
	return NULL;
}

/* A publisher reads what the server sends it (JOINs of receivers, PINGs):
 * an IRC client that never reads is one whose input the server stops
 * processing once its own send queue backs up. */
static void *
drain_main(void *arg)
{
	peer_lines *in = arg;
	char line[1024];

	while (peer_line(in, line, sizeof(line)) >= 0)
		pong(in->fd, line);
	return NULL;
}

static bool
privmsg(isys *q, int room, uint64_t sent, char *err, size_t errlen)
{
	char line[FO_TEXT_LEN + 64], payload[FO_TEXT_LEN + 1];
	bool ok;

	pthread_mutex_lock(&q->room_mtx[room]);
	fo_payload(payload, ++q->seq[room], sent);
	snprintf(line, sizeof(line), "PRIVMSG %s :%s\r\n", q->chan[room], payload);
	ok = peer_write_all(q->pub[room], line, strlen(line));
	if (!ok)
		q->seq[room]--;
	pthread_mutex_unlock(&q->room_mtx[room]);
	if (!ok)
		snprintf(err, errlen, "IRC publisher of %s: write failed", q->chan[room]);
	return ok;
}

bool
ifo_send(void *sys, int thread, int room, char *err, size_t errlen)
{
	return privmsg(sys, room, bench_now_ns(), err, errlen);
}

void
ifo_last(void *sys, uint64_t *last)
{
	isys *q = sys;

	for (int r = 0; r < FO_MAX_ROOMS; r++) {
		pthread_mutex_lock(&q->room_mtx[r]);
		last[r] = q->seq[r];
		pthread_mutex_unlock(&q->room_mtx[r]);
	}
}

int
ifo_errors(void *sys, char *first, size_t len)
{
	isys *q = sys;
	int n = 0;

	for (int i = 0; i < q->nrecv; i++) {
		if (q->ir[i].errors && n == 0)
			snprintf(first, len, "%s", q->ir[i].first);
		n += q->ir[i].errors;
	}
	return n;
}

void
ifo_teardown(void *sys)
{
	isys *q = sys;

	if (q == NULL)
		return;
	q->stop = true;
	for (int i = 0; i < q->nthreads; i++)
		shutdown(q->ir[i].in.fd, SHUT_RDWR);
	for (int i = 0; i < q->nthreads; i++)
		pthread_join(q->threads[i], NULL);
	for (int r = 0; r < q->ndrains; r++)
		shutdown(q->pub[r], SHUT_RDWR);
	for (int r = 0; r < q->ndrains; r++)
		pthread_join(q->drain[r], NULL);
	for (int i = 0; i < q->nrecv; i++)
		if (q->ir[i].in.fd >= 0)
			close(q->ir[i].in.fd);
	for (int r = 0; r < q->npubs; r++)
		if (q->pub[r] >= 0)
			close(q->pub[r]);
	for (int r = 0; r < FO_MAX_ROOMS; r++)
		pthread_mutex_destroy(&q->room_mtx[r]);
	free(q->threads);
	free(q->ir);
	free(q);
}

void *
ifo_setup(const peer_server *s, int case_index, const fo_case *c, fo_recv *rs, char *err,
	  size_t errlen)
{
	isys *q = calloc(1, sizeof(*q));
	int n = c->rooms * c->members;
	uint64_t last[FO_MAX_ROOMS];
	pthread_attr_t attr;
	char nick[32];

	if (q == NULL || (q->ir = calloc((size_t)n, sizeof(*q->ir))) == NULL ||
	    (q->threads = calloc((size_t)n, sizeof(*q->threads))) == NULL) {
		if (q != NULL)
			free(q->ir);
		free(q);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (int r = 0; r < FO_MAX_ROOMS; r++)
		pthread_mutex_init(&q->room_mtx[r], NULL);
	for (int r = 0; r < c->rooms; r++) {
		peer_lines *in = &q->pub_in[r];

		in->fd = peer_connect(s->port);
		snprintf(q->chan[r], sizeof(q->chan[r]), "#fo%d-r%d", case_index, r);
		snprintf(nick, sizeof(nick), "p%d_%d", case_index, r);
		q->pub[r] = in->fd;
		q->npubs = r + 1;
		if (in->fd < 0) {
			snprintf(err, errlen, "cannot connect to inspircd");
			goto fail;
		}
		if (!irc_login(in, nick, q->chan[r], true, err, errlen))
			goto fail;
		if (pthread_create(&q->drain[r], NULL, drain_main, in) != 0) {
			snprintf(err, errlen, "cannot start a drain thread");
			goto fail;
		}
		q->ndrains = r + 1;
	}
	for (int i = 0; i < n; i++) {
		irecv *p = &q->ir[i];

		q->nrecv = i + 1;
		p->sys = q;
		p->r = &rs[i];
		p->in.fd = peer_connect(s->port);
		snprintf(nick, sizeof(nick), "r%d_%d", case_index, i);
		if (p->in.fd < 0) {
			snprintf(err, errlen, "cannot connect to inspircd");
			goto fail;
		}
		if (!irc_login(&p->in, nick, q->chan[rs[i].room], false, err, errlen))
			goto fail;
	}
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (int i = 0; i < n; i++) {
		if (pthread_create(&q->threads[i], &attr, irecv_main, &q->ir[i]) != 0) {
			pthread_attr_destroy(&attr);
			snprintf(err, errlen, "cannot start receiver thread %d", i);
			goto fail;
		}
		q->nthreads = i + 1;
	}
	pthread_attr_destroy(&attr);
	/* Every receiver joined before the first message: each must see it. */
	for (int r = 0; r < c->rooms; r++)
		if (!privmsg(q, r, 0, err, errlen))
			goto fail;
	ifo_last(q, last);
	if (!fo_wait_caught_up(rs, n, last, 60000000000ull)) {
		snprintf(err, errlen, "IRC receivers did not all hear the set-up message");
		goto fail;
	}
	return q;

fail:
	ifo_teardown(q);
	return NULL;
}

/*
 * tls_test.c — TLS between real processes, with certificates made now by
 * make_certs.sh:
 *
 * 1. libparley-client chats with a parleyd whose public endpoints are on
 *    tls+tcp:// and, for history, wss://; a client trusting another CA is
 *    refused and told so.
 * 2. Mutual TLS across processes, the way a cluster runs: parleyd A runs
 *    auth and rooms with every endpoint (the internal PUB and RoomsFeed
 *    included) on tls+tcp:// requiring client certificates (--tls-ca);
 *    parleyd B runs messaging and history and reaches A with the client
 *    certificate the CA signed. A send through B works (B validates the
 *    token and checks membership at A), a leave at A stops sends at B.
 *    B without a client certificate, and clients without one or with one
 *    from another CA, are refused with a message that says so.
 * 3. Clients that drop their connection in the middle of the TLS handshake,
 *    by the hundred, do not stop a tls+tcp:// endpoint: nng 1.5 stops such
 *    a listener for good (tlskeep.h); parleyd starts it again, and a
 *    Health/Check gets through after every round.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

#include "harness.h"
#include "parley.h"
#include "tls.h"

#ifndef MAKE_CERTS
#error "MAKE_CERTS must name make_certs.sh"
#endif

static char certs[300];

/* The path of a file in certs. Each call has its own buffer, kept for the
 * whole test (daemon arguments point into them). */
static const char *
cert(const char *name)
{
	static char buf[64][400];
	static int i;
	char *p = buf[i++];

	TH_CHECK(i <= 64, "more than 64 paths");

	snprintf(p, sizeof(buf[0]), "%s/%s", certs, name);
	return p;
}

/* Uses ca, and the client certificate NAME.pem/NAME.key when name is set. */
static void
trust(const char *ca, const char *name)
{
	char pem[64], key[64];
	rpc_status st;

	snprintf(pem, sizeof(pem), "%s.pem", name ? name : "");
	snprintf(key, sizeof(key), "%s.key", name ? name : "");
	TH_CODE(parley_tls_configure(cert(ca), name ? cert(pem) : NULL, name ? cert(key) : NULL,
				     &st),
		RPC_OK, &st);
}

/* An address the harness gives a free port when it starts the daemon. */
static void
tls_addr(char *addr, const char *scheme, const char *path)
{
	snprintf(addr, TH_ADDR_MAX, "%s://*%s", scheme, path);
}

/* d presents server.pem. */
static void
server_cert(th_daemon *d)
{
	d->extra[0] = "--tls-cert";
	d->extra[1] = cert("server.pem");
	d->extra[2] = "--tls-key";
	d->extra[3] = cert("server.key");
}

static parley_conn *
connect_to(const char *auth, const char *rooms, const char *history, const char *messaging)
{
	const char *urls[PARLEY_NSERVICES] = {
		[PARLEY_AUTH] = auth,
		[PARLEY_ROOMS] = rooms,
		[PARLEY_HISTORY] = history,
		[PARLEY_MESSAGING] = messaging,
	};
	parley_endpoints ep;
	parley_conn *c;
	rpc_status st;

	for (int s = 0; s < PARLEY_NSERVICES; s++)
		TH_CODE(parley_endpoints_set(&ep, s, urls[s], &st), RPC_OK, &st);
	TH_CODE(parley_connect(&c, &ep, &st), RPC_OK, &st);
	parley_set_timeout(c, 20000);
	return c;
}

static void
signup(parley_conn *c, const char *user)
{
	char pw[64];
	rpc_status st;

	snprintf(pw, sizeof(pw), "password-%s", user);
	TH_CODE(parley_register(c, user, pw, NULL, NULL, NULL, &st), RPC_OK, &st);
	TH_CODE(parley_login(c, user, pw, NULL, &st), RPC_OK, &st);
}

/* The last event of room's history must be text. */
static void
history_ends_with(parley_conn *c, const char *room, const char *text)
{
	Parley__V1__GetHistoryResponse *h;
	rpc_status st;

	TH_CODE(parley_history(c, room, 0, 0, 50, &h, &st), RPC_OK, &st);
	TH_CHECK(h->n_events > 0 && h->events[h->n_events - 1]->message != NULL &&
		     strcmp(h->events[h->n_events - 1]->message->text, text) == 0,
		 "history of %s does not end with '%s' (%zu events)", room, text, h->n_events);
	parley_free(h);
}

/* A Health/Check at url must fail with code and a message holding want.
 * A refused handshake may stop nng's listener, which parleyd then starts
 * again (tlskeep.h): while it does, the port refuses connections. */
static void
refused(const char *url, rpc_code code, const char *want)
{
	parley_conn *c = connect_to(url, url, url, url);
	Parley__V1__HealthCheckResponse__ServingStatus serving;
	rpc_status st;
	rpc_code got;

	for (int64_t until = rpc_now_ms() + 15000;;) {
		got = parley_health(c, PARLEY_AUTH, 5000, &serving, &st);
		if (got != RPC_UNAVAILABLE || strstr(st.message, "Connection refused") == NULL ||
		    rpc_now_ms() >= until)
			break;
		usleep(100000);
	}
	TH_CODE(got, code, &st);
	TH_CHECK(strstr(st.message, want) != NULL, "'%s' lacks '%s'", st.message, want);
	parley_disconnect(c);
}

static void
test_client_over_tls_and_wss(void)
{
	th_daemon d = {0};
	parley_conn *c;
	const char *room = th_name("tlsroom");
	rpc_status st;

	tls_addr(d.auth, "tls+tcp", "");
	tls_addr(d.rooms, "tls+tcp", "");
	tls_addr(d.messaging, "tls+tcp", "");
	tls_addr(d.history, "wss", "/history");
	server_cert(&d);
	trust("ca.pem", NULL);
	TH_CHECK(th_start(&d, NULL), "parleyd on tls+tcp:// and wss://");

	c = connect_to(d.auth, d.rooms, d.history, d.messaging);
	signup(c, th_name("tlsuser"));
	TH_CODE(parley_room_create(c, room, NULL, NULL, NULL, &st), RPC_OK, &st);
	TH_CODE(parley_room_join(c, room, NULL, &st), RPC_OK, &st);
	TH_CODE(parley_send(c, room, "sealed", NULL, NULL, &st), RPC_OK, &st);
	history_ends_with(c, room, "sealed");
	parley_disconnect(c);
	printf("ok libparley-client over tls+tcp:// and wss://\n");

	trust("other-ca.pem", NULL);
	refused(d.auth, RPC_FAILED_PRECONDITION,
		"TLS: the server's certificate is not trusted (check --tls-ca)");
	refused(d.history, RPC_FAILED_PRECONDITION,
		"TLS: the server's certificate is not trusted (check --tls-ca)");
	printf("ok a server another CA signed is refused over tls+tcp:// and wss://\n");
	TH_CHECK(th_stop(&d) == 0, "parleyd exits 0");
	th_cleanup(&d);
}

/*
 * A SUB socket on A's rooms PUB over mutual TLS gets membership changes.
 * PUB drops frames until the subscriber's pipe is up: change c's
 * membership of room until one arrives (by construction, not by time).
 *
 * The dial runs in the background, and the socket is dialled afresh every
 * 50 changes without a frame: nng 1.5's TLS handshake has no timeout, and
 * a connection the listener took while it had stopped accepting (until
 * parleyd's keeper starts it again, tlskeep.h) is never answered. Once,
 * in CI, a blocking dial waited on such a connection until the test's
 * timeout.
 */
static nng_socket
sub_dial(const char *url)
{
	nng_socket sub;
	rpc_status st;
	int rv;

	TH_CHECK(nng_sub0_open(&sub) == 0, "sub socket");
	TH_CHECK(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0) == 0, "subscribe");
	TH_CHECK(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 100) == 0, "recv timeout");
	rv = rpc_tls_dial(sub, url, NNG_FLAG_NONBLOCK, &st);
	TH_CHECK(rv == 0, "dial %s: %s", url, st.message);
	return sub;
}

static void
sub_over_mutual_tls(const char *url, parley_conn *c, const char *room)
{
	nng_socket sub = sub_dial(url);
	rpc_status st;
	bool got = false;

	for (int i = 0; !got; i++) {
		void *buf;
		size_t len;

		TH_CHECK(i < 300, "no frame from %s within 300 changes", url);
		if (i > 0 && i % 50 == 0) {
			nng_close(sub);
			sub = sub_dial(url);
		}
		if (i % 2 == 0)
			TH_CODE(parley_room_join(c, room, NULL, &st), RPC_OK, &st);
		else
			TH_CODE(parley_room_leave(c, room, &st), RPC_OK, &st);
		if (nng_recv(sub, &buf, &len, NNG_FLAG_ALLOC) == 0) {
			got = len > strlen(room) && memcmp(buf, room, strlen(room)) == 0;
			nng_free(buf, len);
		}
	}
	nng_close(sub);
}

static void
test_mutual_tls_between_daemons(void)
{
	th_daemon a = {0}, b = {0}, b2 = {0};
	const char *room = th_name("mtls");
	parley_conn *c;
	rpc_status st;

	/* A: auth and rooms, every endpoint on TLS, client certificates required. */
	tls_addr(a.auth, "tls+tcp", "");
	tls_addr(a.rooms, "tls+tcp", "");
	tls_addr(a.room_events, "tls+tcp", "");
	tls_addr(a.rooms_internal, "tls+tcp", "");
	const char *a_tls[] = {"--tls-cert", cert("server.pem"), "--tls-key", cert("server.key"),
			       "--tls-ca",   cert("ca.pem"),	 NULL};
	memcpy(a.extra, a_tls, sizeof(a_tls));
	trust("ca.pem", "client");
	TH_CHECK(th_start(&a, "auth,rooms"), "parleyd A (auth, rooms) on mutual TLS");

	/* B: messaging and history, reaching A with its client certificate. */
	const char *b_tls[] = {"--auth",      a.auth,	       "--rooms",    a.rooms,
			       "--room-events", a.room_events, "--rooms-internal", a.rooms_internal,
			       "--tls-cert",  cert("client.pem"), "--tls-key", cert("client.key"),
			       "--tls-ca",    cert("ca.pem"),	 NULL};
	memcpy(b.extra, b_tls, sizeof(b_tls));
	TH_CHECK(th_start(&b, "messaging,history"), "parleyd B (messaging, history)");

	c = connect_to(a.auth, a.rooms, b.history, b.messaging);
	signup(c, th_name("mtlsuser"));
	TH_CODE(parley_room_create(c, room, NULL, NULL, NULL, &st), RPC_OK, &st);
	TH_CODE(parley_room_join(c, room, NULL, &st), RPC_OK, &st);
	TH_CODE(parley_send(c, room, "between hosts", NULL, NULL, &st), RPC_OK, &st);
	history_ends_with(c, room, "between hosts");
	TH_CODE(parley_room_leave(c, room, &st), RPC_OK, &st);
	TH_CODE(parley_send(c, room, "after leaving", NULL, NULL, &st), RPC_PERMISSION_DENIED, &st);
	printf("ok messaging reaches auth and rooms over mutual TLS with its certificate\n");
	sub_over_mutual_tls(a.room_events, c, room);
	printf("ok a SUB with a client certificate gets the rooms PUB over mutual TLS\n");

	/* B2: the same without a client certificate. */
	const char *b2_tls[] = {"--auth",      a.auth,	       "--rooms",    a.rooms,
				"--room-events", a.room_events, "--rooms-internal", a.rooms_internal,
				"--tls-ca",    cert("ca.pem"),	 NULL};
	memcpy(b2.extra, b2_tls, sizeof(b2_tls));
	TH_CHECK(th_start(&b2, "messaging,history"), "parleyd B2 (no client certificate)");
	parley_disconnect(c);
	c = connect_to(a.auth, a.rooms, b2.history, b2.messaging);
	signup(c, th_name("mtlsuser"));
	TH_CHECK(parley_send(c, room, "no certificate", NULL, NULL, &st) != RPC_OK,
		 "a send through a messaging service without a client certificate worked");
	TH_CHECK(strstr(st.message, "client certificate") != NULL, "'%s' does not say why",
		 st.message);
	parley_disconnect(c);
	printf("ok a service without a client certificate is refused: %s\n", st.message);

	trust("ca.pem", NULL);
	refused(a.auth, RPC_FAILED_PRECONDITION,
		"TLS handshake refused: the server may require a client certificate");
	refused(a.rooms_internal, RPC_FAILED_PRECONDITION,
		"TLS handshake refused: the server may require a client certificate");
	refused(a.room_events, RPC_FAILED_PRECONDITION, /* the SUB endpoint: refused before SP */
		"TLS handshake refused: the server may require a client certificate");
	trust("ca.pem", "stranger");
	refused(a.auth, RPC_FAILED_PRECONDITION,
		"TLS handshake refused: the server does not accept this client certificate");
	printf("ok clients without a certificate, or with another CA's, are refused\n");

	TH_CHECK(th_stop(&b2) == 0 && th_stop(&b) == 0 && th_stop(&a) == 0, "all exit 0");
	th_cleanup(&b2);
	th_cleanup(&b);
	th_cleanup(&a);
}

/* n clients dial url over TLS and close at a random moment of the first
 * 20 ms: most of them in the middle of the handshake. */
static void
drop_during_handshakes(const char *url, int n, unsigned *seed)
{
	for (int i = 0; i < n; i++) {
		nng_tls_config *cfg;
		nng_socket s;
		nng_dialer d;

		TH_CHECK(nng_req0_open(&s) == 0, "req socket");
		TH_CHECK(nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT) == 0 &&
			     nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_NONE) == 0,
			 "TLS configuration");
		TH_CHECK(nng_dialer_create(&d, s, url) == 0 &&
			     nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg) == 0 &&
			     nng_dialer_start(d, NNG_FLAG_NONBLOCK) == 0,
			 "dial %s", url);
		nng_msleep((nng_duration)(rand_r(seed) % 20));
		nng_close(s);
		nng_tls_config_free(cfg);
	}
}

static void
test_handshake_drops(void)
{
	th_daemon d = {0};
	unsigned seed = (unsigned)getpid();
	int restarts;

	tls_addr(d.auth, "tls+tcp", "");
	server_cert(&d);
	trust("ca.pem", NULL);
	TH_CHECK(th_start(&d, "auth"), "parleyd auth on tls+tcp://");
	for (int round = 1; round <= 3; round++) {
		drop_during_handshakes(d.auth, 100, &seed);
		/* The keeper looks every 2 s; a check and a restart take a few. */
		TH_CHECK(th_wait_serving(d.auth, 20000),
			 "round %d: auth on %s does not answer after 100 clients dropped during "
			 "the handshake",
			 round, d.auth);
	}
	restarts = th_log_count(&d, "stopped accepting connections");
	printf("ok a tls+tcp:// endpoint answers after 300 clients dropped during the handshake "
	       "(started again %d times)\n",
	       restarts);
	TH_CHECK(th_stop(&d) == 0, "parleyd exits 0");
	th_cleanup(&d);
}

int
main(void)
{
	const char *tmp = getenv("TMPDIR");
	char cmd[700];

	setvbuf(stdout, NULL, _IOLBF, 0);	/* a hang's last "ok" reaches the log */
	snprintf(certs, sizeof(certs), "%s/parley-tls-XXXXXX", tmp ? tmp : "/tmp");
	TH_CHECK(mkdtemp(certs) != NULL, "mkdtemp");
	snprintf(cmd, sizeof(cmd), "bash '%s' '%s'", MAKE_CERTS, certs);
	TH_CHECK(system(cmd) == 0, "%s failed", cmd);

	test_client_over_tls_and_wss();
	test_mutual_tls_between_daemons();
	test_handshake_drops();

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", certs);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", certs);
	return 0;
}

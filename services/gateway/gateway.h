/*
 * gateway.h — Parley's HTTP face: every public Parley service served by
 * the Connect protocol on cfg->http_listen (rpc/http.h does the protocol),
 * Messaging/Subscribe as a server stream built on Open/Poll/Close,
 * /healthz, and the web page at / (web.h: embedded, or cfg->web_root). Each service is called at the URL given for it: the address
 * its server listens on in this process (an in-process call), or, in the
 * gateway role, its remote address (an nng call).
 *
 * A service never includes another's headers: this one knows the other
 * services only through the generated descriptors of proto/.
 *
 * TLS: an https:// address uses cfg->tls_cert and cfg->tls_key (refused at
 * start without them); cfg->tls_ca makes clients present a certificate it
 * signed.
 */
#ifndef PARLEY_GATEWAY_H
#define PARLEY_GATEWAY_H

#include "svc.h"

typedef struct gateway gateway;

/* Where each service is called; NULL leaves it out (its paths answer 404). */
typedef struct gateway_targets {
	const char *auth;
	const char *rooms;
	const char *history;
	const char *messaging;
} gateway_targets;

/* True for the addresses that mean "no HTTP face": "none" and "". */
bool gateway_http_disabled(const char *http_listen);

/*
 * Starts serving t's services on cfg->http_listen. Errors: what
 * rpc_http_open, rpc_http_add_service and rpc_http_start return (a bad
 * address or TLS file: INVALID_ARGUMENT / NOT_FOUND; a port in use:
 * UNAVAILABLE).
 */
int gateway_start(const parley_config *cfg, const gateway_targets *t, gateway **out,
		  rpc_status *st);

/* Stops taking requests, ends every Subscribe stream (clients get
 * UNAVAILABLE: subscribe again) and waits for calls in flight. */
void gateway_shutdown(gateway *g);

/* Frees everything; call after gateway_shutdown. */
void gateway_stop(gateway *g);

#endif

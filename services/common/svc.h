/*
 * svc.h — what every Parley service shares: its configuration, the checks
 * of ids and names that several services apply, the translation of storage
 * errors into RPC status, and the authenticator that resolves a caller's
 * token by asking the auth service over nng (Auth/Validate).
 *
 * Nothing here is specific to one service; a service never includes
 * another service's headers.
 */
#ifndef PARLEY_SVC_H
#define PARLEY_SVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "conns.h"
#include "server.h"
#include "store.h"

/* Default endpoints of the all-in-one daemon. */
#define PARLEY_DEFAULT_AUTH "tcp://127.0.0.1:5201"
#define PARLEY_DEFAULT_ROOMS "tcp://127.0.0.1:5202"
#define PARLEY_DEFAULT_HISTORY "tcp://127.0.0.1:5203"
#define PARLEY_DEFAULT_MESSAGING "tcp://127.0.0.1:5204"
/* Internal endpoints: in one parleyd they are in process, on no network.
 * Across processes: ipc://, tcp:// or ws:// on loopback, or tls+tcp://
 * with mutual TLS (--tls-ca); parleyd refuses anything else. */
#define PARLEY_DEFAULT_EVENTS "inproc://parley-events"
#define PARLEY_DEFAULT_ROOM_EVENTS "inproc://parley-room-events"
#define PARLEY_DEFAULT_ROOMS_INTERNAL "inproc://parley-rooms-internal"
#define PARLEY_DEFAULT_HTTP "http://127.0.0.1:8080"

typedef struct parley_config {
	const char *data_dir;
	store_env *env;		/* opened by the daemon, shared by its services */

	/* Where each service listens (in this process). */
	const char *auth_listen;
	const char *rooms_listen;
	const char *history_listen;
	const char *messaging_listen;
	const char *events_listen;	 /* messaging's PUB backbone */
	const char *room_events_listen;	 /* rooms' PUB of membership changes */
	const char *rooms_internal_listen; /* rooms' REP for internal.v1.RoomsFeed */

	/* Where each service is reached (in this process or elsewhere). */
	const char *auth_addr;
	const char *rooms_addr;
	const char *room_events_addr;
	const char *rooms_internal_addr;
	const char *history_addr;	/* for the gateway role */
	const char *messaging_addr;	/* the gateway; rooms: Presence/Online */

	/* The HTTP face (Connect protocol, web page, /metrics); "none" = none. */
	const char *http_listen;
	unsigned http_max_connections;	/* 0 = the default (rpc/http.h) */
	unsigned http_max_per_ip;	/* 0 = the default */
	const char *web_root;		/* serve the web page from here; NULL = embedded */

	/* TLS for every tls+tcp://, wss:// and https:// listener, and the
	 * client certificate this process presents when it dials one; tls_ca
	 * makes listeners require client certificates signed by that CA
	 * (mutual TLS) and is what dialers check servers against. */
	const char *tls_cert;
	const char *tls_key;
	const char *tls_ca;

	uint32_t token_ttl_s;	 /* auth: session lifetime */
	uint32_t session_idle_s; /* messaging: a session not polled this long expires */
	uint32_t max_sessions;	 /* messaging: cap on open sessions */
	uint32_t max_user_sessions; /* messaging: cap on one user's open sessions */
	int workers;		 /* rpc worker threads per endpoint */
	int contexts;		 /* calls in flight per endpoint */
} parley_config;

/* user_id: 3-32 chars of [a-z0-9_.-], first a letter or digit. */
bool svc_valid_user_id(const char *s);
/* room_id: 1-64 chars of [a-z0-9_.-], first a letter or digit. */
bool svc_valid_room_id(const char *s);
/* RPC_OK, or INVALID_ARGUMENT (call failed, the message giving the rule)
 * unless room_id is a valid room id. */
rpc_code svc_check_room_id(rpc_call *call, const char *room_id);
/* RPC_OK, or INVALID_ARGUMENT (call failed, naming the first bad one as
 * "field[i]") unless each of ids[0..n) is a valid user id. */
rpc_code svc_check_user_ids(rpc_call *call, const char *field, char *const *ids, size_t n);
/* Valid UTF-8 (already checked by rpc) of min..max code points with no
 * control characters (C0, DEL, C1). */
bool svc_valid_text(const char *s, size_t min_chars, size_t max_chars);

/* Fails call with the status matching a storage error and returns it. */
rpc_code svc_fail_store(rpc_call *call, store_err err, const char *what);

/* Opens a table or logs why not; returns false on failure. */
bool svc_open_table(store_env *env, const char *name, store_table *t, rpc_status *st);

/*
 * The remote authenticator: an rpc_authn_fn that asks Auth/Validate at
 * auth_addr. Revocation is seen at once. When the auth service runs in
 * this process, a validated token is remembered (a hash of it, with its
 * user and expiry) until it expires or the auth service revokes any token
 * (svc_tokens_revoked, called by auth after each revocation commits):
 * most calls then skip Validate. An auth service that cannot be reached
 * gives UNAVAILABLE within the call's deadline (after the rpc client's
 * connect grace when no connection is up).
 */
typedef struct svc_authn svc_authn;
int svc_authn_open(svc_authn **ap, const char *auth_addr, rpc_status *st);
void svc_authn_close(svc_authn *a);
__attribute__((warn_unused_result)) rpc_code svc_authn_validate(void *a, const char *token, int64_t deadline_ms,
			    char user_id[RPC_USER_ID_MAX], rpc_status *st);
/* Auth: a token was revoked (committed); every remembered one is checked
 * again. */
void svc_tokens_revoked(void);

/*
 * The rooms service's change log, for a messaging service in the same
 * process: rooms tells the committed head when it opens the log, and
 * brackets each write (write_begin before its transaction, write_end with
 * the head it committed, 0 if none, before the call returns). Messaging's
 * membership barrier then needs no round trip when its mirror has applied
 * that much. svc_rooms_log_head gives the head of every change committed
 * before it was called; false while a write is under way or unless exactly
 * one rooms service runs in this process.
 */
void svc_rooms_log_opened(uint64_t head);
void svc_rooms_log_write_begin(void);
void svc_rooms_log_write_end(uint64_t committed);
bool svc_rooms_log_head(uint64_t *head);

/*
 * The connection caps of an internal PUB socket (the events PUB, the rooms
 * PUB): those of the REP endpoints (rpc_get_limits: total, per address,
 * the longest-connected giving way when full) but no idle timeout, as a
 * subscriber never sends; the process's own inproc subscribers never give
 * way. Call after opening sock, before it listens; conns_close_all before
 * closing it, conns_free after. Errors: those of conns_open.
 */
int svc_pub_conns_open(nng_socket sock, const char *name, rpc_conns **out, rpc_status *st);

#endif

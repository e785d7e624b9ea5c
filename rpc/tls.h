/*
 * tls.h — TLS for every nng socket Parley opens: one process-wide setting
 * that every listener and dialer consults, so that a tls+tcp:// or wss://
 * URL works wherever any URL does.
 *
 * The setting (rpc_tls_configure) holds this process's certificate and
 * key and a CA file, read and checked once. Listeners and dialers apply it
 * by URL:
 *
 * - a listener on a TLS URL presents the certificate; it refuses to start
 *   without one. With a CA file it requires every client to present a
 *   certificate signed by that CA (mutual TLS): this is what keeps
 *   Parley's internal endpoints to Parley's own services across hosts.
 * - a dialer to a TLS URL checks the server's certificate against the CA
 *   file, or the system's bundle (RPC_TLS_SYSTEM_CA) when there is none,
 *   and checks that it names the URL's host. It presents the certificate
 *   as a client certificate when one is configured.
 * - any other URL is listened on or dialled as it is.
 *
 * Server names: Debian's nng uses mbedTLS 2.28, which matches the host
 * against the certificate's DNS names (and its CN) only, never against an
 * IP address entry. A certificate reached by address must carry the
 * address as a DNS name too: subjectAltName=DNS:10.0.0.5,IP:10.0.0.5.
 *
 * Locking: the setting is guarded by its own mutex; configure it before
 * opening sockets (a change applies to sockets opened after it, never to
 * those already open). Everything here is safe to call from any thread.
 */
#ifndef PARLEY_RPC_TLS_H
#define PARLEY_RPC_TLS_H

#include <stdbool.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "rpc.h"

/* Where Debian (and most distributions) keep the trusted CAs. */
#define RPC_TLS_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"
/* The largest PEM file read (a system bundle is about 200 KiB). */
#define RPC_TLS_FILE_MAX (4 * 1024 * 1024)

typedef struct rpc_tls_opts {
	const char *cert_file; /* PEM: this process's certificate (leaf first); NULL = none */
	const char *key_file;  /* PEM: its private key, not encrypted; given with cert_file */
	const char *ca_file;   /* PEM: the CA(s) to trust; NULL = the system bundle for
				* dialers, and no client certificates for listeners */
} rpc_tls_opts;

/*
 * Reads and checks the files of opts and makes them the process's setting;
 * NULL opts (or all fields NULL) restores the default: no certificate,
 * servers checked against the system bundle. The files are read now: later
 * changes to them take effect at the next call. The key is wiped from
 * memory when the setting is replaced.
 *
 * Errors (the previous setting stays): INVALID_ARGUMENT when a certificate
 * comes without its key or the reverse, or a file is unreadable, empty,
 * larger than RPC_TLS_FILE_MAX, not PEM, or holds no certificate or key
 * that mbedTLS accepts; the message names the file. RESOURCE_EXHAUSTED when
 * out of memory.
 */
rpc_code rpc_tls_configure(const rpc_tls_opts *opts, rpc_status *st)
    __attribute__((warn_unused_result));

/* True for URLs nng carries over TLS: tls+tcp[46]:// and wss[46]://. */
bool rpc_tls_url(const char *url);

/* True when a certificate and key are configured. */
bool rpc_tls_has_cert(void);

/*
 * nng_listen with the process's TLS setting applied to a TLS url. Returns 0
 * or an nng error; on error st's message says why in a few words, without
 * the url (callers say where): nng's words, or for a TLS url with no
 * certificate configured (NNG_EINVAL) that one is needed.
 */
int rpc_tls_listen(nng_socket s, const char *url, rpc_status *st)
    __attribute__((warn_unused_result));

/* For the keeper (tlskeep.c): the listener rpc_tls_listen starts, in *lp,
 * not watched; and a client configuration for url that presents our own
 * certificate and checks nothing of the server. */
int rpc_tls_listener_start(nng_socket s, const char *url, nng_listener *lp, rpc_status *st)
    __attribute__((warn_unused_result));
int rpc_tls_probe_config(const char *url, nng_tls_config **cfg, rpc_status *st)
    __attribute__((warn_unused_result));

/*
 * nng_dial with the TLS setting applied to a TLS url; flags as nng_dial's
 * (NNG_FLAG_NONBLOCK dials in the background and redials for ever). Returns
 * 0 or an nng error, with st's message as for rpc_tls_listen. A dialer
 * checks the server on every connection; a connection that fails the check
 * never comes up, and only rpc_tls_diagnose tells why.
 */
int rpc_tls_dial(nng_socket s, const char *url, int flags, rpc_status *st)
    __attribute__((warn_unused_result));

/* The same, without starting: *dp is ready for nng_dialer_start, for a
 * caller that dials only once it needs a connection. */
int rpc_tls_dialer(nng_socket s, const char *url, nng_dialer *dp, rpc_status *st)
    __attribute__((warn_unused_result));

/*
 * Says why a dialer to url has no connection, by trying to connect once
 * more on its own (a connection, the TLS handshake, and the SP header
 * exchange), with the same setting, until deadline_ms (monotonic) at the
 * latest. Sets st to "cannot reach URL: REASON" and returns its code:
 *
 * - FAILED_PRECONDITION when the TLS handshake fails the checks: the
 *   server's certificate is not trusted (another CA, expired, not yet
 *   valid: "check --tls-ca"), does not name the host, or the server did
 *   not accept our client certificate or wanted one. Trying again without
 *   changing a certificate or a flag will not help.
 * - UNAVAILABLE otherwise: refused, closed during the handshake (a TLS
 *   port reached by tcp:// is told apart), no answer by the deadline, or
 *   a connection that worked this time (it came up late).
 */
rpc_code rpc_tls_diagnose(const char *url, int64_t deadline_ms, rpc_status *st);

#endif

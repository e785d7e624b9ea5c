/*
 * tlskeep.h — keeps tls+tcp:// listeners accepting.
 *
 * nng 1.5's tls+tcp transport passes the error of a failed handshake up to
 * its listener. When a client drops its connection at the wrong moment of
 * the handshake that error is NNG_ECLOSED, which the listener takes for its
 * own closing: it stops accepting for good and says nothing, while the
 * transport goes on taking connections that nothing reads. (nng's tcp
 * transport turns that ECLOSED into ECONNSHUT; its tls transport does not.)
 * Measured here: a client closing its dial 5-20 ms in, a hundred times,
 * stopped a parleyd TLS endpoint in two runs of three.
 *
 * rpc_tls_listen hands every tls+tcp:// listener to the keeper. It watches
 * nng's statistics, checks a listener whose "other" errors moved by
 * connecting to it, and starts one that no longer accepts again on its
 * address (its connections drop with it; their clients redial).
 */
#ifndef PARLEY_RPC_TLSKEEP_H
#define PARLEY_RPC_TLSKEEP_H

#include <nng/nng.h>

/* Watches listener l of socket s, started on url. */
void rpc_tls_keep(nng_socket s, nng_listener l, const char *url);

/* Stops watching the listeners of s; returns once the keeper touches none
 * of them. Call it before closing s. */
void rpc_tls_forget(nng_socket s);

#endif

/*
 * conns.h — the connections (nng pipes) of one listening socket, and the
 * limits that keep one peer from taking a service away from the others:
 *
 *   - at most max_conns connections in all: when full, the connection idle
 *     longest gives way to a new one (so a flood of idle connections never
 *     locks a new client out); with none idle, the new one is refused;
 *   - at most max_per_peer from one IP address: the next ones are kept just
 *     long enough to answer each call RESOURCE_EXHAUSTED saying so, then
 *     closed; beyond twice the cap they are closed at once;
 *   - at most max_calls calls in flight per connection: the next ones are
 *     answered RESOURCE_EXHAUSTED without running (or, if its replies
 *     already back up unread, the connection is cut);
 *   - a connection whose replies pile up unread (more than max_replies
 *     waiting, or max_reply_bytes) is closed: its peer does not read;
 *   - a connection with no call in flight for idle_ms is closed.
 *
 * Works for any socket (REQ/REP, PUB, ...): a socket that carries no calls
 * uses only the connection caps and the idle timeout (idle_ms 0 = never).
 *
 * Locking: one mutex inside, taken by nng's pipe callbacks, by the caller's
 * threads and by the sweeper thread; nothing here calls back into the
 * caller. A caller may hold its own locks while calling in (lock order:
 * caller's, then this one's). nng_pipe_close is never called under the
 * lock.
 */
#ifndef PARLEY_RPC_CONNS_H
#define PARLEY_RPC_CONNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "rpc.h"

typedef struct rpc_conns rpc_conns;

/* Verdict on a call arriving on a connection. */
typedef enum conn_verdict {
	CONN_ADMIT,	/* run it; conns_call_end when its reply is gone */
	CONN_REFUSE,	/* answer RESOURCE_EXHAUSTED with the message given, nothing run;
			 * still counted: conns_call_end after the reply */
	CONN_CUT,	/* over its calls while its replies back up: it sends without
			 * reading; drop the call (conns_call_end) and cut the pipe */
} conn_verdict;

/* Starts tracking the pipes of sock (before it listens or dials). name is
 * for log lines. Errors: RESOURCE_EXHAUSTED (memory, thread). */
int conns_open(rpc_conns **cp, nng_socket sock, const rpc_limits *limits, const char *name,
	       rpc_status *st);

/* Closes every connection now (their queued replies are dropped). Called
 * before nng_close so that no stalled connection holds the close up. */
void conns_close_all(rpc_conns *c);

/* Stops the sweeper and frees; after nng_close of the socket. */
void conns_free(rpc_conns *c);

/* A call arrived on pipe. CONN_REFUSE writes why into msg (len bytes). */
conn_verdict conns_call_begin(rpc_conns *c, uint32_t pipe, char *msg, size_t len);

/* The call's reply is gone (sent or dropped). */
void conns_call_end(rpc_conns *c, uint32_t pipe);

/* A reply of bytes is about to be sent on pipe. False when the peer has left
 * too many replies unread: the caller drops this one and closes the pipe
 * with conns_close_pipe (outside its own locks). */
bool conns_send_begin(rpc_conns *c, uint32_t pipe, size_t bytes);
void conns_send_end(rpc_conns *c, uint32_t pipe, size_t bytes);

/* Closes one connection (logs why). Not under the caller's locks. */
void conns_close_pipe(rpc_conns *c, uint32_t pipe, const char *why);

/* Open connections now (for tests and /metrics). */
int conns_count(rpc_conns *c);

/* Options for a PUB socket, set right after conns_open (before the socket
 * listens or dials):
 *   conns_keep_local: connections without an IP address (inproc, ipc: the
 *   process's own subscribers) never give way when the socket is full;
 *   conns_on_removed: fn(arg) runs after a connection is gone (nng allows
 *   one pipe callback per event, and conns takes it), on nng's thread,
 *   without conns' lock held. */
void conns_keep_local(rpc_conns *c);
void conns_on_removed(rpc_conns *c, void (*fn)(void *arg), void *arg);

#endif

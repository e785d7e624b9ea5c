/*
 * guard.h — the limits in front of password checks: who may try a password
 * now, and what a try costs the caller.
 *
 * Keys: a caller's address is rpc_call_peer's, an IPv6 address cut to its
 * /64 (what one host usually holds). Limits (exponential, see ratelimit.h):
 *   login account: Login and ChangePassword, per (account, address):
 *                  5 free failures, then 1 s doubling to 15 min; forgotten
 *                  1 h after the last failure; a success forgets them.
 *                  An attacker elsewhere never slows the owner down.
 *   login address: the same calls, per address whatever the account (also
 *                  the empty or unknown ones): 30 free failures, then
 *                  1 s doubling to 15 min, forgotten after 1 h; a success
 *                  does not forgive them; at most 8 checks in flight.
 *   register:      Register per address: each ALREADY_EXISTS answer (what
 *                  lists accounts) is a failure: 10 free, then 1 s
 *                  doubling to 15 min, forgotten after 1 h, and while the
 *                  address waits no Register of it is served; at most 8
 *                  in flight. A new account costs a hash in the fair,
 *                  bounded queue and is not counted otherwise.
 * A refused call gets RESOURCE_EXHAUSTED with retry_after_ms and a message
 * saying which limit and for how long. Whether an account exists changes
 * nothing here.
 *
 * A reservation (guard_hold) is taken before the work is queued and is
 * settled exactly once: guard_fail, guard_succeed or guard_release; a
 * settled or empty hold ignores further settling. Locking is internal
 * (ratelimit.h); a hold belongs to one thread at a time.
 */
#ifndef PARLEY_GUARD_H
#define PARLEY_GUARD_H

#include "ratelimit.h"
#include "server.h"

#define GUARD_PEER_MAX (RPC_PEER_MAX + 4) /* an address, or an IPv6 /64 */

typedef struct guard guard;

typedef struct guard_hold {
	ratelimit *rl;
	bool forgive;	/* a success forgets the key's failures */
	char key[RATELIMIT_KEY_MAX + 1]; /* "" = nothing held */
} guard_hold;

/* NULL on out-of-memory. */
guard *guard_new(void);
void guard_free(guard *g);

/* The address key of call (its flow in the hashing queue, too). */
void guard_peer(const rpc_call *call, char out[GUARD_PEER_MAX]);

/* Reserves one password check of account (any string of at most
 * RPC_USER_ID_MAX - 1 bytes, "" included) by call's caller. RPC_OK with
 * both holds taken, or RESOURCE_EXHAUSTED with call failed (retry_after_ms
 * set) and nothing held. */
__attribute__((warn_unused_result)) rpc_code
guard_reserve_login(guard *g, rpc_call *call, const char *account, guard_hold *account_hold,
		    guard_hold *address_hold);

/* Reserves one Register try of call's caller; as guard_reserve_login. */
__attribute__((warn_unused_result)) rpc_code
guard_reserve_register(guard *g, rpc_call *call, guard_hold *address_hold);

/* The try failed (a wrong password; a name already taken). */
void guard_fail(guard_hold *h);
/* The try succeeded: an account's failures are forgiven; an address's stay. */
void guard_succeed(guard_hold *h);
/* The try was never judged. */
void guard_release(guard_hold *h);

#endif

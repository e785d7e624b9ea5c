/*
 * ratelimit.h — limits the tries per key (an account) in a fixed window and
 * says how long a key must wait once it has used up its allowance.
 *
 * A try is reserved before the work that judges it starts, and counts
 * against the allowance while it is in flight: check and count are one
 * step, so a burst of concurrent tries cannot all slip past the check. The
 * holder then settles the reservation exactly once: ratelimit_fail (it
 * failed), ratelimit_reset (it succeeded) or ratelimit_release (it was
 * never judged, e.g. could not be queued).
 *
 * Memory is fixed at creation: a set-associative table whose buckets are
 * chosen by a keyed SipHash (crypto_shorthash), so a client cannot aim many
 * keys at one bucket. When a bucket is full the entry with the oldest
 * window is evicted, reservations and all: settling a reservation that is
 * gone does no harm. All functions lock internally; safe from any thread.
 */
#ifndef PARLEY_RATELIMIT_H
#define PARLEY_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ratelimit ratelimit;

/* max_tries (failed or in flight) per window_ms; capacity rounded up to a
 * power of two. NULL on out-of-memory. */
ratelimit *ratelimit_new(unsigned max_tries, uint32_t window_ms, size_t capacity);
void ratelimit_free(ratelimit *rl);

/*
 * Reserves a try for key: 0 if reserved (the caller must settle it), else
 * the milliseconds until key may try (nothing reserved). When only tries
 * in flight stand in the way the wait is at most a second, as they may
 * yet succeed.
 */
__attribute__((warn_unused_result)) uint32_t
ratelimit_reserve(ratelimit *rl, const char *key, int64_t now_ms);
/* Settles one of key's reservations as a failure. */
void ratelimit_fail(ratelimit *rl, const char *key, int64_t now_ms);
/* Settles one of key's reservations as a success: forgets key's failures.
 * Other tries of key still in flight stay reserved. */
void ratelimit_reset(ratelimit *rl, const char *key);
/* Gives back one of key's reservations unjudged. */
void ratelimit_release(ratelimit *rl, const char *key);

#endif

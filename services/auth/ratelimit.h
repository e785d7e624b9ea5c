/*
 * ratelimit.h — slows down the failed tries of a key (an account as seen
 * from one address, or an address) exponentially, and caps the tries of a
 * key in flight.
 *
 * A key has some free failures. After the last free one, each failure
 * makes the key wait before its next try: base_wait_ms, doubled with every
 * further failure, at most max_wait_ms. Failures are forgotten forget_ms
 * after the last one. There is no hard wall: a key always gets another
 * try once its wait is over, only ever more slowly.
 *
 * A try is reserved before the work that judges it starts, and counts
 * against the free failures while it is in flight: check and count are one
 * step, so a burst of concurrent tries cannot all slip past the check. At
 * most max_in_flight tries of a key are in flight at once (one while it
 * must wait between tries). The holder then settles the reservation exactly
 * once: ratelimit_fail (it failed), ratelimit_reset (it succeeded: forget
 * the failures) or ratelimit_release (it was never judged, or succeeded in
 * a way that must not forgive earlier failures).
 *
 * Memory is fixed at creation: a set-associative table whose buckets are
 * chosen by a keyed SipHash (crypto_shorthash), so a client cannot aim many
 * keys at one bucket. When a bucket is full the entry touched longest ago
 * is evicted, reservations and all: settling a reservation that is gone
 * does no harm. All functions lock internally; safe from any thread.
 * Times are monotonic milliseconds (rpc_now_ms).
 */
#ifndef PARLEY_RATELIMIT_H
#define PARLEY_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Keys longer than this are cut (callers build keys that fit). */
#define RATELIMIT_KEY_MAX 95

typedef struct ratelimit ratelimit;

typedef struct ratelimit_policy {
	unsigned free_failures;	/* failures before the first wait */
	unsigned max_in_flight;	/* reserved, unsettled tries at most (>= 1) */
	uint32_t base_wait_ms;	/* the wait after the last free failure */
	uint32_t max_wait_ms;	/* the wait doubles up to this */
	uint32_t forget_ms;	/* failures are forgotten this long after the last */
} ratelimit_policy;

/* Capacity (keys remembered) is rounded up to a power of two. NULL on
 * out-of-memory. */
ratelimit *ratelimit_new(const ratelimit_policy *policy, size_t capacity);
void ratelimit_free(ratelimit *rl);

/*
 * Reserves a try for key: 0 if reserved (the caller must settle it), else
 * the milliseconds until key may try again (nothing reserved). *in_flight
 * (may be NULL) says whether tries still in flight, rather than failures,
 * stand in the way; their wait is at most a second, as they may yet
 * succeed.
 */
__attribute__((warn_unused_result)) uint32_t
ratelimit_reserve(ratelimit *rl, const char *key, int64_t now_ms, bool *in_flight);
/* Settles one of key's reservations as a failure. */
void ratelimit_fail(ratelimit *rl, const char *key, int64_t now_ms);
/* Settles one of key's reservations as a success: forgets key's failures.
 * Other tries of key still in flight stay reserved. */
void ratelimit_reset(ratelimit *rl, const char *key);
/* Gives back one of key's reservations; its failures stay. */
void ratelimit_release(ratelimit *rl, const char *key);

#endif

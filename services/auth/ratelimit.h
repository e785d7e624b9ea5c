/*
 * ratelimit.h — counts failures per key (an account) in a fixed window and
 * says how long a key must wait once it has used up its allowance.
 *
 * Memory is fixed at creation: a set-associative table whose buckets are
 * chosen by a keyed SipHash (crypto_shorthash), so a client cannot aim many
 * keys at one bucket. When a bucket is full the entry with the oldest
 * window is evicted. All functions lock internally; safe from any thread.
 */
#ifndef PARLEY_RATELIMIT_H
#define PARLEY_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ratelimit ratelimit;

/* max_failures per window_ms; capacity rounded up to a power of two. NULL
 * on out-of-memory. */
ratelimit *ratelimit_new(unsigned max_failures, uint32_t window_ms, size_t capacity);
void ratelimit_free(ratelimit *rl);

/* 0 if key may try now, else the milliseconds until it may. */
uint32_t ratelimit_check(ratelimit *rl, const char *key, int64_t now_ms);
/* Counts one failure of key. */
void ratelimit_fail(ratelimit *rl, const char *key, int64_t now_ms);
/* Forgets key's failures (after a success). */
void ratelimit_reset(ratelimit *rl, const char *key);

#endif

/* ratelimit.c — see ratelimit.h. */
#include "ratelimit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define WAYS 4
#define PENDING_WAIT_MS 1000 /* the most a key waits for tries in flight */

struct entry {
	bool used;		/* false = free ("" is a key like any other) */
	char key[RATELIMIT_KEY_MAX + 1];
	int64_t touched;	/* last reserve or failure: the eviction order */
	int64_t last_failure;
	unsigned failures;
	unsigned pending;	/* reserved, not yet settled */
};

struct ratelimit {
	pthread_mutex_t mtx;
	ratelimit_policy policy;
	size_t nbuckets; /* power of two */
	unsigned char hash_key[crypto_shorthash_KEYBYTES];
	struct entry *entries; /* nbuckets * WAYS */
};

ratelimit *
ratelimit_new(const ratelimit_policy *policy, size_t capacity)
{
	ratelimit *rl = calloc(1, sizeof(*rl));
	size_t n = 1;

	if (rl == NULL)
		return NULL;
	while (n * WAYS < capacity)
		n <<= 1;
	rl->entries = calloc(n * WAYS, sizeof(struct entry));
	if (rl->entries == NULL) {
		free(rl);
		return NULL;
	}
	rl->nbuckets = n;
	rl->policy = *policy;
	if (rl->policy.max_in_flight == 0)
		rl->policy.max_in_flight = 1;
	randombytes_buf(rl->hash_key, sizeof(rl->hash_key));
	pthread_mutex_init(&rl->mtx, NULL);
	return rl;
}

void
ratelimit_free(ratelimit *rl)
{
	if (rl == NULL)
		return;
	pthread_mutex_destroy(&rl->mtx);
	free(rl->entries);
	free(rl);
}

static struct entry *
bucket(ratelimit *rl, const char *key)
{
	unsigned char h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, (const unsigned char *)key, strnlen(key, RATELIMIT_KEY_MAX),
			 rl->hash_key);
	memcpy(&v, h, sizeof(v));
	return &rl->entries[(v & (rl->nbuckets - 1)) * WAYS];
}

/* key's entry or NULL. Called with the lock held. */
static struct entry *
find(ratelimit *rl, const char *key)
{
	struct entry *b = bucket(rl, key);

	for (int i = 0; i < WAYS; i++)
		if (b[i].used && strncmp(b[i].key, key, RATELIMIT_KEY_MAX) == 0)
			return &b[i];
	return NULL;
}

static bool
forgotten(const ratelimit *rl, const struct entry *e, int64_t now)
{
	return e->failures > 0 && now - e->last_failure >= rl->policy.forget_ms;
}

/* The live entry for key, or NULL; failures past forget_ms are dropped on
 * the way. Called with the lock held. */
static struct entry *
lookup(ratelimit *rl, const char *key, int64_t now)
{
	struct entry *e = find(rl, key);

	if (e == NULL || !forgotten(rl, e, now))
		return e;
	e->failures = 0;
	if (e->pending == 0) {
		e->used = false;
		return NULL;
	}
	return e;
}

/* A fresh entry for key. A full bucket gives up an entry with nothing
 * left to remember if it has one, else the one touched longest ago.
 * Called with the lock held. */
static struct entry *
insert(ratelimit *rl, const char *key, int64_t now)
{
	struct entry *b = bucket(rl, key), *e = &b[0];

	for (int i = 0; i < WAYS; i++) {
		if (!b[i].used || (b[i].pending == 0 && forgotten(rl, &b[i], now))) {
			e = &b[i];
			break;
		}
		if (b[i].touched < e->touched)
			e = &b[i];
	}
	memset(e, 0, sizeof(*e));
	e->used = true;
	snprintf(e->key, sizeof(e->key), "%s", key);
	e->touched = now;
	return e;
}

/* How long after its last failure a key with this many failures waits. */
static int64_t
wait_after(const ratelimit_policy *p, unsigned failures)
{
	unsigned doublings;
	uint64_t w;

	if (failures < p->free_failures)
		return 0;
	doublings = failures - p->free_failures;
	if (doublings >= 32)
		return p->max_wait_ms;
	w = (uint64_t)p->base_wait_ms << doublings;
	return w < p->max_wait_ms ? (int64_t)w : p->max_wait_ms;
}

/* Settles one reservation of e; frees e once it holds nothing. Called
 * with the lock held. */
static void
settle(struct entry *e)
{
	if (e->pending > 0)
		e->pending--;
	if (e->pending == 0 && e->failures == 0)
		e->used = false;
}

uint32_t
ratelimit_reserve(ratelimit *rl, const char *key, int64_t now, bool *in_flight)
{
	const ratelimit_policy *p = &rl->policy;
	struct entry *e;
	int64_t next_try;
	unsigned cap;
	uint32_t wait = 0;
	bool flight = false;

	pthread_mutex_lock(&rl->mtx);
	e = lookup(rl, key, now);
	if (e == NULL)
		e = insert(rl, key, now);
	e->touched = now;
	if (e->failures < p->free_failures) {
		/* In-flight tries count as failures until they are judged. */
		cap = p->free_failures - e->failures;
		if (cap > p->max_in_flight)
			cap = p->max_in_flight;
		next_try = now;
	} else {
		cap = 1;
		next_try = e->last_failure + wait_after(p, e->failures);
	}
	if (now < next_try) {
		wait = (uint32_t)(next_try - now);
	} else if (e->pending >= cap) {
		wait = PENDING_WAIT_MS;
		flight = true;
	} else {
		e->pending++;
	}
	pthread_mutex_unlock(&rl->mtx);
	if (in_flight != NULL)
		*in_flight = flight;
	return wait;
}

void
ratelimit_fail(ratelimit *rl, const char *key, int64_t now)
{
	struct entry *e;

	pthread_mutex_lock(&rl->mtx);
	e = lookup(rl, key, now);
	if (e == NULL)
		e = insert(rl, key, now); /* evicted or forgotten meanwhile */
	if (e->pending > 0)
		e->pending--;
	if (e->failures < UINT32_MAX)
		e->failures++;
	e->last_failure = e->touched = now;
	pthread_mutex_unlock(&rl->mtx);
}

void
ratelimit_reset(ratelimit *rl, const char *key)
{
	struct entry *e;

	pthread_mutex_lock(&rl->mtx);
	if ((e = find(rl, key)) != NULL) {
		e->failures = 0;
		settle(e);
	}
	pthread_mutex_unlock(&rl->mtx);
}

void
ratelimit_release(ratelimit *rl, const char *key)
{
	struct entry *e;

	pthread_mutex_lock(&rl->mtx);
	if ((e = find(rl, key)) != NULL)
		settle(e);
	pthread_mutex_unlock(&rl->mtx);
}

/* ratelimit.c — see ratelimit.h. */
#include "ratelimit.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define WAYS 4
#define KEY_MAX 64
#define PENDING_WAIT_MS 1000 /* the most a key waits for tries in flight */

struct entry {
	char key[KEY_MAX];	/* "" = free */
	int64_t window_start;
	unsigned failures;
	unsigned pending;	/* reserved, not yet settled */
};

struct ratelimit {
	pthread_mutex_t mtx;
	unsigned max_tries;
	uint32_t window_ms;
	size_t nbuckets; /* power of two */
	unsigned char hash_key[crypto_shorthash_KEYBYTES];
	struct entry *entries; /* nbuckets * WAYS */
};

ratelimit *
ratelimit_new(unsigned max_tries, uint32_t window_ms, size_t capacity)
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
	rl->max_tries = max_tries;
	rl->window_ms = window_ms;
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

	crypto_shorthash(h, (const unsigned char *)key, strlen(key), rl->hash_key);
	memcpy(&v, h, sizeof(v));
	return &rl->entries[(v & (rl->nbuckets - 1)) * WAYS];
}

/* key's entry, live or not, or NULL. Called with the lock held. */
static struct entry *
find(ratelimit *rl, const char *key)
{
	struct entry *b = bucket(rl, key);

	for (int i = 0; i < WAYS; i++)
		if (b[i].key[0] != '\0' && strncmp(b[i].key, key, KEY_MAX) == 0)
			return &b[i];
	return NULL;
}

static bool
expired(ratelimit *rl, const struct entry *e, int64_t now)
{
	return now - e->window_start >= rl->window_ms;
}

/*
 * The live entry for key, or NULL. An expired entry is forgotten, unless
 * tries are still in flight: those move into a fresh window. Called with
 * the lock held.
 */
static struct entry *
lookup(ratelimit *rl, const char *key, int64_t now)
{
	struct entry *e = find(rl, key);

	if (e == NULL || !expired(rl, e, now))
		return e;
	if (e->pending == 0) {
		e->key[0] = '\0';
		return NULL;
	}
	e->window_start = now;
	e->failures = 0;
	return e;
}

/* A fresh entry for key, evicting the oldest window of a full bucket.
 * Called with the lock held. */
static struct entry *
insert(ratelimit *rl, const char *key, int64_t now)
{
	struct entry *b = bucket(rl, key), *e = &b[0];

	for (int i = 0; i < WAYS; i++) {
		if (b[i].key[0] == '\0' || (b[i].pending == 0 && expired(rl, &b[i], now))) {
			e = &b[i];
			break;
		}
		if (b[i].window_start < e->window_start)
			e = &b[i];
	}
	snprintf(e->key, sizeof(e->key), "%s", key);
	e->window_start = now;
	e->failures = 0;
	e->pending = 0;
	return e;
}

/* Settles one reservation of e; frees e once it holds nothing. Called
 * with the lock held. */
static void
settle(struct entry *e)
{
	if (e->pending > 0)
		e->pending--;
	if (e->pending == 0 && e->failures == 0)
		e->key[0] = '\0';
}

uint32_t
ratelimit_reserve(ratelimit *rl, const char *key, int64_t now)
{
	struct entry *e;
	uint32_t wait = 0;

	pthread_mutex_lock(&rl->mtx);
	e = lookup(rl, key, now);
	if (e == NULL)
		e = insert(rl, key, now);
	if (e->failures + e->pending < rl->max_tries) {
		e->pending++;
	} else {
		wait = (uint32_t)(e->window_start + rl->window_ms - now);
		if (e->failures < rl->max_tries && wait > PENDING_WAIT_MS)
			wait = PENDING_WAIT_MS;
	}
	pthread_mutex_unlock(&rl->mtx);
	return wait;
}

void
ratelimit_fail(ratelimit *rl, const char *key, int64_t now)
{
	struct entry *e;

	pthread_mutex_lock(&rl->mtx);
	e = lookup(rl, key, now);
	if (e == NULL)
		e = insert(rl, key, now); /* evicted or expired meanwhile */
	if (e->pending > 0)
		e->pending--;
	e->failures++;
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

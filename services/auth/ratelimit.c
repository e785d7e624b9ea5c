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

struct entry {
	char key[KEY_MAX];	/* "" = free */
	int64_t window_start;
	unsigned failures;
};

struct ratelimit {
	pthread_mutex_t mtx;
	unsigned max_failures;
	uint32_t window_ms;
	size_t nbuckets; /* power of two */
	unsigned char hash_key[crypto_shorthash_KEYBYTES];
	struct entry *entries; /* nbuckets * WAYS */
};

ratelimit *
ratelimit_new(unsigned max_failures, uint32_t window_ms, size_t capacity)
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
	rl->max_failures = max_failures;
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

/* The live entry for key, or NULL. Called with the lock held. */
static struct entry *
lookup(ratelimit *rl, const char *key, int64_t now)
{
	struct entry *b = bucket(rl, key);

	for (int i = 0; i < WAYS; i++) {
		if (b[i].key[0] == '\0' || strncmp(b[i].key, key, KEY_MAX) != 0)
			continue;
		if (now - b[i].window_start >= rl->window_ms) {
			b[i].key[0] = '\0';
			return NULL;
		}
		return &b[i];
	}
	return NULL;
}

uint32_t
ratelimit_check(ratelimit *rl, const char *key, int64_t now)
{
	struct entry *e;
	uint32_t wait = 0;

	pthread_mutex_lock(&rl->mtx);
	e = lookup(rl, key, now);
	if (e != NULL && e->failures >= rl->max_failures)
		wait = (uint32_t)(e->window_start + rl->window_ms - now);
	pthread_mutex_unlock(&rl->mtx);
	return wait;
}

void
ratelimit_fail(ratelimit *rl, const char *key, int64_t now)
{
	struct entry *e, *b;

	pthread_mutex_lock(&rl->mtx);
	e = lookup(rl, key, now);
	if (e == NULL) {
		b = bucket(rl, key);
		e = &b[0];
		for (int i = 0; i < WAYS; i++) {
			bool expired = now - b[i].window_start >= rl->window_ms;

			if (b[i].key[0] == '\0' || expired) {
				e = &b[i];
				break;
			}
			if (b[i].window_start < e->window_start)
				e = &b[i];
		}
		snprintf(e->key, sizeof(e->key), "%s", key);
		e->window_start = now;
		e->failures = 0;
	}
	e->failures++;
	pthread_mutex_unlock(&rl->mtx);
}

void
ratelimit_reset(ratelimit *rl, const char *key)
{
	pthread_mutex_lock(&rl->mtx);
	struct entry *b = bucket(rl, key);
	for (int i = 0; i < WAYS; i++)
		if (strncmp(b[i].key, key, KEY_MAX) == 0)
			b[i].key[0] = '\0';
	pthread_mutex_unlock(&rl->mtx);
}

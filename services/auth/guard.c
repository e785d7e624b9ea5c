/* guard.c — see guard.h. */
#include "guard.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MINUTE_MS 60000u
#define HOUR_MS (60u * MINUTE_MS)
#define LIMIT_ENTRIES 65536

struct guard {
	ratelimit *account; /* "address account" */
	ratelimit *address; /* "address" */
	ratelimit *reg;	    /* "address" */
};

static const ratelimit_policy account_policy = {
	.free_failures = 5, .max_in_flight = 5, .base_wait_ms = 1000,
	.max_wait_ms = 15 * MINUTE_MS, .forget_ms = HOUR_MS,
};
static const ratelimit_policy address_policy = {
	.free_failures = 30, .max_in_flight = 8, .base_wait_ms = 1000,
	.max_wait_ms = 15 * MINUTE_MS, .forget_ms = HOUR_MS,
};
static const ratelimit_policy register_policy = {
	.free_failures = 10, .max_in_flight = 8, .base_wait_ms = 1000,
	.max_wait_ms = 15 * MINUTE_MS, .forget_ms = HOUR_MS,
};

guard *
guard_new(void)
{
	guard *g = calloc(1, sizeof(*g));

	if (g == NULL)
		return NULL;
	g->account = ratelimit_new(&account_policy, LIMIT_ENTRIES);
	g->address = ratelimit_new(&address_policy, LIMIT_ENTRIES);
	g->reg = ratelimit_new(&register_policy, LIMIT_ENTRIES);
	if (g->account == NULL || g->address == NULL || g->reg == NULL) {
		guard_free(g);
		return NULL;
	}
	return g;
}

void
guard_free(guard *g)
{
	if (g == NULL)
		return;
	ratelimit_free(g->account);
	ratelimit_free(g->address);
	ratelimit_free(g->reg);
	free(g);
}

void
guard_peer(const rpc_call *call, char out[GUARD_PEER_MAX])
{
	const char *peer = rpc_call_peer(call);
	unsigned char a[16];
	char text[RPC_PEER_MAX];

	/* One IPv6 host usually holds a whole /64: limit it as one address. */
	if (strchr(peer, ':') != NULL && inet_pton(AF_INET6, peer, a) == 1) {
		memset(a + 8, 0, 8);
		if (inet_ntop(AF_INET6, a, text, sizeof(text)) != NULL) {
			snprintf(out, GUARD_PEER_MAX, "%s/64", text);
			return;
		}
	}
	snprintf(out, GUARD_PEER_MAX, "%s", peer);
}

static void
hold(guard_hold *h, ratelimit *rl, const char *key, bool forgive)
{
	h->rl = rl;
	h->forgive = forgive;
	snprintf(h->key, sizeof(h->key), "%s", key);
}

/* Fails call for a refusal of wait ms; what names the limit. */
static rpc_code
refuse(rpc_call *call, uint32_t wait, const char *what)
{
	rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED, "too many %s; try again in %u s", what,
		      (wait + 999) / 1000);
	rpc_call_retry_after(call, wait);
	return RPC_RESOURCE_EXHAUSTED;
}

rpc_code
guard_reserve_login(guard *g, rpc_call *call, const char *account, guard_hold *account_hold,
		    guard_hold *address_hold)
{
	char peer[GUARD_PEER_MAX], key[RATELIMIT_KEY_MAX + 1];
	int64_t now = rpc_now_ms();
	uint32_t wait;
	bool in_flight;

	account_hold->key[0] = address_hold->key[0] = '\0';
	guard_peer(call, peer);
	/* An address never holds a space, so "address account" is unique. */
	snprintf(key, sizeof(key), "%s %s", peer, account);

	wait = ratelimit_reserve(g->address, peer, now, &in_flight);
	if (wait != 0)
		return refuse(call, wait,
			      in_flight ? "logins in progress from your address"
					: "failed logins from your address");
	wait = ratelimit_reserve(g->account, key, now, &in_flight);
	if (wait != 0) {
		ratelimit_release(g->address, peer);
		return refuse(call, wait,
			      in_flight ? "logins in progress for this account from your address"
					: "failed logins for this account from your address");
	}
	hold(address_hold, g->address, peer, false);
	hold(account_hold, g->account, key, true);
	return RPC_OK;
}

rpc_code
guard_reserve_register(guard *g, rpc_call *call, guard_hold *address_hold)
{
	char peer[GUARD_PEER_MAX];
	uint32_t wait;
	bool in_flight;

	address_hold->key[0] = '\0';
	guard_peer(call, peer);
	wait = ratelimit_reserve(g->reg, peer, rpc_now_ms(), &in_flight);
	if (wait != 0)
		return refuse(call, wait,
			      in_flight ? "registrations in progress from your address"
					: "taken user ids asked for from your address");
	hold(address_hold, g->reg, peer, false);
	return RPC_OK;
}

void
guard_fail(guard_hold *h)
{
	if (h->key[0] == '\0')
		return;
	ratelimit_fail(h->rl, h->key, rpc_now_ms());
	h->key[0] = '\0';
}

void
guard_succeed(guard_hold *h)
{
	if (h->key[0] == '\0')
		return;
	/* Only an account's failures are forgiven: an attacker who owns an
	 * account must not wipe its address's record by logging in to it. */
	if (h->forgive)
		ratelimit_reset(h->rl, h->key);
	else
		ratelimit_release(h->rl, h->key);
	h->key[0] = '\0';
}

void
guard_release(guard_hold *h)
{
	if (h->key[0] == '\0')
		return;
	ratelimit_release(h->rl, h->key);
	h->key[0] = '\0';
}

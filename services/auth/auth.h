/*
 * auth.h — the Auth service: accounts, Argon2id password hashes, session
 * tokens (only a keyed BLAKE2b of each token is stored), limits on password
 * guessing per account and address and per address (guard.h). Serves
 * parley.v1.Auth on cfg->auth_listen.
 *
 * Profiles (account.c): UpdateProfile leaves empty fields unchanged (an
 * email cannot be cleared, only replaced); GetUsers takes at most 100
 * valid ids, leaves out unknown and deleted ones, and shows an email only
 * to its owner. DeleteAccount checks the password under Login's limits,
 * leaves a tombstone (the id is never registered again), revokes every
 * session and leaves every room through the rooms service at
 * cfg->rooms_addr (retried by the sweeper if rooms is away). The id
 * "parley" is reserved.
 */
#ifndef PARLEY_AUTH_H
#define PARLEY_AUTH_H

#include "svc.h"

typedef struct auth_service auth_service;

/* Starts the service on cfg->auth_listen with its tables in cfg->env and
 * its token key in cfg->data_dir/auth.key (created on first start, 0600). */
int auth_service_start(const parley_config *cfg, auth_service **out, rpc_status *st);

/* Stops taking calls and answers those in flight. */
void auth_service_shutdown(auth_service *a);

/* Frees everything; call after auth_service_shutdown. */
void auth_service_stop(auth_service *a);

#endif

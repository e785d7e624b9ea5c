/*
 * rpc_calls.h — client calls shared by the rpc runtime's unit tests.
 */
#ifndef PARLEY_TEST_RPC_CALLS_H
#define PARLEY_TEST_RPC_CALLS_H

#include "client.h"

/* Auth/Validate of token: the user id it names into user (len bytes). */
rpc_code call_validate(rpc_client *cli, const char *token, char *user, size_t len,
		       rpc_status *st);

/* Auth/Logout with token (NULL: none); the call's code, st set. */
rpc_code call_logout(rpc_client *cli, const char *token, rpc_status *st);

/* Health/Check: the serving status, or -1 if the call failed. */
int health(rpc_client *cli);

#endif

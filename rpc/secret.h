/*
 * secret.h — memory that may have held a secret (a password, a session
 * token) is zeroed before it goes back to the allocator.
 *
 * rpc_secret_free zeroes the whole block (malloc_usable_size) before
 * freeing it: it frees what malloc gave, so a block may be made by
 * either and freed by either (a size header would make free() of it a
 * crash, and jansson hands out json_dumps text that callers free()).
 * rpc_secret_malloc/rpc_secret_free are jansson's allocator in every
 * process that links rpc/json.c (installed before main, as jansson's
 * json_set_alloc_funcs requires), so its copies of a JSON body's strings
 * (a password in a Login) are wiped when jansson frees them.
 * rpc_secret_free_message zeroes every string and bytes field of an
 * unpacked protobuf-c message, nested ones included, before freeing it.
 *
 * No state, no locks. tests/unit/secrets_test scans every free() of a
 * process serving Logins over HTTP for the password and the token.
 */
#ifndef PARLEY_RPC_SECRET_H
#define PARLEY_RPC_SECRET_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

/* malloc (jansson needs a function of this type); NULL when out of memory. */
void *rpc_secret_malloc(size_t size);
/* Zeroes the whole block p (from malloc or rpc_secret_malloc), then frees
 * it. NULL is a no-op. */
void rpc_secret_free(void *p);

/* Zeroes the contents of every string and bytes field of m (nested
 * messages and repeated fields too), then frees m as unpacked with the
 * default allocator. NULL is a no-op. */
void rpc_secret_free_message(ProtobufCMessage *m);

/* Zeroes len bytes at p (p may be NULL when len is 0) and frees p. */
void rpc_secret_wipe_free(void *p, size_t len);

#endif

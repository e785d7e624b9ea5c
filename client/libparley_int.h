/*
 * libparley_int.h — what the files of libparley-client share and nobody
 * else sees: one typed call over the connection (libparley.c) for the calls
 * made in other files (social.c). Same threading as parley.h.
 */
#ifndef PARLEY_LIBPARLEY_INT_H
#define PARLEY_LIBPARLEY_INT_H

#include "parley.h"

/* One call of method on service s: attaches the token, waits at most
 * timeout_ms (0: the connection's), checks the reply's bytes before
 * unpacking. On RPC_OK *resp is owned by the caller (parley_free); on
 * failure it is NULL and st says why. */
rpc_code parley__call(parley_conn *c, parley_service s, const ProtobufCServiceDescriptor *svc,
		      const char *method, const ProtobufCMessage *req, ProtobufCMessage **resp,
		      uint32_t timeout_ms, rpc_status *st);

/* Hands reply to *out (out non-NULL) or frees it; RPC_OK. */
rpc_code parley__deliver(void *reply, void *out, rpc_status *st);

/* Frees reply; RPC_INTERNAL "<service> server sent a bad reply: what". */
rpc_code parley__bad_reply(void *reply, parley_service s, const char *what, rpc_status *st);

#endif

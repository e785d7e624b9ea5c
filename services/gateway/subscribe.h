/*
 * subscribe.h — Messaging/Subscribe over HTTP (internal to the gateway):
 * a server stream made of a messaging session. It opens the session with
 * the caller's token, sends the rooms' heads first, then every batch a
 * Poll returns, as it returns; an empty Poll (15 s without events) sends
 * an empty message, the keep-alive. The session's guarantees carry over:
 * every persisted event once and in seq order per room from since_seq on,
 * presence, no delivery after a LeaveRoom; one batch in memory at a time.
 * The session is closed when the stream ends, at once when the client
 * goes away.
 */
#ifndef PARLEY_GATEWAY_SUBSCRIBE_H
#define PARLEY_GATEWAY_SUBSCRIBE_H

#include "http.h"

#define SUBSCRIBE_WAIT_MS 15000	/* Poll's wait: the keep-alive period */
#define SUBSCRIBE_SLACK_MS 5000	/* a Poll's deadline beyond its wait */
#define SUBSCRIBE_RETRIES 3	/* Polls in a row that may time out */

/* An rpc_http_stream_fn; ctx is the rpc_client of the messaging service. */
rpc_code gw_subscribe(rpc_http_stream *s, const ProtobufCMessage *req, void *ctx,
		      rpc_status *st);

#endif

/*
 * messaging.h — the Messaging service: durable, group-committed, idempotent
 * Send into gap-free room sequences; sessions with a worker thread each that
 * long-poll live events; the PUB/SUB backbone that carries every new event
 * to session workers (inproc) and to other subscribers (cfg->events_listen).
 * Serves parley.v1.Messaging on cfg->messaging_listen; membership is asked
 * of the rooms service, whose membership log it copies into the timelines.
 *
 * Behaviour where the contract leaves room:
 *   - Send: room_id as rooms defines it; text 1-4096 bytes of UTF-8 without
 *     NUL (control characters such as newlines are allowed); client_msg_id
 *     0-64 bytes. The idempotency key is (sender, client_msg_id): the same
 *     id from another user is another message. A retry must name the same
 *     room and text, else INVALID_ARGUMENT. An empty client_msg_id opts out.
 *     Records of client_msg_ids are kept for good.
 *   - A Send is answered after its transaction commits (LMDB syncs on
 *     commit). Up to 4096 Sends wait for the writer; beyond that
 *     RESOURCE_EXHAUSTED with retry_after_ms. A full store answers
 *     RESOURCE_EXHAUSTED and the service carries on.
 *   - JOINED/LEFT events carry the time messaging wrote them.
 *   - Open: 1-64 distinct rooms, each since_seq at most the room's head
 *     (OUT_OF_RANGE beyond); at most cfg->max_sessions sessions at once,
 *     and at most cfg->max_user_sessions of one user, counting closed ones
 *     whose worker has not finished yet (RESOURCE_EXHAUSTED with
 *     retry_after_ms beyond either). The endpoint has cfg->contexts +
 *     cfg->max_sessions call slots, so that a waiting Poll on every
 *     session never starves other calls.
 *   - Poll: wait_ms at most 30000; max_events 0 means 100, above 1000 is
 *     served as 1000; a reply also stops growing past 1 MiB. A Poll waits at
 *     most until shortly before its own RPC deadline. A second Poll on a
 *     session answers the first one empty. While a stream is busy, one
 *     session's answers go out at most every 10 ms, so events travel
 *     together. Presence events are delivered to the other users in the
 *     room, never to their own user, and may be dropped for a client whose
 *     buffer is full (they are not persisted; messages never are dropped).
 *   - Leaving a room ends its delivery at once: see session.h.
 *   - Another user's session id: PERMISSION_DENIED; unknown, closed or
 *     expired: NOT_FOUND.
 *   - Backbone frames whose topic starts with byte 0x01 are internal
 *     control frames (no Event); room ids never start with it.
 *   - Presence is per user: ONLINE when the user's first session covering
 *     the room opens, OFFLINE when the last one ends or expires.
 *     parley.internal.v1.Presence/Online (same endpoint) tells members who
 *     is online (presence.c).
 *   - Edit/Delete: members only; the writer checks the target in the
 *     writing transaction (see mx_writer_op for the refusals); retries by
 *     client_msg_id as Send. Moderators cannot delete others' messages yet:
 *     the rooms service on this branch keeps no roles. A Delete is answered
 *     after its texts are also erased from data.mdb (store_wipe): a scan of
 *     the file per text, and up to 3 s more while an old reader holds pages.
 *   - SetTyping: members only; 5 at once per (user, room), then one a
 *     second (RESOURCE_EXHAUSTED with retry_after_ms); true lapses after 6 s.
 *   - MarkRead: members only; seq past the head is OUT_OF_RANGE (a client
 *     cannot have read it); a seq behind the marker changes nothing.
 *   - GetUnread: at most 100 room_ids, each checked for membership; empty
 *     means ListMyRooms. Deleted messages still count as unread.
 */
#ifndef PARLEY_MESSAGING_H
#define PARLEY_MESSAGING_H

#include "svc.h"

typedef struct messaging_service messaging_service;

/* Starts the service on cfg->messaging_listen and cfg->events_listen with
 * its tables in cfg->env (which must be writable). */
int messaging_service_start(const parley_config *cfg, messaging_service **out, rpc_status *st);

/* Stops taking calls, answers every call in flight (waiting Polls empty,
 * queued Sends after their commit) and ends every session. */
void messaging_service_shutdown(messaging_service *m);

/* Frees everything; call after messaging_service_shutdown. */
void messaging_service_stop(messaging_service *m);

#endif

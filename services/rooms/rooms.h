/*
 * rooms.h — the Rooms service: rooms, their members, and the log of
 * membership changes other services follow.
 *
 * Three endpoints:
 *   cfg->rooms_listen           REP, parley.v1.Rooms; every method needs a
 *                               session token, resolved by Auth/Validate at
 *                               cfg->auth_addr on every call (no cache).
 *   cfg->rooms_internal_listen  REP, parley.internal.v1.RoomsFeed
 *                               (ListChanges); no token: internal network only.
 *   cfg->room_events_listen     PUB; after each committed membership change,
 *                               one frame: room_id, a zero byte, then the
 *                               serialized parley.v1.Event of that change
 *                               (the same bytes as in the log). A wake-up
 *                               only: PUB may drop, the log is the truth.
 *
 * Every membership change and its log record commit in one LMDB write
 * transaction; the reply is sent after the commit, so after LeaveRoom
 * returns IsMember answers false and the log holds the change.
 */
#ifndef PARLEY_ROOMS_H
#define PARLEY_ROOMS_H

#include "svc.h"

typedef struct rooms_service rooms_service;

/* Starts the service with its tables in cfg->env. On a fresh data
 * directory creates the room "general" (created by "parley", no members). */
int rooms_service_start(const parley_config *cfg, rooms_service **out, rpc_status *st);

/* Stops taking calls on both endpoints and answers those in flight. */
void rooms_service_shutdown(rooms_service *r);

/* Frees everything; call after rooms_service_shutdown. */
void rooms_service_stop(rooms_service *r);

#endif

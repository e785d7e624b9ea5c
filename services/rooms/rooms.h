/*
 * rooms.h — the Rooms service: rooms, their members, and the log of
 * membership changes other services follow.
 *
 * Endpoints:
 *   cfg->rooms_listen           REP, parley.v1.Rooms. Every method needs a
 *                               session token, resolved by Auth/Validate at
 *                               cfg->auth_addr on every call (no cache, so a
 *                               token revoked by Logout is refused at once).
 *   cfg->rooms_internal_listen  REP, parley.internal.v1.RoomsFeed/ListChanges;
 *                               no token: internal network only.
 *   cfg->room_events_listen     PUB of each committed membership change
 *                               (frame and log: see changes.h).
 *
 * Every membership change and its log record commit in one LMDB write
 * transaction before the reply, so after LeaveRoom returns IsMember answers
 * false and the log holds the change.
 *
 * Behaviour where the contract leaves room:
 *   - A room is public: any signed-in user may list it, read it and join
 *     it. Who is in it is for its members: GetRoom lists members only to
 *     a member (others get the room as ListRooms shows it, member_count
 *     included, no members), and IsMember answers a caller about
 *     themselves, or a member about anyone; a non-member asking about
 *     someone else gets PERMISSION_DENIED. (Messaging and history ask
 *     IsMember for the user whose token they carry.)
 *   - name: 1-100 characters (defaults to room_id); topic: 0-500
 *     characters; neither may hold control characters (newlines included).
 *   - ListRooms: page_size 0 means 50; above 500 is INVALID_ARGUMENT. The
 *     page_token is opaque and authenticated (see pagetoken.h), stays valid
 *     across restarts, and pages by room_id: every room that exists for the
 *     whole walk is listed exactly once, even while rooms are created.
 *   - GetRoom lists (to members) the first 1000 members in user_id order;
 *     member_count always gives the full size.
 *   - ListMyRooms lists the caller's first 1000 rooms in room_id order.
 *   - JoinRoom, LeaveRoom and IsMember on a room that does not exist are
 *     NOT_FOUND. Joining a room twice, or leaving one you are not in,
 *     succeeds and logs nothing. The creator's own join is logged.
 *   - A room stays when its last member leaves (rooms are never deleted).
 *   - RoomsFeed/ListChanges: limit 0 means 500; above 1000 is served as 1000.
 *   - Visibility: PUBLIC (older rooms too) as above; PRIVATE rooms are not
 *     listed, GetRoom is NOT_FOUND to all but members and invited users,
 *     JoinRoom needs an invitation (spent by joining); DIRECT rooms (see
 *     direct.c: ids "dm." + 32 hex digits, reserved) hold their two users
 *     and nobody else, ever.
 *   - Roles (roles.c, moderation.c): the creator is ADMIN, joiners MEMBER;
 *     "general" (created by the service) has no ADMIN. When the last ADMIN
 *     leaves, the remaining member with the highest role who joined first
 *     becomes ADMIN. A banned user cannot join until unbanned.
 *   - ListMembers: page_size 0 means 50, at most 100; display names from
 *     Auth/GetUsers and `online` from Messaging's Presence/Online at
 *     cfg->messaging_addr, one call each per page; UNAVAILABLE when either
 *     cannot answer.
 */
#ifndef PARLEY_ROOMS_H
#define PARLEY_ROOMS_H

#include "svc.h"

typedef struct rooms_service rooms_service;

/* Starts the service with its tables in cfg->env. On a fresh data
 * directory creates the room "general" (created by "parley", no members). */
int rooms_service_start(const parley_config *cfg, rooms_service **out, rpc_status *st);

/* Stops taking calls on both REP endpoints and answers those in flight. */
void rooms_service_shutdown(rooms_service *r);

/* Frees everything; call after rooms_service_shutdown. */
void rooms_service_stop(rooms_service *r);

#endif

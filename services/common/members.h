/*
 * members.h — the membership gate of messaging and history: asks the rooms
 * service (parley.v1.Rooms/IsMember) whether a user belongs to a room, on
 * behalf of that user (their bearer token travels with the question). Nothing
 * is cached, so a LeaveRoom that has returned is seen by the next question.
 *
 * Thread-safe: rpc_client calls may run from many threads at once.
 */
#ifndef PARLEY_MEMBERS_H
#define PARLEY_MEMBERS_H

#include <stdbool.h>
#include <stdint.h>

#include "client.h"
#include "server.h"

/* Longest wait for an answer from the rooms service. */
#define MEMBERS_TIMEOUT_MS 5000

/*
 * RPC_OK with *member set; otherwise st says why: NOT_FOUND (no such room),
 * UNAUTHENTICATED (the token went bad meanwhile), UNAVAILABLE (rooms cannot
 * be reached before deadline_ms, monotonic; 0 = MEMBERS_TIMEOUT_MS from now),
 * INTERNAL (anything else).
 */
__attribute__((warn_unused_result)) rpc_code
members_check(rpc_client *rooms, const char *room, const char *user,
		       const char *token, int64_t deadline_ms, bool *member, rpc_status *st);

/* The same, also giving the member's role (parley.v1.Role: 0 for none,
 * MEMBER 1, MODERATOR 2, ADMIN 3) in *role. */
__attribute__((warn_unused_result)) rpc_code
members_check_role(rpc_client *rooms, const char *room, const char *user,
			    const char *token, int64_t deadline_ms, bool *member, int *role,
			    rpc_status *st);

/* For a handler: RPC_OK when the caller is a member of room; otherwise
 * fails call (PERMISSION_DENIED "you are not a member of room 'x'", or the
 * status of members_check) and returns the code. */
__attribute__((warn_unused_result)) rpc_code
members_require(rpc_call *call, rpc_client *rooms, const char *room);

#endif

/*
 * changes.h — the rooms service's log of membership changes and the two
 * ways other services follow it.
 *
 * The log (table rooms.changes, be64 change seq -> serialized
 * parley.v1.Event with a membership body; head in rooms.meta) is global to
 * the service and gap-free: 1, 2, 3, ... Each change is appended inside the
 * very write transaction that changes the membership, so the two commit
 * together. After the commit the change goes out on a PUB socket as one
 * frame: room_id bytes, one zero byte, then the same Event bytes as in the
 * log. Subscribers filter on "room_id\0". PUB may drop: the log, served by
 * parley.internal.v1.RoomsFeed/ListChanges, is the truth.
 *
 * Locking: every write transaction of the rooms service runs between
 * changes_write_begin and changes_write_end, which hold the log's mutex
 * from before the transaction begins until after its frame is sent, so
 * frames leave in change seq order. Lock order: that mutex, then LMDB's
 * writer lock. Reads (ListChanges) take only an LMDB read transaction.
 */
#ifndef PARLEY_ROOMS_CHANGES_H
#define PARLEY_ROOMS_CHANGES_H

#include "parley/v1/events.pb-c.h"
#include "svc.h"

typedef struct changes changes;

/* A PUB frame, in the memory of the call that made the change; a
 * transaction with several changes chains their frames through next. */
typedef struct change_frame {
	uint8_t *data;
	size_t len;
	struct change_frame *next;
} change_frame;

/* Opens the log's tables in env and the PUB socket listening on pub_url. */
int changes_open(store_env *env, const char *pub_url, changes **out, rpc_status *st);

/* Serves parley.internal.v1.RoomsFeed on url (no authentication: an
 * internal endpoint). */
int changes_serve(changes *c, const char *url, const rpc_server_opts *opts, rpc_status *st);

/* Stops taking feed calls and answers those in flight. */
void changes_shutdown(changes *c);

/* Closes the feed endpoint and the PUB socket and frees c. Call after every
 * writer is done (the rooms server is closed). */
void changes_close(changes *c);

/* Begins a write transaction of the rooms service under the log's mutex. */
store_err changes_write_begin(changes *c, store_txn **txn);

/* Ends it: commits if err is STORE_OK, then sends f and the frames chained
 * to it (those given and filled), in order,
 * else aborts; releases the mutex. Returns the outcome. */
store_err changes_write_end(changes *c, store_txn *txn, store_err err, const change_frame *f);

/* In txn (from changes_write_begin): appends user_id's change in room_id
 * under the next change seq and fills f, in call's memory, for
 * changes_write_end to send. */
store_err changes_append(changes *c, store_txn *txn, rpc_call *call, const char *room_id,
			 const char *user_id, Parley__V1__MembershipChange__Kind kind,
			 change_frame *f);

/* The same for any change: ev (room_id, sender and body set by the
 * caller; a membership body, or room_update) gets the next change seq and
 * the time. The log's events: membership kinds JOINED, LEFT, KICKED,
 * BANNED, UNBANNED, INVITED with sender = the user concerned and actor =
 * who made the change; room_update with sender = who made it. */
store_err changes_append_event(changes *c, store_txn *txn, rpc_call *call,
			       Parley__V1__Event *ev, change_frame *f);

#endif

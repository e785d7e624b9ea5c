/*
 * messaging_int.h — the parts of the messaging service and what they share.
 * Not for other services.
 *
 *   messaging.c  lifecycle, the method table, Send's checks, the PUB socket
 *   writer.c     the one LMDB writer thread: group commit, gap-free seqs,
 *                client_msg_id records
 *   replier.c    answers committed batches and publishes their events, in
 *                commit order, while the writer writes the next one
 *   writer_ops.c Edit, Delete, MarkRead, as the writer applies them
 *   eraser.c     erases deleted texts from the data file, then answers
 *                the Deletes (off the writer thread)
 *   edits.c      the Edit, Delete and SetTyping handlers; typing state and
 *                the per-user limit of Edits and Deletes
 *   unread.c     read markers and unread counters; MarkRead, GetUnread
 *   feed.c       follows the rooms service's membership log into timelines
 *   sessions.c   the session registry and the Open/Poll/Close handlers
 *   session.c    one session: its worker thread and buffer
 *   router.c     one SUB socket on the PUB stream feeding the sessions of
 *                each room (an index room -> sessions)
 *   presence.c   per-user presence: sessions covering each (room, user),
 *                and parley.internal.v1.Presence/Online
 *
 * Tables (besides the timeline, see timeline.h; records in
 * proto/parley/store/v1/messaging_records.proto):
 *   msg.client_ids  sender \0 client_msg_id -> ClientMsgRecord (Send, Edit, Delete)
 *   msg.members     room_id \0 user_id      -> "" (the membership mirror)
 *   msg.meta        "rooms_feed_cursor"     -> be64(last membership change applied)
 *                   "wipe_round"            -> be64(wall ms; written to commit before an erase)
 *   msg.edits       room_id \0 be64(target) \0 be64(edit seq) -> the text that edit
 *                   replaced (emptied when the message is deleted)
 *   msg.counts, msg.own, msg.mentions, msg.reads: see unread.c
 *
 * Only the writer thread writes events to LMDB (the eraser commits nothing
 * but its wipe_round marker), so it alone assigns seqs: one sequence per
 * room, in commit order; the replier publishes in that order.
 */
#ifndef PARLEY_MESSAGING_INT_H
#define PARLEY_MESSAGING_INT_H

#include <pthread.h>

#include <nng/nng.h>

#include "members.h"
#include "messaging.h"
#include "timeline.h"

#include "parley/v1/messaging.pb-c.h"

#define MX_TEXT_MAX 4096
#define MX_CLIENT_MSG_ID_MAX 64
#define MX_SEND_BATCH_MAX 100	/* Sends in one SendBatch */
#define MX_FEED_CURSOR_KEY "rooms_feed_cursor"
#define MX_WIPE_ROUND_KEY "wipe_round"
#define MX_EDITS_MAX 100	/* edits of one message */
#define UNREAD_MENTIONS_MAX 32	/* users one message mentions, counted */

/* What the writer applies for a call. */
typedef enum mx_op { MX_OP_SEND, MX_OP_EDIT, MX_OP_DELETE, MX_OP_READ } mx_op;

typedef struct mx_writer mx_writer;
typedef struct mx_feed mx_feed;
typedef struct mx_sessions mx_sessions;
typedef struct mx_router mx_router;
typedef struct mx_session mx_session;
typedef struct mx_presence mx_presence;
typedef struct mx_typing mx_typing;

struct messaging_service {
	rpc_server *srv;
	svc_authn *authn;
	rpc_client *rooms;	/* parley.v1.Rooms: IsMember */
	rpc_client *rooms_feed; /* parley.internal.v1.RoomsFeed */
	const char *room_events_addr;
	store_env *env;
	timeline tl;
	store_table client_ids;
	store_table members;
	store_table meta;
	store_table edits;
	store_table counts, own, mentions, reads; /* unread.c */

	nng_socket pub;
	bool pub_open;
	rpc_conns *pub_conns; /* its connection caps (svc_pub_conns_open) */
	pthread_mutex_t pub_mtx; /* held to publish, and to close the router's SUB */
	pthread_mutex_t pipe_mtx; /* guards pipes_gone (nng's pipe callback) */
	pthread_cond_t pipe_cv;
	uint64_t pipes_gone;	  /* PUB pipes removed so far */
	char inproc_url[64];	/* where the router subscribes */

	uint32_t session_idle_ms;
	uint32_t max_sessions;
	uint32_t max_user_sessions;

	mx_writer *writer;
	mx_feed *feed;
	mx_sessions *sessions;
	mx_router *router;
	mx_presence *presence;
	mx_typing *typing;
};

/* ---- publishing (messaging.c) ---------------------------------------- */

/* A PUB frame for ev: room_id, one zero byte, the packed Event. NULL when
 * out of memory. The caller owns the message. */
nng_msg *mx_event_frame(const Parley__V1__Event *ev);

/* Sends a frame to every subscriber; takes ownership of msg. Never blocks
 * on subscribers: PUB drops for those that do not keep up. */
void mx_publish(messaging_service *m, nng_msg *msg);

/*
 * Control frames: a topic starting with MX_CONTROL_BYTE (never the first
 * byte of a room id) carries no Event. The router publishes one to learn
 * when everything published before a given moment has reached it (see
 * router.c, closing the SUB socket).
 */
#define MX_CONTROL_BYTE '\x01'

/* Publishes msg with pub_mtx already held by the caller. */
void mx_publish_locked(messaging_service *m, nng_msg *msg);

/* How many PUB pipes have gone so far; waits (until a monotonic deadline)
 * for that count to pass `seen`. */
uint64_t mx_pub_pipes_gone(messaging_service *m);
void mx_pub_wait_pipe_gone(messaging_service *m, uint64_t seen, int64_t until_ms);

/* The PUB frame of an ONLINE or OFFLINE presence event of user in room
 * (seq 0, ts now, never persisted); NULL when out of memory. */
nng_msg *mx_presence_frame(const char *room, const char *user,
			   Parley__V1__PresenceChange__State state);

/* Publishes such an event. */
void mx_publish_presence(messaging_service *m, const char *room, const char *user,
			 Parley__V1__PresenceChange__State state);

/*
 * Closes sock, but waits at most MX_CLOSE_WAIT_MS: nng_close waits for
 * every pipe of the socket to be torn down by nng's one reaper thread, and
 * a peer that misbehaved on a tcp endpoint has been seen to keep that from
 * finishing for minutes, hanging SIGTERM. Past the wait the close goes on
 * in a detached thread and shutdown carries on without it (logged); false
 * then, and whatever the socket's callbacks use must stay allocated.
 * `what` names the socket in that log line.
 */
#define MX_CLOSE_WAIT_MS 3000
bool mx_close_bounded(nng_socket sock, const char *what);

/* Largest frame a messaging socket takes in: a room id, a zero byte and a
 * packed Event (4 KiB of text and small fields), with room to spare. What
 * peers send to the PUB socket is never read at all. */
#define MX_FRAME_MAX (16 * 1024)
#define MX_PUB_RECV_MAX 64

/* The hash of a pair of strings (b NULL reads as ""), for the in-memory
 * tables keyed by (room, user) and the writer's scratch maps. */
uint32_t mx_pair_hash(const char *a, const char *b);

/* ---- the writer (writer.c) -------------------------------------------------- */

int mx_writer_start(messaging_service *m, mx_writer **out, rpc_status *st);

/*
 * Queues a checked op from call (caller = sender) and returns
 * RPC_DEFERRED: the writer answers it after the commit. The strings must
 * live as long as the call (its request or arena); text and cmid may be
 * NULL. target: the message of an EDIT or DELETE, the seq of a READ.
 * may_moderate: a DELETE of someone else's message is allowed. When the
 * queue is full, fails call with RESOURCE_EXHAUSTED and returns that.
 *
 * What the writer answers: SEND as messaging.h says; EDIT and DELETE
 * NOT_FOUND (no event at target), FAILED_PRECONDITION (not a chat message,
 * already deleted, too many edits), PERMISSION_DENIED (not the sender, and
 * for DELETE not a moderator); all three INVALID_ARGUMENT for a
 * client_msg_id used before for something else. READ never moves back.
 */
rpc_code mx_writer_op(mx_writer *w, rpc_call *call, mx_op op, const char *room,
		      const char *text, const char *cmid, uint64_t target, bool may_moderate);

/*
 * Queues the checked Sends of a SendBatch call at once, in order, so that
 * one transaction writes them all; answers with their seqs in resp, or the
 * status of the first one refused (prefixed "messages[i]: "; the others
 * are written). Returns RPC_DEFERRED, or fails call as mx_writer_op does.
 */
rpc_code mx_writer_send_batch(mx_writer *w, rpc_call *call,
			      const Parley__V1__SendBatchRequest *req,
			      Parley__V1__SendBatchResponse *resp);

/*
 * Appends the membership changes (Events with a membership body whose seq
 * is the change's position in the rooms log) that follow the stored feed
 * cursor to their rooms' timelines, and advances the cursor, in one
 * transaction. Changes at or below the cursor are skipped, so each applies
 * once. Blocks until committed; *cursor receives the stored cursor.
 */
store_err mx_writer_apply_changes(mx_writer *w, Parley__V1__Event **changes, size_t n,
				  uint64_t *cursor);

/* Answers everything queued, then stops the thread and frees w. */
void mx_writer_stop(mx_writer *w);

/* ---- the rooms feed (feed.c) ------------------------------------------------------ */

int mx_feed_start(messaging_service *m, mx_feed **out, rpc_status *st);
void mx_feed_stop(mx_feed *f);

/*
 * The membership barrier: returns RPC_OK once every membership change the
 * rooms service committed before this call began has been applied to the
 * mirror and the timelines. Many callers share one round trip to the
 * rooms service. UNAVAILABLE (with st) when it cannot be reached before
 * deadline_ms (monotonic).
 */
rpc_code mx_feed_sync(mx_feed *f, int64_t deadline_ms, rpc_status *st);

/* The barrier in two steps. mx_feed_round_next: the first round that
 * starts after now (every change committed before now is in the mirror
 * once it passed). mx_feed_want: asks for that round to run soon, without
 * waiting. mx_feed_sync_round: returns RPC_OK once round `mine` has
 * passed, at once (an atomic load) if it has; else as mx_feed_sync. */
uint64_t mx_feed_round_next(mx_feed *f);
void mx_feed_want(mx_feed *f, uint64_t round);
rpc_code mx_feed_sync_round(mx_feed *f, uint64_t mine, int64_t deadline_ms, rpc_status *st);
/* True when the mirror has every membership change the rooms service
 * committed until now, known without a round trip (the rooms service runs
 * in this process, see svc_rooms_log_head); a round passes at once then. */
bool mx_feed_current(mx_feed *f);

/* From now on the feed no longer tells sessions of joins (mx_sessions_joined);
 * returns once no such call is in progress. f may be NULL. */
void mx_feed_unfollow(mx_feed *f);

/* The membership mirror: the rooms service's members as of the feed
 * cursor, kept by the writer in the cursor's transaction. */
store_err mx_mirror_apply(messaging_service *m, store_txn *txn, const Parley__V1__Event *change);
store_err mx_mirror_is_member(messaging_service *m, store_txn *txn, const char *room,
			      const char *user, bool *member);

/* ---- the router (router.c) ------------------------------------------------------------ */

int mx_router_start(messaging_service *m, mx_router **out, rpc_status *st);

/* Stops delivering and frees r; every session must be out of it. */
void mx_router_stop(mx_router *r);

/* Routes the frames of each of s's rooms to s; false when out of memory
 * (then s is in no route). */
bool mx_router_add(mx_router *r, mx_session *s);

/* Routes s's room (an index into s->rooms) to s, a room added to the
 * session (the worker's call); false when out of memory. */
bool mx_router_add_room(mx_router *r, mx_session *s, unsigned room);

/* Stops routing s's room (an index into s->rooms) to s. */
void mx_router_drop_room(mx_router *r, mx_session *s, unsigned room);

/* Stops routing anything to s: no delivery to s is in progress or can
 * start once this returns. */
void mx_router_remove(mx_router *r, mx_session *s);

/* ---- presence (presence.c) ------------------------------------------------------------ */

int mx_presence_start(messaging_service *m, mx_presence **out, rpc_status *st);
/* Adds parley.internal.v1.Presence to srv (before rpc_server_start). */
void mx_presence_serve(mx_presence *p, rpc_server *srv);
void mx_presence_stop(mx_presence *p);

/* A session of user now covers room: ONLINE is published when it is the
 * first. false when out of memory (nothing counted then). */
bool mx_presence_enter(mx_presence *p, const char *room, const char *user);

/* A session of user no longer covers room (each enter is left exactly
 * once): when it was the last, OFFLINE is published if announce. */
void mx_presence_leave(mx_presence *p, const char *room, const char *user, bool announce);

/* Does any session of user cover room now? */
bool mx_presence_online(mx_presence *p, const char *room, const char *user);

/* ---- read markers and unread counts (unread.c) ---------------------------------------- */

int mx_unread_open(messaging_service *m, rpc_status *st);

/* Writer: counts the chat message (room, seq) of sender with text. */
store_err mx_unread_note(messaging_service *m, store_txn *txn, const char *room, uint64_t seq,
			 const char *sender, const char *text);
/* Writer: user has read room up to seq (kept if not behind). */
store_err mx_unread_mark(messaging_service *m, store_txn *txn, const char *user,
			 const char *room, uint64_t seq);
store_err mx_unread_read_seq(messaging_service *m, store_txn *txn, const char *user,
			     const char *room, uint64_t *seq);

typedef struct mx_unread {
	uint64_t head, read, unread, mentions;
} mx_unread;

/* The counts of user in room. *reads (if not NULL) grows by the number of
 * store lookups made: a constant, whatever the length of the room. */
store_err mx_unread_get(messaging_service *m, store_txn *txn, const char *user,
			const char *room, mx_unread *u, unsigned *reads);

/* The distinct users (other than sender) text mentions as @user_id, at
 * most max, into out. */
size_t mx_mentions(const char *text, const char *sender, char (*out)[RPC_USER_ID_MAX],
		   size_t max);

rpc_code mx_handle_mark_read(rpc_call *call, const ProtobufCMessage *req,
			     ProtobufCMessage *resp, void *ctx);
rpc_code mx_handle_get_unread(rpc_call *call, const ProtobufCMessage *req,
			      ProtobufCMessage *resp, void *ctx);

/* ---- edits, deletes and typing (edits.c) ---------------------------------------------- */

int mx_typing_start(messaging_service *m, mx_typing **out, rpc_status *st);
void mx_typing_stop(mx_typing *t);

rpc_code mx_handle_edit(rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage *resp,
			void *ctx);
rpc_code mx_handle_delete(rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage *resp,
			  void *ctx);
rpc_code mx_handle_set_typing(rpc_call *call, const ProtobufCMessage *req,
			      ProtobufCMessage *resp, void *ctx);

/* ---- sessions (sessions.c) ------------------------------------------------------------ */

int mx_sessions_start(messaging_service *m, mx_sessions **out, rpc_status *st);

/* Finishes every waiting Poll (empty), ends every worker and waits for
 * them; then frees everything. */
void mx_sessions_stop(mx_sessions *ss);

/* The feed applied a JOINED of user in room: every open session of user
 * adds the room (session_follow). */
void mx_sessions_joined(mx_sessions *ss, const char *room, const char *user);

rpc_code mx_handle_open(rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage *resp,
			void *ctx);
rpc_code mx_handle_poll(rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage *resp,
			void *ctx);
rpc_code mx_handle_close(rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage *resp,
			 void *ctx);

#endif

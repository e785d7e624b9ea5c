/*
 * session.h — one messaging session (internal to the messaging service).
 *
 * A session is a server-side cursor over up to SESSION_MAX_ROOMS rooms,
 * owned by the user who opened it, with its own worker thread. The router
 * (router.c) hands it the PUB frames of its rooms, taken from the
 * service's inproc PUB endpoint, into a bounded inbox.
 *
 * Delivery: per room, `cursor` is the last seq taken in (into the buffer or
 * a reply); only seq == cursor + 1 is ever taken, so each event comes once
 * and in order. Live events land in a bounded buffer; an event that does
 * not fit, or that shows a gap, only raises `known_head`, and the room is
 * then "behind": its next events are read from LMDB by seq when a Poll is
 * answered. Heads are re-read from LMDB when a Poll arrives and when the
 * router finds that frames of a room were lost on the way (its heal tick
 * compares each routed room's head with the last seq it saw). Nothing
 * wakes a worker on a timer but its Poll's deadline and idle expiry: an
 * idle session costs no CPU.
 *
 * Memory: the frames are the router's, shared by every session of a room
 * (mx_frame); a session holds pointers in an inbox and a buffer that are
 * allocated while they hold something, so a session costs about the same
 * in a room of 10 as in one of 20,000.
 *
 * Logging out: before a reply carrying events goes out, the worker asks
 * auth to validate the token of the Poll (the session's own token, checked
 * when the Poll was taken). Revoked: the Poll gets UNAUTHENTICATED, the
 * events stay unsent and the session closes. So nothing sent after a
 * Logout reaches a Poll that was already waiting. Any other failure of the
 * check puts the rooms back where they were, to be read again.
 *
 * Leaving a room: before a reply carries any event of a room, the worker
 * passes the membership barrier and looks the user up in the mirror; a
 * room the mirror does not list is confirmed with IsMember (the Poll's own
 * token). The barrier (mx_feed_sync_round) waits for a round of the feed
 * that started after the event was committed: for a live event, the round
 * the router took when the frame arrived; for events read from LMDB, a
 * round from the moment of the read. So an event committed after a
 * LeaveRoom returned always meets the mirror without the user: no stale
 * window. When the round has passed already, the barrier is one atomic
 * load; one round trip to the rooms service serves every session waiting.
 * The user's own removal event (LEFT, KICKED, BANNED) is the last event
 * the room delivers: it is looked up in the timeline and sent alone, never
 * what was sent around it.
 *
 * Following the user: when the feed applies a JOINED of the session's user
 * (joined from anywhere), the session adds the room (session_follow), from
 * that JOINED event on, up to SESSION_MAX_ROOMS rooms.
 *
 * Locking: s->mtx guards the fields marked [mtx], shared by the worker, the
 * router (an nng thread) and the Poll/Close handlers; [worker] fields
 * belong to the worker thread; the rest is set before the worker starts and
 * never changes. `gone` is atomic. A session is freed when its last
 * reference goes; the registry, the worker and each handler using it hold
 * one each.
 */
#ifndef PARLEY_MESSAGING_SESSION_H
#define PARLEY_MESSAGING_SESSION_H

#include <pthread.h>

#include "messaging_int.h"

#define SESSION_ID_LEN 32		/* hex of 16 random bytes */
#define SESSION_MAX_ROOMS 64
#define SESSION_BUF_EVENTS 256		/* live events buffered per session... */
#define SESSION_BUF_BYTES (64 * 1024)	/* ...and their bytes at most */
#define SESSION_INBOX_MAX 256		/* frames from the router not yet sorted */
#define SESSION_REPLY_GAP_MS 10		/* answers to a lagging client at most this often */
#define SESSION_STACK_SIZE (128 * 1024) /* reserved; RSS is what the deepest path touched */
#define SESSION_TRIM_QUIET_MS 200	/* no events out this long, and... */
#define SESSION_TRIM_WAIT_MS 1000	/* ...a Poll parked this long: trim the stack */
#define SESSION_SCAN_BACK 1000		/* events searched for a JOINED or LEFT */
#define POLL_WAIT_MAX_MS 30000
#define POLL_DEFAULT_EVENTS 100
#define POLL_MAX_EVENTS 1000		/* larger max_events is taken as this */
#define POLL_REPLY_BYTES (1024 * 1024)	/* a reply stops growing past this */
#define POLL_REPLY_MARGIN_MS 200	/* answer this long before the call's deadline */

typedef struct sess_room {
	char id[TIMELINE_ROOM_MAX + 1];
	uint64_t cursor;	/* [worker] last seq taken in */
	uint64_t known_head;	/* [worker] latest seq known to exist */
	unsigned buffered;	/* [worker] events of this room in the buffer */
	bool leaving;		/* [worker] the user left: only up to the removal event */
	bool gone;		/* atomic: the user left; nothing more from here */
	bool rewind_set;	/* [mtx] a Poll said the client has up to rewind */
	uint64_t rewind;	/* [mtx] */
} sess_room;

/*
 * One PUB frame as the router parsed it, shared by every session of its
 * room: the Event is unpacked once for all of them, and a session keeps a
 * pointer to it, not a copy. Immutable once handed out; freed with its
 * last reference (mx_frame_unref).
 */
typedef struct mx_frame {
	int refs;		/* atomic */
	nng_msg *msg;		/* room_id \0 packed Event */
	size_t off;		/* where the packed Event starts */
	uint64_t seq;		/* 0 for presence */
	uint64_t need;		/* the membership round to pass before delivery */
	char sender[RPC_USER_ID_MAX];
} mx_frame;

void mx_frame_unref(mx_frame *f);

/* The room id a frame is about (its topic). */
static inline const char *
mx_frame_room(const mx_frame *f)
{
	return (const char *)nng_msg_body(f->msg);
}

/* The size of its packed Event. */
static inline size_t
mx_frame_len(const mx_frame *f)
{
	return nng_msg_len(f->msg) - f->off;
}

typedef struct sess_event {
	mx_frame *f;		/* one reference */
	uint16_t room;
} sess_event;

#define SESSION_TOKEN_HASH 32	/* BLAKE2b-256 of the token that opened it */

struct mx_session {
	messaging_service *m;
	mx_sessions *ss;
	char id[SESSION_ID_LEN + 1];
	char user[RPC_USER_ID_MAX];
	/* The session belongs to the login (token) that opened it: only that
	 * token may Poll or Close it, and a reply with events goes out only
	 * while that token is still valid. Only a hash is kept. */
	uint8_t token_hash[SESSION_TOKEN_HASH];
	int refs;			/* atomic */
	mx_session *next;		/* registry bucket chain, under the registry lock */
	mx_session *user_next;		/* the user's sessions, under the registry lock */
	bool registered;		/* under the registry lock */

	pthread_mutex_t mtx;
	pthread_cond_t cv;		/* anything below changed */
	mx_frame **inbox;		/* [mtx] frames from the router, in order */
	unsigned inbox_len, inbox_cap;	/* [mtx] allocated on demand, taken whole */
	bool inbox_overflow;		/* [mtx] frames were dropped here */
	bool heal;			/* [mtx] the router saw frames lost: re-read heads */
	bool want_frames;		/* [mtx] the worker waits for the next frame */
	rpc_call *poll;			/* [mtx] the waiting Poll, if any */
	int64_t poll_deadline;		/* [mtx] answer it by then (monotonic ms) */
	uint32_t poll_max;		/* [mtx] its max_events */
	bool poll_new;			/* [mtx] a Poll arrived: re-read heads */
	bool closing;			/* [mtx] Close or shutdown asked */
	bool dead;			/* [mtx] the worker ended */
	int64_t last_active;		/* [mtx] last Poll arrival or answer */
	char (*joins)[TIMELINE_ROOM_MAX + 1]; /* [mtx] rooms the user joined, to add */
	unsigned njoins;		/* [mtx] at most SESSION_MAX_ROOMS */

	bool routed;			/* in the router: frames may arrive */

	/* [worker] */
	sess_event *buf;		/* ring, allocated while not empty */
	unsigned buf_head, buf_len, buf_cap;
	size_t buf_bytes;
	bool check_heads;
	int64_t last_reply;		/* when the last events went out */
	bool lagging;			/* the last Poll found events waiting for it */
	unsigned rr;			/* round robin start for LMDB reads */
	bool stack_deep;		/* it worked since its stack was last trimmed */
	uintptr_t stack_lo;		/* its stack's lowest address; 0 unknown yet */

	/* The rooms: slots never move (the router keeps indexes into them);
	 * the worker adds slots under mtx, so handlers read them under mtx. */
	unsigned nrooms;		/* [mtx] written by the worker only */
	unsigned rooms_cap;
	sess_room **rooms;
};

/* ---- session.c ------------------------------------------------------------ */

/*
 * A new session of user over req's rooms with heads[i] the head of room i;
 * holds one reference for the caller. The router delivers to it already;
 * the worker is not running yet. NULL with st set on failure.
 */
mx_session *session_create(messaging_service *m, mx_sessions *ss, const char *user,
			   const char *token, const Parley__V1__OpenRequest *req,
			   const uint64_t *heads, rpc_status *st);

/* Hashes a token as sessions keep it. */
void session_token_hash(const char *token, uint8_t out[SESSION_TOKEN_HASH]);

/* True if token is the one that opened s (constant time). */
bool session_token_matches(const mx_session *s, const char *token)
	__attribute__((warn_unused_result));

/* Starts the worker (it takes its own reference). false if it cannot. */
bool session_run(mx_session *s);

void session_ref(mx_session *s);
void session_unref(mx_session *s);

/*
 * Hands a Poll to the worker: RPC_DEFERRED. A Poll already waiting is
 * answered empty (the newer one wins). acked[i] (n of them) is the last
 * seq the client has of room room[i] (an index into s->rooms): a room the
 * session has sent further is rewound to it, so events of a lost reply
 * come again. RPC_NOT_FOUND if the session is closing or ended.
 */
rpc_code session_attach_poll(mx_session *s, rpc_call *call, uint32_t wait_ms, uint32_t max,
			     const unsigned *room, const uint64_t *acked, unsigned n);

/* The index of room_id in s->rooms, or -1 (takes s->mtx). */
int session_room_index(mx_session *s, const char *room_id);

/* Asks the worker to end (Close, or shutdown); it answers a waiting Poll
 * empty and leaves the rooms' presence (OFFLINE where it was the user's
 * last session). false if already asked. */
bool session_close(mx_session *s);

/* A frame of one of s's rooms, from the router (which holds its lock);
 * takes one reference of f. NULL stands for a frame lost on the way.
 * Never blocks. */
void session_deliver(mx_session *s, mx_frame *f);

/* The router saw frames of one of s's rooms lost on the way: the worker
 * re-reads the heads. Never blocks. */
void session_heal(mx_session *s);

/* s's user joined room_id (the feed applied the JOINED): the worker adds
 * the room, starting at that event. Nothing if s covers it already or
 * cannot take more rooms. */
void session_follow(mx_session *s, const char *room_id);

/* ---- shared by session.c and session_reply.c (the worker) ----------------- */

static inline bool
session_is_gone(const sess_room *r)
{
	return __atomic_load_n(&r->gone, __ATOMIC_ACQUIRE);
}

static inline bool
session_behind(const sess_room *r)
{
	return !session_is_gone(r) && r->known_head > r->cursor;
}

unsigned session_rooms_behind(const mx_session *s);
void session_buf_pop(mx_session *s);
void session_buf_remove_room(mx_session *s, unsigned room);
/* Drops room from the session: the user is no longer a member. */
void session_drop_room(mx_session *s, unsigned room);

/* The seq of the latest membership event of s's user in room above floor
 * (at most SESSION_SCAN_BACK back from the head): a JOINED if joined, else
 * a LEFT, KICKED or BANNED. 0 if none. */
uint64_t session_find_membership(mx_session *s, store_txn *txn, const char *room,
				 uint64_t floor, bool joined);

/* The user joined room_id (the feed applied the JOINED): the session
 * covers it from that JOINED event on. A room the session has and has not
 * left is left alone; the slot of a room it left is used again. */
void session_follow_room(mx_session *s, const char *room_id);

/* Builds and sends the reply to call (session_reply.c). false, without
 * answering, when there turned out to be nothing to send and the call may
 * wait on. */
bool session_answer_poll(mx_session *s, rpc_call *call, uint32_t max, bool may_wait);

/* ---- sessions.c (for the worker) ------------------------------------------- */

/* Takes s out of the registry if it is still there. */
void sessions_unregister(mx_sessions *ss, mx_session *s);

/* The worker's last word: one fewer running, and one fewer of user's
 * unless sessions_unregister gave that back already (unregistered: the
 * session was registered, as every session whose worker ran was). user is
 * kept alive by the caller (s may be gone). Touches nothing of s. */
void sessions_worker_done(mx_sessions *ss, const char *user, bool unregistered);

#endif

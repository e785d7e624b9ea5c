/*
 * parley.h — libparley-client: Parley's services behind a small C API.
 *
 * A parley_conn holds one rpc_client per service (auth, rooms, history,
 * messaging) and the session token of the user it acts for. Every call is
 * blocking and returns an rpc_code; on failure the rpc_status says why.
 * Calls on one parley_conn may be made from several threads at once: the
 * token is guarded by the connection's lock and every rpc call has its own
 * nng context.
 *
 * A call whose connection drops before the answer is sent again on the
 * next connection only if running it twice is the same as once (reads,
 * Close, a Send with its client_msg_id). Any other call (Register, Login,
 * CreateRoom, JoinRoom, LeaveRoom, Open, ...) then fails UNAVAILABLE with
 * a message saying it may already have taken effect: never run twice.
 *
 * Every reply is checked before it is handed out: strings are valid UTF-8,
 * messages a reply cannot do without are present, history comes in seq order
 * for the room asked. A reply that fails a check is RPC_INTERNAL. Strings are
 * NOT made safe for a terminal here: see the CLI's output.c for that.
 *
 * Replies are the generated protobuf-c messages. Unless a function says
 * otherwise, a reply stored in *out on RPC_OK is owned by the caller, who
 * frees it with parley_free(); on failure *out is NULL. `out` may be NULL
 * when the caller does not want the reply.
 *
 * parley_follow (the bottom of this file) turns Open/Poll/Close into a
 * stream of events that survives dropped connections and server restarts:
 * it remembers the last seq it delivered per room and reopens the session
 * from there, so nothing is missed and nothing is delivered twice.
 */
#ifndef PARLEY_CLIENT_H
#define PARLEY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/events.pb-c.h"
#include "parley/v1/health.pb-c.h"
#include "parley/v1/history.pb-c.h"
#include "parley/v1/messaging.pb-c.h"
#include "parley/v1/rooms.pb-c.h"

#define PARLEY_URL_MAX 256
#define PARLEY_TOKEN_MAX 256	   /* longest token accepted from a server, with NUL */
#define PARLEY_SESSION_ID_MAX 256  /* longest messaging session id, with NUL */
#define PARLEY_CLIENT_MSG_ID_LEN 32 /* hex characters of a generated client_msg_id */
#define PARLEY_DEFAULT_TIMEOUT_MS 10000
#define PARLEY_HISTORY_MAX 500	   /* the most events one GetHistory returns */

/* Default ports of the all-in-one daemon (DESIGN.md, "Endpoints"). */
#define PARLEY_PORT_AUTH 5201
#define PARLEY_PORT_ROOMS 5202
#define PARLEY_PORT_HISTORY 5203
#define PARLEY_PORT_MESSAGING 5204

typedef enum parley_service {
	PARLEY_AUTH,
	PARLEY_ROOMS,
	PARLEY_HISTORY,
	PARLEY_MESSAGING,
	PARLEY_NSERVICES
} parley_service;

/* "auth", "rooms", "history", "messaging". */
const char *parley_service_name(parley_service s);

/* Frees a reply returned by any call below; NULL is fine. */
void parley_free(void *reply);

/* True for codes after which the same call may succeed if tried again:
 * UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, RESOURCE_EXHAUSTED. */
bool parley_code_transient(rpc_code code);

/* Endpoints ---------------------------------------------------------------- */

typedef struct parley_endpoints {
	char url[PARLEY_NSERVICES][PARLEY_URL_MAX];
} parley_endpoints;

/* Sets every service from one server: "HOST" (each service at its default
 * port), "HOST:PORT" (PORT is the base: auth at PORT, rooms PORT+1, history
 * PORT+2, messaging PORT+3), or either as a tcp:// or tls+tcp:// URL.
 * NULL or "" means 127.0.0.1. An IPv6 address may be bracketed, and must be
 * to carry a port. INVALID_ARGUMENT, saying what is accepted, for anything
 * else. */
rpc_code parley_endpoints_for_host(parley_endpoints *ep, const char *host, rpc_status *st);

/* Sets one service's address (an nng URL such as tcp://10.0.0.5:5204). */
rpc_code parley_endpoints_set(parley_endpoints *ep, parley_service s, const char *url,
			      rpc_status *st);

/* Applies PARLEY_AUTH, PARLEY_ROOMS, PARLEY_HISTORY and PARLEY_MESSAGING
 * from the environment, where set and non-empty. */
rpc_code parley_endpoints_from_env(parley_endpoints *ep, rpc_status *st);

/* Connection ------------------------------------------------------------- */

typedef struct parley_conn parley_conn;

/* A connection to the endpoints in ep (copied; INVALID_ARGUMENT for one
 * that is not a URL). Each service is dialled on its first call, and no
 * call waits for a server to come up beyond its timeout: a server that is
 * down shows as UNAVAILABLE. On RPC_OK *cp is owned by the caller; free it
 * with parley_disconnect. */
rpc_code parley_connect(parley_conn **cp, const parley_endpoints *ep, rpc_status *st);

/*
 * TLS for tls+tcp:// and wss:// endpoints, for the whole process (rpc's
 * tls.h): servers must present a certificate that ca_file (PEM; NULL: the
 * system's CA bundle) trusts and that names the URL's host; cert_file and
 * key_file (both or neither) are a client certificate for servers that
 * require one. Applies to connections made after it. INVALID_ARGUMENT,
 * naming the file, for one that cannot be used. A server that fails the
 * checks makes calls fail FAILED_PRECONDITION saying why. Starts nng's
 * threads: a program that waits for signals blocks them before.
 */
rpc_code parley_tls_configure(const char *ca_file, const char *cert_file, const char *key_file,
			      rpc_status *st);

/* Closes the clients. Does not log out. No call may be running. */
void parley_disconnect(parley_conn *c);

/* The longest an ordinary call waits, retries included (default
 * PARLEY_DEFAULT_TIMEOUT_MS). 0 restores the default. */
void parley_set_timeout(parley_conn *c, uint32_t timeout_ms);
uint32_t parley_timeout(const parley_conn *c);

/* The token sent with later calls; copied. NULL or "" forgets it.
 * INVALID_ARGUMENT if it is not a plausible token. */
rpc_code parley_set_token(parley_conn *c, const char *token, rpc_status *st);
bool parley_has_token(parley_conn *c);

/* The address the connection uses for s; valid until parley_disconnect. */
const char *parley_endpoint(const parley_conn *c, parley_service s);

/* Health/Check on the endpoint of s; *serving receives the status. */
rpc_code parley_health(parley_conn *c, parley_service s, uint32_t timeout_ms,
		       Parley__V1__HealthCheckResponse__ServingStatus *serving,
		       rpc_status *st);

/* Auth ------------------------------------------------------------------- */

/* display_name NULL or "" means the user id; email may be NULL. */
rpc_code parley_register(parley_conn *c, const char *user_id, const char *password,
			 const char *display_name, const char *email,
			 Parley__V1__RegisterResponse **out, rpc_status *st);

/* On RPC_OK the connection keeps the new token for later calls. */
rpc_code parley_login(parley_conn *c, const char *user_id, const char *password,
		      Parley__V1__LoginResponse **out, rpc_status *st);

/* Revokes the connection's token. The connection forgets it on RPC_OK and
 * on UNAUTHENTICATED (it was no longer valid anyway). */
rpc_code parley_logout(parley_conn *c, rpc_status *st);

/* Rooms ------------------------------------------------------------------ */

/* One page; page_token NULL or "" for the first. */
rpc_code parley_rooms_list(parley_conn *c, uint32_t page_size, const char *page_token,
			   Parley__V1__ListRoomsResponse **out, rpc_status *st);
/* name and topic may be NULL. */
rpc_code parley_room_create(parley_conn *c, const char *room_id, const char *name,
			    const char *topic, Parley__V1__CreateRoomResponse **out,
			    rpc_status *st);
rpc_code parley_room_get(parley_conn *c, const char *room_id, Parley__V1__GetRoomResponse **out,
			 rpc_status *st);
rpc_code parley_room_join(parley_conn *c, const char *room_id,
			  Parley__V1__JoinRoomResponse **out, rpc_status *st);
rpc_code parley_room_leave(parley_conn *c, const char *room_id, rpc_status *st);
rpc_code parley_rooms_mine(parley_conn *c, Parley__V1__ListMyRoomsResponse **out,
			   rpc_status *st);

/* Messages --------------------------------------------------------------- */

/* Writes a fresh random client_msg_id (PARLEY_CLIENT_MSG_ID_LEN hex
 * characters and a NUL) into id. */
void parley_new_client_msg_id(char id[PARLEY_CLIENT_MSG_ID_LEN + 1]);

/*
 * Sends text to room_id. client_msg_id NULL means a fresh random one. The
 * call is retried with the same client_msg_id on transient failures until
 * the connection's timeout has passed, so the server stores the message at
 * most once whatever happens to the connection.
 */
rpc_code parley_send(parley_conn *c, const char *room_id, const char *text,
		     const char *client_msg_id, Parley__V1__SendResponse **out, rpc_status *st);

/* Each try of a send waits at most this long; then it is tried again. */
#define PARLEY_SEND_TRY_MS 2000

/*
 * parley_send with its own deadline (monotonic ms, rpc_now_ms) instead of
 * the connection's timeout, each try at most PARLEY_SEND_TRY_MS, and a
 * cancel flag (may be NULL) read between tries: once set, the send stops
 * with CANCELLED (the message may or may not have been stored).
 */
rpc_code parley_send_until(parley_conn *c, const char *room_id, const char *text,
			   const char *client_msg_id, int64_t deadline_ms, const bool *cancel,
			   Parley__V1__SendResponse **out, rpc_status *st);

/* At most this many messages in one parley_send_batch (the server's limit). */
#define PARLEY_SEND_BATCH_MAX 100

/*
 * Sends n messages (room_ids[i], texts[i], client_msg_ids[i], each id set:
 * parley_new_client_msg_id) in one SendBatch call: written in order in one
 * transaction, each room's messages with consecutive seqs. Retried as
 * parley_send is, within the connection's timeout. (*out)->results[i] is
 * message i's seq and time.
 */
rpc_code parley_send_batch(parley_conn *c, size_t n, const char *const *room_ids,
			   const char *const *texts, const char *const *client_msg_ids,
			   Parley__V1__SendBatchResponse **out, rpc_status *st);

/* The server's rule for user ids, checked before asking for a password:
 * 3-32 characters of a-z 0-9 _ . - starting with a letter or digit. */
#define PARLEY_USER_ID_RULE "3 to 32 characters of a-z 0-9 _ . - starting with a letter or digit"
bool parley_user_id_valid(const char *s);

/* GetHistory: at most one of before_seq and after_seq non-zero; limit 0 is
 * the server's default. Events come checked: this room, ascending seq. */
rpc_code parley_history(parley_conn *c, const char *room_id, uint64_t before_seq,
			uint64_t after_seq, uint32_t limit, Parley__V1__GetHistoryResponse **out,
			rpc_status *st);

/* Sessions: the raw calls. Most programs want parley_follow instead. */
typedef struct parley_cursor {
	const char *room_id;
	uint64_t since_seq; /* deliver events with seq > since_seq */
} parley_cursor;

rpc_code parley_session_open(parley_conn *c, const parley_cursor *rooms, size_t n,
			     Parley__V1__OpenResponse **out, rpc_status *st);
/* Waits up to wait_ms (at most 30000) for events. */
rpc_code parley_session_poll(parley_conn *c, const char *session_id, uint32_t wait_ms,
			     uint32_t max_events, Parley__V1__PollResponse **out,
			     rpc_status *st);
rpc_code parley_session_close(parley_conn *c, const char *session_id, uint32_t timeout_ms,
			      rpc_status *st);

/* Profiles, moderation, direct rooms, edits, typing, unread (social.c) ----
 * Same rules as the calls above: blocking, *out owned by the caller.
 * Errors: what the server says, with its message: UNAUTHENTICATED (no or
 * an ended session), PERMISSION_DENIED (not a member, a role too low, a
 * wrong password), NOT_FOUND (no such user, room or message),
 * INVALID_ARGUMENT (a bad id, name, text or reason), FAILED_PRECONDITION
 * (moderation in a direct room, editing a deleted message),
 * RESOURCE_EXHAUSTED (rate limits); UNAVAILABLE or DEADLINE_EXCEEDED when
 * the server cannot be reached in time; INTERNAL for a reply that fails
 * its checks. Only reads, MarkRead, SetTyping and Edit/Delete (which carry
 * a client_msg_id) are sent again after a dropped connection. */

/* Auth. Empty or NULL fields of UpdateProfile are left unchanged. */
rpc_code parley_update_profile(parley_conn *c, const char *display_name, const char *email,
			       Parley__V1__UpdateProfileResponse **out, rpc_status *st);
rpc_code parley_change_password(parley_conn *c, const char *old_password,
				const char *new_password, rpc_status *st);
/* On RPC_OK the connection forgets its token (every session is revoked). */
rpc_code parley_delete_account(parley_conn *c, const char *password, rpc_status *st);
/* At most PARLEY_GET_USERS_MAX ids; unknown ids are left out of the reply.
 * timeout_ms 0: the connection's. */
#define PARLEY_GET_USERS_MAX 100
rpc_code parley_get_users(parley_conn *c, const char *const *user_ids, size_t n,
			  uint32_t timeout_ms, Parley__V1__GetUsersResponse **out, rpc_status *st);

/* Rooms. reason may be NULL; name or topic NULL or "" is left unchanged. */
rpc_code parley_members_list(parley_conn *c, const char *room_id, uint32_t page_size,
			     const char *page_token, Parley__V1__ListMembersResponse **out,
			     rpc_status *st);
rpc_code parley_room_update(parley_conn *c, const char *room_id, const char *name,
			    const char *topic, Parley__V1__UpdateRoomResponse **out,
			    rpc_status *st);
rpc_code parley_set_role(parley_conn *c, const char *room_id, const char *user_id,
			 Parley__V1__Role role, rpc_status *st);
rpc_code parley_kick(parley_conn *c, const char *room_id, const char *user_id,
		     const char *reason, rpc_status *st);
rpc_code parley_ban(parley_conn *c, const char *room_id, const char *user_id,
		    const char *reason, rpc_status *st);
rpc_code parley_unban(parley_conn *c, const char *room_id, const char *user_id,
		      rpc_status *st);
rpc_code parley_invite(parley_conn *c, const char *room_id, const char *user_id,
		       rpc_status *st);
rpc_code parley_open_direct(parley_conn *c, const char *user_id,
			    Parley__V1__OpenDirectResponse **out, rpc_status *st);

/* Messaging. Edit and Delete carry a fresh client_msg_id: a retry after a
 * dropped connection is answered with the original result. */
rpc_code parley_edit(parley_conn *c, const char *room_id, uint64_t seq, const char *text,
		     Parley__V1__EditResponse **out, rpc_status *st);
rpc_code parley_delete(parley_conn *c, const char *room_id, uint64_t seq,
		       Parley__V1__DeleteResponse **out, rpc_status *st);
rpc_code parley_set_typing(parley_conn *c, const char *room_id, bool typing,
			   uint32_t timeout_ms, rpc_status *st);
rpc_code parley_mark_read(parley_conn *c, const char *room_id, uint64_t seq,
			  uint32_t timeout_ms, rpc_status *st);
/* Every room of the caller (n 0) or the ones named. */
rpc_code parley_get_unread(parley_conn *c, const char *const *room_ids, size_t n,
			   uint32_t timeout_ms, Parley__V1__GetUnreadResponse **out,
			   rpc_status *st);

/* Following rooms -------------------------------------------------------- */

typedef struct parley_follow parley_follow;

/* Called once per event, in seq order per room. ev belongs to the follower
 * and is valid only during the call. Ephemeral events (presence, seq 0)
 * are passed through as they come. */
typedef void (*parley_event_fn)(const Parley__V1__Event *ev, void *arg);

/*
 * Opens a session over rooms (ids copied), delivering events after each
 * room's since_seq. The session is opened before this returns, so a room
 * the user may not read fails here (PERMISSION_DENIED, NOT_FOUND, ...).
 * On RPC_OK *fp is owned by the caller: parley_follow_free. c must outlive
 * the follower.
 */
rpc_code parley_follow_new(parley_follow **fp, parley_conn *c, const parley_cursor *rooms,
			   size_t n, rpc_status *st);

/*
 * Waits up to about wait_ms for events and passes each new one to fn.
 *
 * A transient failure (parley_code_transient, or NOT_FOUND for a session the
 * server no longer knows, e.g. after a restart) is returned as it is, and
 * the next call opens a new session from the last seq delivered per room,
 * after a short back-off: keep calling. The call that reopens it returns
 * RPC_OK at once (no events), so a caller can say it is back. Any other failure (PERMISSION_DENIED
 * after leaving a room, UNAUTHENTICATED, ...) is final. CANCELLED after
 * parley_follow_cancel. A gap in a room's seqs (which a correct server never
 * sends) is filled from History before later events are delivered.
 *
 * One thread at a time may call parley_follow_poll.
 */
rpc_code parley_follow_poll(parley_follow *f, uint32_t wait_ms, parley_event_fn fn, void *arg,
			    rpc_status *st);

/* Called from parley_follow_poll when the user stops being a member of a
 * followed room (left it from elsewhere, was removed), and again when they
 * are a member once more. ev is the user's own LEFT/KICKED/BANNED or JOINED
 * event that told (its actor and reason say who and why; valid only during
 * the call), or NULL when the slow ListMyRooms check found the change. */
typedef void (*parley_member_fn)(const char *room_id, bool member, const Parley__V1__Event *ev,
				 void *arg);

/* The ListMyRooms check. Membership changes come as events at once; the
 * check is for what no event tells: a change made while no session was
 * open, and a login that ended (a Poll checks its token only when events
 * go out, so an idle session would not say it for long). */
#define PARLEY_WATCH_MS 2000

/*
 * Watches the membership of user `me` (copied) in the followed rooms: their
 * own LEFT/KICKED/BANNED event (the room's last in the session) sets the
 * room aside and is reported to fn at once, after the event itself; their
 * JOINED event (the session adds a room joined anywhere) takes it up again
 * from its last seq, reported before the events. ListMyRooms is also asked
 * at least every every_ms (0: PARLEY_WATCH_MS; a long poll waits no longer
 * than that) for changes no event told. PERMISSION_DENIED no longer ends
 * the follower; UNAUTHENTICATED (the session ended) stays final. Same
 * thread as parley_follow_poll; may be called again (before each poll,
 * say) to change fn or arg without resetting the schedule.
 */
void parley_follow_watch(parley_follow *f, const char *me, uint32_t every_ms, parley_member_fn fn,
			 void *arg);

/* The last seq delivered for room_id (its since_seq before any); 0 for a
 * room the follower does not follow. Same thread as parley_follow_poll. */
uint64_t parley_follow_seq(const parley_follow *f, const char *room_id);

/* Makes the running or next parley_follow_poll return CANCELLED soon: it
 * also closes the session so that a pending long poll ends. Any thread. */
void parley_follow_cancel(parley_follow *f);

/* Closes the session (best effort, briefly) and frees f. NULL is fine. */
void parley_follow_free(parley_follow *f);

#endif

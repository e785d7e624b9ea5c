/*
 * edits.c — the Edit, Delete and SetTyping handlers, and the typing state
 * (see messaging_int.h; the writer applies edits and deletes in
 * writer_ops.c).
 *
 * Typing is ephemeral: a TypingChange event (seq 0, never stored) goes to
 * the room's sessions through the backbone. typing = true lasts
 * TYPING_TTL_MS after the latest one; then the typing thread publishes
 * typing = false by itself. typing = false from a user who is not typing
 * publishes nothing. Each (user, room) has a token bucket: TYPING_BURST
 * calls at once, one more every TYPING_REFILL_MS; beyond that
 * RESOURCE_EXHAUSTED with retry_after_ms.
 *
 * Edits and Deletes are limited per user the same way (an entry with the
 * room "", which no room id is): CHANGE_BURST at once, one more every
 * CHANGE_REFILL_MS. Each one rewrites stored records and a Delete erases
 * its text from the data file (eraser.c): unlimited, one user could keep
 * the writer and the disk busy for everyone.
 *
 * Locking: t->mtx guards the table; events are published while it is
 * held, so that a user's true and false reach the backbone in the order
 * they were decided. Order: t->mtx, then m->pub_mtx. An entry lives while
 * its user types or its bucket is not full again; at most
 * TYPING_ENTRIES_MAX at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "members.h"
#include "messaging_int.h"
#include "parley/v1/rooms.pb-c.h"

#define TYPING_TTL_MS 6000
#define TYPING_BURST 5
#define TYPING_REFILL_MS 1000
#define TYPING_BUCKETS 4096
#define TYPING_ENTRIES_MAX 100000
#define TYPING_TICK_MS 1000
#define CHANGE_BURST 20		/* Edits and Deletes of a user at once */
#define CHANGE_REFILL_MS 250	/* then one more every this long */

struct typing_entry {
	struct typing_entry *next;
	int64_t until;		/* typing until then (monotonic ms); 0 = not typing */
	int64_t refilled;	/* when tokens were last brought up to date */
	unsigned tokens;
	unsigned burst;		/* the bucket's size */
	int64_t refill_ms;	/* one token more every this long */
	char room[TIMELINE_ROOM_MAX + 1];
	char user[RPC_USER_ID_MAX];
};

struct mx_typing {
	messaging_service *m;
	pthread_t thread;
	bool started;
	pthread_mutex_t mtx;
	pthread_cond_t cv;	/* stop, or a new expiry */
	bool stop;
	unsigned n;
	struct typing_entry *buckets[TYPING_BUCKETS];
};

/* ---- Edit and Delete ----------------------------------------------------- */

static rpc_code take_change_token(mx_typing *t, rpc_call *call, const char *what);

static rpc_code
check_target(rpc_call *call, const char *room, uint64_t seq, const char *cmid)
{
	rpc_code code;

	if ((code = svc_check_room_id(call, room)) != RPC_OK)
		return code;
	if (seq == 0)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "seq must name a message (1 or more)");
	if (strlen(cmid) > MX_CLIENT_MSG_ID_MAX)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "client_msg_id must be at most %d bytes", MX_CLIENT_MSG_ID_MAX);
	return RPC_OK;
}

rpc_code
mx_handle_edit(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	const Parley__V1__EditRequest *req = (const void *)reqm;
	messaging_service *m = ctx;
	size_t text_len = strlen(req->text);
	rpc_code code;

	if ((code = check_target(call, req->room_id, req->seq, req->client_msg_id)) != RPC_OK)
		return code;
	if (text_len == 0 || text_len > MX_TEXT_MAX)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "text must be 1 to %d bytes of UTF-8 (got %zu)", MX_TEXT_MAX,
				     text_len);
	if ((code = take_change_token(m->typing, call, "this edit")) != RPC_OK ||
	    (code = members_require(call, m->rooms, req->room_id)) != RPC_OK)
		return code;
	return mx_writer_op(m->writer, call, MX_OP_EDIT, req->room_id, req->text,
			    req->client_msg_id, req->seq, false);
}

/*
 * Whether the caller may delete other users' messages in room: a MODERATOR
 * or ADMIN of it, asked of the rooms service now (nothing cached, so a role
 * taken away counts at once). Fails call and returns the code when rooms
 * cannot say.
 */
static rpc_code
moderates(rpc_call *call, messaging_service *m, const char *room, bool *yes)
{
	rpc_status st = {0};
	bool member;
	int role;

	*yes = false;
	if (members_check_role(m->rooms, room, rpc_call_caller(call), rpc_call_token(call),
			       rpc_call_deadline(call), &member, &role, &st) != RPC_OK)
		return rpc_call_fail_status(call, &st);
	*yes = member && role >= PARLEY__V1__ROLE__MODERATOR;
	return RPC_OK;
}

rpc_code
mx_handle_delete(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		 void *ctx)
{
	const Parley__V1__DeleteRequest *req = (const void *)reqm;
	messaging_service *m = ctx;
	bool moderator = false;
	rpc_code code;

	if ((code = check_target(call, req->room_id, req->seq, req->client_msg_id)) != RPC_OK ||
	    (code = take_change_token(m->typing, call, "this delete")) != RPC_OK)
		return code;
	if ((code = members_require(call, m->rooms, req->room_id)) != RPC_OK)
		return code;
	if ((code = moderates(call, m, req->room_id, &moderator)) != RPC_OK)
		return code;
	return mx_writer_op(m->writer, call, MX_OP_DELETE, req->room_id, NULL, req->client_msg_id,
			    req->seq, moderator);
}

/* ---- typing ---------------------------------------------------------------------- */

static unsigned
bucket_of(const char *room, const char *user)
{
	return mx_pair_hash(room, user) % TYPING_BUCKETS;
}

/* Publishes user's typing state in room (t->mtx held). */
static void
publish_typing(mx_typing *t, const char *room, const char *user, bool typing)
{
	Parley__V1__Event ev = PARLEY__V1__EVENT__INIT;
	Parley__V1__TypingChange tc = PARLEY__V1__TYPING_CHANGE__INIT;

	tc.typing = typing;
	ev.room_id = (char *)room;
	ev.ts_ms = rpc_wall_ms();
	ev.sender = (char *)user;
	ev.body_case = PARLEY__V1__EVENT__BODY_TYPING;
	ev.typing = &tc;
	mx_publish(t->m, mx_event_frame(&ev));
}

static void
refill(struct typing_entry *e, int64_t now)
{
	int64_t gained = (now - e->refilled) / e->refill_ms;

	if (gained <= 0)
		return;
	if (e->tokens + gained >= e->burst) {
		e->tokens = e->burst;
		e->refilled = now;
	} else {
		e->tokens += (unsigned)gained;
		e->refilled += gained * e->refill_ms;
	}
}

/*
 * The entry of (room, user), made with a full bucket of burst tokens if
 * absent (t->mtx held); NULL with the call failed when the table is full.
 */
static struct typing_entry *
entry_of(mx_typing *t, rpc_call *call, const char *room, const char *user, unsigned burst,
	 int64_t refill_ms, int64_t now)
{
	struct typing_entry **pp = &t->buckets[bucket_of(room, user)], *e;

	while (*pp != NULL && (strcmp((*pp)->room, room) != 0 || strcmp((*pp)->user, user) != 0))
		pp = &(*pp)->next;
	if ((e = *pp) != NULL)
		return e;
	if (t->n >= TYPING_ENTRIES_MAX || (e = calloc(1, sizeof(*e))) == NULL) {
		rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED,
			      "too many users typing, editing or deleting at once; try again "
			      "shortly");
		rpc_call_retry_after(call, (uint32_t)refill_ms);
		return NULL;
	}
	snprintf(e->room, sizeof(e->room), "%s", room);
	snprintf(e->user, sizeof(e->user), "%s", user);
	e->tokens = e->burst = burst;
	e->refill_ms = refill_ms;
	e->refilled = now;
	*pp = e;
	t->n++;
	return e;
}

/* Milliseconds until e has a token again (t->mtx held; e->tokens == 0). */
static uint32_t
token_wait(const struct typing_entry *e, int64_t now)
{
	int64_t wait = e->refilled + e->refill_ms - now;

	return (uint32_t)(wait > 0 ? wait : 1);
}

/* RPC_OK, or the refusal (call failed). */
static rpc_code
set_typing(mx_typing *t, rpc_call *call, const char *room, const char *user, bool typing)
{
	struct typing_entry *e;
	int64_t now = rpc_now_ms();
	rpc_code code = RPC_OK;

	pthread_mutex_lock(&t->mtx);
	if ((e = entry_of(t, call, room, user, TYPING_BURST, TYPING_REFILL_MS, now)) == NULL) {
		code = RPC_RESOURCE_EXHAUSTED;
		goto done;
	}
	refill(e, now);
	if (e->tokens == 0) {
		uint32_t wait = token_wait(e, now);

		code = rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED,
				     "at most %d typing notices per room at once, then one a "
				     "second; try again in %u ms",
				     TYPING_BURST, wait);
		rpc_call_retry_after(call, wait);
		goto done;
	}
	e->tokens--;
	if (typing) {
		e->until = now + TYPING_TTL_MS;
		publish_typing(t, room, user, true);
		pthread_cond_signal(&t->cv);
	} else if (e->until != 0) {
		e->until = 0;
		publish_typing(t, room, user, false);
	}
done:
	pthread_mutex_unlock(&t->mtx);
	return code;
}

/* Takes one of the caller's Edit/Delete tokens: RPC_OK, or the refusal
 * (RESOURCE_EXHAUSTED with retry_after_ms; call failed). */
static rpc_code
take_change_token(mx_typing *t, rpc_call *call, const char *what)
{
	struct typing_entry *e;
	int64_t now = rpc_now_ms();
	rpc_code code = RPC_OK;

	pthread_mutex_lock(&t->mtx);
	e = entry_of(t, call, "", rpc_call_caller(call), CHANGE_BURST, CHANGE_REFILL_MS, now);
	if (e == NULL) {
		code = RPC_RESOURCE_EXHAUSTED;
		goto done;
	}
	refill(e, now);
	if (e->tokens == 0) {
		uint32_t wait = token_wait(e, now);

		code = rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED,
				     "too many edits and deletes: at most %d at once, then %d a "
				     "second; %s refused, try again in %u ms",
				     CHANGE_BURST, 1000 / CHANGE_REFILL_MS, what, wait);
		rpc_call_retry_after(call, wait);
		goto done;
	}
	e->tokens--; /* the sweep frees the entry once its bucket is full again */
done:
	pthread_mutex_unlock(&t->mtx);
	return code;
}

rpc_code
mx_handle_set_typing(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		     void *ctx)
{
	const Parley__V1__SetTypingRequest *req = (const void *)reqm;
	messaging_service *m = ctx;
	rpc_code code;

	if ((code = svc_check_room_id(call, req->room_id)) != RPC_OK)
		return code;
	if ((code = members_require(call, m->rooms, req->room_id)) != RPC_OK)
		return code;
	return set_typing(m->typing, call, req->room_id, rpc_call_caller(call), req->typing);
}

/* Ends lapsed typing (publishing typing = false) and frees idle entries;
 * returns the next expiry (t->mtx held). */
static int64_t
sweep(mx_typing *t, int64_t now)
{
	int64_t next = now + TYPING_TICK_MS;

	for (unsigned b = 0; b < TYPING_BUCKETS; b++) {
		struct typing_entry **pp = &t->buckets[b];

		while (*pp != NULL) {
			struct typing_entry *e = *pp;

			if (e->until != 0 && e->until <= now) {
				e->until = 0;
				publish_typing(t, e->room, e->user, false);
			}
			refill(e, now);
			if (e->until == 0 && e->tokens == e->burst) {
				*pp = e->next;
				free(e);
				t->n--;
				continue;
			}
			if (e->until != 0 && e->until < next)
				next = e->until;
			pp = &e->next;
		}
	}
	return next;
}

static void *
typing_main(void *arg)
{
	mx_typing *t = arg;

	pthread_mutex_lock(&t->mtx);
	while (!t->stop) {
		int64_t next = t->n > 0 ? sweep(t, rpc_now_ms()) : rpc_now_ms() + TYPING_TICK_MS;

		rpc_cond_wait_until(&t->cv, &t->mtx, next);
	}
	pthread_mutex_unlock(&t->mtx);
	return NULL;
}

int
mx_typing_start(messaging_service *m, mx_typing **out, rpc_status *st)
{
	mx_typing *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	t->m = m;
	pthread_mutex_init(&t->mtx, NULL);
	rpc_cond_init(&t->cv);
	if (pthread_create(&t->thread, NULL, typing_main, t) != 0) {
		mx_typing_stop(t);
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "cannot start the typing thread");
	}
	t->started = true;
	*out = t;
	return RPC_OK;
}

void
mx_typing_stop(mx_typing *t)
{
	if (t == NULL)
		return;
	pthread_mutex_lock(&t->mtx);
	t->stop = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mtx);
	if (t->started)
		pthread_join(t->thread, NULL);
	for (unsigned b = 0; b < TYPING_BUCKETS; b++)
		while (t->buckets[b] != NULL) {
			struct typing_entry *e = t->buckets[b];

			t->buckets[b] = e->next;
			free(e);
		}
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mtx);
	free(t);
}

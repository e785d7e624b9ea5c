/*
 * poller.c — the interactive chat's poller thread; see ui.h for the threads
 * and the locking rule.
 *
 * The follower in u->follow is used only by the poller; main creates one
 * (the session opens in main, so errors show at /join), hands it over under
 * the lock and takes it back by bumping gen. Lines of an older gen are
 * dropped: nothing of a room shows after leaving it. A follower is freed by
 * whoever holds it last: main if the poller is not inside it, else the
 * poller once its poll returns (main cancels it first, under the lock).
 *
 * The follower watches the user's membership: a room left from elsewhere
 * comes to main as Q_AWAY at once (from the user's own LEFT/KICKED/BANNED
 * event: who and why), and as Q_BACK when the user is a member again (their
 * JOINED event; the room's events then resume where they stopped). A session that ended
 * (UNAUTHENTICATED) comes as Q_ENDED; the follower is dropped then.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ui.h"

#define POLL_WAIT_MS 10000
#define QUEUE_MAX 5000 /* lines waiting for the terminal; the poller waits beyond */

#define FRESH_MAX 16 /* senders whose names were asked afresh this turn */

typedef struct batch {
	const char *me;
	ui *u;
	qline *head, *tail;
	char fresh[FRESH_MAX][RPC_USER_ID_MAX + 1];
	size_t n_fresh;
} batch;

/* The sender's display name as it is now, asked once per poll turn (a
 * /nick has no event of its own). */
static void
refresh_name(batch *b, const char *id)
{
	for (size_t i = 0; i < b->n_fresh; i++)
		if (strcmp(b->fresh[i], id) == 0)
			return;
	names_fetch(b->u->names, &id, 1, true);
	if (b->n_fresh < FRESH_MAX && strlen(id) <= RPC_USER_ID_MAX)
		snprintf(b->fresh[b->n_fresh++], sizeof(b->fresh[0]), "%s", id);
}

/* The line added, or NULL when out of memory (it is dropped). */
static qline *
batch_add(batch *b, qkind kind, const char *text, size_t len, const char *msg_id)
{
	qline *l = calloc(1, sizeof(*l) + len + 1);

	if (l == NULL)
		return NULL;
	l->kind = kind;
	snprintf(l->msg_id, sizeof(l->msg_id), "%s", msg_id ? msg_id : "");
	memcpy(l->text, text, len);
	l->text[len] = '\0';
	l->next = NULL;
	if (b->tail != NULL)
		b->tail->next = l;
	else
		b->head = l;
	b->tail = l;
	return l;
}

void
qline_free(qline *l)
{
	while (l != NULL) {
		qline *next = l->next;
		free(l);
		l = next;
	}
}

static bool
id_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
	       ch == '.';
}

/* Whether text names @me as a word, as the server counts mentions
 * (unread.c): "@alice," and "(@alice.)" yes; "@alicex", "mail@alice" no. */
static bool
mentions(const char *text, const char *me)
{
	size_t n = strlen(me);

	for (const char *p = strchr(text, '@'); p != NULL; p = strchr(p + 1, '@')) {
		char after = p[1 + n];

		if (p > text && (id_char(p[-1]) || p[-1] == '@'))
			continue;
		if (strncmp(p + 1, me, n) == 0 &&
		    !((after >= 'a' && after <= 'z') || (after >= '0' && after <= '9') ||
		      after == '_' || after == '-' || (after == '.' && p[2 + n] > ' ')))
			return true;
	}
	return false;
}

/* Bold and reverse around each "@me" of a terminal-safe line (which has no
 * escape of its own). */
static void
highlight(strbuf *sb, const char *me)
{
	strbuf out = {0};
	char at[RPC_USER_ID_MAX + 2];
	const char *p = sb_str(sb), *hit;

	snprintf(at, sizeof(at), "@%s", me);
	while ((hit = strstr(p, at)) != NULL) {
		sb_put(&out, p, (size_t)(hit - p));
		sb_puts(&out, "\033[1;7m");
		sb_puts(&out, at);
		sb_puts(&out, "\033[0m");
		p = hit + strlen(at);
	}
	sb_puts(&out, p);
	if (!out.oom) {
		sb_free(sb);
		*sb = out;
	} else {
		sb_free(&out);
	}
}

static void
collect(const Parley__V1__Event *ev, void *arg)
{
	batch *b = arg;
	cli_names nm = {.put = names_put, .arg = b->u->names};
	bool message = ev->body_case == PARLEY__V1__EVENT__BODY_MESSAGE && ev->message != NULL;
	strbuf sb = {0};

	/* One's own comings and goings online are no news. */
	if (ev->body_case == PARLEY__V1__EVENT__BODY_PRESENCE && strcmp(ev->sender, b->me) == 0)
		return;
	if (ev->body_case == PARLEY__V1__EVENT__BODY_TYPING && ev->typing != NULL) {
		qline *l;

		if (strcmp(ev->sender, b->me) != 0) {
			names_fetch(b->u->names, (const char *const *)&ev->sender, 1, false);
			l = batch_add(b, Q_TYPING, ev->sender, strlen(ev->sender), NULL);
			if (l != NULL)
				l->typing = ev->typing->typing;
		}
		return;
	}
	if (message)
		refresh_name(b, ev->sender);
	cli_event_line_as(&sb, ev, false, &nm);
	if (sb.len > 0 && !sb.oom) {
		bool mine = message && strcmp(ev->sender, b->me) == 0;
		bool mention = message && !mine && mentions(ev->message->text, b->me);
		qline *l;

		if (mention && b->u->tty)
			highlight(&sb, b->me);
		l = batch_add(b, Q_LINE, sb_str(&sb), sb.len,
			      message ? ev->message->client_msg_id : NULL);
		if (l != NULL) {
			l->seq = ev->seq;
			l->mine = mine;
			l->mention = mention;
		}
		/* A typer whose message came has stopped typing. */
		if (message && !mine)
			batch_add(b, Q_TYPING, ev->sender, strlen(ev->sender), NULL);
	}
	sb_free(&sb);
}

/* The words are made here, where the event (actor, reason) still is. */
static void
membership(const char *room_id, bool member, const Parley__V1__Event *ev, void *arg)
{
	batch *b = arg;
	cli_names nm = {.put = names_put, .arg = b->u->names};
	strbuf sb = {0};
	qline *l;

	sb_puts(&sb, "* ");
	cli_member_words(&sb, room_id, member, ev, &nm);
	if (!member)
		sb_puts(&sb, "; it comes back here if you join it again");
	if (sb.oom) {
		sb_free(&sb);
		return;
	}
	l = batch_add(b, member ? Q_BACK : Q_AWAY, sb_str(&sb), sb.len, NULL);
	if (l != NULL)
		snprintf(l->room, sizeof(l->room), "%s", room_id);
	sb_free(&sb);
}

void
wake_main(ui *u, char why)
{
	while (write(u->wake[1], &why, 1) < 0 && errno == EINTR)
		;
}

/* Appends the lines of b to the queue (u->mtx held), waiting for room while
 * the terminal falls behind. */
static void
enqueue(ui *u, batch *b, uint64_t gen)
{
	while (b->head != NULL) {
		qline *l = b->head;

		while (u->q_len >= QUEUE_MAX && !u->stop && u->gen == gen)
			pthread_cond_wait(&u->cv, &u->mtx);
		if (u->stop || u->gen != gen)
			return;
		b->head = l->next;
		l->next = NULL;
		if (u->q_tail != NULL)
			u->q_tail->next = l;
		else
			u->q_head = l;
		u->q_tail = l;
		u->q_len++;
	}
	b->tail = NULL;
}

static void
enqueue_one(ui *u, qkind kind, const char *text, uint64_t gen)
{
	batch b = {0};

	batch_add(&b, kind, text, strlen(text), NULL);
	enqueue(u, &b, gen);
	qline_free(b.head);
}

static void *
poller_main(void *arg)
{
	ui *u = arg;

	pthread_mutex_lock(&u->mtx);
	while (!u->stop) {
		parley_follow *f = u->follow, *dead = NULL;
		uint64_t gen = u->gen;
		char me[sizeof(u->me)];
		batch b = {.me = me, .u = u};
		rpc_status st;
		rpc_code code;

		if (f == NULL) {
			pthread_cond_wait(&u->cv, &u->mtx);
			continue;
		}
		memcpy(me, u->me, sizeof(me));
		u->busy = f;
		pthread_mutex_unlock(&u->mtx);

		parley_follow_watch(f, me, 0, membership, &b);
		code = parley_follow_poll(f, POLL_WAIT_MS, collect, &b, &st);

		pthread_mutex_lock(&u->mtx);
		u->busy = NULL;
		if (u->zombie == f) {
			u->zombie = NULL;
			dead = f;
		}
		if (u->gen == gen && !u->stop) {
			if (code == RPC_OK && u->down) {
				enqueue_one(u, Q_NOTE, "* reconnected", gen);
				u->down = false;
			}
			enqueue(u, &b, gen);
			if (parley_code_transient(code) || code == RPC_NOT_FOUND) {
				if (!u->down)
					enqueue_one(u, Q_NOTE, "* connection lost; reconnecting...", gen);
				u->down = true;
			} else if (code == RPC_UNAUTHENTICATED) {
				enqueue_one(u, Q_ENDED, st.message, gen);
				u->follow = NULL;
				dead = f;
			} else if (code != RPC_OK && code != RPC_CANCELLED) {
				strbuf sb = {0};

				cli_error_words(&sb, code, st.message);
				enqueue_one(u, Q_NOTE, sb_str(&sb), gen);
				sb_free(&sb);
				u->follow = NULL;
				dead = f;
			}
			wake_main(u, 'e');
		}
		qline_free(b.head);
		if (dead != NULL) {
			pthread_mutex_unlock(&u->mtx);
			parley_follow_free(dead);
			pthread_mutex_lock(&u->mtx);
		}
	}
	pthread_mutex_unlock(&u->mtx);
	return NULL;
}

bool
poller_start(ui *u)
{
	u->poller_running = pthread_create(&u->poller, NULL, poller_main, u) == 0;
	return u->poller_running;
}

void
poller_stop(ui *u)
{
	ui_stop_following(u);
	if (!u->poller_running)
		return;
	pthread_mutex_lock(&u->mtx);
	u->stop = true;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mtx);
	pthread_join(u->poller, NULL);
	u->poller_running = false;
}

void
ui_stop_following(ui *u)
{
	parley_follow *old;

	pthread_mutex_lock(&u->mtx);
	old = u->follow;
	u->follow = NULL;
	u->gen++;
	u->down = false;
	qline_free(u->q_head);
	u->q_head = u->q_tail = NULL;
	u->q_len = 0;
	if (old != NULL && old == u->busy) {
		/* Ends its pending poll; the poller frees it. */
		parley_follow_cancel(old);
		u->zombie = old;
		old = NULL;
	}
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mtx);
	parley_follow_free(old);
}

void
ui_start_following(ui *u, parley_follow *f)
{
	pthread_mutex_lock(&u->mtx);
	u->follow = f;
	u->gen++;
	memcpy(u->me, u->user, sizeof(u->me));
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mtx);
}

qline *
poller_take(ui *u)
{
	qline *l;

	pthread_mutex_lock(&u->mtx);
	l = u->q_head;
	u->q_head = u->q_tail = NULL;
	u->q_len = 0;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mtx);
	return l;
}

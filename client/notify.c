/*
 * notify.c — the interactive chat's notifier thread and what main does
 * with its results; see ui.h for the threads and the locking rule.
 *
 * Main only sets wishes under u->mtx (typing in a room until a time, read
 * up to a seq, unread counts wanted now) and never waits for the network
 * for them; the notifier makes the calls, each with a short timeout, and
 * hands the unread list back. Typing is sent at most every TYPING_EVERY_MS
 * while keys come (the server lets "typing" lapse after 6 s), and "stopped"
 * once when the line is sent or emptied, or the keys stop for
 * TYPING_IDLE_MS. MarkRead never goes backwards (nor does the server).
 */
#include <stdlib.h>
#include <string.h>

#include "ui.h"

#define TYPING_EVERY_MS 3000
#define TYPING_IDLE_MS 5000
#define TYPING_LAPSE_MS 6500	/* the server's 6 s, and the trip */
#define UNREAD_EVERY_MS 3000
#define CALL_MS 2000

static void
typing_call(ui *u, const char *room, bool typing)
{
	pthread_mutex_unlock(&u->mtx);
	parley_set_typing(u->conn, room, typing, CALL_MS, NULL);
	pthread_mutex_lock(&u->mtx);
}

/* Copies the reply into a list of our own (u->mtx not held). */
static unread_room *
unread_copy(const Parley__V1__GetUnreadResponse *r, size_t *n)
{
	size_t k = r->n_rooms < UNREAD_MAX ? r->n_rooms : UNREAD_MAX;
	unread_room *list = calloc(k ? k : 1, sizeof(*list));

	*n = 0;
	if (list == NULL)
		return NULL;
	for (size_t i = 0; i < k; i++) {
		const Parley__V1__RoomUnread *ru = r->rooms[i];
		const Parley__V1__Event *ev = ru->last_event;

		snprintf(list[i].room, sizeof(list[i].room), "%s", ru->room_id);
		list[i].unread = ru->unread_count;
		list[i].mentions = ru->mention_count;
		if (ev != NULL && ev->body_case == PARLEY__V1__EVENT__BODY_MESSAGE &&
		    ev->message != NULL) {
			snprintf(list[i].last_sender, sizeof(list[i].last_sender), "%s", ev->sender);
			snprintf(list[i].last_text, sizeof(list[i].last_text), "%s", ev->message->text);
		}
	}
	*n = k;
	return list;
}

/* The room's newest chat message by someone else, into r (for a notice
 * when the event at the head is not one: the members of a new direct room
 * may be logged after its first message). */
static void
last_message(ui *u, const char *me, unread_room *r)
{
	Parley__V1__GetHistoryResponse *h;

	if (parley_history(u->conn, r->room, 0, 0, 10, &h, NULL) != RPC_OK)
		return;
	for (size_t i = h->n_events; i-- > 0;) {
		const Parley__V1__Event *ev = h->events[i];

		if (ev->body_case == PARLEY__V1__EVENT__BODY_MESSAGE && ev->message != NULL &&
		    strcmp(ev->sender, me) != 0) {
			snprintf(r->last_sender, sizeof(r->last_sender), "%s", ev->sender);
			snprintf(r->last_text, sizeof(r->last_text), "%s", ev->message->text);
			break;
		}
	}
	parley_free(h);
}

/* Fills in the message behind each count that went up since prev. */
static void
explain_news(ui *u, const char *me, unread_room *list, size_t n, const unread_room *prev,
	     size_t n_prev)
{
	for (size_t i = 0; i < n; i++) {
		const unread_room *was = NULL;
		bool direct = strncmp(list[i].room, "dm.", 3) == 0;

		for (size_t j = 0; j < n_prev && was == NULL; j++)
			if (strcmp(prev[j].room, list[i].room) == 0)
				was = &prev[j];
		if (list[i].last_sender[0] != '\0')
			continue;
		if ((direct && list[i].unread > (was ? was->unread : 0)) ||
		    list[i].mentions > (was ? was->mentions : 0))
			last_message(u, me, &list[i]);
	}
}

static void *
notifier_main(void *arg)
{
	ui *u = arg;
	int64_t unread_at = 0;
	unread_room *prev = NULL; /* the notifier's last list, for explain_news */
	size_t n_prev = 0;

	pthread_mutex_lock(&u->mtx);
	while (!u->stop) {
		int64_t now = rpc_now_ms(), wake = now + UNREAD_EVERY_MS;
		char room[ROOM_ID_MAX + 1];

		if (u->typing_room[0] != '\0' && now >= u->typing_until) {
			if (u->typing_sent) {
				memcpy(room, u->typing_room, sizeof(room));
				u->typing_sent = false;
				typing_call(u, room, false);
			}
			u->typing_room[0] = '\0';
			continue;
		}
		if (u->typing_room[0] != '\0' &&
		    (!u->typing_sent || now - u->typing_sent_at >= TYPING_EVERY_MS)) {
			memcpy(room, u->typing_room, sizeof(room));
			u->typing_sent = true;
			u->typing_sent_at = now;
			typing_call(u, room, true);
			continue;
		}
		if (u->read_room[0] != '\0' && u->read_seq > u->read_sent) {
			uint64_t seq = u->read_seq;

			memcpy(room, u->read_room, sizeof(room));
			u->read_sent = seq;
			u->read_busy = true;
			pthread_mutex_unlock(&u->mtx);
			parley_mark_read(u->conn, room, seq, CALL_MS, NULL);
			pthread_mutex_lock(&u->mtx);
			u->read_busy = false;
			pthread_cond_broadcast(&u->cv); /* notify_read_flush waits */
			u->unread_kick = true; /* the counts changed */
			continue;
		}
		if (u->me[0] != '\0' && (u->unread_kick || now >= unread_at)) {
			Parley__V1__GetUnreadResponse *r;
			unread_room *list = NULL;
			char me[sizeof(u->me)];
			size_t n = 0;
			rpc_code code;

			u->unread_kick = false;
			memcpy(me, u->me, sizeof(me));
			pthread_mutex_unlock(&u->mtx);
			code = parley_get_unread(u->conn, NULL, 0, CALL_MS, &r, NULL);
			if (code == RPC_OK) {
				list = unread_copy(r, &n);
				parley_free(r);
			}
			if (list != NULL) {
				unread_room *keep = malloc(n ? n * sizeof(*keep) : 1);

				explain_news(u, me, list, n, prev, n_prev);
				free(prev);
				prev = keep;
				n_prev = keep != NULL ? n : 0;
				if (keep != NULL)
					memcpy(keep, list, n * sizeof(*keep));
			}
			for (size_t i = 0; list != NULL && i < n; i++) {
				const char *id = list[i].last_sender;
				if (id[0] != '\0')
					names_fetch(u->names, &id, 1, false); /* for main's notices */
			}
			pthread_mutex_lock(&u->mtx);
			unread_at = rpc_now_ms() + UNREAD_EVERY_MS;
			if (list != NULL) {
				free(u->unread);
				u->unread = list;
				u->unread_n = n;
				u->unread_gen++;
				wake_main(u, 'u');
			}
			continue;
		}
		if (u->typing_room[0] != '\0') {
			int64_t t = u->typing_sent_at + TYPING_EVERY_MS;
			if (u->typing_until < t)
				t = u->typing_until;
			if (t < wake)
				wake = t;
		}
		if (u->me[0] != '\0' && unread_at < wake)
			wake = unread_at;
		rpc_cond_wait_until(&u->cv, &u->mtx, wake);
	}
	pthread_mutex_unlock(&u->mtx);
	free(prev);
	return NULL;
}

bool
notify_start(ui *u)
{
	u->notifier_running = pthread_create(&u->notifier, NULL, notifier_main, u) == 0;
	return u->notifier_running;
}

void
notify_stop(ui *u)
{
	if (u->notifier_running) {
		pthread_mutex_lock(&u->mtx);
		u->stop = true;
		pthread_cond_broadcast(&u->cv);
		pthread_mutex_unlock(&u->mtx);
		pthread_join(u->notifier, NULL);
		u->notifier_running = false;
	}
	free(u->unread);
	u->unread = NULL;
	free(u->seen);
	u->seen = NULL;
}

void
notify_typing(ui *u)
{
	if (!u->logged_in || u->room[0] == '\0' || u->away)
		return;
	pthread_mutex_lock(&u->mtx);
	if (strcmp(u->typing_room, u->room) != 0) {
		snprintf(u->typing_room, sizeof(u->typing_room), "%s", u->room);
		u->typing_sent = false;
	}
	u->typing_until = rpc_now_ms() + TYPING_IDLE_MS;
	/* Only news wakes the threads: the notifier finds a later
	 * typing_until by itself when it wakes. */
	if (!u->typing_sent)
		pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mtx);
}

void
notify_typing_stop(ui *u)
{
	pthread_mutex_lock(&u->mtx);
	if (u->typing_room[0] != '\0') {
		u->typing_until = 0;
		pthread_cond_broadcast(&u->cv);
	}
	pthread_mutex_unlock(&u->mtx);
}

void
notify_read(ui *u, const char *room, uint64_t seq)
{
	pthread_mutex_lock(&u->mtx);
	if (strcmp(u->read_room, room) != 0) {
		snprintf(u->read_room, sizeof(u->read_room), "%s", room);
		u->read_seq = u->read_sent = 0;
	}
	if (seq > u->read_seq) {
		u->read_seq = seq;
		pthread_cond_broadcast(&u->cv);
	}
	pthread_mutex_unlock(&u->mtx);
}

void
notify_read_flush(ui *u)
{
	char room[ROOM_ID_MAX + 1];
	uint64_t seq = 0;
	int64_t until = rpc_now_ms() + CALL_MS + 500;

	pthread_mutex_lock(&u->mtx);
	/* One on its way is as good as sent once it is done. */
	while (u->read_busy && rpc_now_ms() < until)
		rpc_cond_wait_until(&u->cv, &u->mtx, until);
	if (u->read_room[0] != '\0' && u->read_seq > u->read_sent) {
		memcpy(room, u->read_room, sizeof(room));
		seq = u->read_seq;
		u->read_sent = seq;
	}
	pthread_mutex_unlock(&u->mtx);
	if (seq > 0)
		parley_mark_read(u->conn, room, seq, CALL_MS, NULL);
}

void
notify_unread_now(ui *u)
{
	pthread_mutex_lock(&u->mtx);
	u->unread_kick = true;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mtx);
}

static const unread_room *
seen_of(const ui *u, const char *room)
{
	for (size_t i = 0; i < u->seen_n; i++)
		if (strcmp(u->seen[i].room, room) == 0)
			return &u->seen[i];
	return NULL;
}

/* "* bob (direct): hi -- /query bob to answer", or a mention elsewhere,
 * with a bell. */
static void
news(ui *u, const unread_room *r, bool direct)
{
	strbuf sb = {0};

	if (direct) {
		sb_puts(&sb, "* ");
		names_peek(&sb, r->last_sender, u->names);
		sb_puts(&sb, " (direct): ");
		sb_sanitized(&sb, r->last_text, 200);
		sb_puts(&sb, "  -- /query ");
		sb_sanitized(&sb, r->last_sender, RPC_USER_ID_MAX);
		sb_puts(&sb, " to answer");
	} else {
		sb_puts(&sb, "* ");
		names_peek(&sb, r->last_sender, u->names);
		sb_puts(&sb, " mentioned you in ");
		sb_sanitized(&sb, r->room, ROOM_ID_MAX);
		sb_puts(&sb, ": ");
		sb_sanitized(&sb, r->last_text, 200);
	}
	if (u->tty)
		fputc('\a', stdout);
	ui_show_sb(u, &sb);
	sb_free(&sb);
}

uint64_t
notify_unread_update(ui *u)
{
	unread_room *list;
	uint64_t total = 0;
	size_t n;

	pthread_mutex_lock(&u->mtx);
	list = u->unread;
	n = u->unread_n;
	u->unread = NULL;
	u->unread_n = 0;
	pthread_mutex_unlock(&u->mtx);
	if (list == NULL)
		return u->unread_total;
	for (size_t i = 0; i < n; i++) {
		const unread_room *r = &list[i], *was = seen_of(u, r->room);
		bool direct = strncmp(r->room, "dm.", 3) == 0;
		bool here = strcmp(r->room, u->room) == 0;

		if (here)
			continue;
		total += r->unread;
		/* Only what is new since the last list (the first list is
		 * summed up once instead), and only from someone else. */
		if (!u->unread_seen || r->last_sender[0] == '\0' ||
		    strcmp(r->last_sender, u->user) == 0)
			continue;
		if (direct && r->unread > (was ? was->unread : 0))
			news(u, r, true);
		else if (!direct && r->mentions > (was ? was->mentions : 0))
			news(u, r, false);
	}
	if (!u->unread_seen && total > 0) {
		strbuf sb = {0};

		sb_printf(&sb, "* %llu unread message%s in your other rooms (/rooms shows where)",
			  (unsigned long long)total, total == 1 ? "" : "s");
		ui_show_sb(u, &sb);
		sb_free(&sb);
	}
	u->unread_seen = true;
	free(u->seen);
	u->seen = list;
	u->seen_n = n;
	u->unread_total = total;
	return total;
}

void
typing_set(ui *u, const char *id, bool typing)
{
	typer *slot = NULL;

	for (size_t i = 0; i < TYPERS_MAX && slot == NULL; i++)
		if (u->typers[i].until != 0 && strcmp(u->typers[i].id, id) == 0)
			slot = &u->typers[i];
	if (!typing) {
		if (slot != NULL)
			slot->until = 0;
		return;
	}
	for (size_t i = 0; i < TYPERS_MAX && slot == NULL; i++)
		if (u->typers[i].until == 0)
			slot = &u->typers[i];
	if (slot == NULL)
		return; /* more than TYPERS_MAX at once: they show as many anyway */
	snprintf(slot->id, sizeof(slot->id), "%s", id);
	slot->until = rpc_now_ms() + TYPING_LAPSE_MS;
}

int64_t
typing_line(ui *u, strbuf *sb, int cols)
{
	int64_t now = rpc_now_ms(), next = 0;
	const char *who[TYPERS_MAX];
	size_t k = 0;
	strbuf line = {0};

	for (size_t i = 0; i < TYPERS_MAX; i++) {
		if (u->typers[i].until != 0 && u->typers[i].until <= now)
			u->typers[i].until = 0;
		if (u->typers[i].until == 0)
			continue;
		who[k++] = u->typers[i].id;
		if (next == 0 || u->typers[i].until < next)
			next = u->typers[i].until;
	}
	if (k == 0)
		return 0;
	if (k > 3) {
		sb_printf(&line, "%zu people are typing...", k);
	} else {
		for (size_t i = 0; i < k; i++) {
			if (i > 0)
				sb_puts(&line, i + 1 == k ? " and " : ", ");
			names_peek(&line, who[i], u->names);
		}
		sb_puts(&line, k == 1 ? " is typing..." : " are typing...");
	}
	/* One row, whatever the width. */
	sb_sanitized(sb, sb_str(&line), (size_t)(cols > 2 ? cols - 1 : 1));
	sb_free(&line);
	return next;
}

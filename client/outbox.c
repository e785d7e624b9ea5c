/*
 * outbox.c — typed messages on their way; see ui.h for the threads and the
 * locking rule (u->mtx guards u->out and every outmsg's state).
 *
 * Main queues a message (OUT_QUEUED) and goes back to the keyboard at once:
 * the editor never waits for the network. The sender thread sends the
 * queued messages one at a time, in the order typed (so the room's seqs
 * follow the typing), each with its own client_msg_id and retried with it
 * until the message's deadline (the connection's timeout after it was
 * typed): the server stores it once whatever happens to the connection.
 * A message stays on screen as pending until its copy comes back from the
 * room (or, when the room is not followed, until it is stored); one that
 * cannot be stored by its deadline is shown as not sent, in full, and put
 * in the line history so that Up brings it back. Nothing typed is lost.
 *
 * When the session ends (UNAUTHENTICATED), the messages not stored are
 * held (OUT_HELD) until the user logs in again.
 */
#include <stdlib.h>
#include <string.h>

#include <editline/readline.h>

#include "ui.h"

/* The first message the sender should send (u->mtx held). */
static outmsg *
next_queued(ui *u)
{
	for (outmsg *m = u->out; m != NULL; m = m->next) {
		if (m->state == OUT_QUEUED)
			return m;
		if (m->state == OUT_HELD)
			return NULL; /* keep the order: nothing passes a held one */
	}
	return NULL;
}

static void *
sender_main(void *arg)
{
	ui *u = arg;

	pthread_mutex_lock(&u->mtx);
	while (!u->stop) {
		outmsg *m = next_queued(u);
		char room[sizeof(m->room)], id[sizeof(m->id)], *text;
		int64_t deadline;
		rpc_status st;
		rpc_code code;

		if (m == NULL) {
			pthread_cond_wait(&u->cv, &u->mtx);
			continue;
		}
		/* Copies: main may settle and free m while the call runs. */
		m->state = OUT_SENDING;
		memcpy(room, m->room, sizeof(room));
		memcpy(id, m->id, sizeof(id));
		deadline = m->deadline;
		text = strdup(m->text);
		pthread_mutex_unlock(&u->mtx);

		if (text == NULL)
			code = rpc_status_set(&st, RPC_RESOURCE_EXHAUSTED, "out of memory");
		else
			code = parley_send_until(u->conn, room, text, id, deadline, &u->send_cancel,
						 NULL, &st);
		free(text);

		pthread_mutex_lock(&u->mtx);
		for (m = u->out; m != NULL && strcmp(m->id, id) != 0; m = m->next)
			;
		if (m != NULL && m->state == OUT_SENDING) {
			if (code == RPC_OK) {
				m->state = OUT_ACKED;
			} else if (code == RPC_UNAUTHENTICATED) {
				m->state = OUT_HELD;
			} else {
				m->state = OUT_FAILED;
				m->code = code;
				snprintf(m->why, sizeof(m->why), "%s", st.message);
			}
		}
		wake_main(u, 'o');
	}
	pthread_mutex_unlock(&u->mtx);
	return NULL;
}

bool
outbox_start(ui *u)
{
	u->sender_running = pthread_create(&u->sender, NULL, sender_main, u) == 0;
	return u->sender_running;
}

void
outbox_stop(ui *u)
{
	outmsg *m;

	if (u->sender_running) {
		pthread_mutex_lock(&u->mtx);
		u->stop = true;
		__atomic_store_n(&u->send_cancel, true, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&u->cv);
		pthread_mutex_unlock(&u->mtx);
		pthread_join(u->sender, NULL);
		u->sender_running = false;
	}
	while ((m = u->out) != NULL) {
		u->out = m->next;
		free(m);
	}
}

bool
outbox_add(ui *u, const char *room, const char *text)
{
	size_t len = strlen(text);
	outmsg *m = calloc(1, sizeof(*m) + len + 1), **tail;

	if (m == NULL)
		return false;
	m->state = OUT_QUEUED;
	snprintf(m->room, sizeof(m->room), "%s", room);
	parley_new_client_msg_id(m->id);
	m->deadline = rpc_now_ms() + parley_timeout(u->conn);
	memcpy(m->text, text, len + 1);
	pthread_mutex_lock(&u->mtx);
	for (tail = &u->out; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = m;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mtx);
	return true;
}

size_t
outbox_pending(ui *u)
{
	size_t n = 0;

	pthread_mutex_lock(&u->mtx);
	for (outmsg *m = u->out; m != NULL; m = m->next)
		n += m->state != OUT_HELD;
	pthread_mutex_unlock(&u->mtx);
	return n;
}

/* Shows why m was not sent, with its whole text, and keeps the text in
 * the line history. */
static void
report_failed(ui *u, const outmsg *m)
{
	strbuf sb = {0};

	cli_error_words(&sb, m->code, m->why);
	sb_puts(&sb, " -- not sent: ");
	sb_sanitized(&sb, m->text, 0);
	ui_show_sb(u, &sb);
	sb_free(&sb);
	if (u->tty)
		add_history(m->text);
	ui_show(u, u->tty ? "* (press Up to get it back and send it again)"
			  : "* the message above was not sent");
	u->errors++;
	if (m->code == RPC_UNAUTHENTICATED && u->logged_in)
		u->session_lost = true;
}

void
outbox_settle(ui *u, const char *shown_id)
{
	outmsg *failed = NULL, **ft = &failed;
	bool changed = false;

	pthread_mutex_lock(&u->mtx);
	for (outmsg **pp = &u->out; *pp != NULL;) {
		outmsg *m = *pp;
		bool followed = u->follow != NULL && !u->away && strcmp(m->room, u->room) == 0;
		bool drop = false;

		if (shown_id != NULL && strcmp(m->id, shown_id) == 0)
			drop = true; /* its copy is on screen now */
		else if (m->state == OUT_ACKED && (!followed || rpc_now_ms() > m->deadline))
			drop = true; /* stored; no copy will come (in time) to show */
		if (m->state == OUT_FAILED && !drop) {
			*pp = m->next;
			m->next = NULL;
			*ft = m;
			ft = &m->next;
			changed = true;
			continue;
		}
		if (drop) {
			*pp = m->next;
			free(m);
			changed = true;
			continue;
		}
		pp = &m->next;
	}
	pthread_mutex_unlock(&u->mtx);
	while (failed != NULL) {
		outmsg *m = failed;

		failed = m->next;
		report_failed(u, m);
		free(m);
	}
	if (changed && shown_id == NULL && u->tty) {
		screen_clear_live(u);
		screen_draw_live(u);
	}
}

void
outbox_release(ui *u)
{
	pthread_mutex_lock(&u->mtx);
	for (outmsg *m = u->out; m != NULL; m = m->next)
		if (m->state == OUT_HELD) {
			m->state = OUT_QUEUED;
			m->deadline = rpc_now_ms() + parley_timeout(u->conn);
		}
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mtx);
}

void
outbox_fail_held(ui *u)
{
	pthread_mutex_lock(&u->mtx);
	for (outmsg *m = u->out; m != NULL; m = m->next)
		if (m->state == OUT_HELD || m->state == OUT_QUEUED) {
			m->state = OUT_FAILED;
			m->code = RPC_UNAUTHENTICATED;
			snprintf(m->why, sizeof(m->why), "the session has ended");
		}
	pthread_mutex_unlock(&u->mtx);
	outbox_settle(u, NULL);
}

int
outbox_lines(ui *u, strbuf *sb, int cols)
{
	int n = 0;

	pthread_mutex_lock(&u->mtx);
	for (outmsg *m = u->out; m != NULL; m = m->next) {
		strbuf one = {0};
		const char *mark = m->state == OUT_HELD	   ? "(held) "
				   : m->state == OUT_ACKED ? "(sent) "
							   : "(sending) ";
		size_t room = (size_t)cols - 1;

		sb_puts(&one, mark);
		sb_sanitized(&one, u->user, 64);
		sb_puts(&one, ": ");
		/* One row each: cut to what is left of the width. */
		if (cli_display_width(sb_str(&one)) + 2 < room)
			sb_sanitized(&one, m->text, room - cli_display_width(sb_str(&one)) - 1);
		sb_puts(sb, sb_str(&one));
		sb_putc(sb, '\n');
		sb_free(&one);
		n++;
	}
	pthread_mutex_unlock(&u->mtx);
	return n;
}

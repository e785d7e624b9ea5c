/*
 * interactive.c — `parley` with no command: a chat prompt. The main loop,
 * the line editor, and the order in which typed lines are handled; see
 * ui.h for the threads and the locking rule.
 *
 * Order: a typed message goes to the outbox at once (the editor never
 * waits for the network) and shows as pending; a command waits until every
 * message typed before it has settled (its copy came back from the room,
 * or it failed), so that what a pasted block prints comes in the order it
 * was pasted. /quit does not wait. Main thread only, except where a
 * function says otherwise.
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>

#include "ui.h"

static ui *the_ui; /* for libedit's callbacks, which have no argument */

/*
 * libedit (3.1-20221030) points rl_line_buffer at a conversion buffer once
 * and writes a NUL at rl_end into it after every key, also after it has
 * reallocated that buffer for a long line: a write to freed memory. It
 * writes here instead; nothing reads it (see screen.c).
 */
static char line_buffer[1 << 20];

/* The editor --------------------------------------------------------------- */

void
set_prompt(ui *u)
{
	strbuf sb = {0};

	if (!u->logged_in) {
		sb_puts(&sb, "parley");
	} else {
		sb_sanitized(&sb, u->user, RPC_USER_ID_MAX);
		if (u->room[0] != '\0' && u->peer[0] != '\0') {
			sb_puts(&sb, " to ");
			sb_sanitized(&sb, u->peer, RPC_USER_ID_MAX);
		} else if (u->room[0] != '\0') {
			sb_putc(&sb, '@');
			sb_sanitized(&sb, u->room, ROOM_ID_MAX);
		}
		if (u->room[0] != '\0' && u->away)
			sb_puts(&sb, " (not a member)");
		/* Unread elsewhere: /rooms says where. */
		if (u->unread_total > 0)
			sb_printf(&sb, " [%llu]", (unsigned long long)u->unread_total);
	}
	sb_puts(&sb, "> ");
	snprintf(u->prompt, sizeof(u->prompt), "%s", sb.oom ? "> " : sb_str(&sb));
	sb_free(&sb);
}

static void
on_line(char *line)
{
	if (line == NULL)
		the_ui->typed_eof = true;
	free(the_ui->typed);
	the_ui->typed = line;
}

/* Ctrl-D: the end on an empty line, shown as nothing (libedit's own
 * binding writes "^D" first). */
static int
on_ctrl_d(int count, int key)
{
	if (rl_end == 0) {
		the_ui->typed_eof = true;
		rl_done = 1;
	}
	return 0;
}

/* Ctrl-L: main clears the screen and draws the live area again. */
static int
on_ctrl_l(int count, int key)
{
	the_ui->want_clear = true;
	return 0;
}

/* Draws the pending lines and a fresh prompt at the cursor (at the start
 * of a row), with any text to put back in it. */
static void
editor_on(ui *u)
{
	if (!u->tty || u->rl_active || u->quit)
		return;
	screen_clear_live(u);
	screen_draw_live(u);
	set_prompt(u);
	/* Back on before libedit takes the terminal: it adopts the cooked
	 * mode it finds, and puts that back when parley ends. */
	cli_term_echo(STDIN_FILENO, true);
	rl_callback_handler_install(u->prompt, on_line);
	u->rl_active = true;
	u->edit_w = 0;
	rl_line_buffer = line_buffer;
	if (u->restore != NULL) {
		rl_insert_text(u->restore);
		u->edit_w = (int)cli_display_width(u->restore);
		fputs("\r\033[J", stdout);
		rl_forced_update_display();
		fflush(stdout);
		free(u->restore);
		u->restore = NULL;
	}
}

/* Takes the prompt off the screen (the pending lines stay). */
static void
editor_off(ui *u)
{
	if (!u->rl_active)
		return;
	screen_clear_live(u);
	rl_callback_handler_remove();
	u->rl_active = false;
	screen_draw_live(u);
}

/* Input from a pipe -------------------------------------------------------- */

static void
pipe_consume(ui *u)
{
	if (u->in_used > 0) {
		memmove(u->in, u->in + u->in_used, u->in_len - u->in_used);
		u->in_len -= u->in_used;
		u->in_used = 0;
	}
}

/* The next complete line from a pipe, or NULL at its end. Returns a
 * pointer into u->in valid until the next call. */
static char *
pipe_line(ui *u, bool block)
{
	char *nl;

	pipe_consume(u);
	for (;;) {
		ssize_t n;

		if ((nl = memchr(u->in, '\n', u->in_len)) != NULL) {
			*nl = '\0';
			u->in_used = (size_t)(nl - u->in) + 1;
			if (nl > u->in && nl[-1] == '\r')
				nl[-1] = '\0';
			return u->in;
		}
		if (u->in_len == sizeof(u->in) - 1) {
			/* Longer than any line we take: cut it here. */
			u->in[u->in_len] = '\0';
			u->in_used = u->in_len;
			return u->in;
		}
		if (u->in_eof) {
			if (u->in_len == 0)
				return NULL;
			u->in[u->in_len] = '\0';
			u->in_used = u->in_len;
			return u->in;
		}
		if (!block) {
			struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
			if (poll(&p, 1, 0) <= 0)
				return NULL;
		}
		n = read(STDIN_FILENO, u->in + u->in_len, sizeof(u->in) - 1 - u->in_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			u->in_eof = true;
		else
			u->in_len += (size_t)n;
		block = false; /* read what is there; wait again only if asked */
	}
}

bool
ui_ask(ui *u, const char *prompt, bool echo, char *buf, size_t len)
{
	bool too_long;

	if (!u->tty)
		pipe_consume(u);
	if (u->tty || (u->in_len == 0 && isatty(STDIN_FILENO))) {
		/* From the terminal (also when only stdout is redirected, so that
		 * a password never shows), below the pending lines. */
		bool ok;

		screen_clear_live(u);
		if (u->rl_active)
			rl_deprep_terminal(); /* the editor keeps what was typed */
		if (echo)
			cli_term_echo(STDIN_FILENO, true);
		ok = cli_read_line(STDIN_FILENO, stdout, prompt, echo, buf, len, &too_long) >= 0;
		if (echo && !u->rl_active)
			cli_term_echo(STDIN_FILENO, false);
		if (u->rl_active)
			rl_prep_terminal(1);
		screen_draw_live(u);
		if (!ok)
			return false;
	} else {
		char *line = pipe_line(u, true);
		if (line == NULL)
			return false;
		too_long = strlen(line) >= len;
		snprintf(buf, len, "%s", line);
		explicit_bzero(line, strlen(line));
	}
	if (too_long) {
		ui_error(u, RPC_INVALID_ARGUMENT, "too long");
		return false;
	}
	return buf[0] != '\0';
}

/* Typed lines -------------------------------------------------------------- */

static bool
is_command(const char *line)
{
	return line[0] == '/' && line[1] != '/';
}

static void
inq_push(ui *u, const char *text)
{
	size_t len = strlen(text);
	typed_line *t = malloc(sizeof(*t) + len + 1);

	if (t == NULL) {
		ui_error(u, RPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	memcpy(t->text, text, len + 1);
	t->next = NULL;
	if (u->inq_tail != NULL)
		u->inq_tail->next = t;
	else
		u->inq = t;
	u->inq_tail = t;
}

static typed_line *
inq_pop(ui *u)
{
	typed_line *t = u->inq;

	if (t != NULL && (u->inq = t->next) == NULL)
		u->inq_tail = NULL;
	return t;
}

/* A message: to the outbox, or an error that keeps the text. */
static void
message(ui *u, const char *line)
{
	const char *text = line[0] == '/' ? line + 1 : line;
	const char *why = chat_message_problem(u, text);

	if (why != NULL) {
		ui_error(u, RPC_INVALID_ARGUMENT, why);
		if (u->tty && strlen(text) > TEXT_MAX && u->restore == NULL)
			u->restore = strdup(line); /* never erase what was typed */
		return;
	}
	if (!outbox_add(u, u->room, text))
		ui_error(u, RPC_RESOURCE_EXHAUSTED, "out of memory");
	else if (u->tty) {
		screen_clear_live(u);
		screen_draw_live(u);
	}
}

/* Handles the typed lines whose turn it is; see the top of the file. */
static void
handle_typed(ui *u)
{
	while (u->inq != NULL && !u->quit) {
		typed_line *t = u->inq;
		const char *p = t->text;

		while (*p == ' ' || *p == '\t')
			p++;
		if (is_command(p) && strncmp(p, "/quit", 5) != 0 && strncmp(p, "/exit", 5) != 0 &&
		    outbox_pending(u) > 0)
			return; /* after the messages typed before it */
		t = inq_pop(u);
		if (is_command(p)) {
			char *line = strdup(p);

			/* With the editor on (a command that waited), its output
			 * goes above the prompt, which keeps what is being typed;
			 * a question it asks is put below (ui_ask). */
			if (u->tty) {
				strbuf sb = {0};

				/* The command as typed, in its place among the lines. */
				sb_puts(&sb, u->prompt);
				sb_sanitized(&sb, p, 0);
				ui_show_sb(u, &sb);
				sb_free(&sb);
			}
			if (line != NULL)
				chat_command(u, line);
			free(line);
			if (u->session_lost) {
				u->session_lost = false;
				chat_session_ended(u);
			}
		} else if (!cli_text_blank(p)) {
			/* Leading blanks go, as before a command; a line of blanks
			 * only is not a message and is passed over without a word. */
			message(u, p);
		}
		free(t);
	}
}

static void
typed(ui *u, char *line)
{
	notify_typing_stop(u);
	if (u->tty) {
		screen_erase_typed(u, line);
		rl_callback_handler_remove();
		u->rl_active = false;
		/* Keys typed while a command runs wait for the editor instead of
		 * showing where its output goes. */
		cli_term_echo(STDIN_FILENO, false);
		if (line[0] != '\0')
			add_history(line);
	}
	inq_push(u, line);
	handle_typed(u);
	if (!u->quit)
		editor_on(u);
}

/* What the other threads say ------------------------------------------------ */

static void
on_signal(int sig, void *arg)
{
	ui *u = arg;

	wake_main(u, sig == SIGWINCH ? 'w' : sig == SIGCONT ? 'c' : 'q');
}

/* The lines the poller queued, and what they change. */
static void
drain(ui *u)
{
	qline *l = poller_take(u);

	for (qline *p = l; p != NULL; p = p->next) {
		switch (p->kind) {
		case Q_LINE:
			if (p->msg_id[0] != '\0')
				outbox_settle(u, p->msg_id); /* its pending line goes */
			if (p->mention && u->tty)
				fputc('\a', stdout); /* someone named @me */
			ui_show(u, p->text);
			if (p->mine && p->seq > u->last_own_seq)
				u->last_own_seq = p->seq;
			if (p->seq > 0 && u->room[0] != '\0')
				notify_read(u, u->room, p->seq); /* shown: read */
			break;
		case Q_TYPING:
			typing_set(u, p->text, p->typing);
			if (u->tty) {
				screen_clear_live(u);
				screen_draw_live(u);
			}
			break;
		case Q_NOTE:
			ui_show(u, p->text);
			break;
		case Q_AWAY:
			if (strcmp(p->room, u->room) == 0)
				u->away = true;
			ui_show(u, p->text);
			break;
		case Q_BACK:
			if (strcmp(p->room, u->room) == 0)
				u->away = false;
			ui_show(u, p->text);
			break;
		case Q_ENDED:
			if (u->logged_in)
				u->session_lost = true;
			break;
		}
	}
	qline_free(l);
	outbox_settle(u, NULL);
}

static void
redraw_prompt(ui *u)
{
	if (!u->rl_active)
		return;
	set_prompt(u);
	rl_set_prompt(u->prompt);
	screen_clear_live(u);
	screen_draw_live(u);
}

/* After a stop (Ctrl-Z) the shell has had the terminal: put the editor's
 * terminal modes back and draw the live area afresh on a new row, keeping
 * what was typed. */
static void
resumed(ui *u)
{
	if (!u->rl_active)
		return;
	rl_deprep_terminal();
	rl_prep_terminal(1);
	fputs("\r\n", stdout);
	u->live_rows = 0;
	screen_draw_live(u);
}

static void
woken(ui *u)
{
	char buf[64];
	ssize_t n = read(u->wake[0], buf, sizeof(buf));
	bool winch = false, cont = false;

	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == 'q')
			u->quit = true;
		else if (buf[i] == 'w')
			winch = true;
		else if (buf[i] == 'c')
			cont = true;
		else if (buf[i] == 'u' && u->logged_in)
			notify_unread_update(u);
	}
	if (cont)
		resumed(u);
	if (winch && u->rl_active)
		rl_resize_terminal();
	drain(u);
	if (u->session_lost && !u->quit) {
		u->session_lost = false;
		chat_session_ended(u);
	}
	handle_typed(u);
	redraw_prompt(u);
}

/* The loop ------------------------------------------------------------------ */

/* A pipe has ended: everything typed is handled and every message settled. */
static bool
pipe_done(ui *u)
{
	return u->in_eof && u->in_len == 0 && u->inq == NULL && outbox_pending(u) == 0;
}

static void
read_keys(ui *u)
{
	/* libedit updates rl_point and rl_end after a key only when the line
	 * is not empty afterwards (rl_callback_read_char returns early on an
	 * empty line): zero first, so that an emptied line reads as one. */
	rl_point = rl_end = 0;
	rl_callback_read_char();
	u->edit_w = -1;
	if (u->typed == NULL && !u->typed_eof) {
		/* Typing shows to the room; a command or an emptied line does not. */
		char *first = rl_end > 0 ? rl_copy_text(0, 2) : NULL;

		if (first != NULL && first[0] != '/')
			notify_typing(u);
		else
			notify_typing_stop(u);
		free(first);
	}
	if (u->want_clear) {
		u->want_clear = false;
		fputs("\033[H\033[2J", stdout);
		u->live_rows = 0;
		screen_draw_live(u);
	}
	if (u->typed_eof) {
		u->quit = true;
	} else if (u->typed != NULL) {
		char *line = u->typed;

		u->typed = NULL;
		typed(u, line);
		free(line);
	}
}

int
cli_interactive(cli_ctx *ctx)
{
	ui u = {.ctx = ctx, .conn = ctx->conn, .wake = {-1, -1}, .edit_w = -1};
	int rc = CLI_EXIT_OK;

	the_ui = &u;
	u.tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
	pthread_mutex_init(&u.mtx, NULL);
	rpc_cond_init(&u.cv);
	if (pipe2(u.wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		rc = cli_local_error("cannot create a pipe");
		goto out;
	}
	if ((u.names = names_new(u.conn)) == NULL) {
		rc = cli_local_error("out of memory");
		goto out;
	}
	if (!cli_signal_thread_start(on_signal, &u) || !poller_start(&u) || !outbox_start(&u) ||
	    !notify_start(&u)) {
		rc = cli_local_error("cannot start a thread");
		goto out;
	}
	if (u.tty) {
		rl_catch_signals = 0;
		rl_initialize();
		rl_add_defun("parley-eof", on_ctrl_d, 'D' - '@');
		rl_add_defun("parley-clear", on_ctrl_l, 'L' - '@');
	}

	ui_show(&u, "parley: chat on Parley. /help lists the commands.");
	chat_resume(&u);
	if (!u.logged_in)
		ui_show(&u, "* /register USER to create an account, /login USER to log in");
	editor_on(&u);

	while (!u.quit) {
		struct pollfd p[2] = {
			{.fd = STDIN_FILENO, .events = POLLIN},
			{.fd = u.wake[0], .events = POLLIN},
		};

		/* A pipe is read one line at a time, only once the lines before
		 * are handled (a command waiting takes the next line as its
		 * password, say), and not polled again once ended. */
		int64_t lapse = 0;
		int timeout = -1;

		if (!u.tty && (u.in_eof || u.inq != NULL))
			p[0].fd = -1;
		if (u.tty && u.logged_in) {
			/* Someone's typing lapses by itself: redraw then. */
			strbuf sb = {0};

			lapse = typing_line(&u, &sb, 80);
			sb_free(&sb);
			if (lapse > 0) {
				int64_t left = lapse - rpc_now_ms();
				timeout = left < 0 ? 0 : (int)left + 1;
			}
		}
		if (poll(p, 2, timeout) < 0) {
			if (errno == EINTR)
				continue;
			rc = cli_local_error("poll: %s", strerror(errno));
			break;
		}
		if (lapse > 0 && rpc_now_ms() >= lapse && u.tty) {
			screen_clear_live(&u);
			screen_draw_live(&u);
		}
		if (p[1].revents & POLLIN)
			woken(&u);
		if (!u.quit && u.tty && (p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			read_keys(&u);
		if (!u.tty) {
			char *line;

			while (!u.quit && u.inq == NULL && (line = pipe_line(&u, false)) != NULL)
				typed(&u, line);
		}
		if (!u.tty && pipe_done(&u))
			u.quit = true;
	}
	if (u.tty && outbox_pending(&u) > 0)
		ui_show(&u, "* leaving with messages still on their way; they may not have been sent");
	editor_off(&u);
	if (u.tty) {
		cli_term_echo(STDIN_FILENO, true);
		fputc('\n', stdout);
	}

out:
	notify_stop(&u);
	outbox_stop(&u);
	poller_stop(&u);
	cli_signal_thread_stop();
	qline_free(poller_take(&u));
	while (u.inq != NULL)
		free(inq_pop(&u));
	free(u.typed);
	free(u.restore);
	if (u.wake[0] >= 0) {
		close(u.wake[0]);
		close(u.wake[1]);
	}
	pthread_mutex_destroy(&u.mtx);
	pthread_cond_destroy(&u.cv);
	names_free(u.names);
	the_ui = NULL;
	/* A script learns that something went wrong. */
	if (rc == CLI_EXIT_OK && !u.tty && u.errors > 0)
		rc = CLI_EXIT_STATUS;
	return rc;
}

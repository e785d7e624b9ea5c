/*
 * interactive.c — `parley` with no command: a chat prompt.
 *
 * Threads:
 *  - main: reads the keyboard (libedit's callback interface on a terminal,
 *    plain lines from a pipe), runs the commands, and is the only thread
 *    that writes to the terminal. It poll()s stdin and a self-pipe.
 *  - the poller: long-polls the current room through a parley_follow,
 *    formats the events into lines, queues them and writes a byte to the
 *    self-pipe. It never touches the terminal.
 *  - the signal thread (parley.c): turns SIGINT/SIGTERM/SIGHUP/SIGWINCH into
 *    bytes on the self-pipe.
 *
 * Locking: ui.mtx guards follow, gen, busy, zombie, stop, down and the line
 * queue. The follower in `follow` is used only by the poller; main creates
 * one (the session opens in main, so errors show at /join), hands it over
 * under the lock and takes it back by bumping gen. Lines of an older gen
 * are dropped: nothing of a room shows after leaving it. A follower is freed
 * by whoever holds it last: main if the poller is not inside it, else the
 * poller once its poll returns (main cancels it first, under the lock).
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

#define POLL_WAIT_MS 10000
#define QUEUE_MAX 5000	   /* lines waiting for the terminal; the poller waits beyond */

static ui *the_ui; /* for libedit's line callback, which has no argument */

/* Output ------------------------------------------------------------------- */

/* Rows the cursor is below the start of the prompt, for clearing. */
static int
rows_above_cursor(const ui *u)
{
	int cols = cli_term_columns(STDOUT_FILENO);
	size_t w;

	if (cols <= 0 || rl_line_buffer == NULL || rl_point < 0)
		return 0;
	w = cli_display_width(u->prompt);
	{
		char save = rl_line_buffer[rl_point];
		rl_line_buffer[rl_point] = '\0';
		w += cli_display_width(rl_line_buffer);
		rl_line_buffer[rl_point] = save;
	}
	return (int)(w / (size_t)cols);
}

/* Prints one line above whatever is being typed, then redraws the prompt. */
void
ui_show(ui *u, const char *line)
{
	if (u->tty && u->rl_active) {
		int up = rows_above_cursor(u);

		if (up > 0)
			printf("\033[%dA", up);
		fputs("\r\033[J", stdout);
		fputs(line, stdout);
		fputc('\n', stdout);
		fflush(stdout);
		rl_forced_update_display();
	} else {
		fputs(line, stdout);
		fputc('\n', stdout);
		fflush(stdout);
	}
}

void
ui_show_sb(ui *u, strbuf *sb)
{
	ui_show(u, sb->oom ? "error: RESOURCE_EXHAUSTED: out of memory" : sb_str(sb));
}

void
ui_error(ui *u, rpc_code code, const char *message)
{
	strbuf sb = {0};

	cli_error_line(&sb, code, message);
	ui_show_sb(u, &sb);
	sb_free(&sb);
}

/* "* text" + a terminal-safe arg + rest. */
void
ui_note(ui *u, const char *text, const char *arg, const char *rest)
{
	strbuf sb = {0};

	sb_puts(&sb, "* ");
	sb_puts(&sb, text);
	if (arg != NULL)
		sb_sanitized(&sb, arg, 100);
	if (rest != NULL)
		sb_puts(&sb, rest);
	ui_show_sb(u, &sb);
	sb_free(&sb);
}

void
ui_event(ui *u, const Parley__V1__Event *ev)
{
	strbuf sb = {0};

	cli_event_line(&sb, ev, false);
	if (sb.len > 0)
		ui_show_sb(u, &sb);
	sb_free(&sb);
}

/* The poller ------------------------------------------------------------- */

typedef struct batch {
	const char *me;
	qline *head, *tail;
} batch;

static void
batch_add(batch *b, const char *text, size_t len)
{
	qline *l = malloc(sizeof(*l) + len + 1);

	if (l == NULL)
		return;
	memcpy(l->text, text, len);
	l->text[len] = '\0';
	l->next = NULL;
	if (b->tail != NULL)
		b->tail->next = l;
	else
		b->head = l;
	b->tail = l;
}

static void
batch_free(qline *l)
{
	while (l != NULL) {
		qline *next = l->next;
		free(l);
		l = next;
	}
}

static void
collect(const Parley__V1__Event *ev, void *arg)
{
	batch *b = arg;
	strbuf sb = {0};

	/* One's own comings and goings online are no news. */
	if (ev->body_case == PARLEY__V1__EVENT__BODY_PRESENCE && strcmp(ev->sender, b->me) == 0)
		return;
	cli_event_line(&sb, ev, false);
	if (sb.len > 0 && !sb.oom)
		batch_add(b, sb.p, sb.len);
	sb_free(&sb);
}

static void
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
enqueue_text(ui *u, const char *text, uint64_t gen)
{
	batch b = {0};

	batch_add(&b, text, strlen(text));
	enqueue(u, &b, gen);
	batch_free(b.head);
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
		batch b = {.me = me};
		rpc_status st;
		rpc_code code;

		if (f == NULL) {
			pthread_cond_wait(&u->cv, &u->mtx);
			continue;
		}
		memcpy(me, u->me, sizeof(me));
		u->busy = f;
		pthread_mutex_unlock(&u->mtx);

		code = parley_follow_poll(f, POLL_WAIT_MS, collect, &b, &st);

		pthread_mutex_lock(&u->mtx);
		u->busy = NULL;
		if (u->zombie == f) {
			u->zombie = NULL;
			dead = f;
		}
		if (u->gen == gen && !u->stop) {
			strbuf sb = {0};

			if (code == RPC_OK && u->down) {
				enqueue_text(u, "* reconnected", gen);
				u->down = false;
			}
			enqueue(u, &b, gen);
			if (parley_code_transient(code) || code == RPC_NOT_FOUND) {
				if (!u->down)
					enqueue_text(u, "* connection lost; reconnecting...", gen);
				u->down = true;
			} else if (code != RPC_OK && code != RPC_CANCELLED) {
				/* Final: e.g. the room was left from elsewhere. */
				cli_error_line(&sb, code, st.message);
				enqueue_text(u, sb_str(&sb), gen);
				sb_free(&sb);
				u->follow = NULL;
				dead = f;
			}
			wake_main(u, 'e');
		}
		batch_free(b.head);
		if (dead != NULL) {
			pthread_mutex_unlock(&u->mtx);
			parley_follow_free(dead);
			pthread_mutex_lock(&u->mtx);
		}
	}
	pthread_mutex_unlock(&u->mtx);
	return NULL;
}

/* Takes the follower back from the poller; nothing of its room shows after
 * this returns. */
void
ui_stop_following(ui *u)
{
	parley_follow *old;

	pthread_mutex_lock(&u->mtx);
	old = u->follow;
	u->follow = NULL;
	u->gen++;
	u->down = false;
	batch_free(u->q_head);
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

/* Prints the queued lines. */
static void
drain(ui *u)
{
	qline *l;

	pthread_mutex_lock(&u->mtx);
	l = u->q_head;
	u->q_head = u->q_tail = NULL;
	u->q_len = 0;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mtx);
	for (qline *p = l; p != NULL; p = p->next)
		ui_show(u, p->text);
	batch_free(l);
}

/* Input -------------------------------------------------------------------- */

static void
set_prompt(ui *u)
{
	strbuf sb = {0};

	if (!u->logged_in) {
		sb_puts(&sb, "parley");
	} else {
		sb_sanitized(&sb, u->user, RPC_USER_ID_MAX);
		if (u->room[0] != '\0') {
			sb_putc(&sb, '@');
			sb_sanitized(&sb, u->room, ROOM_ID_MAX);
		}
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

static void
editor_on(ui *u)
{
	if (!u->tty || u->rl_active)
		return;
	set_prompt(u);
	rl_callback_handler_install(u->prompt, on_line);
	u->rl_active = true;
}

static void
editor_off(ui *u)
{
	if (!u->rl_active)
		return;
	rl_callback_handler_remove();
	u->rl_active = false;
}

/* The next complete line from a pipe, or NULL at its end. Returns a
 * pointer into u->in valid until the next call. */
static void
pipe_consume(ui *u)
{
	if (u->in_used > 0) {
		memmove(u->in, u->in + u->in_used, u->in_len - u->in_used);
		u->in_len -= u->in_used;
		u->in_used = 0;
	}
}

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

/* Asks for a value on the terminal (the editor is off while commands run)
 * or takes the next line of a pipe. false if there is none. */
bool
ui_ask(ui *u, const char *prompt, bool echo, char *buf, size_t len)
{
	bool too_long;

	if (!u->tty)
		pipe_consume(u);
	if (u->tty || (u->in_len == 0 && isatty(STDIN_FILENO))) {
		/* From the terminal (also when only stdout is redirected, so that
		 * a password never shows), prompting on stdout with the rest of
		 * the conversation. */
		if (cli_read_line(STDIN_FILENO, stdout, prompt, echo, buf, len, &too_long) < 0)
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

/* Main loop ------------------------------------------------------------------ */

static void
on_signal(int sig, void *arg)
{
	ui *u = arg;

	wake_main(u, sig == SIGWINCH ? 'w' : 'q');
}

/* Handles what the self-pipe says. */
static void
woken(ui *u)
{
	char buf[64];
	ssize_t n = read(u->wake[0], buf, sizeof(buf));

	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == 'q')
			u->quit = true;
		else if (buf[i] == 'w' && u->rl_active)
			rl_resize_terminal();
	}
	drain(u);
}

/* Handles one typed line, with the editor off while the command runs so
 * that it can ask for a password and print freely. */
static void
typed(ui *u, char *line)
{
	editor_off(u);
	if (u->tty && line[0] != '\0')
		add_history(line);
	chat_handle_line(u, line);
	drain(u);
	if (!u->quit)
		editor_on(u);
}


int
cli_interactive(cli_ctx *ctx)
{
	ui u = {.ctx = ctx, .conn = ctx->conn, .wake = {-1, -1}};
	int rc = CLI_EXIT_OK;

	the_ui = &u;
	u.tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
	pthread_mutex_init(&u.mtx, NULL);
	rpc_cond_init(&u.cv);
	if (pipe2(u.wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		rc = cli_local_error("cannot create a pipe");
		goto out;
	}
	if (!cli_signal_thread_start(on_signal, &u) ||
	    pthread_create(&u.poller, NULL, poller_main, &u) != 0) {
		rc = cli_local_error("cannot start a thread");
		goto out;
	}
	u.poller_running = true;
	if (u.tty)
		rl_catch_signals = 0;

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

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			rc = cli_local_error("poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents & POLLIN)
			woken(&u);
		if (u.quit || !(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		if (u.tty) {
			rl_callback_read_char();
			if (u.typed_eof) {
				u.quit = true;
			} else if (u.typed != NULL) {
				char *line = u.typed;
				u.typed = NULL;
				typed(&u, line);
				free(line);
			}
		} else {
			char *line;
			while (!u.quit && (line = pipe_line(&u, false)) != NULL)
				typed(&u, line);
			if (u.in_eof && u.in_len == 0)
				u.quit = true;
		}
	}
	editor_off(&u);
	if (u.tty)
		fputc('\n', stdout);

out:
	ui_stop_following(&u);
	if (u.poller_running) {
		pthread_mutex_lock(&u.mtx);
		u.stop = true;
		pthread_cond_broadcast(&u.cv);
		pthread_mutex_unlock(&u.mtx);
		pthread_join(u.poller, NULL);
	}
	cli_signal_thread_stop();
	drain(&u);
	free(u.typed);
	if (u.wake[0] >= 0) {
		close(u.wake[0]);
		close(u.wake[1]);
	}
	pthread_mutex_destroy(&u.mtx);
	pthread_cond_destroy(&u.cv);
	the_ui = NULL;
	return rc;
}

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

#include "app.h"

#define POLL_WAIT_MS 10000
#define QUEUE_MAX 5000	   /* lines waiting for the terminal; the poller waits beyond */
#define JOIN_HISTORY 20
#define LINE_MAX_BYTES 8192 /* one typed line */
#define ROOM_ID_MAX 64

typedef struct qline {
	struct qline *next;
	char text[];
} qline;

typedef struct ui {
	cli_ctx *ctx;
	parley_conn *conn;
	bool tty;
	bool rl_active;		/* the libedit handler is installed */
	bool quit;
	bool logged_in;
	char user[RPC_USER_ID_MAX + 1];
	char room[ROOM_ID_MAX + 1]; /* the room on screen, "" for none */
	char prompt[ROOM_ID_MAX + RPC_USER_ID_MAX + 8];
	char *typed;		/* a line from libedit, not yet handled */
	bool typed_eof;

	/* Input from a pipe. */
	char in[LINE_MAX_BYTES * 2];
	size_t in_len;
	size_t in_used;		/* bytes of in[] handed out as the last line */
	bool in_eof;

	int wake[2];		/* self-pipe: poller and signals -> main */
	pthread_t poller;
	bool poller_running;

	pthread_mutex_t mtx;
	pthread_cond_t cv;	/* follow handed over, queue space, stop */
	parley_follow *follow;
	uint64_t gen;
	parley_follow *busy;	/* the follower the poller is polling now */
	parley_follow *zombie;	/* taken back while busy: the poller frees it */
	bool stop;
	bool down;		/* the connection was lost and not yet back */
	char me[RPC_USER_ID_MAX + 1]; /* the user, for the poller */
	qline *q_head, *q_tail;
	size_t q_len;
} ui;

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
static void
show(ui *u, const char *line)
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

static void
show_sb(ui *u, strbuf *sb)
{
	show(u, sb->oom ? "error: RESOURCE_EXHAUSTED: out of memory" : sb_str(sb));
}

static void
show_error(ui *u, rpc_code code, const char *message)
{
	strbuf sb = {0};

	cli_error_line(&sb, code, message);
	show_sb(u, &sb);
	sb_free(&sb);
}

/* "* text" + a terminal-safe arg + rest. */
static void
note(ui *u, const char *text, const char *arg, const char *rest)
{
	strbuf sb = {0};

	sb_puts(&sb, "* ");
	sb_puts(&sb, text);
	if (arg != NULL)
		sb_sanitized(&sb, arg, 100);
	if (rest != NULL)
		sb_puts(&sb, rest);
	show_sb(u, &sb);
	sb_free(&sb);
}

static void
show_event(ui *u, const Parley__V1__Event *ev)
{
	strbuf sb = {0};

	cli_event_line(&sb, ev, false);
	if (sb.len > 0)
		show_sb(u, &sb);
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
static void
stop_following(ui *u)
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

static void
start_following(ui *u, parley_follow *f)
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
		show(u, p->text);
	batch_free(l);
}

/* Input -------------------------------------------------------------------- */

static void
set_prompt(ui *u)
{
	if (!u->logged_in)
		snprintf(u->prompt, sizeof(u->prompt), "parley> ");
	else if (u->room[0] == '\0')
		snprintf(u->prompt, sizeof(u->prompt), "%s> ", u->user);
	else
		snprintf(u->prompt, sizeof(u->prompt), "%s@%s> ", u->user, u->room);
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
static bool
ask(ui *u, const char *prompt, bool echo, char *buf, size_t len)
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
		show_error(u, RPC_INVALID_ARGUMENT, "too long");
		return false;
	}
	return buf[0] != '\0';
}

/* Commands ----------------------------------------------------------------- */

static char *
next_word(char **rest)
{
	char *p = *rest, *w;

	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0') {
		*rest = p;
		return NULL;
	}
	w = p;
	while (*p != '\0' && *p != ' ' && *p != '\t')
		p++;
	if (*p != '\0')
		*p++ = '\0';
	while (*p == ' ' || *p == '\t')
		p++;
	*rest = p;
	return w;
}

static void
cmd_help(ui *u, char *args)
{
	static const char *const out[] = {
		"  /register [USER]     create an account",
		"  /login [USER]        log in (the session is kept for next time)",
		"  /help                this list",
		"  /quit                leave parley (Ctrl-D, Ctrl-C too)",
	};
	static const char *const in[] = {
		"  /rooms               all rooms with their member counts (* yours, > here)",
		"  /create ROOM [NAME]  create a room",
		"  /join ROOM           enter a room: its last messages, then live",
		"  /leave               leave the room you are in",
		"  /who                 who is in this room",
		"  /history [N]         the last N events here (default 20)",
		"  /logout              end the session",
		"  /quit                leave parley, staying logged in",
		"  /help                this list",
		"  In a room, a line is sent as a message; start it with // to send a '/'.",
	};
	size_t n = u->logged_in ? sizeof(in) / sizeof(in[0]) : sizeof(out) / sizeof(out[0]);

	for (size_t i = 0; i < n; i++)
		show(u, u->logged_in ? in[i] : out[i]);
}

static void
cmd_quit(ui *u, char *args)
{
	u->quit = true;
}

static void
cmd_register(ui *u, char *args)
{
	char user[RPC_USER_ID_MAX + 1], pw[1100], again[1100];
	char *w = next_word(&args);
	Parley__V1__RegisterResponse *resp;
	rpc_status st;
	rpc_code code;

	if (w != NULL)
		snprintf(user, sizeof(user), "%s", w);
	else if (!ask(u, "user: ", true, user, sizeof(user)))
		return;
	if (!ask(u, "password: ", false, pw, sizeof(pw)))
		return;
	if (u->tty && (!ask(u, "password again: ", false, again, sizeof(again)) ||
		       strcmp(pw, again) != 0)) {
		explicit_bzero(pw, sizeof(pw));
		explicit_bzero(again, sizeof(again));
		show_error(u, RPC_INVALID_ARGUMENT, "the passwords do not match");
		return;
	}
	code = parley_register(u->conn, user, pw, NULL, NULL, &resp, &st);
	explicit_bzero(pw, sizeof(pw));
	explicit_bzero(again, sizeof(again));
	if (code != RPC_OK) {
		show_error(u, code, st.message);
		return;
	}
	note(u, "registered ", resp->user->user_id, "; now /login");
	parley_free(resp);
}

static void
logged_in_as(ui *u, const char *user)
{
	snprintf(u->user, sizeof(u->user), "%s", user);
	u->logged_in = true;
	u->room[0] = '\0';
}

static void
cmd_login(ui *u, char *args)
{
	char user[RPC_USER_ID_MAX + 1], pw[1100];
	char *w = next_word(&args);
	Parley__V1__LoginResponse *resp;
	rpc_status st;
	rpc_code code;

	if (w != NULL)
		snprintf(user, sizeof(user), "%s", w);
	else if (!ask(u, "user: ", true, user, sizeof(user)))
		return;
	if (!ask(u, "password: ", false, pw, sizeof(pw)))
		return;
	code = parley_login(u->conn, user, pw, &resp, &st);
	explicit_bzero(pw, sizeof(pw));
	if (code != RPC_OK) {
		show_error(u, code, st.message);
		return;
	}
	logged_in_as(u, resp->user->user_id);
	if (cli_save_login(u->ctx, resp) != CLI_EXIT_OK)
		show(u, "* (the session could not be saved; it lasts until you quit)");
	note(u, "logged in as ", resp->user->user_id, ". /rooms lists rooms, /join ROOM enters one.");
	parley_free(resp);
}

static void
cmd_logout(ui *u, char *args)
{
	char err[512];
	rpc_status st;
	rpc_code code;

	stop_following(u);
	u->room[0] = '\0';
	code = parley_logout(u->conn, &st);
	if (code != RPC_OK && code != RPC_UNAUTHENTICATED) {
		show_error(u, code, st.message);
		return;
	}
	if (!cli_session_remove(err, sizeof(err)))
		show_error(u, RPC_INTERNAL, err);
	u->logged_in = false;
	u->ctx->have_session = false;
	show(u, "* logged out");
}

static void
cmd_rooms(ui *u, char *args)
{
	Parley__V1__ListMyRoomsResponse *mine;
	char *page = NULL;
	rpc_status st;
	rpc_code code;
	int shown = 0;

	if ((code = parley_rooms_mine(u->conn, &mine, &st)) != RPC_OK) {
		show_error(u, code, st.message);
		return;
	}
	for (int pages = 0; pages < 100; pages++) {
		Parley__V1__ListRoomsResponse *resp;

		code = parley_rooms_list(u->conn, 200, page, &resp, &st);
		free(page);
		page = NULL;
		if (code != RPC_OK) {
			show_error(u, code, st.message);
			break;
		}
		for (size_t i = 0; i < resp->n_rooms; i++) {
			const Parley__V1__Room *r = resp->rooms[i];
			char mark = strcmp(r->room_id, u->room) == 0 ? '>' : ' ';
			strbuf sb = {0};

			for (size_t k = 0; mark == ' ' && k < mine->n_rooms; k++)
				if (strcmp(mine->rooms[k]->room_id, r->room_id) == 0)
					mark = '*';
			cli_room_line(&sb, r, mark);
			show_sb(u, &sb);
			sb_free(&sb);
			shown++;
		}
		if (resp->next_page_token[0] != '\0')
			page = strdup(resp->next_page_token);
		parley_free(resp);
		if (page == NULL)
			break;
	}
	free(page);
	parley_free(mine);
	if (shown == 0 && code == RPC_OK)
		show(u, "* no rooms yet: /create ROOM makes one");
}

static void
cmd_create(ui *u, char *args)
{
	char *room = next_word(&args);
	Parley__V1__CreateRoomResponse *resp;
	rpc_status st;
	rpc_code code;

	if (room == NULL) {
		show_error(u, RPC_INVALID_ARGUMENT, "usage: /create ROOM [NAME]");
		return;
	}
	code = parley_room_create(u->conn, room, args[0] ? args : NULL, NULL, &resp, &st);
	if (code != RPC_OK) {
		show_error(u, code, st.message);
		return;
	}
	note(u, "created room ", resp->room->room_id, "; /join it to enter");
	parley_free(resp);
}

/* Shows the last events of room and follows it from there: the session
 * starts at the history's head, so nothing is missed or shown twice. */
static void
enter_room(ui *u, const char *room)
{
	Parley__V1__GetHistoryResponse *h;
	parley_follow *f;
	parley_cursor cur;
	rpc_status st;
	rpc_code code;

	code = parley_room_join(u->conn, room, NULL, &st);
	if (code != RPC_OK && code != RPC_ALREADY_EXISTS) {
		show_error(u, code, st.message);
		return;
	}
	stop_following(u);
	u->room[0] = '\0';
	code = parley_history(u->conn, room, 0, 0, JOIN_HISTORY, &h, &st);
	if (code != RPC_OK) {
		show_error(u, code, st.message);
		return;
	}
	cur.room_id = room;
	cur.since_seq = h->head_seq;
	for (size_t i = 0; i < h->n_events; i++) {
		show_event(u, h->events[i]);
		if (h->events[i]->seq > cur.since_seq)
			cur.since_seq = h->events[i]->seq;
	}
	parley_free(h);
	if ((code = parley_follow_new(&f, u->conn, &cur, 1, &st)) != RPC_OK) {
		show_error(u, code, st.message);
		return;
	}
	snprintf(u->room, sizeof(u->room), "%s", room);
	start_following(u, f);
	note(u, "you are in ", room, "; type to chat, /help for commands");
}

static void
cmd_join(ui *u, char *args)
{
	char *room = next_word(&args);

	if (room == NULL || args[0] != '\0') {
		show_error(u, RPC_INVALID_ARGUMENT, "usage: /join ROOM");
		return;
	}
	if (strlen(room) > ROOM_ID_MAX) {
		show_error(u, RPC_INVALID_ARGUMENT, "room ids are at most 64 characters");
		return;
	}
	enter_room(u, room);
}

static bool
need_room(ui *u)
{
	if (u->room[0] != '\0')
		return true;
	show_error(u, RPC_FAILED_PRECONDITION, "not in a room; /join ROOM first");
	return false;
}

static void
cmd_leave(ui *u, char *args)
{
	char room[sizeof(u->room)];
	rpc_status st;
	rpc_code code;

	if (!need_room(u))
		return;
	memcpy(room, u->room, sizeof(room));
	stop_following(u);
	u->room[0] = '\0';
	if ((code = parley_room_leave(u->conn, room, &st)) != RPC_OK) {
		show_error(u, code, st.message);
		note(u, "still a member of ", room, "; /join to return");
		return;
	}
	note(u, "you left ", room, NULL);
}

static void
cmd_who(ui *u, char *args)
{
	Parley__V1__GetRoomResponse *resp;
	strbuf sb = {0};
	rpc_status st;
	rpc_code code;

	if (!need_room(u))
		return;
	if ((code = parley_room_get(u->conn, u->room, &resp, &st)) != RPC_OK) {
		show_error(u, code, st.message);
		return;
	}
	sb_puts(&sb, "* in ");
	sb_sanitized(&sb, resp->room->room_id, 64);
	sb_printf(&sb, " (%u): ", resp->room->member_count);
	for (size_t i = 0; i < resp->n_members; i++) {
		if (i > 0)
			sb_puts(&sb, ", ");
		sb_sanitized(&sb, resp->members[i], 64);
	}
	if (resp->room->member_count > resp->n_members)
		sb_printf(&sb, " and %zu more", (size_t)resp->room->member_count - resp->n_members);
	show_sb(u, &sb);
	sb_free(&sb);
	parley_free(resp);
}

static void
cmd_history(ui *u, char *args)
{
	Parley__V1__GetHistoryResponse *h;
	char *w = next_word(&args), *end;
	unsigned long n = JOIN_HISTORY;
	rpc_status st;
	rpc_code code;

	if (!need_room(u))
		return;
	if (w != NULL) {
		n = strtoul(w, &end, 10);
		if (*end != '\0' || n == 0 || n > PARLEY_HISTORY_MAX || w[0] == '-') {
			show_error(u, RPC_INVALID_ARGUMENT, "usage: /history [N], N from 1 to 500");
			return;
		}
	}
	if ((code = parley_history(u->conn, u->room, 0, 0, (uint32_t)n, &h, &st)) != RPC_OK) {
		show_error(u, code, st.message);
		return;
	}
	if (h->n_events == 0)
		show(u, "* nothing yet");
	for (size_t i = 0; i < h->n_events; i++)
		show_event(u, h->events[i]);
	parley_free(h);
}

static void
send_text(ui *u, const char *text)
{
	rpc_status st;
	rpc_code code;

	if (strlen(text) > 4096) {
		show_error(u, RPC_INVALID_ARGUMENT, "messages are at most 4096 bytes");
		return;
	}
	/* Shown when it comes back from the room, in order with the rest. */
	code = parley_send(u->conn, u->room, text, NULL, NULL, &st);
	if (code != RPC_OK)
		show_error(u, code, st.message);
}

typedef struct icmd {
	const char *name;
	void (*fn)(ui *u, char *args);
	int when; /* 0 always, 1 logged out only, 2 logged in only */
} icmd;

static const icmd icmds[] = {
	{"/help", cmd_help, 0},	  {"/quit", cmd_quit, 0},	{"/exit", cmd_quit, 0},
	{"/register", cmd_register, 1}, {"/login", cmd_login, 1},	{"/logout", cmd_logout, 2},
	{"/rooms", cmd_rooms, 2}, {"/create", cmd_create, 2}, {"/join", cmd_join, 2},
	{"/leave", cmd_leave, 2}, {"/who", cmd_who, 2},	{"/history", cmd_history, 2},
};

/* Erases the line just typed (the terminal shows the prompt and the text,
 * and the cursor sits on the row after): the message comes back from the
 * room and is shown then, with its time. */
static void
erase_typed(ui *u, const char *line)
{
	int cols = cli_term_columns(STDOUT_FILENO);
	size_t w = cli_display_width(u->prompt) + cli_display_width(line);

	if (!u->tty || cols <= 0)
		return;
	printf("\033[%zuA\r\033[J", w / (size_t)cols + 1);
	fflush(stdout);
}

static void
handle_line(ui *u, char *line)
{
	char *cmd, *args;

	while (*line == ' ' || *line == '\t')
		line++;
	if (line[0] == '\0')
		return;
	if (line[0] != '/' || line[1] == '/') {
		if (!u->logged_in) {
			show_error(u, RPC_UNAUTHENTICATED, "not logged in; /login USER or /register USER");
			return;
		}
		if (!need_room(u))
			return;
		erase_typed(u, line);
		send_text(u, line[0] == '/' ? line + 1 : line);
		return;
	}
	args = line;
	cmd = next_word(&args);
	for (size_t i = 0; i < sizeof(icmds) / sizeof(icmds[0]); i++) {
		if (strcmp(icmds[i].name, cmd) != 0)
			continue;
		if (icmds[i].when == 1 && u->logged_in) {
			strbuf sb = {0};
			sb_puts(&sb, "already logged in as ");
			sb_puts(&sb, u->user);
			sb_puts(&sb, "; /logout first");
			show_error(u, RPC_FAILED_PRECONDITION, sb_str(&sb));
			sb_free(&sb);
		} else if (icmds[i].when == 2 && !u->logged_in) {
			show_error(u, RPC_UNAUTHENTICATED, "not logged in; /login USER or /register USER");
		} else {
			icmds[i].fn(u, args);
		}
		return;
	}
	{
		strbuf sb = {0};
		sb_puts(&sb, "unknown command ");
		sb_sanitized(&sb, cmd, 32);
		sb_puts(&sb, " (try /help)");
		show_error(u, RPC_INVALID_ARGUMENT, sb_str(&sb));
		sb_free(&sb);
	}
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
	handle_line(u, line);
	drain(u);
	if (!u->quit)
		editor_on(u);
}

static void
resume_session(ui *u)
{
	Parley__V1__ListMyRoomsResponse *mine;
	rpc_status st;
	rpc_code code;

	if (!u->ctx->have_session)
		return;
	code = parley_rooms_mine(u->conn, &mine, &st);
	if (code == RPC_UNAUTHENTICATED) {
		show(u, "* the saved session has ended; /login again");
		parley_set_token(u->conn, NULL, NULL);
		return;
	}
	logged_in_as(u, u->ctx->session.user);
	if (code != RPC_OK) {
		show_error(u, code, st.message);
	} else {
		parley_free(mine);
	}
	note(u, "logged in as ", u->user, " (saved session). /rooms, /join ROOM, /help.");
}

int
cli_interactive(cli_ctx *ctx)
{
	ui u = {.ctx = ctx, .conn = ctx->conn, .wake = {-1, -1}};
	int rc = CLI_EXIT_OK;

	the_ui = &u;
	u.tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
	pthread_mutex_init(&u.mtx, NULL);
	pthread_cond_init(&u.cv, NULL);
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

	show(&u, "parley: chat on Parley. /help lists the commands.");
	resume_session(&u);
	if (!u.logged_in)
		show(&u, "* /register USER to create an account, /login USER to log in");
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
	stop_following(&u);
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

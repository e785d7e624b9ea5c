/*
 * commands.c — the scripted subcommands of `parley`: one function each,
 * listed in cli_commands at the bottom. A command prints its result on
 * stdout (text, or JSON with --json: one object per line), its errors on
 * stderr, and returns the exit status (see parley.c).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "version.h"

#define PASSWORD_MAX 1100 /* the server takes 8-1024 bytes */
#define TEXT_MAX 4096	  /* the server's limit on a message */
#define TAIL_DEFAULT_LINES 10
#define HISTORY_DEFAULT_LINES 20
#define TAIL_POLL_MS 25000
#define TAIL_ROOMS_MAX 64
#define LIST_PAGES_MAX 1000
#define HEALTH_TIMEOUT_MS 3000

/* Writes sb and a newline to stdout; false (after saying so) on failure. */
static bool
emit(const strbuf *sb)
{
	if (sb->oom) {
		cli_local_error("out of memory");
		return false;
	}
	if (!cli_write_line(stdout, sb)) {
		/* A reader that went away (| head) is no news. */
		if (errno != EPIPE)
			cli_local_error("cannot write the output: %s", strerror(errno));
		return false;
	}
	return true;
}

/* Prints prefix and a terminal-safe arg as one line. */
static int
say(const char *prefix, const char *arg)
{
	strbuf sb = {0};

	sb_puts(&sb, prefix);
	sb_sanitized(&sb, arg, 0);
	if (!emit(&sb)) {
		sb_free(&sb);
		return CLI_EXIT_LOCAL;
	}
	sb_free(&sb);
	return CLI_EXIT_OK;
}

/* Set for commands that act with the saved session: an UNAUTHENTICATED
 * then means that session has ended, and the way on is to log in again. */
static bool session_command;

static int
fail(rpc_code code, const rpc_status *st)
{
	if (code == RPC_UNAUTHENTICATED && session_command) {
		strbuf sb = {0};
		int rc;

		sb_puts(&sb, st->message);
		sb_puts(&sb, " (the saved session has ended; run 'parley login USER' to log in again)");
		rc = cli_fail(code, sb_str(&sb));
		sb_free(&sb);
		return rc;
	}
	return cli_fail(code, st->message);
}

void
cli_commands_init(const cli_command *cmd)
{
	session_command = cmd->needs_login;
}

/* register / login / logout ---------------------------------------------- */

static int
cmd_register(cli_ctx *ctx, int argc, char **argv)
{
	char pw[PASSWORD_MAX];
	Parley__V1__RegisterResponse *resp;
	rpc_status st;
	rpc_code code;
	int rc;

	/* Before the password prompts: nobody should type a password twice
	 * for an id the server refuses. */
	if (!parley_user_id_valid(argv[0]))
		return cli_usage_error(ctx, "'%s' is not a user id: a user id is %s", argv[0],
				       PARLEY_USER_ID_RULE);
	if ((rc = cli_read_password(ctx, true, pw, sizeof(pw))) != CLI_EXIT_OK)
		return rc;
	code = parley_register(ctx->conn, argv[0], pw, ctx->display_name, ctx->email, &resp, &st);
	explicit_bzero(pw, sizeof(pw));
	if (code != RPC_OK)
		return fail(code, &st);
	rc = say("registered ", resp->user->user_id);
	parley_free(resp);
	return rc;
}

static int
cmd_login(cli_ctx *ctx, int argc, char **argv)
{
	char pw[PASSWORD_MAX];
	Parley__V1__LoginResponse *resp;
	rpc_status st;
	rpc_code code;
	int rc;

	if ((rc = cli_read_password(ctx, false, pw, sizeof(pw))) != CLI_EXIT_OK)
		return rc;
	parley_set_token(ctx->conn, NULL, NULL);
	code = parley_login(ctx->conn, argv[0], pw, &resp, &st);
	explicit_bzero(pw, sizeof(pw));
	if (code != RPC_OK)
		return fail(code, &st);
	rc = cli_save_login(ctx, resp);
	if (rc != CLI_EXIT_OK)
		parley_logout(ctx->conn, NULL); /* a token we cannot keep is no use */
	else
		rc = say("logged in as ", resp->user->user_id);
	parley_free(resp);
	return rc;
}

static int
cmd_logout(cli_ctx *ctx, int argc, char **argv)
{
	char err[512];
	rpc_status st;
	rpc_code code = parley_logout(ctx->conn, &st);

	/* UNAUTHENTICATED: the token had expired or been revoked already; the
	 * saved copy is useless either way. */
	if (code != RPC_OK && code != RPC_UNAUTHENTICATED)
		return fail(code, &st);
	if (!cli_session_remove(err, sizeof(err)))
		return cli_local_error("%s", err);
	return say("logged out", code == RPC_OK ? "" : " (the session had already ended)");
}

/* rooms / create / join / leave / who --------------------------------------- */

/* The ids of the caller's rooms, for marking; *ids owned by the caller. */
static rpc_code
my_room_ids(cli_ctx *ctx, Parley__V1__ListMyRoomsResponse **mine, rpc_status *st)
{
	return parley_rooms_mine(ctx->conn, mine, st);
}

static int
is_mine(const Parley__V1__ListMyRoomsResponse *mine, const char *room_id)
{
	for (size_t i = 0; i < mine->n_rooms; i++)
		if (strcmp(mine->rooms[i]->room_id, room_id) == 0)
			return 1;
	return 0;
}

static bool
print_room(const cli_ctx *ctx, const Parley__V1__Room *r, int member)
{
	strbuf sb = {0};
	bool ok;

	if (ctx->json)
		cli_room_json(&sb, r, member);
	else
		cli_room_line(&sb, r, member ? '*' : ' ');
	ok = emit(&sb);
	sb_free(&sb);
	return ok;
}

static int
cmd_rooms(cli_ctx *ctx, int argc, char **argv)
{
	Parley__V1__ListMyRoomsResponse *mine;
	char *page = NULL;
	rpc_status st;
	rpc_code code;
	int rc = CLI_EXIT_OK;

	if ((code = my_room_ids(ctx, &mine, &st)) != RPC_OK)
		return fail(code, &st);
	if (ctx->mine) {
		for (size_t i = 0; i < mine->n_rooms && rc == CLI_EXIT_OK; i++)
			if (!print_room(ctx, mine->rooms[i], 1))
				rc = CLI_EXIT_LOCAL;
		parley_free(mine);
		return rc;
	}
	for (int pages = 0; pages < LIST_PAGES_MAX && rc == CLI_EXIT_OK; pages++) {
		Parley__V1__ListRoomsResponse *resp;

		code = parley_rooms_list(ctx->conn, 200, page, &resp, &st);
		free(page);
		page = NULL;
		if (code != RPC_OK) {
			rc = fail(code, &st);
			break;
		}
		for (size_t i = 0; i < resp->n_rooms && rc == CLI_EXIT_OK; i++)
			if (!print_room(ctx, resp->rooms[i], is_mine(mine, resp->rooms[i]->room_id)))
				rc = CLI_EXIT_LOCAL;
		if (resp->next_page_token[0] != '\0' &&
		    (page = strdup(resp->next_page_token)) == NULL)
			rc = cli_local_error("out of memory");
		parley_free(resp);
		if (page == NULL)
			break;
	}
	free(page);
	parley_free(mine);
	return rc;
}

static int
cmd_create(cli_ctx *ctx, int argc, char **argv)
{
	Parley__V1__CreateRoomResponse *resp;
	const char *name = argc > 1 ? argv[1] : ctx->name;
	rpc_status st;
	rpc_code code;
	int rc;

	if (argc > 1 && ctx->name != NULL)
		return cli_usage_error(ctx, "give the name once: as an argument or with --name");
	code = parley_room_create(ctx->conn, argv[0], name, ctx->topic, &resp, &st);
	if (code != RPC_OK)
		return fail(code, &st);
	rc = say("created room ", resp->room->room_id);
	parley_free(resp);
	return rc;
}

static int
cmd_join(cli_ctx *ctx, int argc, char **argv)
{
	rpc_status st;
	rpc_code code = parley_room_join(ctx->conn, argv[0], NULL, &st);

	/* Joining a room one is in already is what was asked for. */
	if (code == RPC_ALREADY_EXISTS)
		return say("already in ", argv[0]);
	if (code != RPC_OK)
		return fail(code, &st);
	return say("joined ", argv[0]);
}

static int
cmd_leave(cli_ctx *ctx, int argc, char **argv)
{
	rpc_status st;
	rpc_code code = parley_room_leave(ctx->conn, argv[0], &st);

	if (code != RPC_OK)
		return fail(code, &st);
	return say("left ", argv[0]);
}

static int
cmd_who(cli_ctx *ctx, int argc, char **argv)
{
	Parley__V1__GetRoomResponse *resp;
	strbuf sb = {0};
	rpc_status st;
	rpc_code code;
	int rc = CLI_EXIT_OK;

	if ((code = parley_room_get(ctx->conn, argv[0], &resp, &st)) != RPC_OK)
		return fail(code, &st);
	if (ctx->json) {
		sb_puts(&sb, "{\"room_id\":");
		sb_json_string(&sb, resp->room->room_id);
		sb_printf(&sb, ",\"member_count\":%u,\"members\":[", resp->room->member_count);
		for (size_t i = 0; i < resp->n_members; i++) {
			if (i > 0)
				sb_putc(&sb, ',');
			sb_json_string(&sb, resp->members[i]);
		}
		sb_puts(&sb, "]}");
		if (!emit(&sb))
			rc = CLI_EXIT_LOCAL;
	} else {
		for (size_t i = 0; i < resp->n_members && rc == CLI_EXIT_OK; i++) {
			sb_reset(&sb);
			sb_sanitized(&sb, resp->members[i], 64);
			if (!emit(&sb))
				rc = CLI_EXIT_LOCAL;
		}
		if (rc == CLI_EXIT_OK && resp->room->member_count > resp->n_members)
			fprintf(stderr, "parley: %u members in all; the server listed %zu\n",
				resp->room->member_count, resp->n_members);
	}
	sb_free(&sb);
	parley_free(resp);
	return rc;
}

/* send / history ---------------------------------------------------------- */

/* The message text: the arguments joined by spaces, or stdin for "-". */
static int
message_text(const cli_ctx *ctx, int argc, char **argv, strbuf *text)
{
	if (argc == 1 && strcmp(argv[0], "-") == 0) {
		char buf[4096];
		ssize_t n;

		while ((n = read(STDIN_FILENO, buf, sizeof(buf))) != 0) {
			if (n < 0)
				return cli_local_error("cannot read standard input");
			sb_put(text, buf, (size_t)n);
			if (text->len > TEXT_MAX + 2)
				break;
		}
		if (text->len > 0 && text->p[text->len - 1] == '\n')
			text->p[--text->len] = '\0';
		if (text->len > 0 && text->p[text->len - 1] == '\r')
			text->p[--text->len] = '\0';
	} else {
		for (int i = 0; i < argc; i++) {
			if (i > 0)
				sb_putc(text, ' ');
			sb_puts(text, argv[i]);
		}
	}
	if (text->oom)
		return cli_local_error("out of memory");
	if (text->len == 0 || cli_text_blank(text->p))
		return cli_usage_error(ctx, "nothing to send (the message is empty or only spaces)");
	if (text->len > TEXT_MAX)
		return cli_usage_error(ctx, "message longer than %d bytes", TEXT_MAX);
	if (strlen(text->p) != text->len)
		return cli_usage_error(ctx, "message contains a NUL byte");
	return CLI_EXIT_OK;
}

/* The --json line of a sent message. */
static bool
emit_sent(const char *room, uint64_t seq, uint64_t ts_ms, const char *client_msg_id)
{
	strbuf out = {0};
	bool ok;

	sb_puts(&out, "{\"room_id\":");
	sb_json_string(&out, room);
	sb_printf(&out, ",\"seq\":%llu,\"ts_ms\":%llu,\"client_msg_id\":\"%s\"}",
		  (unsigned long long)seq, (unsigned long long)ts_ms, client_msg_id);
	ok = emit(&out);
	sb_free(&out);
	return ok;
}

/* `send --each-line ROOM -`: every line of standard input is a message
 * of its own. Lines go out in order as they arrive, those at hand together
 * in one SendBatch (at most PARLEY_SEND_BATCH_MAX messages and
 * EACH_LINE_BATCH_BYTES of text a call); blank lines are skipped. */
#define EACH_LINE_BATCH_BYTES (48 * 1024)

typedef struct line_batch {
	const char *rooms[PARLEY_SEND_BATCH_MAX], *texts[PARLEY_SEND_BATCH_MAX];
	const char *ids[PARLEY_SEND_BATCH_MAX];
	char id_buf[PARLEY_SEND_BATCH_MAX][PARLEY_CLIENT_MSG_ID_LEN + 1];
	size_t line_no[PARLEY_SEND_BATCH_MAX];
	size_t n, bytes;
} line_batch;

/* Sends what b holds; prints each message with --json. */
static int
flush_lines(cli_ctx *ctx, line_batch *b)
{
	Parley__V1__SendBatchResponse *resp;
	rpc_status st;
	rpc_code code;
	size_t idx;
	int rc = CLI_EXIT_OK;

	if (b->n == 0)
		return CLI_EXIT_OK;
	code = parley_send_batch(ctx->conn, b->n, b->rooms, b->texts, b->ids, &resp, &st);
	if (code != RPC_OK) {
		/* The server names a refused message by its index: say its line. */
		const char *named_at = strstr(st.message, "messages[");

		if (named_at != NULL && sscanf(named_at, "messages[%zu]", &idx) == 1 &&
		    idx < b->n) {
			strbuf named = {0};

			sb_printf(&named, "line %zu: %s", b->line_no[idx], st.message);
			rc = cli_fail(code, sb_str(&named));
			sb_free(&named);
			return rc;
		}
		return fail(code, &st);
	}
	for (size_t i = 0; ctx->json && rc == CLI_EXIT_OK && i < b->n; i++)
		if (!emit_sent(b->rooms[i], resp->results[i]->seq, resp->results[i]->ts_ms,
			       b->ids[i]))
			rc = CLI_EXIT_LOCAL;
	parley_free(resp);
	b->n = b->bytes = 0;
	return rc;
}

static int
send_lines(cli_ctx *ctx, const char *room)
{
	static line_batch b;
	strbuf in = {0};
	char buf[64 * 1024];
	size_t line_no = 0, used;
	int rc = CLI_EXIT_OK;
	bool eof = false;

	while (rc == CLI_EXIT_OK && !eof) {
		ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = cli_local_error("cannot read standard input: %s", strerror(errno));
			break;
		}
		eof = n == 0;
		sb_put(&in, buf, (size_t)n);
		if (in.oom) {
			rc = cli_local_error("out of memory");
			break;
		}
		/* The complete lines at hand (and at the end, the last one). */
		used = 0;
		while (rc == CLI_EXIT_OK && used < in.len) {
			char *line = in.p + used, *nl = memchr(line, '\n', in.len - used);
			size_t len;

			if (nl == NULL && !eof) {
				/* A line that cannot fit is refused now, not read whole. */
				if (in.len - used > TEXT_MAX + 1)
					rc = cli_usage_error(ctx, "line %zu is longer than %d bytes",
							     line_no + 1, TEXT_MAX);
				break;
			}
			len = nl != NULL ? (size_t)(nl - line) : in.len - used;
			used += len + (nl != NULL);
			line_no++;
			if (len > 0 && line[len - 1] == '\r')
				len--;
			line[len] = '\0';
			if (strlen(line) != len)
				rc = cli_usage_error(ctx, "line %zu contains a NUL byte", line_no);
			else if (len > TEXT_MAX)
				rc = cli_usage_error(ctx, "line %zu is longer than %d bytes", line_no,
						     TEXT_MAX);
			if (rc != CLI_EXIT_OK || len == 0 || cli_text_blank(line))
				continue;
			if (b.n == PARLEY_SEND_BATCH_MAX || b.bytes + len > EACH_LINE_BATCH_BYTES)
				rc = flush_lines(ctx, &b);
			if (rc != CLI_EXIT_OK)
				break;
			parley_new_client_msg_id(b.id_buf[b.n]);
			b.ids[b.n] = b.id_buf[b.n];
			b.rooms[b.n] = room;
			b.texts[b.n] = line;
			b.line_no[b.n++] = line_no;
			b.bytes += len;
		}
		/* The texts point into in: send them before it moves. */
		if (rc == CLI_EXIT_OK)
			rc = flush_lines(ctx, &b);
		memmove(in.p, in.p + used, in.len - used);
		in.len -= used;
	}
	sb_free(&in);
	return rc;
}

static int
cmd_send(cli_ctx *ctx, int argc, char **argv)
{
	Parley__V1__SendResponse *resp;
	char id[PARLEY_CLIENT_MSG_ID_LEN + 1];
	strbuf text = {0};
	rpc_status st;
	rpc_code code;
	int rc;

	if (ctx->each_line) {
		if (argc != 2 || strcmp(argv[1], "-") != 0)
			return cli_usage_error(ctx, "--each-line reads the messages from standard "
						    "input: give TEXT as '-'");
		return send_lines(ctx, argv[0]);
	}
	if ((rc = message_text(ctx, argc - 1, argv + 1, &text)) != CLI_EXIT_OK) {
		sb_free(&text);
		return rc;
	}
	parley_new_client_msg_id(id);
	code = parley_send(ctx->conn, argv[0], text.p, id, &resp, &st);
	sb_free(&text);
	if (code != RPC_OK)
		return fail(code, &st);
	if (ctx->json && !emit_sent(argv[0], resp->seq, resp->ts_ms, id))
		rc = CLI_EXIT_LOCAL;
	parley_free(resp);
	return rc;
}

/* Prints one event as text or JSON; a kind this client does not know is
 * skipped in text. */
static bool
print_event(const cli_ctx *ctx, const Parley__V1__Event *ev, bool room)
{
	strbuf sb = {0};
	bool ok = true;

	if (ctx->json)
		cli_event_json(&sb, ev);
	else
		cli_event_line(&sb, ev, room);
	if (sb.len > 0 || sb.oom)
		ok = emit(&sb);
	sb_free(&sb);
	return ok;
}

static int
cmd_history(cli_ctx *ctx, int argc, char **argv)
{
	Parley__V1__GetHistoryResponse *resp;
	uint32_t n = (ctx->given & OPT_LINES) ? ctx->lines : HISTORY_DEFAULT_LINES;
	rpc_status st;
	rpc_code code;
	int rc = CLI_EXIT_OK;

	if ((ctx->given & OPT_BEFORE) && (ctx->given & OPT_AFTER))
		return cli_usage_error(ctx, "--before and --after do not go together");
	/* 0 would mean "unset" on the wire, and so the latest events. */
	if ((ctx->given & OPT_BEFORE) && ctx->before == 0)
		return cli_usage_error(ctx, "--before: '0' is not a sequence number from 1 up");
	if ((ctx->given & OPT_AFTER) && ctx->after == 0)
		return cli_usage_error(ctx, "--after: '0' is not a sequence number from 1 up");
	code = parley_history(ctx->conn, argv[0], ctx->before, ctx->after, n, &resp, &st);
	if (code != RPC_OK)
		return fail(code, &st);
	for (size_t i = 0; i < resp->n_events && rc == CLI_EXIT_OK; i++)
		if (!print_event(ctx, resp->events[i], false))
			rc = CLI_EXIT_LOCAL;
	parley_free(resp);
	return rc;
}

/* tail ---------------------------------------------------------------------- */

typedef struct tail_state {
	const cli_ctx *ctx;
	bool many;	   /* more than one room: prefix lines with the room */
	bool write_failed;
	pthread_mutex_t mtx; /* guards follow and stop, shared with the signal thread */
	parley_follow *follow;
	bool stop;
} tail_state;

static void
tail_signal(int sig, void *arg)
{
	tail_state *t = arg;

	if (sig == SIGWINCH)
		return;
	pthread_mutex_lock(&t->mtx);
	t->stop = true;
	if (t->follow != NULL)
		parley_follow_cancel(t->follow);
	pthread_mutex_unlock(&t->mtx);
}

/* A room left from elsewhere (who removed the user and why, when the event
 * says), or joined again: said on stderr at once; its events resume from
 * where they stopped when the user is a member again. */
static void
tail_member(const char *room_id, bool member, const Parley__V1__Event *ev, void *arg)
{
	strbuf sb = {0};

	(void)arg;
	sb_puts(&sb, "parley: ");
	cli_member_words(&sb, room_id, member, ev, NULL);
	sb_puts(&sb, member ? "; resuming" : "; waiting until you are a member again (parley join ROOM)");
	cli_write_line(stderr, &sb);
	sb_free(&sb);
}

static void
tail_event(const Parley__V1__Event *ev, void *arg)
{
	tail_state *t = arg;

	if (!t->write_failed && !print_event(t->ctx, ev, t->many))
		t->write_failed = true;
}

/* Shows the last n events of room and returns the seq to follow from. */
static int
tail_start(tail_state *t, const char *room, uint32_t n, uint64_t *since)
{
	Parley__V1__GetHistoryResponse *resp;
	rpc_status st;
	rpc_code code;
	size_t first;

	/* The last n, or just the head for -n 0 (limit 0 is the server's
	 * default, not none). */
	code = parley_history(t->ctx->conn, room, 0, 0, n ? n : 1, &resp, &st);
	if (code != RPC_OK)
		return fail(code, &st);
	*since = resp->head_seq;
	if (resp->n_events > 0 && resp->events[resp->n_events - 1]->seq > *since)
		*since = resp->events[resp->n_events - 1]->seq;
	first = n == 0 ? resp->n_events : 0;
	for (size_t i = first; i < resp->n_events && !t->write_failed; i++)
		tail_event(resp->events[i], t);
	parley_free(resp);
	return t->write_failed ? CLI_EXIT_LOCAL : CLI_EXIT_OK;
}

static int
cmd_tail(cli_ctx *ctx, int argc, char **argv)
{
	tail_state t = {.ctx = ctx, .many = argc > 1};
	parley_cursor cur[TAIL_ROOMS_MAX];
	uint32_t n = (ctx->given & OPT_LINES) ? ctx->lines : TAIL_DEFAULT_LINES;
	parley_follow *f = NULL;
	bool down = false;
	rpc_status st;
	rpc_code code;
	int rc = CLI_EXIT_OK;

	if ((ctx->given & OPT_SINCE) && (ctx->given & OPT_LINES))
		return cli_usage_error(ctx, "-n and --since do not go together");
	if (argc > TAIL_ROOMS_MAX)
		return cli_usage_error(ctx, "at most %d rooms", TAIL_ROOMS_MAX);
	pthread_mutex_init(&t.mtx, NULL);
	if (!cli_signal_thread_start(tail_signal, &t)) {
		rc = cli_local_error("cannot start a thread");
		goto out;
	}
	for (int i = 0; i < argc && rc == CLI_EXIT_OK; i++) {
		cur[i].room_id = argv[i];
		cur[i].since_seq = ctx->since;
		if (!(ctx->given & OPT_SINCE))
			rc = tail_start(&t, argv[i], n, &cur[i].since_seq);
	}
	if (rc != CLI_EXIT_OK)
		goto out;
	if ((code = parley_follow_new(&f, ctx->conn, cur, (size_t)argc, &st)) != RPC_OK) {
		rc = fail(code, &st);
		goto out;
	}
	pthread_mutex_lock(&t.mtx);
	t.follow = f;
	if (t.stop)
		parley_follow_cancel(f);
	pthread_mutex_unlock(&t.mtx);
	parley_follow_watch(f, ctx->session.user, 0, tail_member, &t);

	for (;;) {
		code = parley_follow_poll(f, TAIL_POLL_MS, tail_event, &t, &st);
		if (t.write_failed) {
			rc = CLI_EXIT_LOCAL;
			break;
		}
		if (code == RPC_OK) {
			if (down)
				fprintf(stderr, "parley: resumed\n");
			down = false;
		} else if (code == RPC_CANCELLED) {
			break;
		} else if (parley_code_transient(code) || code == RPC_NOT_FOUND) {
			if (!down) {
				strbuf sb = {0};

				sb_puts(&sb, "parley: connection lost (");
				sb_humanized(&sb, st.message, 200);
				sb_puts(&sb, "); resuming when the server is back");
				cli_write_line(stderr, &sb);
				sb_free(&sb);
			}
			down = true;
		} else {
			rc = fail(code, &st);
			break;
		}
	}
out:
	cli_signal_thread_stop();
	pthread_mutex_lock(&t.mtx);
	t.follow = NULL;
	pthread_mutex_unlock(&t.mtx);
	parley_follow_free(f);
	pthread_mutex_destroy(&t.mtx);
	return rc;
}

/* health -------------------------------------------------------------------- */

static int
cmd_health(cli_ctx *ctx, int argc, char **argv)
{
	bool want[PARLEY_NSERVICES] = {0};
	uint32_t timeout = ctx->timeout_ms ? ctx->timeout_ms : HEALTH_TIMEOUT_MS;
	int rc = CLI_EXIT_OK;
	strbuf sb = {0};

	for (int i = 0; i < argc; i++) {
		int s = 0;

		while (s < PARLEY_NSERVICES && strcmp(argv[i], parley_service_name(s)) != 0)
			s++;
		if (s == PARLEY_NSERVICES)
			return cli_usage_error(ctx, "no service '%s' (auth, rooms, history, messaging)",
					       argv[i]);
		want[s] = true;
	}
	for (int s = 0; s < PARLEY_NSERVICES; s++) {
		Parley__V1__HealthCheckResponse__ServingStatus serving;
		const char *name;
		rpc_status st;
		rpc_code code;

		if (argc > 0 && !want[s])
			continue;
		code = parley_health(ctx->conn, s, timeout, &serving, &st);
		name = code != RPC_OK ? rpc_code_name(code)
		       : serving == PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
			       ? "SERVING"
		       : serving == PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
			       ? "NOT_SERVING"
			       : "UNKNOWN";
		sb_reset(&sb);
		if (ctx->json) {
			sb_printf(&sb, "{\"service\":\"%s\",\"url\":", parley_service_name(s));
			sb_json_string(&sb, parley_endpoint(ctx->conn, s));
			sb_printf(&sb, ",\"status\":\"%s\"", name);
			if (code != RPC_OK) {
				sb_puts(&sb, ",\"error\":");
				sb_json_string(&sb, st.message);
			}
			sb_putc(&sb, '}');
		} else {
			sb_printf(&sb, "%-10s ", parley_service_name(s));
			sb_sanitized(&sb, parley_endpoint(ctx->conn, s), 0);
			sb_printf(&sb, "  %s", name);
		}
		if (!emit(&sb)) {
			rc = CLI_EXIT_LOCAL;
			break;
		}
		if (code != RPC_OK) {
			cli_fail(code, st.message);
			rc = CLI_EXIT_STATUS;
		} else if (strcmp(name, "SERVING") != 0) {
			strbuf msg = {0};

			sb_printf(&msg, "%s is %s", parley_service_name(s), name);
			cli_fail(RPC_UNAVAILABLE, sb_str(&msg));
			sb_free(&msg);
			rc = CLI_EXIT_STATUS;
		}
	}
	sb_free(&sb);
	return rc;
}

/* whoami / version ----------------------------------------------------------- */

/* The saved login, checked with the server: a session that has ended says
 * so (and what to do) instead of printing a user it no longer is. */
static int
cmd_whoami(cli_ctx *ctx, int argc, char **argv)
{
	Parley__V1__ListMyRoomsResponse *mine;
	strbuf sb = {0};
	rpc_status st;
	rpc_code code = parley_rooms_mine(ctx->conn, &mine, &st);
	int rc = CLI_EXIT_OK;

	if (code == RPC_UNAUTHENTICATED)
		return cli_fail(code, "the saved session has ended; run 'parley login USER'");
	if (code != RPC_OK)
		return fail(code, &st);
	if (ctx->json) {
		sb_puts(&sb, "{\"user_id\":");
		sb_json_string(&sb, ctx->session.user);
		sb_printf(&sb, ",\"expires_at_ms\":%llu,\"rooms\":%zu,\"auth\":",
			  (unsigned long long)ctx->session.expires_ms, mine->n_rooms);
		sb_json_string(&sb, parley_endpoint(ctx->conn, PARLEY_AUTH));
		sb_putc(&sb, '}');
	} else {
		sb_sanitized(&sb, ctx->session.user, 0);
	}
	if (!emit(&sb))
		rc = CLI_EXIT_LOCAL;
	sb_free(&sb);
	parley_free(mine);
	return rc;
}

static int
cmd_version(cli_ctx *ctx, int argc, char **argv)
{
	printf("parley %s (commit %s)\n", parley_version, parley_commit);
	return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_LOCAL;
}

/* The table ------------------------------------------------------------------ */

const cli_command cli_commands[] = {
	{"register", cmd_register, OPT_PASSWORD_STDIN | OPT_DISPLAY_NAME | OPT_EMAIL, 1, 1, false,
	 false, "USER", "create an account",
	 "The password is asked twice on the terminal, or read from the first line of\n"
	 "standard input with --password-stdin.\n"
	 "  --display-name NAME   the name others see (default: USER)\n"
	 "  --email EMAIL\n"
	 "  --password-stdin\n"},
	{"login", cmd_login, OPT_PASSWORD_STDIN, 1, 1, false, false, "USER",
	 "log in and save the session for later commands",
	 "The session is saved in $XDG_CONFIG_HOME/parley/session (mode 0600) with\n"
	 "the addresses used, which later commands use unless told otherwise.\n"
	 "  --password-stdin      read the password from the first line of standard input\n"},
	{"logout", cmd_logout, 0, 0, 0, true, false, "", "end the saved session",
	 "Revokes the token on the server and removes the saved session.\n"},
	{"delete-account", cli_cmd_delete_account, OPT_PASSWORD_STDIN | OPT_YES, 0, 0, true, false,
	 "", "delete your account for good",
	 "Asks the password, then for your user id as confirmation. Every session\n"
	 "ends, you leave every room, your profile goes; your past messages stay and\n"
	 "the user id can never be registered again.\n"
	 "  --password-stdin      read the password from the first line of standard input\n"
	 "  --yes                 no confirmation (needed when standard input is not a terminal)\n"},
	{"rooms", cmd_rooms, OPT_JSON | OPT_MINE, 0, 0, true, false, "",
	 "list rooms with their member counts",
	 "Rooms you are in are marked with '*' (in JSON: \"member\": true).\n"
	 "  --mine                only the rooms you are in\n"
	 "  --json                one JSON object per room and line\n"},
	{"create", cmd_create, OPT_NAME | OPT_TOPIC, 1, 2, true, false, "ROOM [NAME]",
	 "create a room",
	 "ROOM is 1-64 characters of a-z, 0-9, '_', '.', '-'.\n"
	 "  --name NAME           the room's display name (default: ROOM)\n"
	 "  --topic TOPIC\n"},
	{"join", cmd_join, 0, 1, 1, true, false, "ROOM", "become a member of a room",
	 "Joining a room you are in already succeeds.\n"},
	{"leave", cmd_leave, 0, 1, 1, true, false, "ROOM", "stop being a member of a room",
	 "You can no longer read or write the room afterwards.\n"},
	{"who", cmd_who, OPT_JSON, 1, 1, true, false, "ROOM", "list the members of a room",
	 "One member per line.\n"
	 "  --json                one JSON object: room_id, member_count, members\n"},
	{"send", cmd_send, OPT_JSON | OPT_EACH_LINE, 2, -1, true, false, "ROOM TEXT...",
	 "send a message",
	 "The words of TEXT are joined with spaces; TEXT '-' reads the message from\n"
	 "standard input. A send that meets a network failure is retried in a way\n"
	 "that never stores the message twice.\n"
	 "  --each-line           with TEXT '-': every line of standard input is a\n"
	 "                        message of its own, sent in order as lines arrive\n"
	 "                        (up to 100 in one call); blank lines are skipped\n"
	 "  --json                print {\"room_id\",\"seq\",\"ts_ms\",\"client_msg_id\"}\n"
	 "                        (with --each-line, one such line per message)\n"},
	{"history", cmd_history, OPT_JSON | OPT_LINES | OPT_BEFORE | OPT_AFTER, 1, 1, true, false,
	 "ROOM", "show a room's recent events",
	 "  -n, --lines N         how many events (default 20, at most 500)\n"
	 "  --before SEQ          the events before sequence number SEQ\n"
	 "  --after SEQ           the events after sequence number SEQ\n"
	 "  --json                one JSON object per event and line: room_id, seq,\n"
	 "                        ts_ms, sender, type (message, joined, left), text\n"},
	{"tail", cmd_tail, OPT_JSON | OPT_LINES | OPT_SINCE, 1, TAIL_ROOMS_MAX, true, true,
	 "ROOM...", "follow rooms like tail -f",
	 "Shows the last events, then new ones as they happen, until interrupted.\n"
	 "A dropped connection or a server restart is survived: every message is\n"
	 "shown exactly once, in order.\n"
	 "Ends with status 0 on SIGINT or SIGTERM.\n"
	 "  -n, --lines N         events to show first (default 10)\n"
	 "  --since SEQ           instead, everything after sequence number SEQ\n"
	 "  --json                one JSON object per event and line (as history;\n"
	 "                        presence events have type online or offline, seq 0)\n"},
	{"whoami", cmd_whoami, OPT_JSON, 0, 0, true, false, "",
	 "show who you are logged in as",
	 "Prints the user of the saved session after checking with the server that\n"
	 "it is still valid (exit 1 and a hint to log in again if not).\n"
	 "  --json                {\"user_id\",\"expires_at_ms\",\"rooms\",\"auth\"}\n"},
	{"version", cmd_version, 0, 0, 0, false, false, "", "show parley's version",
	 "The same as parley --version.\n"},
	{"health", cmd_health, OPT_JSON, 0, PARLEY_NSERVICES, false, false, "[SERVICE...]",
	 "check that the services answer",
	 "Asks each service (auth, rooms, history, messaging; default all) for its\n"
	 "health; the exit status is 0 only if all are SERVING.\n"
	 "  --json                one JSON object per service and line\n"},
};
const size_t cli_ncommands = sizeof(cli_commands) / sizeof(cli_commands[0]);

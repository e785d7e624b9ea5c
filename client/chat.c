/*
 * chat.c — the slash commands of the interactive chat, what a typed
 * message needs, and the session's start and end; see ui.h. Runs on the
 * main thread, with the line editor off, so a command may ask for a
 * password and print freely.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ui.h"

char *
chat_next_word(char **rest)
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
		"  /register [USER]     create an account (asks for the password twice, a",
		"                       display name and an email)",
		"  /login [USER]        log in (the session is kept for next time)",
		"  /help                this list",
		"  /quit                leave parley (Ctrl-D, Ctrl-C too)",
	};
	static const char *const in[] = {
		"  /rooms               rooms with member and unread counts (* yours, > here)",
		"  /create ROOM [NAME]  create a room",
		"  /join ROOM           enter a room: its last messages, then live",
		"  /leave               leave the room you are in",
		"  /who                 who is in this room: online or not, and roles",
		"  /history [N]         the last N events here with their numbers (#SEQ)",
		"  /msg USER TEXT       a direct message to USER",
		"  /query USER          enter your direct conversation with USER",
		"  /me ACTION           say what you do: * you ACTION",
		"  /topic [TEXT]        show the room's topic, or set it (moderators)",
		"  /edit [#SEQ] TEXT    change your last message here (or message #SEQ)",
		"  /delete [SEQ]        delete your last message here (or #SEQ; moderators:",
		"                       anyone's)",
		"  /kick USER [REASON]  remove USER from this room (moderators)",
		"  /ban USER [REASON]   remove USER and keep them out (moderators)",
		"  /unban USER          let a banned USER join again (moderators)",
		"  /invite USER         let USER join this room, private or not (moderators)",
		"  /op USER [ROLE]      make USER a moderator, or ROLE: member, moderator,",
		"                       admin (admins)",
		"  /nick NAME           change your display name",
		"  /passwd              change your password (other sessions end)",
		"  /logout              end the session",
		"  /quit                leave parley, staying logged in (Ctrl-D, Ctrl-C too)",
		"  /help                this list",
		"  In a room, a line is sent as a message; start it with // to send a '/'.",
		"  A message shows as (sending) until the room has it; one that cannot be",
		"  sent in time is shown as not sent, and Up brings it back.",
	};
	size_t n = u->logged_in ? sizeof(in) / sizeof(in[0]) : sizeof(out) / sizeof(out[0]);

	for (size_t i = 0; i < n; i++)
		ui_show(u, u->logged_in ? in[i] : out[i]);
}

static void
cmd_quit(ui *u, char *args)
{
	u->quit = true;
}

static void
cmd_register(ui *u, char *args)
{
	char user[RPC_USER_ID_MAX + 1], pw[1100], again[1100], display[260] = "", email[260] = "";
	char *w = chat_next_word(&args);
	Parley__V1__RegisterResponse *resp;
	rpc_status st;
	rpc_code code;

	if (w != NULL)
		snprintf(user, sizeof(user), "%s", w);
	else if (!ui_ask(u, "user: ", true, user, sizeof(user)))
		return;
	/* Before the passwords: a person should not type them twice for an id
	 * the server refuses. */
	if (w != NULL && strlen(w) >= sizeof(user))
		user[0] = '\0';
	if (!parley_user_id_valid(user)) {
		ui_error(u, RPC_INVALID_ARGUMENT, "a user id is " PARLEY_USER_ID_RULE);
		return;
	}
	if (!ui_ask(u, "password: ", false, pw, sizeof(pw)))
		return;
	if (u->tty && (!ui_ask(u, "password again: ", false, again, sizeof(again)) ||
		       strcmp(pw, again) != 0)) {
		explicit_bzero(pw, sizeof(pw));
		explicit_bzero(again, sizeof(again));
		ui_error(u, RPC_INVALID_ARGUMENT, "the passwords do not match");
		return;
	}
	/* On a terminal only: a script's next lines are its commands. Empty
	 * answers: the id as the name, no email. */
	if (u->tty) {
		char q[80 + RPC_USER_ID_MAX];

		snprintf(q, sizeof(q), "display name (Enter: %s): ", user);
		if (!ui_ask(u, q, true, display, sizeof(display)))
			display[0] = '\0';
		if (!ui_ask(u, "email (optional, Enter: none): ", true, email, sizeof(email)))
			email[0] = '\0';
	}
	code = parley_register(u->conn, user, pw, display, email, &resp, &st);
	explicit_bzero(pw, sizeof(pw));
	explicit_bzero(again, sizeof(again));
	if (code != RPC_OK) {
		ui_error(u, code, st.message);
		return;
	}
	if (strcmp(resp->user->display_name, resp->user->user_id) != 0) {
		strbuf sb = {0};

		sb_puts(&sb, "* registered ");
		sb_sanitized(&sb, resp->user->user_id, RPC_USER_ID_MAX);
		sb_puts(&sb, " as ");
		sb_sanitized(&sb, resp->user->display_name, 64);
		sb_puts(&sb, "; now /login");
		ui_show_sb(u, &sb);
		sb_free(&sb);
	} else {
		ui_note(u, "registered ", resp->user->user_id, "; now /login");
	}
	parley_free(resp);
}

/* The user and room of a session that ended, entered again at the next
 * login as that user. */
static char ended_user[RPC_USER_ID_MAX + 1];
static char ended_room[ROOM_ID_MAX + 1];

/* The user the other threads act for ("" when logged out). */
static void
set_me(ui *u, const char *user)
{
	pthread_mutex_lock(&u->mtx);
	snprintf(u->me, sizeof(u->me), "%s", user);
	free(u->unread);
	u->unread = NULL;
	u->unread_n = 0;
	u->unread_kick = true;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mtx);
	u->unread_seen = false;
	u->unread_total = 0;
}

static void
logged_in_as(ui *u, const char *user)
{
	snprintf(u->user, sizeof(u->user), "%s", user);
	u->logged_in = true;
	u->room[0] = '\0';
	u->peer[0] = '\0';
	u->away = false;
	set_me(u, user);
}

/* Back where the ended session was, and its unsent messages go out; or, as
 * someone else, they are dropped (and said so). */
static void
after_login(ui *u)
{
	if (ended_room[0] != '\0' && strcmp(u->user, ended_user) == 0) {
		chat_enter_room(u, ended_room);
		outbox_release(u);
	} else {
		outbox_fail_held(u);
	}
	ended_room[0] = '\0';
}

static void
cmd_login(ui *u, char *args)
{
	char user[RPC_USER_ID_MAX + 1], pw[1100];
	char *w = chat_next_word(&args);
	Parley__V1__LoginResponse *resp;
	rpc_status st;
	rpc_code code;

	if (w != NULL)
		snprintf(user, sizeof(user), "%s", w);
	else if (!ui_ask(u, "user: ", true, user, sizeof(user)))
		return;
	if (!ui_ask(u, "password: ", false, pw, sizeof(pw)))
		return;
	code = parley_login(u->conn, user, pw, &resp, &st);
	explicit_bzero(pw, sizeof(pw));
	if (code != RPC_OK) {
		ui_error(u, code, st.message);
		return;
	}
	logged_in_as(u, resp->user->user_id);
	if (cli_save_login(u->ctx, resp) != CLI_EXIT_OK)
		ui_show(u, "* (the session could not be saved; it lasts until you quit)");
	ui_note(u, "logged in as ", resp->user->user_id, ". /rooms lists rooms, /join ROOM enters one.");
	parley_free(resp);
	after_login(u);
}

static void
cmd_logout(ui *u, char *args)
{
	char err[512];
	rpc_status st;
	rpc_code code;

	ui_stop_following(u);
	u->room[0] = '\0';
	code = parley_logout(u->conn, &st);
	if (code != RPC_OK && code != RPC_UNAUTHENTICATED) {
		ui_error(u, code, st.message);
		return;
	}
	if (!cli_session_remove(err, sizeof(err)))
		ui_error(u, RPC_INTERNAL, err);
	set_me(u, "");
	u->logged_in = false;
	u->ctx->have_session = false;
	ui_show(u, "* logged out");
}

/* ", 3 unread" (and ", 1 naming you") from the unread list ur. */
static void
put_unread(strbuf *sb, const Parley__V1__GetUnreadResponse *ur, const char *room)
{
	for (size_t i = 0; ur != NULL && i < ur->n_rooms; i++) {
		const Parley__V1__RoomUnread *r = ur->rooms[i];

		if (strcmp(r->room_id, room) != 0 || r->unread_count == 0)
			continue;
		sb_printf(sb, "  (%llu unread", (unsigned long long)r->unread_count);
		if (r->mention_count > 0)
			sb_printf(sb, ", %llu naming you", (unsigned long long)r->mention_count);
		sb_putc(sb, ')');
	}
}

/* The rooms of mine that ListRooms leaves out: private ones, and
 * "  direct with bob (2 unread)" for each direct one. */
static void
show_direct(ui *u, const Parley__V1__ListMyRoomsResponse *mine,
	    const Parley__V1__GetUnreadResponse *ur)
{
	for (size_t k = 0; k < mine->n_rooms; k++) {
		const Parley__V1__Room *r = mine->rooms[k];
		const char *name = r->name, *comma = strstr(name, ", ");
		char mark = strcmp(r->room_id, u->room) == 0 ? '>' : '*';
		strbuf sb = {0};

		if (r->visibility == PARLEY__V1__VISIBILITY__PRIVATE) {
			cli_room_line(&sb, r, mark);
			sb_puts(&sb, "  (private)");
			put_unread(&sb, ur, r->room_id);
			ui_show_sb(u, &sb);
			sb_free(&sb);
			continue;
		}
		if (r->visibility != PARLEY__V1__VISIBILITY__DIRECT || comma == NULL)
			continue;
		sb_putc(&sb, mark);
		sb_puts(&sb, " direct with ");
		/* The name is "<a>, <b>": the other one is not me. */
		if (strncmp(name, u->user, (size_t)(comma - name)) == 0 &&
		    strlen(u->user) == (size_t)(comma - name)) {
			sb_sanitized(&sb, comma + 2, RPC_USER_ID_MAX);
		} else {
			char other[RPC_USER_ID_MAX + 1];

			snprintf(other, sizeof(other), "%.*s", (int)(comma - name), name);
			sb_sanitized(&sb, other, RPC_USER_ID_MAX);
		}
		put_unread(&sb, ur, r->room_id);
		ui_show_sb(u, &sb);
		sb_free(&sb);
	}
}

static void
cmd_rooms(ui *u, char *args)
{
	Parley__V1__ListMyRoomsResponse *mine;
	Parley__V1__GetUnreadResponse *ur = NULL;
	char *page = NULL;
	rpc_status st;
	rpc_code code;
	int shown = 0;

	if ((code = parley_rooms_mine(u->conn, &mine, &st)) != RPC_OK) {
		ui_error(u, code, st.message);
		return;
	}
	/* Without counts the list is still worth showing. What is on screen
	 * is read: the counts say so. */
	notify_read_flush(u);
	if (parley_get_unread(u->conn, NULL, 0, 0, &ur, &st) != RPC_OK)
		ur = NULL;
	for (int pages = 0; pages < 100; pages++) {
		Parley__V1__ListRoomsResponse *resp;

		code = parley_rooms_list(u->conn, 200, page, &resp, &st);
		free(page);
		page = NULL;
		if (code != RPC_OK) {
			ui_error(u, code, st.message);
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
			put_unread(&sb, ur, r->room_id);
			ui_show_sb(u, &sb);
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
	show_direct(u, mine, ur);
	parley_free(mine);
	parley_free(ur);
	if (shown == 0 && code == RPC_OK)
		ui_show(u, "* no rooms yet: /create ROOM makes one");
}

static void
cmd_create(ui *u, char *args)
{
	char *room = chat_next_word(&args);
	Parley__V1__CreateRoomResponse *resp;
	rpc_status st;
	rpc_code code;

	if (room == NULL) {
		ui_error(u, RPC_INVALID_ARGUMENT, "usage: /create ROOM [NAME]");
		return;
	}
	code = parley_room_create(u->conn, room, args[0] ? args : NULL, NULL, &resp, &st);
	if (code != RPC_OK) {
		ui_error(u, code, st.message);
		return;
	}
	ui_note(u, "created room ", resp->room->room_id, "; /join it to enter");
	parley_free(resp);
}

/* Shows the last events of room and follows it from there: the session
 * starts at the history's head, so nothing is missed or shown twice. */
bool
chat_enter_room(ui *u, const char *room)
{
	Parley__V1__GetHistoryResponse *h;
	parley_follow *f;
	parley_cursor cur;
	rpc_status st;
	rpc_code code;

	/* A direct room was opened (OpenDirect) by /query: JoinRoom would
	 * bring back nobody else. */
	code = strncmp(room, "dm.", 3) == 0 ? RPC_OK : parley_room_join(u->conn, room, NULL, &st);
	if (code != RPC_OK && code != RPC_ALREADY_EXISTS) {
		ui_error(u, code, st.message);
		return false;
	}
	ui_stop_following(u);
	u->room[0] = '\0';
	u->away = false;
	u->last_own_seq = 0;
	memset(u->typers, 0, sizeof(u->typers));
	code = parley_history(u->conn, room, 0, 0, JOIN_HISTORY, &h, &st);
	if (code != RPC_OK) {
		ui_error(u, code, st.message);
		return false;
	}
	cur.room_id = room;
	cur.since_seq = h->head_seq;
	names_of_events(u->names, h->events, h->n_events);
	for (size_t i = 0; i < h->n_events; i++) {
		const Parley__V1__Event *ev = h->events[i];

		ui_event(u, ev);
		if (ev->seq > cur.since_seq)
			cur.since_seq = ev->seq;
		if (ev->body_case == PARLEY__V1__EVENT__BODY_MESSAGE && strcmp(ev->sender, u->user) == 0)
			u->last_own_seq = ev->seq;
	}
	parley_free(h);
	notify_read(u, room, cur.since_seq); /* all of it is on screen now */
	if ((code = parley_follow_new(&f, u->conn, &cur, 1, &st)) != RPC_OK) {
		ui_error(u, code, st.message);
		return false;
	}
	snprintf(u->room, sizeof(u->room), "%s", room);
	ui_start_following(u, f);
	if (u->peer[0] != '\0')
		ui_note(u, "you are in your direct conversation with ", u->peer,
			"; type to chat, /help for commands");
	else
		ui_note(u, "you are in ", room, "; type to chat, /help for commands");
	return true;
}

static void
cmd_join(ui *u, char *args)
{
	char *room = chat_next_word(&args);

	if (room == NULL || args[0] != '\0') {
		ui_error(u, RPC_INVALID_ARGUMENT, "usage: /join ROOM");
		return;
	}
	if (strlen(room) > ROOM_ID_MAX) {
		ui_error(u, RPC_INVALID_ARGUMENT, "room ids are at most 64 characters");
		return;
	}
	if (strncmp(room, "dm.", 3) == 0) {
		ui_error(u, RPC_INVALID_ARGUMENT, "direct conversations are entered with /query USER");
		return;
	}
	{
		char peer[sizeof(u->peer)];

		memcpy(peer, u->peer, sizeof(peer));
		u->peer[0] = '\0';
		if (!chat_enter_room(u, room) && u->room[0] != '\0')
			memcpy(u->peer, peer, sizeof(peer)); /* still where it was */
	}
}

bool
chat_need_room(ui *u)
{
	if (u->room[0] != '\0')
		return true;
	ui_error(u, RPC_FAILED_PRECONDITION, "not in a room; /join ROOM first");
	return false;
}

static void
cmd_leave(ui *u, char *args)
{
	char room[sizeof(u->room)];
	rpc_status st;
	rpc_code code;

	if (!chat_need_room(u))
		return;
	memcpy(room, u->room, sizeof(room));
	ui_stop_following(u);
	u->room[0] = '\0';
	if ((code = parley_room_leave(u->conn, room, &st)) != RPC_OK) {
		ui_error(u, code, st.message);
		ui_note(u, "still a member of ", room, "; /join to return");
		return;
	}
	ui_note(u, "you left ", room, NULL);
}

static void
cmd_history(ui *u, char *args)
{
	Parley__V1__GetHistoryResponse *h;
	char *w = chat_next_word(&args), *end;
	unsigned long n = JOIN_HISTORY;
	rpc_status st;
	rpc_code code;

	if (!chat_need_room(u))
		return;
	if (w != NULL) {
		n = strtoul(w, &end, 10);
		if (*end != '\0' || n == 0 || n > PARLEY_HISTORY_MAX || w[0] == '-') {
			ui_error(u, RPC_INVALID_ARGUMENT, "usage: /history [N]: N is a number from 1 to 500");
			return;
		}
	}
	if ((code = parley_history(u->conn, u->room, 0, 0, (uint32_t)n, &h, &st)) != RPC_OK) {
		ui_error(u, code, st.message);
		return;
	}
	if (h->n_events == 0)
		ui_show(u, "* nothing yet");
	names_of_events(u->names, h->events, h->n_events);
	for (size_t i = 0; i < h->n_events; i++) {
		cli_names nm = {.put = names_put, .arg = u->names, .seqs = true};
		strbuf sb = {0};

		cli_event_line_as(&sb, h->events[i], false, &nm);
		if (sb.len > 0)
			ui_show_sb(u, &sb);
		sb_free(&sb);
	}
	parley_free(h);
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
	{"/leave", cmd_leave, 2}, {"/history", cmd_history, 2},
};

void
chat_command(ui *u, char *line)
{
	char *args = line, *cmd = chat_next_word(&args);

	for (size_t i = 0; i < sizeof(icmds) / sizeof(icmds[0]); i++) {
		if (strcmp(icmds[i].name, cmd) != 0)
			continue;
		if (icmds[i].when == 1 && u->logged_in) {
			strbuf sb = {0};
			sb_puts(&sb, "already logged in as ");
			sb_sanitized(&sb, u->user, RPC_USER_ID_MAX);
			sb_puts(&sb, "; /logout first");
			ui_error(u, RPC_FAILED_PRECONDITION, sb_str(&sb));
			sb_free(&sb);
		} else if (icmds[i].when == 2 && !u->logged_in) {
			ui_error(u, RPC_UNAUTHENTICATED, "not logged in; /login USER or /register USER");
		} else {
			icmds[i].fn(u, args);
		}
		return;
	}
	if (chat_more_command(u, cmd, args))
		return;
	{
		strbuf sb = {0};
		sb_puts(&sb, "unknown command ");
		sb_sanitized(&sb, cmd, 32);
		sb_puts(&sb, " (try /help)");
		ui_error(u, RPC_INVALID_ARGUMENT, sb_str(&sb));
		sb_free(&sb);
	}
}

const char *
chat_message_problem(ui *u, const char *text)
{
	if (!u->logged_in)
		return "not logged in; /login USER or /register USER";
	if (u->room[0] == '\0')
		return "not in a room; /join ROOM first";
	if (u->away)
		return "you are no longer a member of this room; /join it to return";
	if (cli_text_blank(text))
		return "nothing to send (only spaces)";
	if (strlen(text) > TEXT_MAX)
		return "a message is at most 4096 bytes; this one is longer (it is kept in the "
		       "input line: shorten it)";
	return NULL;
}

void
chat_resume(ui *u)
{
	Parley__V1__ListMyRoomsResponse *mine;
	rpc_status st;
	rpc_code code;

	if (!u->ctx->have_session)
		return;
	code = parley_rooms_mine(u->conn, &mine, &st);
	if (code == RPC_UNAUTHENTICATED) {
		ui_note(u, "the saved session of ", u->ctx->session.user,
			" has ended (it expired, or was logged out elsewhere); /login to log in again");
		parley_set_token(u->conn, NULL, NULL);
		return;
	}
	logged_in_as(u, u->ctx->session.user);
	if (code != RPC_OK) {
		ui_error(u, code, st.message);
	} else {
		parley_free(mine);
	}
	ui_note(u, "logged in as ", u->user, " (saved session). /rooms, /join ROOM, /help.");
}

void
chat_session_ended(ui *u)
{
	char pw[1100], err[512];
	Parley__V1__LoginResponse *resp;
	rpc_status st;
	rpc_code code;

	if (!u->logged_in)
		return;
	snprintf(ended_room, sizeof(ended_room), "%s", u->room);
	memcpy(ended_user, u->user, sizeof(ended_user));
	ui_stop_following(u);
	u->room[0] = '\0';
	u->logged_in = false;
	set_me(u, "");
	u->ctx->have_session = false;
	parley_set_token(u->conn, NULL, NULL);
	cli_session_remove(err, sizeof(err)); /* its token is of no use now */
	ui_note(u, "your session as ", ended_user,
		" has ended (it expired, or was logged out elsewhere)");
	if (!u->tty) {
		ui_error(u, RPC_UNAUTHENTICATED, "the session has ended; run 'parley login USER'");
		outbox_fail_held(u);
		return;
	}
	/* Offered in place: the same user, back in the same room, the
	 * messages not yet stored sent after all. */
	if (!ui_ask(u, "password to log in again (Enter: not now): ", false, pw, sizeof(pw))) {
		ui_note(u, "not logged in; /login ", ended_user, " when you want to go on");
		return;
	}
	code = parley_login(u->conn, ended_user, pw, &resp, &st);
	explicit_bzero(pw, sizeof(pw));
	if (code != RPC_OK) {
		ui_error(u, code, st.message);
		ui_note(u, "not logged in; /login ", ended_user, " to try again");
		return;
	}
	logged_in_as(u, resp->user->user_id);
	if (cli_save_login(u->ctx, resp) != CLI_EXIT_OK)
		ui_show(u, "* (the session could not be saved; it lasts until you quit)");
	ui_note(u, "logged in again as ", resp->user->user_id, NULL);
	parley_free(resp);
	after_login(u);
}

/*
 * chat_more.c — the interactive chat's slash commands for people and rooms
 * beyond the basics: profile (/nick, /passwd), direct messages (/msg,
 * /query), /me, /topic, /who, moderation (/kick, /ban, /unban, /invite,
 * /op) and edits (/edit, /delete); see ui.h. Main thread, editor off, as
 * chat.c. What the server does shows as the room's events (a kick, a new
 * topic, an edit); a command prints only what no event will say.
 */
#include <stdlib.h>
#include <string.h>

#include "ui.h"

#define MEMBER_PAGES 5 /* /who shows at most 500 members */

/* USER checked against the id rules before any call: a clear word for a
 * typo instead of the server's. */
static bool
user_arg(ui *u, const char *usage, const char *user)
{
	strbuf sb = {0};

	if (user == NULL) {
		ui_error(u, RPC_INVALID_ARGUMENT, usage);
		return false;
	}
	if (parley_user_id_valid(user))
		return true;
	sb_puts(&sb, "no user '");
	sb_sanitized(&sb, user, 40);
	sb_puts(&sb, "': a user id is " PARLEY_USER_ID_RULE);
	ui_error(u, RPC_INVALID_ARGUMENT, sb_str(&sb));
	sb_free(&sb);
	return false;
}

static void
cmd_nick(ui *u, char *args)
{
	Parley__V1__UpdateProfileResponse *resp;
	rpc_status st;
	rpc_code code;

	if (cli_text_blank(args)) {
		ui_error(u, RPC_INVALID_ARGUMENT, "usage: /nick NAME (your display name)");
		return;
	}
	if ((code = parley_update_profile(u->conn, args, NULL, &resp, &st)) != RPC_OK) {
		ui_error(u, code, st.message);
		return;
	}
	names_set(u->names, resp->user->user_id, resp->user->display_name);
	ui_note(u, "your display name is now ", resp->user->display_name, NULL);
	parley_free(resp);
}

static void
cmd_passwd(ui *u, char *args)
{
	char old[1100], pw[1100], again[1100] = "";
	rpc_status st;
	rpc_code code = RPC_INVALID_ARGUMENT;

	if (!ui_ask(u, "current password: ", false, old, sizeof(old)))
		return;
	if (!ui_ask(u, "new password: ", false, pw, sizeof(pw)))
		goto out;
	if (u->tty && (!ui_ask(u, "new password again: ", false, again, sizeof(again)) ||
		       strcmp(pw, again) != 0)) {
		ui_error(u, RPC_INVALID_ARGUMENT, "the new passwords do not match; nothing changed");
		goto out;
	}
	code = parley_change_password(u->conn, old, pw, &st);
	if (code != RPC_OK)
		ui_error(u, code, st.message);
	else
		ui_show(u, "* password changed; your other sessions have ended");
out:
	explicit_bzero(old, sizeof(old));
	explicit_bzero(pw, sizeof(pw));
	explicit_bzero(again, sizeof(again));
}

/* The direct room with user, or NULL after saying why. Owned by the
 * caller (free). */
static char *
direct_room(ui *u, const char *user)
{
	Parley__V1__OpenDirectResponse *resp;
	rpc_status st;
	rpc_code code;
	char *room;

	if (strcmp(user, u->user) == 0) {
		ui_error(u, RPC_INVALID_ARGUMENT, "a direct conversation is with someone else");
		return NULL;
	}
	if ((code = parley_open_direct(u->conn, user, &resp, &st)) != RPC_OK) {
		ui_error(u, code, st.message);
		return NULL;
	}
	room = strlen(resp->room->room_id) <= ROOM_ID_MAX ? strdup(resp->room->room_id) : NULL;
	parley_free(resp);
	if (room == NULL)
		ui_error(u, RPC_INTERNAL, "the server sent an unusable room id");
	return room;
}

static void
cmd_msg(ui *u, char *args)
{
	char *user = chat_next_word(&args), *room;
	const char *why;
	strbuf sb = {0};

	if (!user_arg(u, "usage: /msg USER TEXT", user))
		return;
	if (cli_text_blank(args)) {
		ui_error(u, RPC_INVALID_ARGUMENT, "usage: /msg USER TEXT (nothing to send)");
		return;
	}
	if (strlen(args) > TEXT_MAX) {
		ui_error(u, RPC_INVALID_ARGUMENT, "a message is at most 4096 bytes");
		return;
	}
	if ((room = direct_room(u, user)) == NULL)
		return;
	why = outbox_add(u, room, args) ? NULL : "out of memory";
	if (why != NULL) {
		ui_error(u, RPC_RESOURCE_EXHAUSTED, why);
	} else if (strcmp(room, u->room) != 0) {
		/* Not on screen: say where it went. */
		sb_puts(&sb, "-> ");
		names_put(&sb, user, u->names);
		sb_puts(&sb, ": ");
		sb_sanitized(&sb, args, 0);
		ui_show_sb(u, &sb);
		sb_free(&sb);
	}
	free(room);
}

static void
cmd_query(ui *u, char *args)
{
	char *user = chat_next_word(&args), *room;

	if (!user_arg(u, "usage: /query USER", user))
		return;
	if ((room = direct_room(u, user)) == NULL)
		return;
	{
		char peer[sizeof(u->peer)];

		memcpy(peer, u->peer, sizeof(peer));
		snprintf(u->peer, sizeof(u->peer), "%s", user);
		if (!chat_enter_room(u, room) && u->room[0] != '\0')
			memcpy(u->peer, peer, sizeof(peer)); /* still where it was */
		else if (u->room[0] == '\0')
			u->peer[0] = '\0';
	}
	free(room);
}

static void
cmd_me(ui *u, char *args)
{
	strbuf sb = {0};
	const char *why;

	sb_puts(&sb, "/me ");
	sb_puts(&sb, args);
	if (cli_text_blank(args))
		why = "usage: /me ACTION";
	else
		why = chat_message_problem(u, sb_str(&sb));
	if (why != NULL)
		ui_error(u, RPC_INVALID_ARGUMENT, why);
	else if (sb.oom || !outbox_add(u, u->room, sb_str(&sb)))
		ui_error(u, RPC_RESOURCE_EXHAUSTED, "out of memory");
	sb_free(&sb);
}

static void
cmd_topic(ui *u, char *args)
{
	rpc_status st;
	rpc_code code;

	if (!chat_need_room(u))
		return;
	if (cli_text_blank(args)) {
		Parley__V1__GetRoomResponse *resp;

		if ((code = parley_room_get(u->conn, u->room, &resp, &st)) != RPC_OK) {
			ui_error(u, code, st.message);
			return;
		}
		if (resp->room->topic[0] != '\0')
			ui_note(u, "topic: ", resp->room->topic, NULL);
		else
			ui_show(u, "* no topic yet; /topic TEXT sets one (moderators)");
		parley_free(resp);
		return;
	}
	/* The room's timeline shows the change ("set the topic"). */
	if ((code = parley_room_update(u->conn, u->room, NULL, args, NULL, &st)) != RPC_OK)
		ui_error(u, code, st.message);
}

static const char *
role_word(Parley__V1__Role r)
{
	switch (r) {
	case PARLEY__V1__ROLE__ADMIN: return "admin";
	case PARLEY__V1__ROLE__MODERATOR: return "moderator";
	default: return NULL;
	}
}

static void
cmd_who(ui *u, char *args)
{
	char *page = NULL;
	size_t shown = 0, online = 0;
	rpc_status st;
	rpc_code code = RPC_OK;

	if (!chat_need_room(u))
		return;
	if (u->peer[0] != '\0')
		ui_note(u, "in your direct conversation with ", u->peer, ":");
	else
		ui_note(u, "in ", u->room, ":");
	for (int pages = 0; pages < MEMBER_PAGES; pages++) {
		Parley__V1__ListMembersResponse *resp;

		code = parley_members_list(u->conn, u->room, 100, page, &resp, &st);
		free(page);
		page = NULL;
		if (code != RPC_OK) {
			ui_error(u, code, st.message);
			break;
		}
		for (size_t i = 0; i < resp->n_members; i++) {
			const Parley__V1__Member *m = resp->members[i];
			const char *role = role_word(m->role);
			strbuf sb = {0};

			sb_puts(&sb, "  ");
			if (m->display_name[0] != '\0')
				names_set(u->names, m->user_id, m->display_name);
			names_put(&sb, m->user_id, u->names);
			sb_puts(&sb, " -- ");
			if (role != NULL) {
				sb_puts(&sb, role);
				sb_puts(&sb, ", ");
			}
			sb_puts(&sb, m->online ? "online" : "offline");
			ui_show_sb(u, &sb);
			sb_free(&sb);
			shown++;
			online += m->online;
		}
		if (resp->next_page_token[0] != '\0')
			page = strdup(resp->next_page_token);
		parley_free(resp);
		if (page == NULL)
			break;
	}
	if (code == RPC_OK) {
		strbuf sb = {0};

		sb_printf(&sb, "* %zu member%s, %zu online%s", shown, shown == 1 ? "" : "s", online,
			  page != NULL ? " (and more not listed)" : "");
		ui_show_sb(u, &sb);
		sb_free(&sb);
	}
	free(page);
}

typedef enum mod_act { MOD_KICK, MOD_BAN, MOD_UNBAN, MOD_INVITE } mod_act;

static void
moderate(ui *u, char *args, mod_act act, const char *usage)
{
	char *user = chat_next_word(&args);
	const char *reason = cli_text_blank(args) ? NULL : args;
	rpc_status st;
	rpc_code code;

	if (!chat_need_room(u) || !user_arg(u, usage, user))
		return;
	if (reason != NULL && (act == MOD_UNBAN || act == MOD_INVITE)) {
		ui_error(u, RPC_INVALID_ARGUMENT, usage);
		return;
	}
	switch (act) {
	case MOD_KICK: code = parley_kick(u->conn, u->room, user, reason, &st); break;
	case MOD_BAN: code = parley_ban(u->conn, u->room, user, reason, &st); break;
	case MOD_UNBAN: code = parley_unban(u->conn, u->room, user, &st); break;
	default: code = parley_invite(u->conn, u->room, user, &st); break;
	}
	/* Done: the room's timeline says so ("bob was removed by alice"). */
	if (code != RPC_OK)
		ui_error(u, code, st.message);
}

static void
cmd_kick(ui *u, char *args)
{
	moderate(u, args, MOD_KICK, "usage: /kick USER [REASON]");
}

static void
cmd_ban(ui *u, char *args)
{
	moderate(u, args, MOD_BAN, "usage: /ban USER [REASON]");
}

static void
cmd_unban(ui *u, char *args)
{
	moderate(u, args, MOD_UNBAN, "usage: /unban USER");
}

static void
cmd_invite(ui *u, char *args)
{
	moderate(u, args, MOD_INVITE, "usage: /invite USER");
}

static void
cmd_op(ui *u, char *args)
{
	static const char usage[] = "usage: /op USER [member|moderator|admin]";
	char *user = chat_next_word(&args), *word = chat_next_word(&args);
	Parley__V1__Role role = PARLEY__V1__ROLE__MODERATOR;
	rpc_status st;
	rpc_code code;
	strbuf sb = {0};

	if (!chat_need_room(u) || !user_arg(u, usage, user))
		return;
	if (word != NULL && strcmp(word, "member") == 0)
		role = PARLEY__V1__ROLE__MEMBER;
	else if (word != NULL && strcmp(word, "admin") == 0)
		role = PARLEY__V1__ROLE__ADMIN;
	else if (word != NULL && strcmp(word, "moderator") != 0) {
		ui_error(u, RPC_INVALID_ARGUMENT, usage);
		return;
	}
	if (args[0] != '\0') {
		ui_error(u, RPC_INVALID_ARGUMENT, usage);
		return;
	}
	if ((code = parley_set_role(u->conn, u->room, user, role, &st)) != RPC_OK) {
		ui_error(u, code, st.message);
		return;
	}
	/* No event tells the room about roles: say it here. */
	sb_puts(&sb, "* ");
	names_put(&sb, user, u->names);
	sb_puts(&sb, role == PARLEY__V1__ROLE__ADMIN	   ? " is now an admin of this room"
		     : role == PARLEY__V1__ROLE__MODERATOR ? " is now a moderator of this room"
							   : " is now a member of this room");
	ui_show_sb(u, &sb);
	sb_free(&sb);
}

/* "#12" or "12" -> 12; 0 if w is not one. */
static uint64_t
seq_word(const char *w, bool hash_required)
{
	char *end;
	unsigned long long v;

	if (w == NULL)
		return 0;
	if (w[0] == '#')
		w++;
	else if (hash_required)
		return 0;
	if (w[0] < '0' || w[0] > '9')
		return 0;
	v = strtoull(w, &end, 10);
	return *end == '\0' ? (uint64_t)v : 0;
}

static void
cmd_edit(ui *u, char *args)
{
	char *rest = args, *w;
	const char *text = args;
	uint64_t seq = 0;
	rpc_status st;
	rpc_code code;

	while (*text == ' ' || *text == '\t')
		text++;
	/* "#SEQ TEXT": the words are split only then (splitting writes a NUL
	 * after the first word). */
	w = text[0] == '#' ? chat_next_word(&rest) : NULL;
	if (w != NULL && (seq = seq_word(w, true)) != 0)
		text = rest;

	if (!chat_need_room(u))
		return;
	if (w != NULL && seq == 0 && w[0] == '#') {
		ui_error(u, RPC_INVALID_ARGUMENT, "usage: /edit [#SEQ] TEXT: SEQ is a message's number");
		return;
	}
	if (seq == 0)
		seq = u->last_own_seq;
	if (cli_text_blank(text)) {
		ui_error(u, RPC_INVALID_ARGUMENT, "usage: /edit [#SEQ] TEXT (the new text)");
		return;
	}
	if (seq == 0) {
		ui_error(u, RPC_FAILED_PRECONDITION,
			 "no message of yours here yet; /edit #SEQ TEXT (/history shows the numbers)");
		return;
	}
	if (strlen(text) > TEXT_MAX) {
		ui_error(u, RPC_INVALID_ARGUMENT, "a message is at most 4096 bytes");
		return;
	}
	if ((code = parley_edit(u->conn, u->room, seq, text, NULL, &st)) != RPC_OK)
		ui_error(u, code, st.message);
}

static void
cmd_delete(ui *u, char *args)
{
	char *w = chat_next_word(&args);
	uint64_t seq = seq_word(w, false);
	rpc_status st;
	rpc_code code;

	if (!chat_need_room(u))
		return;
	if ((w != NULL && seq == 0) || args[0] != '\0') {
		ui_error(u, RPC_INVALID_ARGUMENT, "usage: /delete [SEQ]: SEQ is a message's number");
		return;
	}
	if (seq == 0 && (seq = u->last_own_seq) == 0) {
		ui_error(u, RPC_FAILED_PRECONDITION,
			 "no message of yours here yet; /delete SEQ (/history shows the numbers)");
		return;
	}
	if ((code = parley_delete(u->conn, u->room, seq, NULL, &st)) != RPC_OK)
		ui_error(u, code, st.message);
	else if (seq == u->last_own_seq)
		u->last_own_seq = 0;
}

typedef struct more_cmd {
	const char *name;
	void (*fn)(ui *u, char *args);
} more_cmd;

static const more_cmd more[] = {
	{"/nick", cmd_nick},	 {"/passwd", cmd_passwd}, {"/msg", cmd_msg},
	{"/query", cmd_query},	 {"/me", cmd_me},	  {"/topic", cmd_topic},
	{"/who", cmd_who},	 {"/kick", cmd_kick},	  {"/ban", cmd_ban},
	{"/unban", cmd_unban},	 {"/invite", cmd_invite}, {"/op", cmd_op},
	{"/edit", cmd_edit},	 {"/delete", cmd_delete},
};

bool
chat_more_command(ui *u, const char *cmd, char *args)
{
	for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
		if (strcmp(more[i].name, cmd) != 0)
			continue;
		if (!u->logged_in)
			ui_error(u, RPC_UNAUTHENTICATED, "not logged in; /login USER or /register USER");
		else
			more[i].fn(u, args);
		return true;
	}
	return false;
}

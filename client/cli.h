/*
 * cli.h — the parts of the `parley` command shared by its scripted and
 * interactive modes: exit codes, a growable string buffer, output that is
 * safe for a terminal or a JSON parser, the saved session, and terminal
 * input. Nothing here is thread-safe unless it says so; a strbuf belongs to
 * one thread.
 */
#ifndef PARLEY_CLI_H
#define PARLEY_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "parley.h"

/* Exit status of every scripted command (documented in `parley --help`). */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_STATUS = 1, /* a call failed: "error: STATUS_NAME: message" on stderr */
	CLI_EXIT_USAGE = 2,  /* bad command line or input */
	CLI_EXIT_LOCAL = 3,  /* local trouble: session file, terminal, writing output */
};

/* Growable string ------------------------------------------------------------
 * A strbuf owns p (malloc'd); sb_free releases it. On allocation failure
 * the buffer keeps what fit and sets oom; p is always NUL-terminated once
 * anything was added. */
typedef struct strbuf {
	char *p;
	size_t len, cap;
	bool oom;
} strbuf;

void sb_free(strbuf *sb);
void sb_reset(strbuf *sb); /* empties, keeps the memory */
void sb_putc(strbuf *sb, char ch);
void sb_put(strbuf *sb, const char *s, size_t n);
void sb_puts(strbuf *sb, const char *s);
void sb_printf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *sb_str(const strbuf *sb); /* "" when empty */

/* Terminal-safe text: appends s with every control character (C0, DEL,
 * C1), bidirectional override and invalid UTF-8 byte replaced so that a
 * hostile string cannot move the cursor, change colours or reorder what is
 * shown. Tabs and line breaks become spaces: one event stays one line.
 * At most max_chars code points are kept (0 = no limit); a cut shows "…". */
void sb_sanitized(strbuf *sb, const char *s, size_t max_chars);

/* A JSON string literal (with quotes) for UTF-8 s; control characters,
 * DEL and C1 are \u-escaped, invalid bytes become U+FFFD. */
void sb_json_string(strbuf *sb, const char *s);

/* Events and rooms ------------------------------------------------------- */

/* One line (no newline) for ev: "[14:02] alice: hi", "* bob joined",
 * "* bob is online". A date is shown for events of another day. With
 * room set the line starts with "#room ". Appends nothing for an event of a
 * kind this client does not know. */
void cli_event_line(strbuf *sb, const Parley__V1__Event *ev, bool room);

/* How cli_event_line_as shows people and messages: put (may be NULL: the
 * user id) appends a terminal-safe name for user_id; seqs puts "#SEQ "
 * before each message (what /edit and /delete take). */
typedef struct cli_names {
	void (*put)(strbuf *sb, const char *user_id, void *arg);
	void *arg;
	bool seqs;
} cli_names;

/* As cli_event_line, with names from nm (NULL: user ids). A message whose
 * text starts with "/me " reads "* alice waves"; an edited one ends with
 * "(edited)", a deleted one reads "(deleted)". Typing events append
 * nothing: they are not lines. */
void cli_event_line_as(strbuf *sb, const Parley__V1__Event *ev, bool room, const cli_names *nm);

/* "you were removed from lobby by alice: spam" and the like: the user's own
 * membership change in room_id, as parley_member_fn reports it (ev NULL:
 * found by the ListMyRooms check, so no who or why). */
void cli_member_words(strbuf *sb, const char *room_id, bool member, const Parley__V1__Event *ev,
		      const cli_names *nm);

/* One JSON object (no newline) for ev:
 * {"room_id":..,"seq":..,"ts_ms":..,"sender":..,"type":"message","text":..}
 * with type message | joined | left | online | offline | unknown. */
void cli_event_json(strbuf *sb, const Parley__V1__Event *ev);

/* One line for a room: "lobby       3 members  Lobby". mark is a one-column
 * marker put first (e.g. '*' for rooms the user is in, ' ' otherwise). */
void cli_room_line(strbuf *sb, const Parley__V1__Room *r, char mark);
void cli_room_json(strbuf *sb, const Parley__V1__Room *r, int member);

/* As sb_sanitized, and the protocol's field names a server message may
 * carry (user_id, room_id, ...) in words ("user id", "room id"). */
void sb_humanized(strbuf *sb, const char *message, size_t max_chars);

/* "error: PERMISSION_DENIED: message" (the scripted commands' documented
 * form), the message made terminal-safe and humanized. */
void cli_error_line(strbuf *sb, rpc_code code, const char *message);
/* "error: message" for people (the interactive chat): no status name; the
 * code in words when there is no message. */
void cli_error_words(strbuf *sb, rpc_code code, const char *message);

/* Writes the buffer and a newline to out and flushes; false on a write
 * error (EPIPE included). */
bool cli_write_line(FILE *out, const strbuf *sb);

/* Saved session -------------------------------------------------------------
 * $XDG_CONFIG_HOME/parley/session (default ~/.config/parley/session), in a
 * 0700 directory, mode 0600, replaced atomically (.new, fsync, rename). */
typedef struct cli_session {
	char user[RPC_USER_ID_MAX + 1];
	char token[PARLEY_TOKEN_MAX];
	uint64_t expires_ms;
	bool has_endpoints;
	parley_endpoints ep; /* where the token is valid */
} cli_session;

enum { CLI_SESSION_OK, CLI_SESSION_NONE, CLI_SESSION_ERROR };

/* The session file's path; false (with err) when neither XDG_CONFIG_HOME
 * nor HOME is usable. */
bool cli_session_path(char *path, size_t len, char *err, size_t errlen);
/* CLI_SESSION_NONE when there is no file. A file another user could read
 * or replace is refused (CLI_SESSION_ERROR). */
int cli_session_load(cli_session *s, char *err, size_t errlen);
bool cli_session_save(const cli_session *s, char *err, size_t errlen);
/* Removing a session that does not exist succeeds. */
bool cli_session_remove(char *err, size_t errlen);

/* Terminal input ------------------------------------------------------------ */

/*
 * Reads one line from fd into buf (without the line break; at most len-1
 * bytes, the rest of a longer line is read and dropped). prompt (may be
 * NULL) is written to out first. With echo false and fd a terminal, typing
 * is not shown (a line break is written to out afterwards) and the
 * terminal is restored, also on a signal. Returns the line length, or -1
 * at end of input or on error; sets *too_long if the line did not fit.
 */
long cli_read_line(int fd, FILE *out, const char *prompt, bool echo, char *buf, size_t len,
		   bool *too_long);

/* Turns the terminal's echo on or off (nothing else); false if fd is not
 * a terminal or it failed. What is typed meanwhile stays in the input
 * queue. */
bool cli_term_echo(int fd, bool on);

/* Columns of the terminal on fd, or 0 if it is not one. */
int cli_term_columns(int fd);

/* True if s is empty or only white space, Unicode's included (no-break,
 * ideographic, zero-width spaces...): nothing worth sending. */
bool cli_text_blank(const char *s);

/* Display columns taken by UTF-8 s (wide characters count twice). */
size_t cli_display_width(const char *s);

#endif

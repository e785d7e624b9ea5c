/*
 * ui.h — the interactive chat: interactive.c (the main loop, typed lines
 * and their order), screen.c (what the terminal shows), poller.c (the
 * thread that follows the room), outbox.c (the thread that sends) and
 * chat.c (the slash commands).
 *
 * Threads:
 *  - main: reads the keyboard (libedit's callback interface on a terminal,
 *    plain lines from a pipe), runs the commands, and is the only thread
 *    that writes to the terminal. It poll()s stdin and a self-pipe.
 *  - the poller: long-polls the room on screen through a parley_follow,
 *    formats its events into lines and queues them (u->q_*).
 *  - the sender: sends typed messages in order (u->out), each with its
 *    client_msg_id, retried until its deadline.
 *  - the notifier (notify.c): SetTyping while the user types, MarkRead
 *    for what was shown, GetUnread every few seconds; short calls, so
 *    that neither the editor nor the poller waits for them.
 *  - the signal thread (parley.c): SIGINT/SIGTERM/SIGHUP/SIGWINCH/SIGCONT
 *    become bytes on the self-pipe.
 * The poller and the sender never touch the terminal: they change state
 * under u->mtx and write a byte to the self-pipe.
 *
 * Locking: u->mtx guards follow, gen, busy, zombie, stop, down, the line
 * queue, the outbox (every outmsg's state) and the notifier's fields
 * (typing_*, read_*, unread*, unread_kick). The names cache has its own
 * lock. Everything else in struct ui
 * belongs to the main thread.
 */
#ifndef PARLEY_UI_H
#define PARLEY_UI_H

#include <pthread.h>

#include "app.h"

#define JOIN_HISTORY 20
#define LINE_MAX_BYTES 8192 /* one line from a pipe */
#define ROOM_ID_MAX 64
#define TEXT_MAX 4096	    /* the server's limit on a message */

/* What the poller hands to main. */
typedef enum qkind {
	Q_LINE,	   /* an event, formatted; msg_id set for a message */
	Q_NOTE,	   /* a notice line */
	Q_AWAY,	   /* room: no longer a member of it; text: the words for it */
	Q_BACK,	   /* room: a member of it again; text: the words for it */
	Q_ENDED,   /* the session token is no longer valid */
	Q_TYPING,  /* text = a user who started (typing) or stopped typing */
} qkind;

typedef struct qline {
	struct qline *next;
	qkind kind;
	uint64_t seq;	/* of the event shown (Q_LINE), 0 if none */
	bool mine;	/* Q_LINE: a chat message of the user's own */
	bool mention;	/* Q_LINE: a message by someone else naming @user */
	bool typing;	/* Q_TYPING */
	char msg_id[PARLEY_CLIENT_MSG_ID_LEN + 1];
	char room[ROOM_ID_MAX + 1]; /* Q_AWAY, Q_BACK */
	char text[];
} qline;

typedef enum out_state {
	OUT_QUEUED,  /* waiting for the sender */
	OUT_SENDING,
	OUT_ACKED,   /* stored; shown as pending until its copy comes back */
	OUT_FAILED,  /* not stored by the deadline; why says why */
	OUT_HELD,    /* the session ended: sent after logging in again */
} out_state;

typedef struct outmsg {
	struct outmsg *next;
	out_state state;
	char room[ROOM_ID_MAX + 1];
	char id[PARLEY_CLIENT_MSG_ID_LEN + 1];
	int64_t deadline; /* monotonic ms */
	rpc_code code;
	char why[RPC_STATUS_MESSAGE_MAX];
	char text[];
} outmsg;

/* A typed line not handled yet (a command waiting for the messages typed
 * before it). Main thread only. */
typedef struct typed_line {
	struct typed_line *next;
	char text[];
} typed_line;

/* names.c: display names (see there). */
typedef struct names names;
names *names_new(parley_conn *conn);
void names_free(names *n);
/* Appends "Display (id)" or "id" for user id, asking GetUsers if needed;
 * arg is the names (a cli_names.put). */
void names_put(strbuf *sb, const char *id, void *arg);
/* Asks for every id not known, or every id if fresh (one call, at most
 * 100 ids). */
void names_fetch(names *n, const char *const *ids, size_t count, bool fresh);
void names_of_events(names *n, Parley__V1__Event *const *ev, size_t count);
void names_set(names *n, const char *id, const char *name);
/* As names_put from what is known, never asking (the main thread's
 * status lines must not wait). */
void names_peek(strbuf *sb, const char *id, names *n);

#define TYPERS_MAX 8
#define UNREAD_MAX 200	/* rooms whose unread counts are kept */

typedef struct typer {
	char id[RPC_USER_ID_MAX + 1];
	int64_t until;	/* monotonic ms: typing lapses by itself */
} typer;

typedef struct unread_room {
	char room[ROOM_ID_MAX + 1];
	uint64_t unread, mentions;
	char last_sender[RPC_USER_ID_MAX + 1];
	char last_text[512];	/* the last message, cut */
} unread_room;

typedef struct ui {
	cli_ctx *ctx;
	parley_conn *conn;
	bool tty;
	bool rl_active;		/* the libedit handler is installed */
	int edit_w;		/* columns typed before the cursor if known, else -1 */
	int live_rows;		/* rows of pending lines drawn above the prompt */
	bool quit;
	bool logged_in;
	bool session_lost;	/* a call said UNAUTHENTICATED: handled after it */
	bool away;		/* the user is no longer a member of room */
	unsigned errors;	/* error lines shown (a pipe's exit status) */
	char user[RPC_USER_ID_MAX + 1];
	char room[ROOM_ID_MAX + 1]; /* the room on screen, "" for none */
	char prompt[4 * (ROOM_ID_MAX + RPC_USER_ID_MAX) + 24]; /* terminal-safe */
	char *typed;		/* a line from libedit, not yet handled */
	char *restore;		/* text to put back in the editor when it is on */
	bool typed_eof;
	bool want_clear;	/* Ctrl-L */
	typed_line *inq, *inq_tail;

	/* Input from a pipe. */
	char in[LINE_MAX_BYTES * 2];
	size_t in_len;
	size_t in_used;		/* bytes of in[] handed out as the last line */
	bool in_eof;

	int wake[2];		/* self-pipe: other threads and signals -> main */
	pthread_t poller, sender;
	bool poller_running, sender_running;

	pthread_mutex_t mtx;
	pthread_cond_t cv;	/* follow handed over, queue space, outbox, stop */
	parley_follow *follow;
	uint64_t gen;
	parley_follow *busy;	/* the follower the poller is polling now */
	parley_follow *zombie;	/* taken back while busy: the poller frees it */
	bool stop;
	bool down;		/* the connection was lost and not yet back */
	char me[RPC_USER_ID_MAX + 1]; /* the user, for the poller */
	qline *q_head, *q_tail;
	size_t q_len;
	outmsg *out;		/* typed messages, oldest first */
	bool send_cancel;	/* read by parley_send_until */

	names *names;		/* own lock */
	typer typers[TYPERS_MAX]; /* others typing in room (main) */
	uint64_t last_own_seq;	/* the user's last message in room (main) */
	char peer[RPC_USER_ID_MAX + 1]; /* room is a direct one with peer (main) */
	bool unread_seen;	/* main has had a first unread list */
	unread_room *seen;	/* main's copy of the last list, seen_n rooms */
	size_t seen_n;
	uint64_t unread_total;	/* unread in rooms other than room (main) */

	pthread_t notifier;
	bool notifier_running;
	char typing_room[ROOM_ID_MAX + 1]; /* "" when not typing */
	int64_t typing_until;	/* monotonic ms: the keys stopped for a while */
	bool typing_sent;	/* the server was told "typing" for typing_room */
	int64_t typing_sent_at;
	char read_room[ROOM_ID_MAX + 1];
	uint64_t read_seq, read_sent;
	bool read_busy;		/* the notifier's MarkRead is on its way */
	bool unread_kick;	/* ask for unread counts now */
	unread_room *unread;	/* the notifier's latest list */
	size_t unread_n;
	uint64_t unread_gen;	/* bumped with each new list */
} ui;

/* screen.c ------------------------------------------------------------------
 * Output: one line above what is being typed and the pending messages
 * (terminal-safe text only). */
void ui_show(ui *u, const char *line);
void ui_show_sb(ui *u, strbuf *sb);
/* "error: message" in words; counts the error; an UNAUTHENTICATED while
 * logged in marks the session lost (handled once the command is done). */
void ui_error(ui *u, rpc_code code, const char *message);
/* "* " + text + terminal-safe arg (may be NULL) + rest (may be NULL). */
void ui_note(ui *u, const char *text, const char *arg, const char *rest);
void ui_event(ui *u, const Parley__V1__Event *ev);
/* Removes the pending lines and the prompt from the screen / draws them
 * again at the cursor. */
void screen_clear_live(ui *u);
void screen_draw_live(ui *u);
/* Erases the line libedit just finished (the cursor is below it). */
void screen_erase_typed(ui *u, const char *line);
/* Rows the cursor is below the start of the prompt. */
int screen_editor_rows(const ui *u);

/* Asks for a value (echo false: a password) on the terminal, or takes the
 * next line of a pipe; false when there is none or it is empty. */
bool ui_ask(ui *u, const char *prompt, bool echo, char *buf, size_t len);

/* poller.c ------------------------------------------------------------------ */
bool poller_start(ui *u);
void poller_stop(ui *u);
/* Hands f (owned by the ui from now on) to the poller. */
void ui_start_following(ui *u, parley_follow *f);
/* Takes the current follower back; nothing of its room shows afterwards. */
void ui_stop_following(ui *u);
/* Takes the queued lines (main). */
qline *poller_take(ui *u);
void qline_free(qline *l);
void wake_main(ui *u, char why);

/* outbox.c ------------------------------------------------------------------ */
bool outbox_start(ui *u);
void outbox_stop(ui *u);
/* Queues text for room; shown pending until its copy comes back. */
bool outbox_add(ui *u, const char *room, const char *text);
/* Messages typed and not yet settled (stored and shown, or failed); held
 * ones (the session ended) do not count: they wait for a login. */
size_t outbox_pending(ui *u);
/* Settles what the sender finished and what came back (msg_id of a line
 * just shown, or NULL); prints failures. Main thread. */
void outbox_settle(ui *u, const char *shown_id);
/* Held messages (after the session ended) go out again / fail. */
void outbox_release(ui *u);
void outbox_fail_held(ui *u);
/* Appends one line per pending message to sb, at most cols-1 wide each;
 * returns the number of lines. */
int outbox_lines(ui *u, strbuf *sb, int cols);

/* notify.c ----------------------------------------------------------------- */
bool notify_start(ui *u);
void notify_stop(ui *u);
/* A key was typed with text on the line (main). */
void notify_typing(ui *u);
/* The line was sent or emptied (main). */
void notify_typing_stop(ui *u);
/* room was shown up to seq (main). */
void notify_read(ui *u, const char *room, uint64_t seq);
/* Sends the MarkRead not yet sent, now, from main (before counts are
 * shown, so that they include what is on screen). */
void notify_read_flush(ui *u);
/* Unread counts now rather than at the next turn. */
void notify_unread_now(ui *u);
/* Takes in a new unread list, if any: notices for new direct messages and
 * mentions elsewhere (main). Returns the unread total of other rooms. */
uint64_t notify_unread_update(ui *u);
/* The typing status line for the live area ("" if nobody); the next time
 * it changes by itself (monotonic ms, 0: never). Main. */
int64_t typing_line(ui *u, strbuf *sb, int cols);
void typing_set(ui *u, const char *id, bool typing);

/* chat_more.c: the slash commands for profiles, direct messages, topics,
 * members, moderation and edits; chat_more_command returns false for a
 * command it does not know. */
bool chat_more_command(ui *u, const char *cmd, char *args);
char *chat_next_word(char **rest);
/* In a room; else says so and returns false. */
bool chat_need_room(ui *u);

/* chat.c -------------------------------------------------------------------- */
/* Runs one slash command (line starts with '/', not "//"). */
void chat_command(ui *u, char *line);
/* What a typed message needs: logged in, in a room, not blank, not too
 * long. NULL if fine, else why not (static text). */
const char *chat_message_problem(ui *u, const char *text);
/* Picks up the saved session at start, if it is still valid. */
void chat_resume(ui *u);
/* The session ended: says so, offers to log in again in place. */
void chat_session_ended(ui *u);
/* Shows the last events of room and follows it from there. */
bool chat_enter_room(ui *u, const char *room);
void set_prompt(ui *u);

#endif

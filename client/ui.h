/*
 * ui.h — the interactive chat's two halves: interactive.c (the terminal,
 * the poller thread, the main loop) and chat.c (the slash commands). See
 * interactive.c for the threads and the locking rule; everything declared
 * here runs on the main thread.
 */
#ifndef PARLEY_UI_H
#define PARLEY_UI_H

#include <pthread.h>

#include "app.h"

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
	char prompt[4 * (ROOM_ID_MAX + RPC_USER_ID_MAX) + 16]; /* terminal-safe */
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

/* Output: one line above what is being typed (terminal-safe text only). */
void ui_show(ui *u, const char *line);
void ui_show_sb(ui *u, strbuf *sb);
/* "error: CODE: message", the message made terminal-safe. */
void ui_error(ui *u, rpc_code code, const char *message);
/* "* " + text + terminal-safe arg (may be NULL) + rest (may be NULL). */
void ui_note(ui *u, const char *text, const char *arg, const char *rest);
void ui_event(ui *u, const Parley__V1__Event *ev);

/* Asks for a value (echo false: a password) on the terminal, or takes the
 * next line of a pipe; false when there is none or it is empty. */
bool ui_ask(ui *u, const char *prompt, bool echo, char *buf, size_t len);

/* Hands f (owned by the ui from now on) to the poller. */
void ui_start_following(ui *u, parley_follow *f);
/* Takes the current follower back; nothing of its room shows afterwards. */
void ui_stop_following(ui *u);

/* chat.c: runs one typed line (a command or a message). */
void chat_handle_line(ui *u, char *line);
/* chat.c: picks up the saved session at start, if it is still valid. */
void chat_resume(ui *u);

#endif

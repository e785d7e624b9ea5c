/*
 * app.h — how parley.c (options, main), commands.c (the scripted
 * subcommands) and interactive.c (the chat prompt) fit together.
 *
 * main parses the command line into a cli_ctx, resolves the endpoints,
 * loads the saved session, connects, and hands the ctx to one command.
 * The ctx belongs to the main thread.
 */
#ifndef PARLEY_APP_H
#define PARLEY_APP_H

#include "cli.h"

/* Options a subcommand may accept (cli_command.opts). */
enum {
	OPT_JSON = 1 << 0,
	OPT_LINES = 1 << 1,
	OPT_BEFORE = 1 << 2,
	OPT_AFTER = 1 << 3,
	OPT_SINCE = 1 << 4,
	OPT_PASSWORD_STDIN = 1 << 5,
	OPT_DISPLAY_NAME = 1 << 6,
	OPT_EMAIL = 1 << 7,
	OPT_NAME = 1 << 8,
	OPT_TOPIC = 1 << 9,
	OPT_MINE = 1 << 10,
	OPT_YES = 1 << 11,
	OPT_EACH_LINE = 1 << 12,
};

typedef struct cli_ctx {
	const char *cmd_name;	/* "send", or "parley" for the interactive mode */
	parley_endpoints ep;	/* resolved */
	uint32_t timeout_ms;	/* --timeout, 0 if not given */
	parley_conn *conn;
	cli_session session;
	bool have_session;	/* session holds a loaded login */

	unsigned given;		/* OPT_* bits seen on the command line */
	bool json, mine, password_stdin, yes, each_line;
	uint32_t lines;
	uint64_t before, after, since;
	const char *display_name, *email, *name, *topic;
} cli_ctx;

typedef struct cli_command {
	const char *name;
	int (*run)(cli_ctx *ctx, int argc, char **argv); /* argv: the arguments after the name */
	unsigned opts;
	int min_args, max_args; /* max -1: no limit */
	bool needs_login;
	bool handles_signals;	/* SIGINT/SIGTERM/SIGHUP are blocked before connecting */
	const char *args;
	const char *summary;
	const char *help;
} cli_command;

extern const cli_command cli_commands[];

/* account.c: `parley delete-account`. */
int cli_cmd_delete_account(cli_ctx *ctx, int argc, char **argv);

/* Called once the command to run is known, before it runs. */
void cli_commands_init(const cli_command *cmd);
extern const size_t cli_ncommands;

/* The interactive chat (`parley` with no command). Signals as for a command
 * with handles_signals. */
int cli_interactive(cli_ctx *ctx);

/* Prints "error: CODE: message" to stderr; returns CLI_EXIT_STATUS. */
int cli_fail(rpc_code code, const char *message);
/* Prints "parley: message" to stderr; returns CLI_EXIT_LOCAL. */
int cli_local_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "parley CMD: message" and a hint to stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const cli_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The signals a long-running mode handles itself. */
void cli_block_signals(void);
/* Starts a thread that waits for those signals and calls fn(sig, arg) for
 * each, until cli_signal_thread_stop. */
bool cli_signal_thread_start(void (*fn)(int sig, void *arg), void *arg);
void cli_signal_thread_stop(void);

/* Reads a password as a command's options say: from the first line of stdin
 * with --password-stdin, otherwise from the terminal without echo (twice if
 * confirm). Returns CLI_EXIT_OK or an exit code after printing why. */
int cli_read_password(const cli_ctx *ctx, bool confirm, char *pw, size_t len);

/* Saves the login in resp for ctx's endpoints; also updates ctx->session. */
int cli_save_login(cli_ctx *ctx, const Parley__V1__LoginResponse *resp);

#endif

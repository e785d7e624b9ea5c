/*
 * parley.c — the `parley` command: options, where to connect, the saved
 * session, and dispatch to a scripted subcommand (commands.c) or the
 * interactive chat (interactive.c).
 *
 * Where to connect, strongest first: a service's flag (--auth URL), its
 * environment variable (PARLEY_AUTH), --server SERVER, PARLEY_SERVER, the
 * endpoints saved with the login, and 127.0.0.1 at the default ports.
 *
 * Exit status: 0 success; 1 a call failed ("error: STATUS_NAME: message" on
 * stderr); 2 usage (bad options, arguments or input); 3 local trouble (the
 * session file, the terminal, writing the output).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "version.h"

static const cli_command *current;

int
cli_fail(rpc_code code, const char *message)
{
	strbuf sb = {0};

	cli_error_line(&sb, code, message);
	cli_write_line(stderr, &sb);
	sb_free(&sb);
	return CLI_EXIT_STATUS;
}

int
cli_local_error(const char *fmt, ...)
{
	va_list ap;

	fputs("parley: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return CLI_EXIT_LOCAL;
}

int
cli_usage_error(const cli_ctx *ctx, const char *fmt, ...)
{
	const char *name = ctx != NULL && ctx->cmd_name != NULL ? ctx->cmd_name : NULL;
	va_list ap;

	fprintf(stderr, "parley%s%s: ", name ? " " : "", name ? name : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'parley %s%s--help'.\n", name ? name : "", name ? " " : "");
	return CLI_EXIT_USAGE;
}

/* Signals ------------------------------------------------------------------ */

static sigset_t handled;
static pthread_t sig_thread;
static bool sig_running;
static volatile bool sig_stop;
static void (*sig_fn)(int, void *);
static void *sig_arg;

void
cli_block_signals(void)
{
	sigemptyset(&handled);
	sigaddset(&handled, SIGINT);
	sigaddset(&handled, SIGTERM);
	sigaddset(&handled, SIGHUP);
	sigaddset(&handled, SIGWINCH);
	sigaddset(&handled, SIGCONT); /* back from Ctrl-Z: redraw */
	pthread_sigmask(SIG_BLOCK, &handled, NULL);
}

static void *
signal_main(void *unused)
{
	for (;;) {
		int sig;

		if (sigwait(&handled, &sig) != 0)
			continue;
		if (__atomic_load_n(&sig_stop, __ATOMIC_ACQUIRE))
			return NULL;
		sig_fn(sig, sig_arg);
	}
}

bool
cli_signal_thread_start(void (*fn)(int sig, void *arg), void *arg)
{
	sig_fn = fn;
	sig_arg = arg;
	sig_running = pthread_create(&sig_thread, NULL, signal_main, NULL) == 0;
	return sig_running;
}

void
cli_signal_thread_stop(void)
{
	if (!sig_running)
		return;
	__atomic_store_n(&sig_stop, true, __ATOMIC_RELEASE);
	pthread_kill(sig_thread, SIGWINCH);
	pthread_join(sig_thread, NULL);
	sig_running = false;
}

/* Passwords and logins ------------------------------------------------------ */

int
cli_read_password(const cli_ctx *ctx, bool confirm, char *pw, size_t len)
{
	char again[1100];
	bool too_long = false;
	long n;

	if (ctx->password_stdin) {
		n = cli_read_line(STDIN_FILENO, stderr, NULL, true, pw, len, &too_long);
		if (n < 0)
			return cli_usage_error(ctx, "no password on standard input");
	} else if (isatty(STDIN_FILENO)) {
		n = cli_read_line(STDIN_FILENO, stderr, "password: ", false, pw, len, &too_long);
		if (n >= 0 && !too_long && confirm) {
			bool long2;
			long m = cli_read_line(STDIN_FILENO, stderr, "password again: ", false,
					       again, sizeof(again), &long2);
			bool same = m == n && strcmp(again, pw) == 0;

			explicit_bzero(again, sizeof(again));
			if (!same)
				return cli_usage_error(ctx, "the passwords do not match");
		}
		if (n < 0)
			return cli_usage_error(ctx, "no password given");
	} else {
		return cli_usage_error(ctx, "standard input is not a terminal; use --password-stdin");
	}
	if (too_long)
		return cli_usage_error(ctx, "password longer than %zu bytes", len - 1);
	if (pw[0] == '\0')
		return cli_usage_error(ctx, "empty password");
	return CLI_EXIT_OK;
}

int
cli_save_login(cli_ctx *ctx, const Parley__V1__LoginResponse *resp)
{
	char err[512];

	memset(&ctx->session, 0, sizeof(ctx->session));
	snprintf(ctx->session.user, sizeof(ctx->session.user), "%s", resp->user->user_id);
	snprintf(ctx->session.token, sizeof(ctx->session.token), "%s", resp->token);
	ctx->session.expires_ms = resp->expires_at_ms;
	ctx->session.has_endpoints = true;
	for (int s = 0; s < PARLEY_NSERVICES; s++)
		snprintf(ctx->session.ep.url[s], PARLEY_URL_MAX, "%s", parley_endpoint(ctx->conn, s));
	ctx->have_session = true;
	if (!cli_session_save(&ctx->session, err, sizeof(err)))
		return cli_local_error("%s", err);
	return CLI_EXIT_OK;
}

/* Usage --------------------------------------------------------------------- */

static const char connection_help[] =
	"Where to connect (strongest first: a service's flag, its environment\n"
	"variable, --server, PARLEY_SERVER, the servers of the saved login,\n"
	"127.0.0.1):\n"
	"  --server SERVER     HOST (every service at its default port), HOST:PORT\n"
	"                      (auth at PORT, rooms PORT+1, history PORT+2, messaging\n"
	"                      PORT+3), or tcp://HOST[:PORT]                [PARLEY_SERVER]\n"
	"  --auth URL          the auth service, e.g. tcp://10.0.0.5:5201   [PARLEY_AUTH]\n"
	"  --rooms URL         the rooms service (default port 5202)        [PARLEY_ROOMS]\n"
	"  --history URL       the history service (default port 5203)      [PARLEY_HISTORY]\n"
	"  --messaging URL     the messaging service (default port 5204)    [PARLEY_MESSAGING]\n"
	"  --timeout MS        how long a call may take (default 10000)\n"
	"  --tls-ca FILE       CA (PEM) that tls+tcp:// servers' certificates must chain to\n"
	"                      (default: the system's CA bundle)            [PARLEY_TLS_CA]\n";

static void
usage(FILE *out)
{
	fprintf(out, "usage: parley [options] [COMMAND [ARGS]]\n\n"
		     "Without a command, parley is an interactive chat (type /help in it).\n\n"
		     "Commands:\n");
	for (size_t i = 0; i < cli_ncommands; i++) {
		char left[96];

		/* The summaries in one column, also after a long name. */
		snprintf(left, sizeof(left), "%-9s %s", cli_commands[i].name, cli_commands[i].args);
		fprintf(out, "  %-32s %s\n", left, cli_commands[i].summary);
	}
	fprintf(out,
		"\n'parley COMMAND --help' tells more about each.\n\n%s\n"
		"The login is saved in $XDG_CONFIG_HOME/parley/session (default\n"
		"~/.config/parley/session, mode 0600) and used by later commands.\n\n"
		"Exit status: 0 success; 1 a call failed (\"error: STATUS_NAME: message\" on\n"
		"stderr, STATUS_NAME one of gRPC's status codes); 2 bad usage or input;\n"
		"3 local trouble (session file, terminal, writing output).\n",
		connection_help);
}

static void
command_usage(FILE *out, const cli_command *c)
{
	fprintf(out, "usage: parley %s %s\n\n%c%s.\n%s\n%s", c->name, c->args,
		toupper((unsigned char)c->summary[0]), c->summary + 1, c->help, connection_help);
}

/* Options ------------------------------------------------------------------ */

enum {
	LO_SERVER = 256, LO_AUTH, LO_ROOMS, LO_HISTORY, LO_MESSAGING, LO_TIMEOUT, LO_HELP,
	LO_VERSION, LO_JSON, LO_LINES, LO_BEFORE, LO_AFTER, LO_SINCE, LO_PWSTDIN, LO_DISPLAY,
	LO_EMAIL, LO_NAME, LO_TOPIC, LO_EACH_LINE, LO_MINE, LO_YES, LO_TLS_CA,
};

static const struct option longopts[] = {
	{"server", required_argument, NULL, LO_SERVER},
	{"auth", required_argument, NULL, LO_AUTH},
	{"rooms", required_argument, NULL, LO_ROOMS},
	{"history", required_argument, NULL, LO_HISTORY},
	{"messaging", required_argument, NULL, LO_MESSAGING},
	{"timeout", required_argument, NULL, LO_TIMEOUT},
	{"tls-ca", required_argument, NULL, LO_TLS_CA},
	{"help", no_argument, NULL, LO_HELP},
	{"version", no_argument, NULL, LO_VERSION},
	{"json", no_argument, NULL, LO_JSON},
	{"lines", required_argument, NULL, LO_LINES},
	{"before", required_argument, NULL, LO_BEFORE},
	{"after", required_argument, NULL, LO_AFTER},
	{"since", required_argument, NULL, LO_SINCE},
	{"password-stdin", no_argument, NULL, LO_PWSTDIN},
	{"display-name", required_argument, NULL, LO_DISPLAY},
	{"email", required_argument, NULL, LO_EMAIL},
	{"name", required_argument, NULL, LO_NAME},
	{"topic", required_argument, NULL, LO_TOPIC},
	{"each-line", no_argument, NULL, LO_EACH_LINE},
	{"mine", no_argument, NULL, LO_MINE},
	{"yes", no_argument, NULL, LO_YES},
	{NULL, 0, NULL, 0},
};

/* The option's spelling for messages. */
static const char *
option_name(int opt)
{
	if (opt == 'n')
		return "-n";
	for (const struct option *o = longopts; o->name != NULL; o++)
		if (o->val == opt)
			return o->name;
	return "?";
}

static bool
parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return false;
	*out = v;
	return true;
}

static const cli_command *
find_command(const char *name)
{
	for (size_t i = 0; i < cli_ncommands; i++)
		if (strcmp(cli_commands[i].name, name) == 0)
			return &cli_commands[i];
	return NULL;
}

/* Endpoints from everything that may name them; see the top of the file. */
static int
resolve_endpoints(cli_ctx *ctx, const char *server, const char *const flags[PARLEY_NSERVICES])
{
	const char *env_server = getenv("PARLEY_SERVER");
	rpc_status st;

	parley_endpoints_for_host(&ctx->ep, NULL, &st);
	if (ctx->have_session && ctx->session.has_endpoints)
		ctx->ep = ctx->session.ep;
	if (env_server != NULL && env_server[0] != '\0' &&
	    parley_endpoints_for_host(&ctx->ep, env_server, &st) != RPC_OK)
		return cli_usage_error(ctx, "PARLEY_SERVER: %s", st.message);
	if (server != NULL && parley_endpoints_for_host(&ctx->ep, server, &st) != RPC_OK)
		return cli_usage_error(ctx, "--server: %s", st.message);
	if (parley_endpoints_from_env(&ctx->ep, &st) != RPC_OK)
		return cli_usage_error(ctx, "%s", st.message);
	for (int s = 0; s < PARLEY_NSERVICES; s++)
		if (flags[s] != NULL && parley_endpoints_set(&ctx->ep, s, flags[s], &st) != RPC_OK)
			return cli_usage_error(ctx, "--%s: %s", parley_service_name(s), st.message);
	return CLI_EXIT_OK;
}

/* How long a finished command waits for its sockets to close. */
#define DISCONNECT_WAIT_MS 2000

struct disconnect {
	parley_conn *conn;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool done;
};

static void *
disconnect_main(void *arg)
{
	struct disconnect *d = arg;

	parley_disconnect(d->conn);
	pthread_mutex_lock(&d->mtx);
	d->done = true;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mtx);
	return NULL;
}

/*
 * Closes the connection, but never lets a finished command hang on it:
 * nng_close waits for every connection to wind down, and one stalled by a
 * network fault (seen after a partition heals) can take unboundedly long.
 * Past DISCONNECT_WAIT_MS the process exits anyway, which ends nng's
 * threads with it. The struct is static: a helper still running at exit
 * may touch it.
 */
static void
disconnect_bounded(parley_conn *conn)
{
	static struct disconnect d = {.mtx = PTHREAD_MUTEX_INITIALIZER,
				      .cv = PTHREAD_COND_INITIALIZER};
	int64_t until = rpc_now_ms() + DISCONNECT_WAIT_MS;
	pthread_t t;

	d.conn = conn;
	if (pthread_create(&t, NULL, disconnect_main, &d) != 0) {
		parley_disconnect(conn);
		return;
	}
	pthread_mutex_lock(&d.mtx);
	while (!d.done && rpc_now_ms() < until)
		rpc_cond_wait_until(&d.cv, &d.mtx, until);
	pthread_mutex_unlock(&d.mtx);
	if (d.done)
		pthread_join(t, NULL);
	else
		pthread_detach(t);
}

static int
run(int argc, char **argv, char **pos)
{
	static const int opt_bits[] = {
		[LO_JSON - LO_JSON] = OPT_JSON,	  [LO_LINES - LO_JSON] = OPT_LINES,
		[LO_BEFORE - LO_JSON] = OPT_BEFORE, [LO_AFTER - LO_JSON] = OPT_AFTER,
		[LO_SINCE - LO_JSON] = OPT_SINCE,   [LO_PWSTDIN - LO_JSON] = OPT_PASSWORD_STDIN,
		[LO_DISPLAY - LO_JSON] = OPT_DISPLAY_NAME, [LO_EMAIL - LO_JSON] = OPT_EMAIL,
		[LO_NAME - LO_JSON] = OPT_NAME,	  [LO_TOPIC - LO_JSON] = OPT_TOPIC,
		[LO_MINE - LO_JSON] = OPT_MINE,	  [LO_YES - LO_JSON] = OPT_YES,
		[LO_EACH_LINE - LO_JSON] = OPT_EACH_LINE,
	};
	cli_ctx ctx = {.cmd_name = NULL};
	const char *server = NULL, *flags[PARLEY_NSERVICES] = {0};
	const char *tls_ca = getenv("PARLEY_TLS_CA");
	int npos = 0, opt, rc;
	const char *lines_arg = NULL;
	bool help = false;
	char err[512];
	rpc_status st;
	uint64_t v;

	opterr = 0;
	/* "-": positional arguments come back in order as option 1, so that
	 * options may stand anywhere and everything after "--" is an argument. */
	while ((opt = getopt_long(argc, argv, "-:hn:", longopts, NULL)) != -1) {
		switch (opt) {
		case 1: pos[npos++] = optarg; continue;
		case LO_SERVER: server = optarg; break;
		case LO_TLS_CA: tls_ca = optarg; break;
		case LO_AUTH: flags[PARLEY_AUTH] = optarg; break;
		case LO_ROOMS: flags[PARLEY_ROOMS] = optarg; break;
		case LO_HISTORY: flags[PARLEY_HISTORY] = optarg; break;
		case LO_MESSAGING: flags[PARLEY_MESSAGING] = optarg; break;
		case LO_TIMEOUT:
			if (!parse_u64(optarg, RPC_MAX_TIMEOUT_MS, &v) || v == 0)
				return cli_usage_error(NULL, "--timeout: '%s' is not 1-%d milliseconds",
						       optarg, RPC_MAX_TIMEOUT_MS);
			ctx.timeout_ms = (uint32_t)v;
			break;
		case 'h':
		case LO_HELP: help = true; break;
		case LO_VERSION: printf("parley %s (commit %s)\n", parley_version, parley_commit); return 0;
		case LO_JSON: ctx.json = true; break;
		case 'n':
		case LO_LINES:
			/* The range depends on the command (history 1-500, tail
			 * 0-500), which may come later: checked there. */
			opt = LO_LINES;
			lines_arg = optarg;
			break;
		case LO_BEFORE:
		case LO_AFTER:
		case LO_SINCE:
			if (!parse_u64(optarg, UINT64_MAX, &v))
				return cli_usage_error(NULL, "--%s: '%s' is not a sequence number",
						       option_name(opt), optarg);
			*(opt == LO_BEFORE ? &ctx.before : opt == LO_AFTER ? &ctx.after : &ctx.since) = v;
			break;
		case LO_PWSTDIN: ctx.password_stdin = true; break;
		case LO_DISPLAY: ctx.display_name = optarg; break;
		case LO_EMAIL: ctx.email = optarg; break;
		case LO_NAME: ctx.name = optarg; break;
		case LO_TOPIC: ctx.topic = optarg; break;
		case LO_MINE: ctx.mine = true; break;
		case LO_EACH_LINE: ctx.each_line = true; break;
		case LO_YES: ctx.yes = true; break;
		case ':':
			return cli_usage_error(NULL, "%s needs a value", argv[optind - 1]);
		default:
			return cli_usage_error(NULL, "unknown option '%s'", argv[optind - 1]);
		}
		if (opt >= LO_JSON && opt <= LO_MINE)
			ctx.given |= (unsigned)opt_bits[opt - LO_JSON];
	}
	while (optind < argc)
		pos[npos++] = argv[optind++];

	if (npos > 0 && strcmp(pos[0], "help") == 0) {
		current = npos > 1 ? find_command(pos[1]) : NULL;
		if (current != NULL)
			command_usage(stdout, current);
		else
			usage(stdout);
		return 0;
	}
	if (npos > 0) {
		if ((current = find_command(pos[0])) == NULL)
			return cli_usage_error(NULL, "unknown command '%s'", pos[0]);
		ctx.cmd_name = current->name;
	}
	if (help) {
		if (current != NULL)
			command_usage(stdout, current);
		else
			usage(stdout);
		return 0;
	}
	if (current != NULL) {
		int nargs = npos - 1;
		unsigned extra = ctx.given & ~current->opts;

		rc = CLI_EXIT_OK;
		if (extra != 0) {
			int o = LO_JSON;

			while (o < LO_MINE && !(extra & (unsigned)opt_bits[o - LO_JSON]))
				o++;
			rc = cli_usage_error(&ctx, "%s%s does not apply here",
					     o == LO_LINES ? "" : "--", option_name(o));
		} else if (nargs < current->min_args ||
			   (current->max_args >= 0 && nargs > current->max_args)) {
			rc = cli_usage_error(&ctx, "%s arguments (usage: parley %s %s)",
					     nargs < current->min_args ? "missing" : "too many",
					     current->name, current->args);
		}
		if (rc == CLI_EXIT_OK && lines_arg != NULL) {
			uint64_t min = strcmp(current->name, "tail") == 0 ? 0 : 1;

			if (!parse_u64(lines_arg, PARLEY_HISTORY_MAX, &v) || v < min)
				rc = cli_usage_error(&ctx, "-n: '%s' is not a number from %llu to %d",
						     lines_arg, (unsigned long long)min,
						     PARLEY_HISTORY_MAX);
			ctx.lines = (uint32_t)v;
		}
		if (rc != CLI_EXIT_OK)
			return rc;
	} else if (ctx.given != 0 || npos > 0)
		return cli_usage_error(NULL, "that option needs a command");

	/* The saved login: required by most commands, optional for the rest. */
	switch (cli_session_load(&ctx.session, err, sizeof(err))) {
	case CLI_SESSION_OK:
		ctx.have_session = true;
		break;
	case CLI_SESSION_NONE:
		break;
	default:
		if (current != NULL && current->needs_login)
			return cli_local_error("%s", err);
		if (current == NULL)
			fprintf(stderr, "parley: ignoring the saved session: %s\n", err);
		break;
	}
	if ((rc = resolve_endpoints(&ctx, server, flags)) != CLI_EXIT_OK)
		return rc;
	if (current != NULL && current->needs_login && !ctx.have_session) {
		return cli_fail(RPC_UNAUTHENTICATED, "not logged in; run 'parley login USER' first");
	}

	/* nng's threads must not take the signals a long-running mode waits
	 * for: block them before the first socket exists. */
	if (current == NULL || current->handles_signals)
		cli_block_signals();
	signal(SIGPIPE, SIG_IGN);
	if (parley_tls_configure(tls_ca != NULL && tls_ca[0] != '\0' ? tls_ca : NULL, NULL, NULL,
				 &st) != RPC_OK)
		return cli_local_error("%s", st.message);
	if (parley_connect(&ctx.conn, &ctx.ep, &st) != RPC_OK)
		return st.code == RPC_INVALID_ARGUMENT ? cli_usage_error(&ctx, "%s", st.message)
						       : cli_fail(st.code, st.message);
	parley_set_timeout(ctx.conn, ctx.timeout_ms);
	if (ctx.have_session && parley_set_token(ctx.conn, ctx.session.token, &st) != RPC_OK) {
		if (current != NULL && current->needs_login)
			rc = cli_local_error("the saved session is damaged; log in again");
		ctx.have_session = false;
	}
	if (current != NULL)
		cli_commands_init(current);
	if (rc == CLI_EXIT_OK)
		rc = current != NULL ? current->run(&ctx, npos - 1, pos + 1) : cli_interactive(&ctx);
	disconnect_bounded(ctx.conn);
	explicit_bzero(&ctx.session, sizeof(ctx.session));
	return rc;
}

int
main(int argc, char **argv)
{
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	int rc;

	setlocale(LC_ALL, "");
	if (pos == NULL)
		return cli_local_error("out of memory");
	rc = run(argc, argv, pos);
	free(pos);
	return rc;
}

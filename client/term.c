/*
 * term.c — reading a line (a password without echo) from a terminal or a
 * pipe, and the terminal's width; see cli.h.
 *
 * While echo is off, a signal that ends the process first puts the
 * terminal back: the handlers below only call async-signal-safe functions.
 */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

static struct termios saved_tio;
static volatile sig_atomic_t saved_fd = -1;

static const int fatal_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
#define NFATAL (sizeof(fatal_signals) / sizeof(fatal_signals[0]))

static void
restore_and_reraise(int sig)
{
	if (saved_fd >= 0)
		tcsetattr(saved_fd, TCSANOW, &saved_tio);
	signal(sig, SIG_DFL);
	raise(sig);
}

long
cli_read_line(int fd, FILE *out, const char *prompt, bool echo, char *buf, size_t len,
	      bool *too_long)
{
	struct sigaction sa = {.sa_handler = restore_and_reraise}, old[NFATAL];
	struct termios tio;
	bool quiet = !echo && isatty(fd) && tcgetattr(fd, &saved_tio) == 0;
	size_t n = 0;
	bool any = false, eol = false;
	long rc;

	if (too_long != NULL)
		*too_long = false;
	if (prompt != NULL) {
		fputs(prompt, out);
		fflush(out);
	}
	if (quiet) {
		sigemptyset(&sa.sa_mask);
		for (size_t i = 0; i < NFATAL; i++)
			sigaction(fatal_signals[i], &sa, &old[i]);
		tio = saved_tio;
		/* No ECHONL: what was typed ahead, before echo went off, would
		 * not show it; the line break is written below instead. */
		tio.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		tio.c_lflag |= ICANON;
		saved_fd = fd;
		/* TCSANOW, not TCSAFLUSH: keep what was typed ahead. */
		tcsetattr(fd, TCSANOW, &tio);
	}
	while (!eol) {
		char ch;
		ssize_t r = read(fd, &ch, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		any = true;
		if (ch == '\n') {
			eol = true;
		} else if (n + 1 < len) {
			buf[n++] = ch;
		} else if (too_long != NULL) {
			*too_long = true;
		}
	}
	if (quiet) {
		tcsetattr(fd, TCSANOW, &saved_tio);
		saved_fd = -1;
		for (size_t i = 0; i < NFATAL; i++)
			sigaction(fatal_signals[i], &old[i], NULL);
		explicit_bzero(&tio, sizeof(tio));
		fputc('\n', out);
		fflush(out);
	}
	if (len > 0) {
		if (n > 0 && buf[n - 1] == '\r')
			n--;
		buf[n] = '\0';
	}
	rc = any ? (long)n : -1;
	return rc;
}

int
cli_term_columns(int fd)
{
	struct winsize ws;

	if (!isatty(fd) || ioctl(fd, TIOCGWINSZ, &ws) != 0)
		return 0;
	return ws.ws_col;
}

bool
cli_term_echo(int fd, bool on)
{
	struct termios tio;

	if (!isatty(fd) || tcgetattr(fd, &tio) != 0)
		return false;
	if (on == ((tio.c_lflag & ECHO) != 0))
		return true;
	if (on)
		tio.c_lflag |= ECHO;
	else
		tio.c_lflag &= ~(tcflag_t)ECHO;
	return tcsetattr(fd, TCSANOW, &tio) == 0;
}

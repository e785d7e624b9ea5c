/*
 * session.c — the saved login of the `parley` command; see cli.h.
 *
 * The file is a few "key=value" lines: user, token, expires_ms and the four
 * endpoints the token was issued for. It holds a bearer token, so it is
 * created 0600 in a 0700 directory, written to session.new, synced and
 * renamed over the old one, and refused when it is not ours or others can
 * read it.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SESSION_FILE_MAX 8192

static const char *const endpoint_keys[PARLEY_NSERVICES] = {
	[PARLEY_AUTH] = "auth",
	[PARLEY_ROOMS] = "rooms",
	[PARLEY_HISTORY] = "history",
	[PARLEY_MESSAGING] = "messaging",
};

/* The configuration base: $XDG_CONFIG_HOME if absolute, else ~/.config. */
static bool
config_home(char *buf, size_t len, char *err, size_t errlen)
{
	const char *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	int n;

	if (xdg != NULL && xdg[0] == '/') {
		n = snprintf(buf, len, "%s", xdg);
	} else {
		if (home == NULL || home[0] != '/') {
			struct passwd *pw = getpwuid(geteuid());
			home = pw != NULL ? pw->pw_dir : NULL;
		}
		if (home == NULL || home[0] != '/') {
			snprintf(err, errlen, "neither XDG_CONFIG_HOME nor HOME is set");
			return false;
		}
		n = snprintf(buf, len, "%s/.config", home);
	}
	if (n < 0 || (size_t)n >= len) {
		snprintf(err, errlen, "configuration directory path too long");
		return false;
	}
	return true;
}

bool
cli_session_path(char *path, size_t len, char *err, size_t errlen)
{
	char base[3800];
	int n;

	if (!config_home(base, sizeof(base), err, errlen))
		return false;
	n = snprintf(path, len, "%s/parley/session", base);
	if (n < 0 || (size_t)n >= len) {
		snprintf(err, errlen, "session file path too long");
		return false;
	}
	return true;
}

/* mkdir -p for the directories above the session file: the base with mode
 * 0700 if we create it, and parley/ always 0700. */
static bool
make_dirs(char *err, size_t errlen)
{
	char path[4096];
	struct stat sb;
	size_t n;

	if (!config_home(path, sizeof(path) - 8, err, errlen))
		return false;
	n = strlen(path);
	for (size_t i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST) {
			snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
			return false;
		}
		if (i < n)
			path[i] = '/';
	}
	strcat(path, "/parley");
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return false;
	}
	if (lstat(path, &sb) != 0 || !S_ISDIR(sb.st_mode) || sb.st_uid != geteuid()) {
		snprintf(err, errlen, "%s is not a directory of yours", path);
		return false;
	}
	if ((sb.st_mode & 077) != 0 && chmod(path, 0700) != 0) {
		snprintf(err, errlen, "cannot make %s private: %s", path, strerror(errno));
		return false;
	}
	return true;
}

static bool
user_id_plausible(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > RPC_USER_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f || s[i] == '=')
			return false;
	return true;
}

/* Parses the file's text into s; false (with err) if anything is off. */
static bool
parse(cli_session *s, char *text, const char *path, char *err, size_t errlen)
{
	int have_ep = 0;
	rpc_status st;

	memset(s, 0, sizeof(*s));
	for (char *line = text, *next; line != NULL && *line != '\0'; line = next) {
		char *eq, *val;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if ((eq = strchr(line, '=')) == NULL)
			goto bad;
		*eq = '\0';
		val = eq + 1;
		if (strcmp(line, "user") == 0) {
			if (!user_id_plausible(val))
				goto bad;
			snprintf(s->user, sizeof(s->user), "%s", val);
		} else if (strcmp(line, "token") == 0) {
			if (strlen(val) >= sizeof(s->token))
				goto bad;
			snprintf(s->token, sizeof(s->token), "%s", val);
		} else if (strcmp(line, "expires_ms") == 0) {
			char *end;
			s->expires_ms = strtoull(val, &end, 10);
			if (*end != '\0')
				goto bad;
		} else {
			for (int k = 0; k < PARLEY_NSERVICES; k++) {
				if (strcmp(line, endpoint_keys[k]) != 0)
					continue;
				if (parley_endpoints_set(&s->ep, k, val, &st) != RPC_OK)
					goto bad;
				have_ep |= 1 << k;
			}
			/* Unknown keys are ignored: a newer parley may add some. */
		}
	}
	if (s->user[0] == '\0' || s->token[0] == '\0')
		goto bad;
	s->has_endpoints = have_ep == (1 << PARLEY_NSERVICES) - 1;
	return true;

bad:
	snprintf(err, errlen, "%s is damaged; log in again", path);
	explicit_bzero(s, sizeof(*s));
	return false;
}

int
cli_session_load(cli_session *s, char *err, size_t errlen)
{
	char path[4096], text[SESSION_FILE_MAX + 1];
	struct stat sb;
	size_t got = 0;
	int fd, rc = CLI_SESSION_ERROR;

	memset(s, 0, sizeof(*s));
	if (!cli_session_path(path, sizeof(path), err, errlen))
		return CLI_SESSION_ERROR;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return CLI_SESSION_NONE;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return CLI_SESSION_ERROR;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", path);
		goto out;
	}
	if (sb.st_uid != geteuid() || (sb.st_mode & 077) != 0) {
		snprintf(err, errlen,
			 "%s is not private (mode %03o); remove it and log in again", path,
			 (unsigned)(sb.st_mode & 0777));
		goto out;
	}
	if (sb.st_size > SESSION_FILE_MAX) {
		snprintf(err, errlen, "%s is too large", path);
		goto out;
	}
	while (got < SESSION_FILE_MAX) {
		ssize_t n = read(fd, text + got, SESSION_FILE_MAX - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	text[got] = '\0';
	if (strlen(text) != got) {
		snprintf(err, errlen, "%s is damaged; log in again", path);
		goto out;
	}
	rc = parse(s, text, path, err, errlen) ? CLI_SESSION_OK : CLI_SESSION_ERROR;
out:
	explicit_bzero(text, sizeof(text));
	close(fd);
	return rc;
}

static bool
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

bool
cli_session_save(const cli_session *s, char *err, size_t errlen)
{
	char path[4096], tmp[4200], dir[4096];
	strbuf sb = {0};
	bool ok = false;
	int fd, dfd;

	if (!cli_session_path(path, sizeof(path), err, errlen) || !make_dirs(err, errlen))
		return false;
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	sb_puts(&sb, "# parley session: a login token, keep it private\n");
	sb_printf(&sb, "user=%s\ntoken=%s\nexpires_ms=%llu\n", s->user, s->token,
		  (unsigned long long)s->expires_ms);
	if (s->has_endpoints)
		for (int k = 0; k < PARLEY_NSERVICES; k++)
			sb_printf(&sb, "%s=%s\n", endpoint_keys[k], s->ep.url[k]);
	if (sb.oom) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (fchmod(fd, 0600) != 0 || !write_all(fd, sb.p, sb.len) || fsync(fd) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		snprintf(err, errlen, "cannot replace %s: %s", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	/* The rename is durable once the directory is synced. */
	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = '\0';
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(dfd);
		close(dfd);
	}
	ok = true;
out:
	if (sb.p != NULL)
		explicit_bzero(sb.p, sb.cap);
	sb_free(&sb);
	return ok;
}

bool
cli_session_remove(char *err, size_t errlen)
{
	char path[4096];

	if (!cli_session_path(path, sizeof(path), err, errlen))
		return false;
	if (unlink(path) != 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove %s: %s", path, strerror(errno));
		return false;
	}
	return true;
}

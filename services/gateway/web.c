/* web.c — see web.h. */
#define _GNU_SOURCE
#include "web.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "web_assets.h"

#define WEB_PATH_MAX 256

struct web_site {
	char *root; /* realpath of the folder, or NULL: the embedded files */
};

/* 'self' only, no inline script or style, no eval, no plugins, no framing,
 * no form posts anywhere (the page calls the API with fetch). */
static const char *const web_headers[] = {
	"Cache-Control", "no-cache",
	"Content-Security-Policy",
	"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
	"connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
	"frame-ancestors 'none'",
	"X-Content-Type-Options", "nosniff",
	"X-Frame-Options", "DENY",
	"Referrer-Policy", "no-referrer",
	NULL,
};

static const struct {
	const char *ext;
	const char *type;
} web_types[] = {
	{".html", "text/html; charset=utf-8"},
	{".css", "text/css; charset=utf-8"},
	{".js", "text/javascript; charset=utf-8"},
	{".mjs", "text/javascript; charset=utf-8"},
	{".json", "application/json"},
	{".webmanifest", "application/manifest+json"},
	{".svg", "image/svg+xml"},
	{".png", "image/png"},
	{".ico", "image/x-icon"},
	{".txt", "text/plain; charset=utf-8"},
};

static const char *
content_type(const char *path)
{
	const char *dot = strrchr(path, '.');

	for (size_t i = 0; dot != NULL && i < sizeof(web_types) / sizeof(web_types[0]); i++)
		if (strcmp(dot, web_types[i].ext) == 0)
			return web_types[i].type;
	return "application/octet-stream";
}

/*
 * Whether path may name a file: '/' then segments of [A-Za-z0-9._-]
 * separated by single slashes, none starting with '.' (so no "..", no
 * hidden files), at most WEB_PATH_MAX bytes. libmicrohttpd has already
 * percent-decoded it, so "%2e%2e" arrives as ".." and is refused here.
 */
static bool
path_ok(const char *path)
{
	size_t n = strlen(path);
	bool seg_start = true;

	if (n < 2 || n > WEB_PATH_MAX || path[0] != '/')
		return false;
	for (size_t i = 1; i < n; i++) {
		char ch = path[i];

		if (ch == '/') {
			if (seg_start)
				return false; /* "//" */
			seg_start = true;
			continue;
		}
		if (seg_start && ch == '.')
			return false;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
		seg_start = false;
	}
	return !seg_start; /* no trailing slash */
}

int
web_open(web_site **out, const char *root, rpc_status *st)
{
	web_site *w = calloc(1, sizeof(*w));
	struct stat sb;

	*out = NULL;
	if (w == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	if (root != NULL) {
		if ((w->root = realpath(root, NULL)) == NULL || stat(w->root, &sb) != 0 ||
		    access(w->root, R_OK | X_OK) != 0) {
			rpc_status_set(st, RPC_NOT_FOUND, "--web-root %.200s: %s", root,
				       strerror(errno));
			goto fail;
		}
		if (!S_ISDIR(sb.st_mode)) {
			rpc_status_set(st, RPC_NOT_FOUND, "--web-root %.200s: not a folder", root);
			goto fail;
		}
	}
	*out = w;
	return RPC_OK;

fail:
	web_close(w);
	return st->code;
}

void
web_close(web_site *w)
{
	if (w == NULL)
		return;
	free(w->root);
	free(w);
}

static bool
get_embedded(const char *path, rpc_http_reply *out)
{
	for (size_t i = 0; i < web_nassets; i++) {
		if (strcmp(web_assets[i].path, path) != 0)
			continue;
		out->body = (void *)web_assets[i].data;
		out->len = web_assets[i].len;
		out->static_body = true;
		out->etag = web_assets[i].etag;
		return true;
	}
	return false;
}

/*
 * Reads root/path into a malloc'd buffer if it resolves to a regular file
 * inside root. The ETag is in a thread-local buffer: the runtime copies
 * it into the response before this thread serves another request.
 */
static bool
get_file(const web_site *w, const char *path, rpc_http_reply *out)
{
	static _Thread_local char etag[64];
	char joined[PATH_MAX];
	char *real = NULL;
	size_t rootlen = strlen(w->root);
	unsigned char *buf = NULL;
	struct stat sb;
	size_t got = 0;
	int fd = -1;

	if ((size_t)snprintf(joined, sizeof(joined), "%s%s", w->root, path) >= sizeof(joined))
		return false;
	/* Symbolic links are resolved, and the result must still be inside. */
	if ((real = realpath(joined, NULL)) == NULL || strncmp(real, w->root, rootlen) != 0 ||
	    real[rootlen] != '/')
		goto fail;
	if ((fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 || fstat(fd, &sb) != 0 ||
	    !S_ISREG(sb.st_mode) || sb.st_size > WEB_MAX_FILE)
		goto fail;
	if ((buf = malloc(sb.st_size ? (size_t)sb.st_size : 1)) == NULL)
		goto fail;
	while (got < (size_t)sb.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)sb.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		got += (size_t)n;
	}
	snprintf(etag, sizeof(etag), "\"%llx-%llx.%lx\"", (unsigned long long)sb.st_size,
		 (unsigned long long)sb.st_mtim.tv_sec, (unsigned long)sb.st_mtim.tv_nsec);
	close(fd);
	free(real);
	out->body = buf;
	out->len = got;
	out->etag = etag;
	return true;

fail:
	free(buf);
	if (fd >= 0)
		close(fd);
	free(real);
	return false;
}

bool
web_get(void *ctx, const char *path, rpc_http_reply *out)
{
	const web_site *w = ctx;

	if (strcmp(path, "/") == 0)
		path = "/index.html";
	if (!path_ok(path))
		return false;
	if (!(w->root != NULL ? get_file(w, path, out) : get_embedded(path, out)))
		return false;
	out->content_type = content_type(path);
	out->headers = web_headers;
	return true;
}

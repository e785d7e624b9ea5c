/* log.c — see log.h. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define LINE_MAX_BYTES 2048
#define FIELD_MAX 256

static plog_format format = PLOG_TEXT;

bool
plog_set_format(const char *name)
{
	if (strcmp(name, "text") == 0)
		format = PLOG_TEXT;
	else if (strcmp(name, "json") == 0)
		format = PLOG_JSON;
	else
		return false;
	return true;
}

static void
timestamp(char out[40])
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 40 - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}

static void
emit(char *line, size_t n)
{
	if (n >= LINE_MAX_BYTES)
		n = LINE_MAX_BYTES - 1;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}

/*
 * Text: control characters, quotes and backslashes become escapes, so a
 * line from the network can neither forge another line nor break the
 * key="value" reading. Bytes >= 0x80 pass (UTF-8 was checked by rpc).
 */
static void
text_escape(char *out, size_t len, const char *s)
{
	size_t o = 0;

	for (size_t i = 0; s[i] != '\0' && i < FIELD_MAX && o + 5 < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch < 0x20 || ch == 0x7f) {
			o += (size_t)snprintf(out + o, len - o, "\\x%02x", ch);
		} else {
			out[o++] = (char)ch;
		}
	}
	out[o] = '\0';
}

/* jansson refuses invalid UTF-8: such a string is logged with '?' for
 * every byte >= 0x80 instead of being lost. */
static json_t *
json_str(const char *s)
{
	char safe[FIELD_MAX + 1];
	size_t n = strnlen(s, FIELD_MAX);
	json_t *j = json_stringn(s, n);

	if (j != NULL)
		return j;
	for (size_t i = 0; i < n; i++)
		safe[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
	return json_stringn(safe, n);
}

static void
emit_json(json_t *obj)
{
	char line[LINE_MAX_BYTES];
	size_t n;

	if (obj == NULL)
		return;
	n = json_dumpb(obj, line, sizeof(line) - 1, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(obj);
	if (n == 0 || n >= sizeof(line) - 1)
		return;
	emit(line, n);
}

static json_t *
json_head(const char *level, const char *component)
{
	char ts[40];
	json_t *o = json_object();

	timestamp(ts);
	json_object_set_new(o, "ts", json_string(ts));
	json_object_set_new(o, "level", json_string(level));
	json_object_set_new(o, "component", json_str(component));
	return o;
}

static void __attribute__((format(printf, 3, 0)))
plog(const char *level, const char *component, const char *fmt, va_list ap)
{
	char line[LINE_MAX_BYTES], ts[40];
	int n;

	if (format == PLOG_JSON) {
		char msg[LINE_MAX_BYTES / 2];
		json_t *o = json_head(level, component);

		vsnprintf(msg, sizeof(msg), fmt, ap);
		json_object_set_new(o, "msg", json_str(msg));
		emit_json(o);
		return;
	}
	timestamp(ts);
	n = snprintf(line, sizeof(line), "%s %s %s: ", ts, level, component);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	emit(line, (size_t)n);
}

void
plog_info(const char *component, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	plog("info", component, fmt, ap);
	va_end(ap);
}

void
plog_error(const char *component, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	plog("error", component, fmt, ap);
	va_end(ap);
}

void
plog_warn(const char *component, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	plog("warn", component, fmt, ap);
	va_end(ap);
}

/* A peer can make calls fail as fast as it can send them: failed calls are
 * logged at most CALL_LINES_PER_S a second, and how many were left out is
 * said once the second is over, so the log cannot be used to fill the disk. */
#define CALL_LINES_PER_S 50

static bool
call_line_allowed(void)
{
	static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
	static time_t second;
	static unsigned lines, dropped;
	struct timespec now;
	unsigned report = 0;
	bool ok;

	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&mtx);
	if (now.tv_sec != second) {
		report = dropped;
		second = now.tv_sec;
		lines = dropped = 0;
	}
	ok = lines < CALL_LINES_PER_S;
	if (ok)
		lines++;
	else
		dropped++;
	pthread_mutex_unlock(&mtx);
	if (report > 0)
		plog_warn("rpc", "%u more failed calls were not logged (at most %d lines a second)",
			  report, CALL_LINES_PER_S);
	return ok;
}

void
plog_call_failed(const plog_call *c)
{
	const char *level = c->server_fault ? "error" : "warn";
	const char *method = c->method != NULL ? c->method : "";
	const char *message = c->message != NULL ? c->message : "";
	const char *peer = c->peer != NULL ? c->peer : "";

	if (!call_line_allowed())
		return;

	if (format == PLOG_JSON) {
		json_t *o = json_head(level, c->component);
		char rid[24];

		json_object_set_new(o, "msg", json_string("call failed"));
		json_object_set_new(o, "method", json_str(method));
		json_object_set_new(o, "status", json_str(c->status));
		json_object_set_new(o, "code", json_integer(c->code));
		/* A string: ids are any 64-bit value, past JSON's safe integers. */
		snprintf(rid, sizeof(rid), "%llu", (unsigned long long)c->request_id);
		json_object_set_new(o, "request_id", json_string(rid));
		json_object_set_new(o, "peer", json_str(peer));
		json_object_set_new(o, "duration_ms", json_real(c->duration_ms));
		json_object_set_new(o, "message", json_str(message));
		emit_json(o);
	} else {
		char line[LINE_MAX_BYTES], ts[40], m[FIELD_MAX * 4 + 8], msg[FIELD_MAX * 4 + 8],
		    p[FIELD_MAX * 4 + 8];
		int n;

		timestamp(ts);
		text_escape(m, sizeof(m), method);
		text_escape(msg, sizeof(msg), message);
		text_escape(p, sizeof(p), peer);
		n = snprintf(line, sizeof(line),
			     "%s %s %s: call failed method=\"%s\" status=%s code=%d "
			     "request_id=%llu peer=\"%s\" duration_ms=%.3f message=\"%s\"",
			     ts, level, c->component, m, c->status, c->code,
			     (unsigned long long)c->request_id, p, c->duration_ms, msg);
		if (n > 0)
			emit(line, (size_t)n);
	}
}

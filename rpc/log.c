/* log.c — see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static void __attribute__((format(printf, 3, 0)))
plog(const char *level, const char *component, const char *fmt, va_list ap)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		     tm.tm_sec, ts.tv_nsec / 1000000, level, component);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if ((size_t)n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, (size_t)n);
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

/*
 * log.h — one line per event to stderr: time, level, component, message;
 * as text (the default) or as one JSON object per line (--log-format json).
 * Thread-safe: each line is one write(2). The format is chosen once at
 * start, before any thread logs.
 *
 * What is logged never holds a secret: callers pass no password, token or
 * authorization header, and plog_call_failed takes none.
 */
#ifndef PARLEY_LOG_H
#define PARLEY_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum plog_format {
	PLOG_TEXT = 0,	/* 2026-12-07T10:00:00.000Z info auth: message */
	PLOG_JSON,	/* {"ts":"...","level":"info","component":"auth","msg":"..."} */
} plog_format;

/* Sets the format from its name ("text" or "json"); false if unknown. */
bool plog_set_format(const char *name);

void plog_info(const char *component, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void plog_warn(const char *component, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void plog_error(const char *component, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A call that was answered with a status other than OK. Strings may come
 * from the network: they are escaped, and cut at 256 bytes. */
typedef struct plog_call {
	const char *component;	/* the server's name, e.g. "auth" */
	const char *method;	/* as the client sent it; NULL if none could be read */
	const char *status;	/* the code's name, e.g. "NOT_FOUND" */
	int code;
	const char *message;	/* the status message sent to the client */
	uint64_t request_id;
	const char *peer;	/* e.g. "tcp://127.0.0.1:40512", "inproc" */
	double duration_ms;	/* from arrival to the reply */
	bool server_fault;	/* logged as "error" (else "warn") */
} plog_call;

void plog_call_failed(const plog_call *call);

#endif

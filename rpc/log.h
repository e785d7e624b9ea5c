/*
 * log.h — one line per event to stderr: time, level, component, message.
 * Thread-safe (each line is one write). Used by the daemon and services.
 */
#ifndef PARLEY_LOG_H
#define PARLEY_LOG_H

void plog_info(const char *component, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void plog_warn(const char *component, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void plog_error(const char *component, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

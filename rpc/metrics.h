/*
 * metrics.h — the process's counters, gauges and histograms, rendered in
 * Prometheus's text format (version 0.0.4) for GET /metrics.
 *
 * A series is one metric name with one set of labels. It is registered once
 * (get-or-create: asking again for the same name and labels returns the same
 * series, so a service started twice in one process keeps counting) and
 * lives until the process exits: handles never dangle. Registration and
 * rendering take the registry's mutex; updates never lock: they are atomic
 * operations on the series, safe from any thread, cheap enough for every
 * call.
 *
 * Names follow Prometheus: parley_<part>_<what>[_total|_seconds|_bytes].
 * labels is the text between the braces, e.g. `service="auth"`, or NULL;
 * it is written as given, so callers pass values of their own making
 * (never a string from the network): no quote, backslash or newline.
 *
 * Registration returns NULL only when out of memory; every update accepts
 * NULL and does nothing, so a metric can never take a service down.
 */
#ifndef PARLEY_RPC_METRICS_H
#define PARLEY_RPC_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "rpc.h"

typedef struct rpc_metric rpc_metric;

rpc_metric *rpc_metrics_counter(const char *name, const char *help, const char *labels);
rpc_metric *rpc_metrics_gauge(const char *name, const char *help, const char *labels);
/* bounds: the upper bounds of the buckets, ascending (+Inf is implied);
 * at most RPC_METRICS_MAX_BUCKETS. The same name must always come with the
 * same bounds. */
rpc_metric *rpc_metrics_histogram(const char *name, const char *help, const char *labels,
				  const double *bounds, int nbounds);
#define RPC_METRICS_MAX_BUCKETS 20

/* Bucket bounds for latencies in seconds (0.5 ms to 10 s), and for counts
 * of things per batch (1 to 1024). */
extern const double rpc_metrics_latency_bounds[];
extern const int rpc_metrics_latency_nbounds;
extern const double rpc_metrics_count_bounds[];
extern const int rpc_metrics_count_nbounds;

void rpc_counter_add(rpc_metric *m, uint64_t n);
void rpc_gauge_add(rpc_metric *m, int64_t delta);
void rpc_gauge_set(rpc_metric *m, int64_t value);
void rpc_histogram_observe(rpc_metric *m, double value);

/* The same, kept in *cache (a static of the caller) after the first call:
 * for events in code with no start-up hook of its own. Lock-free once made. */
rpc_metric *rpc_metrics_counter_cached(rpc_metric **cache, const char *name, const char *help,
				       const char *labels);

/*
 * A gauge whose value is computed when /metrics is read: fn(arg) is called
 * under the registry's mutex and must not block for long nor register
 * metrics. rpc_metrics_gauge_fn_remove(arg) unregisters every such gauge
 * given arg, and returns only when none of them is running: call it before
 * arg goes away.
 */
typedef double (*rpc_gauge_fn)(void *arg);
int rpc_metrics_gauge_fn(const char *name, const char *help, const char *labels,
			 rpc_gauge_fn fn, void *arg);
void rpc_metrics_gauge_fn_remove(void *arg);

/*
 * The RPC runtime's view of one method of one service: calls by status
 * code (parley_rpc_calls_total{service,method,code}) and their latency
 * (parley_rpc_call_duration_seconds{service,method}). method NULL stands
 * for calls that named no method this server knows.
 */
typedef struct rpc_call_metrics rpc_call_metrics;
rpc_call_metrics *rpc_metrics_for_method(const char *service, const char *method);
void rpc_metrics_call_done(rpc_call_metrics *cm, rpc_code code, int64_t duration_ns);

/*
 * The whole registry as Prometheus text. Returns a malloc'd string the
 * caller frees (and its length in *len), or NULL when out of memory.
 */
char *rpc_metrics_render(size_t *len);

/* Prometheus's Content-Type for that text. */
#define RPC_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif

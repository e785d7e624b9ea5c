/*
 * metrics.c — see metrics.h.
 *
 * The registry is a list of families (one per metric name, in order of
 * registration), each with its list of series. reg_mtx guards both lists,
 * the gauge functions and the call-metrics list; it is held to register
 * and to render, never to update. Series and families are never freed.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RPC_NCODES 17 /* gRPC's codes 0..16 */

typedef enum kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } kind;

struct family {
	struct family *next;
	char *name, *help;
	kind kind;
	double bounds[RPC_METRICS_MAX_BUCKETS];
	int nbounds;
	rpc_metric *head, *tail;
};

struct rpc_metric {
	rpc_metric *next;
	struct family *fam;
	char *labels;
	uint64_t value;	/* counter; gauge as int64 bits */
	uint64_t buckets[RPC_METRICS_MAX_BUCKETS + 1]; /* per bucket, not cumulative */
	uint64_t sum_bits;	/* a double, updated by compare-and-swap */
	rpc_gauge_fn fn;	/* computed gauge, or NULL */
	void *fn_arg;
	bool computed;		/* a gauge function's series: hidden once removed */
};

struct rpc_call_metrics {
	rpc_call_metrics *next;
	char labels[200];	/* service="...",method="..." */
	rpc_metric *by_code[RPC_NCODES]; /* made at a code's first call */
	rpc_metric *latency;
};

static pthread_mutex_t reg_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct family *families, *families_tail;
static rpc_call_metrics *call_metrics;

const double rpc_metrics_latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					     0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const int rpc_metrics_latency_nbounds =
    sizeof(rpc_metrics_latency_bounds) / sizeof(rpc_metrics_latency_bounds[0]);
const double rpc_metrics_count_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
const int rpc_metrics_count_nbounds =
    sizeof(rpc_metrics_count_bounds) / sizeof(rpc_metrics_count_bounds[0]);

/* ---- registration ----------------------------------------------------------------- */

/* Called with reg_mtx held. */
static struct family *
family_get(const char *name, const char *help, kind k, const double *bounds, int nbounds)
{
	struct family *f;

	for (f = families; f != NULL; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f->kind == k && f->nbounds == nbounds ? f : NULL;
	if (nbounds < 0 || nbounds > RPC_METRICS_MAX_BUCKETS || strchr(help, '\n') != NULL)
		return NULL;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	f->name = strdup(name);
	f->help = strdup(help);
	if (f->name == NULL || f->help == NULL) {
		free(f->name);
		free(f->help);
		free(f);
		return NULL;
	}
	f->kind = k;
	f->nbounds = nbounds;
	if (nbounds > 0)
		memcpy(f->bounds, bounds, (size_t)nbounds * sizeof(double));
	if (families_tail != NULL)
		families_tail->next = f;
	else
		families = f;
	families_tail = f;
	return f;
}

/* Called with reg_mtx held. */
static rpc_metric *
series_get(struct family *f, const char *labels)
{
	rpc_metric *m;

	if (labels == NULL)
		labels = "";
	if (strpbrk(labels, "\n\\") != NULL)
		return NULL;
	for (m = f->head; m != NULL; m = m->next)
		if (strcmp(m->labels, labels) == 0)
			return m;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	if ((m->labels = strdup(labels)) == NULL) {
		free(m);
		return NULL;
	}
	m->fam = f;
	if (f->tail != NULL)
		f->tail->next = m;
	else
		f->head = m;
	f->tail = m;
	return m;
}

static rpc_metric *
get(const char *name, const char *help, const char *labels, kind k, const double *bounds,
    int nbounds)
{
	struct family *f;
	rpc_metric *m = NULL;

	pthread_mutex_lock(&reg_mtx);
	if ((f = family_get(name, help, k, bounds, nbounds)) != NULL)
		m = series_get(f, labels);
	pthread_mutex_unlock(&reg_mtx);
	return m;
}

rpc_metric *
rpc_metrics_counter(const char *name, const char *help, const char *labels)
{
	return get(name, help, labels, KIND_COUNTER, NULL, 0);
}

rpc_metric *
rpc_metrics_counter_cached(rpc_metric **cache, const char *name, const char *help,
			   const char *labels)
{
	rpc_metric *m = __atomic_load_n(cache, __ATOMIC_ACQUIRE);

	if (m == NULL) {
		m = rpc_metrics_counter(name, help, labels);
		__atomic_store_n(cache, m, __ATOMIC_RELEASE);
	}
	return m;
}

rpc_metric *
rpc_metrics_gauge(const char *name, const char *help, const char *labels)
{
	return get(name, help, labels, KIND_GAUGE, NULL, 0);
}

rpc_metric *
rpc_metrics_histogram(const char *name, const char *help, const char *labels,
		      const double *bounds, int nbounds)
{
	return get(name, help, labels, KIND_HISTOGRAM, bounds, nbounds);
}

int
rpc_metrics_gauge_fn(const char *name, const char *help, const char *labels, rpc_gauge_fn fn,
		     void *arg)
{
	struct family *f;
	rpc_metric *m = NULL;

	pthread_mutex_lock(&reg_mtx);
	if ((f = family_get(name, help, KIND_GAUGE, NULL, 0)) != NULL &&
	    (m = series_get(f, labels)) != NULL) {
		m->fn = fn;
		m->fn_arg = arg;
		m->computed = true;
	}
	pthread_mutex_unlock(&reg_mtx);
	return m != NULL ? RPC_OK : RPC_RESOURCE_EXHAUSTED;
}

void
rpc_metrics_gauge_fn_remove(void *arg)
{
	pthread_mutex_lock(&reg_mtx);
	for (struct family *f = families; f != NULL; f = f->next)
		for (rpc_metric *m = f->head; m != NULL; m = m->next)
			if (m->fn != NULL && m->fn_arg == arg) {
				m->fn = NULL;
				m->fn_arg = NULL;
			}
	pthread_mutex_unlock(&reg_mtx);
}

/* ---- updates: atomics only ----------------------------------------------------------- */

void
rpc_counter_add(rpc_metric *m, uint64_t n)
{
	if (m != NULL)
		__atomic_fetch_add(&m->value, n, __ATOMIC_RELAXED);
}

void
rpc_gauge_add(rpc_metric *m, int64_t delta)
{
	if (m != NULL)
		__atomic_fetch_add(&m->value, (uint64_t)delta, __ATOMIC_RELAXED);
}

void
rpc_gauge_set(rpc_metric *m, int64_t value)
{
	if (m != NULL)
		__atomic_store_n(&m->value, (uint64_t)value, __ATOMIC_RELAXED);
}

void
rpc_histogram_observe(rpc_metric *m, double value)
{
	uint64_t old, new;
	int b = 0;

	if (m == NULL)
		return;
	while (b < m->fam->nbounds && value > m->fam->bounds[b])
		b++;
	__atomic_fetch_add(&m->buckets[b], 1, __ATOMIC_RELAXED);
	old = __atomic_load_n(&m->sum_bits, __ATOMIC_RELAXED);
	do {
		double sum;

		memcpy(&sum, &old, sizeof(sum));
		sum += value;
		memcpy(&new, &sum, sizeof(new));
	} while (!__atomic_compare_exchange_n(&m->sum_bits, &old, new, true, __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
}

/* ---- the RPC runtime's series ---------------------------------------------------------- */

rpc_call_metrics *
rpc_metrics_for_method(const char *service, const char *method)
{
	char labels[sizeof(((rpc_call_metrics *)0)->labels)];
	rpc_call_metrics *cm;

	snprintf(labels, sizeof(labels), "service=\"%s\",method=\"%s\"", service,
		 method != NULL ? method : "unknown");
	pthread_mutex_lock(&reg_mtx);
	for (cm = call_metrics; cm != NULL; cm = cm->next)
		if (strcmp(cm->labels, labels) == 0)
			break;
	if (cm == NULL && (cm = calloc(1, sizeof(*cm))) != NULL) {
		memcpy(cm->labels, labels, sizeof(labels));
		cm->next = call_metrics;
		call_metrics = cm;
	}
	pthread_mutex_unlock(&reg_mtx);
	if (cm != NULL && cm->latency == NULL)
		__atomic_store_n(&cm->latency,
				 rpc_metrics_histogram("parley_rpc_call_duration_seconds",
						       "Time from a call's arrival to its reply.",
						       labels, rpc_metrics_latency_bounds,
						       rpc_metrics_latency_nbounds),
				 __ATOMIC_RELEASE);
	return cm;
}

void
rpc_metrics_call_done(rpc_call_metrics *cm, rpc_code code, int64_t duration_ns)
{
	rpc_metric *c;

	if (cm == NULL || (unsigned)code >= RPC_NCODES)
		return;
	/* A code's series is made at its first call: only codes that
	 * happened are shown. Two threads may race to make it; both get the
	 * same series. */
	c = __atomic_load_n(&cm->by_code[code], __ATOMIC_ACQUIRE);
	if (c == NULL) {
		char labels[sizeof(cm->labels) + 40];

		snprintf(labels, sizeof(labels), "%s,code=\"%s\"", cm->labels, rpc_code_name(code));
		c = rpc_metrics_counter("parley_rpc_calls_total",
					"Calls answered, by service, method and status code.",
					labels);
		__atomic_store_n(&cm->by_code[code], c, __ATOMIC_RELEASE);
	}
	rpc_counter_add(c, 1);
	rpc_histogram_observe(__atomic_load_n(&cm->latency, __ATOMIC_ACQUIRE),
			      (double)duration_ns / 1e9);
}

/* ---- rendering ----------------------------------------------------------------------- */

static void
render_histogram(FILE *f, const rpc_metric *m)
{
	const struct family *fam = m->fam;
	const char *sep = m->labels[0] != '\0' ? "," : "";
	uint64_t cum = 0, sum_bits;
	double sum;

	for (int b = 0; b <= fam->nbounds; b++) {
		cum += __atomic_load_n(&m->buckets[b], __ATOMIC_RELAXED);
		if (b < fam->nbounds)
			fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", fam->name, m->labels, sep,
				fam->bounds[b], (unsigned long long)cum);
		else
			fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", fam->name, m->labels, sep,
				(unsigned long long)cum);
	}
	sum_bits = __atomic_load_n(&m->sum_bits, __ATOMIC_RELAXED);
	memcpy(&sum, &sum_bits, sizeof(sum));
	/* _count is the +Inf bucket, so the two always agree. */
	fprintf(f, "%s_sum%s%s%s %.9g\n", fam->name, m->labels[0] ? "{" : "", m->labels,
		m->labels[0] ? "}" : "", sum);
	fprintf(f, "%s_count%s%s%s %llu\n", fam->name, m->labels[0] ? "{" : "", m->labels,
		m->labels[0] ? "}" : "", (unsigned long long)cum);
}

char *
rpc_metrics_render(size_t *len)
{
	static const char *const type_names[] = {"counter", "gauge", "histogram"};
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);

	if (f == NULL)
		return NULL;
	pthread_mutex_lock(&reg_mtx);
	for (const struct family *fam = families; fam != NULL; fam = fam->next) {
		bool any = false;

		for (const rpc_metric *m = fam->head; m != NULL && !any; m = m->next)
			any = !m->computed || m->fn != NULL;
		if (!any)
			continue;
		fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", fam->name, fam->help, fam->name,
			type_names[fam->kind]);
		for (const rpc_metric *m = fam->head; m != NULL; m = m->next) {
			const char *open = m->labels[0] ? "{" : "", *close = m->labels[0] ? "}" : "";

			if (m->computed && m->fn == NULL)
				continue;
			switch (fam->kind) {
			case KIND_COUNTER:
				fprintf(f, "%s%s%s%s %llu\n", fam->name, open, m->labels, close,
					(unsigned long long)__atomic_load_n(&m->value,
									    __ATOMIC_RELAXED));
				break;
			case KIND_GAUGE:
				if (m->fn != NULL)
					fprintf(f, "%s%s%s%s %.17g\n", fam->name, open, m->labels,
						close, m->fn(m->fn_arg));
				else
					fprintf(f, "%s%s%s%s %lld\n", fam->name, open, m->labels,
						close,
						(long long)__atomic_load_n(&m->value,
									   __ATOMIC_RELAXED));
				break;
			case KIND_HISTOGRAM:
				render_histogram(f, m);
				break;
			}
		}
	}
	pthread_mutex_unlock(&reg_mtx);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	*len = n;
	return buf;
}

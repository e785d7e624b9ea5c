/* workpool.c — see workpool.h. p->mtx guards the flows and the counters. */
#include "workpool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FULL_RETRY_MS 1000

struct job {
	struct job *next;
	rpc_call *call;
	workpool_fn fn;
	void *arg;
	void (*free_arg)(void *);
};

/* The waiting jobs of one flow; on the ring only while it has some. */
struct flow {
	struct flow *next;
	struct job *head, *tail;
	char key[RPC_PEER_MAX];
};

struct workpool {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	struct flow *first, *last; /* the ring, served from first */
	int len, max;
	bool stopping;
	pthread_t *threads;
	int nthreads;
};

/* The next job in turn, or NULL; called with the lock held. The flow it
 * came from goes to the back of the ring, or away once empty. */
static struct job *
take(workpool *p)
{
	struct flow *f = p->first;
	struct job *j;

	if (f == NULL)
		return NULL;
	j = f->head;
	f->head = j->next;
	p->first = f->next;
	if (p->first == NULL)
		p->last = NULL;
	if (f->head == NULL) {
		free(f);
	} else {
		f->next = NULL;
		if (p->last != NULL)
			p->last->next = f;
		else
			p->first = f;
		p->last = f;
	}
	p->len--;
	return j;
}

static void *
pool_main(void *arg)
{
	workpool *p = arg;

	for (;;) {
		struct job *j;
		rpc_code code;

		pthread_mutex_lock(&p->mtx);
		while (p->first == NULL && !p->stopping)
			pthread_cond_wait(&p->cv, &p->mtx);
		j = take(p);
		pthread_mutex_unlock(&p->mtx);
		if (j == NULL)
			return NULL;

		code = j->fn(j->call, j->arg);
		rpc_call_finish(j->call, code);
		if (j->free_arg != NULL)
			j->free_arg(j->arg);
		free(j);
	}
}

workpool *
workpool_new(int threads, int queue_max)
{
	workpool *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->threads = calloc((size_t)threads, sizeof(pthread_t));
	if (p->threads == NULL) {
		free(p);
		return NULL;
	}
	p->max = queue_max;
	pthread_mutex_init(&p->mtx, NULL);
	rpc_cond_init(&p->cv);
	for (int i = 0; i < threads; i++) {
		if (pthread_create(&p->threads[i], NULL, pool_main, p) != 0)
			break;
		p->nthreads++;
	}
	if (p->nthreads == 0) {
		workpool_stop(p);
		return NULL;
	}
	return p;
}

/* flow's entry on the ring, a new one at its end if it has none, or NULL
 * without memory. Called with the lock held: at most max flows to walk. */
static struct flow *
flow_for(workpool *p, const char *key)
{
	struct flow *f;

	for (f = p->first; f != NULL; f = f->next)
		if (strncmp(f->key, key, sizeof(f->key) - 1) == 0)
			return f;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	snprintf(f->key, sizeof(f->key), "%s", key);
	if (p->last != NULL)
		p->last->next = f;
	else
		p->first = f;
	p->last = f;
	return f;
}

rpc_code
workpool_defer(workpool *p, rpc_call *call, const char *flow, workpool_fn fn, void *arg,
	       void (*free_arg)(void *))
{
	struct job *j = malloc(sizeof(*j));
	struct flow *f;
	rpc_code code;

	pthread_mutex_lock(&p->mtx);
	if (j == NULL || p->len >= p->max || p->stopping) {
		pthread_mutex_unlock(&p->mtx);
		free(j);
		if (free_arg != NULL)
			free_arg(arg);
		rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED,
			      "too many password checks in progress; try again shortly");
		rpc_call_retry_after(call, FULL_RETRY_MS);
		return RPC_RESOURCE_EXHAUSTED;
	}
	/* Marked deferred before a pool thread can see it (rpc_call_defer). */
	code = rpc_call_defer(call);
	if (code != RPC_OK) {
		pthread_mutex_unlock(&p->mtx);
		free(j);
		if (free_arg != NULL)
			free_arg(arg);
		return code;
	}
	if ((f = flow_for(p, flow)) == NULL) {
		/* Deferred already: the answer goes out through rpc_call_finish. */
		pthread_mutex_unlock(&p->mtx);
		free(j);
		if (free_arg != NULL)
			free_arg(arg);
		rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory; try again shortly");
		rpc_call_retry_after(call, FULL_RETRY_MS);
		rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED);
		return RPC_DEFERRED;
	}
	*j = (struct job){.call = call, .fn = fn, .arg = arg, .free_arg = free_arg};
	if (f->tail != NULL && f->head != NULL)
		f->tail->next = j;
	else
		f->head = j;
	f->tail = j;
	p->len++;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mtx);
	return RPC_DEFERRED;
}

void
workpool_stop(workpool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mtx);
	p->stopping = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mtx);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mtx);
	free(p->threads);
	free(p);
}

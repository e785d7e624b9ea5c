/* workpool.c — see workpool.h. */
#include "workpool.h"

#include <pthread.h>
#include <stdlib.h>

struct job {
	struct job *next;
	rpc_call *call;
	workpool_fn fn;
	void *arg;
	void (*free_arg)(void *);
};

struct workpool {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	struct job *head, *tail;
	int len, max;
	bool stopping;
	pthread_t *threads;
	int nthreads;
};

static void *
pool_main(void *arg)
{
	workpool *p = arg;

	for (;;) {
		struct job *j;
		rpc_code code;

		pthread_mutex_lock(&p->mtx);
		while (p->head == NULL && !p->stopping)
			pthread_cond_wait(&p->cv, &p->mtx);
		j = p->head;
		if (j == NULL) {
			pthread_mutex_unlock(&p->mtx);
			return NULL;
		}
		p->head = j->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->len--;
		pthread_mutex_unlock(&p->mtx);

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

rpc_code
workpool_defer(workpool *p, rpc_call *call, workpool_fn fn, void *arg,
	       void (*free_arg)(void *))
{
	struct job *j = malloc(sizeof(*j));
	rpc_code code;

	pthread_mutex_lock(&p->mtx);
	if (j == NULL || p->len >= p->max || p->stopping) {
		pthread_mutex_unlock(&p->mtx);
		free(j);
		if (free_arg != NULL)
			free_arg(arg);
		rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED,
			      "too many password checks in progress; try again shortly");
		rpc_call_retry_after(call, 1000);
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
	*j = (struct job){.call = call, .fn = fn, .arg = arg, .free_arg = free_arg};
	if (p->tail != NULL)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
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

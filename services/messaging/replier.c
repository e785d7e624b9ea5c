/*
 * replier.c — answering a written batch, off the writer thread (see
 * writer_int.h).
 *
 * Why a thread: answering a batch (packing each reply, handing it to the
 * RPC server, whose lock the workers and nng's callbacks contend for) and
 * publishing its events took as long as writing it, and the writer wrote
 * nothing meanwhile. Now the writer hands each committed batch over and
 * writes the next; the replier answers the batches one after the other,
 * in commit order: its calls (Deletes through the eraser), then its change
 * items (marked done), then its events published on the backbone, as the
 * writer did before. When the writer has nothing more to write and the
 * replier nothing to answer, the writer answers the batch itself.
 *
 * Locking: r->mtx guards the queue, `busy` and `stopping`. A batch handed over
 * belongs to the replier thread alone until it is answered.
 */
#define _GNU_SOURCE 1 /* pthread_setname_np */
#include <pthread.h>
#include <stdlib.h>

#include "log.h"
#include "writer_int.h"

struct wr_done {
	struct wr_done *next;
	struct wr_item *batch;
	nng_msg **pubs;
	size_t npubs;
	store_err err;
};

struct wr_replier {
	mx_writer *w;
	messaging_service *m;
	wr_eraser *eraser;
	pthread_t thread;
	bool started;

	pthread_mutex_t mtx;
	pthread_cond_t cv;	/* a batch queued, or stopping */
	pthread_cond_t idle_cv;	/* a batch was answered */
	struct wr_done *head, *tail;
	bool busy;		/* answering a batch taken off the queue */
	bool stopping;
};

/* Sets call's status for refused item it (err: its batch's commit) and
 * returns the code. */
static rpc_code
refusal(rpc_call *call, const struct wr_item *it, store_err err)
{
	if (it->mismatch)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "client_msg_id '%s' was already used for a different %s",
				     it->cmid, it->op == MX_OP_SEND ? "message" : "request");
	if (it->why[0] != '\0')
		return rpc_call_fail(call, it->code, "%s", it->why);
	return svc_fail_store(call, err, "write");
}

/* An item of a SendBatch: its answer goes into the group's reply, sent
 * with the last one. */
static void
answer_in_group(struct wr_item *it, store_err err)
{
	struct wr_group *g = it->group;
	rpc_call *call = g->call;
	rpc_code code;

	if (it->code == RPC_OK && !it->mismatch) {
		g->resp->results[it->index]->seq = it->seq;
		g->resp->results[it->index]->ts_ms = it->ts_ms;
	} else if (g->failed == NULL || it->index < g->failed->index) {
		g->failed = it;
		g->err = err;
	}
	if (atomic_fetch_sub_explicit(&g->left, 1, memory_order_acq_rel) != 1)
		return;
	if (g->failed == NULL) {
		rpc_call_finish(call, RPC_OK);
		return;
	}
	/* A failed commit is the whole batch's: no message to name. */
	code = refusal(call, g->failed, g->err);
	if (g->failed->mismatch || g->failed->why[0] != '\0')
		code = rpc_call_fail_prefix(call, "messages[%zu]: ", g->failed->index);
	rpc_call_finish(call, code);
}

void
wr_answer(struct wr_item *it, store_err err)
{
	rpc_call *call = it->call;
	ProtobufCMessage *resp;

	if (it->group != NULL) {
		answer_in_group(it, err);
		return;
	}
	if (it->code != RPC_OK || it->mismatch) {
		rpc_call_finish(call, refusal(call, it, err));
		return;
	}
	resp = rpc_call_response(call);
	switch (it->op) {
	case MX_OP_SEND:
		((Parley__V1__SendResponse *)resp)->seq = it->seq;
		((Parley__V1__SendResponse *)resp)->ts_ms = it->ts_ms;
		break;
	case MX_OP_EDIT:
		((Parley__V1__EditResponse *)resp)->seq = it->seq;
		((Parley__V1__EditResponse *)resp)->ts_ms = it->ts_ms;
		break;
	case MX_OP_DELETE:
		((Parley__V1__DeleteResponse *)resp)->seq = it->seq;
		((Parley__V1__DeleteResponse *)resp)->ts_ms = it->ts_ms;
		break;
	case MX_OP_READ:
		break;
	}
	rpc_call_finish(call, RPC_OK);
}

/* Answers one batch and publishes its events (see above). */
static void
reply_batch(wr_replier *r, struct wr_item *batch, nng_msg **pubs, size_t npubs, store_err err)
{
	struct wr_item *it, *next, *deletes = NULL, **deletes_tail = &deletes;

	/* Every Delete is answered by the eraser, once the texts of the fresh
	 * ones are erased, and in commit order (a retry never overtakes the
	 * erase of its original). */
	for (it = batch; it != NULL; it = next) {
		next = it->next;
		if (it->kind == ITEM_OP && it->op == MX_OP_DELETE) {
			it->batch_err = err;
			it->next = NULL;
			*deletes_tail = it;
			deletes_tail = &it->next;
		} else if (it->kind == ITEM_OP) {
			wr_answer(it, err);
		} else {
			wr_change_done(r->w, it, err); /* it is the feed thread's again */
		}
	}
	pthread_mutex_lock(&r->m->pub_mtx);
	for (size_t i = 0; i < npubs; i++)
		mx_publish_locked(r->m, pubs[i]);
	pthread_mutex_unlock(&r->m->pub_mtx);
	free(pubs);
	wr_eraser_submit(r->eraser, deletes);
}

static void *
replier_main(void *arg)
{
	wr_replier *r = arg;

	pthread_setname_np(pthread_self(), "mx-replier"); /* for perf and top */

	for (;;) {
		struct wr_done *d;

		pthread_mutex_lock(&r->mtx);
		while (r->head == NULL && !r->stopping)
			pthread_cond_wait(&r->cv, &r->mtx);
		if ((d = r->head) == NULL) {
			pthread_mutex_unlock(&r->mtx);
			break; /* stopping, and nothing left */
		}
		if ((r->head = d->next) == NULL)
			r->tail = NULL;
		r->busy = true;
		pthread_mutex_unlock(&r->mtx);
		reply_batch(r, d->batch, d->pubs, d->npubs, d->err);
		free(d);
		pthread_mutex_lock(&r->mtx);
		r->busy = false;
		pthread_cond_broadcast(&r->idle_cv);
		pthread_mutex_unlock(&r->mtx);
	}
	return NULL;
}

void
wr_replier_submit(wr_replier *r, struct wr_item *batch, nng_msg **pubs, size_t npubs,
		  store_err err, bool more)
{
	struct wr_done *d;
	bool idle;

	/* Nothing else to write and nothing before it to answer: answered
	 * here, without waking the replier (a wake-up is latency for a lone
	 * sender). Only the writer submits, so an idle replier stays so. */
	pthread_mutex_lock(&r->mtx);
	idle = r->head == NULL && !r->busy;
	pthread_mutex_unlock(&r->mtx);
	if (idle && !more) {
		reply_batch(r, batch, pubs, npubs, err);
		return;
	}
	if ((d = malloc(sizeof(*d))) == NULL) {
		/* No memory to queue it: answer it here, after what is queued,
		 * so that the order stays the commits'. */
		pthread_mutex_lock(&r->mtx);
		while (r->head != NULL || r->busy)
			pthread_cond_wait(&r->idle_cv, &r->mtx);
		pthread_mutex_unlock(&r->mtx);
		reply_batch(r, batch, pubs, npubs, err);
		return;
	}
	*d = (struct wr_done){.batch = batch, .pubs = pubs, .npubs = npubs, .err = err};
	pthread_mutex_lock(&r->mtx);
	if (r->tail != NULL)
		r->tail->next = d;
	else
		r->head = d;
	r->tail = d;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mtx);
}

int
wr_replier_start(mx_writer *w, wr_eraser *eraser, wr_replier **out, rpc_status *st)
{
	wr_replier *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	r->w = w;
	r->m = wr_service(w);
	r->eraser = eraser;
	pthread_mutex_init(&r->mtx, NULL);
	rpc_cond_init(&r->cv);
	rpc_cond_init(&r->idle_cv);
	if (pthread_create(&r->thread, NULL, replier_main, r) != 0) {
		wr_replier_stop(r);
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "cannot start the replier");
	}
	r->started = true;
	*out = r;
	return RPC_OK;
}

void
wr_replier_stop(wr_replier *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mtx);
	r->stopping = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mtx);
	if (r->started)
		pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->idle_cv);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mtx);
	free(r);
}

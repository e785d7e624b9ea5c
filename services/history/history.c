/*
 * history.c — the History service (see history.h).
 *
 * Every answer comes from one LMDB read transaction, so the head and the
 * events agree. Because a room's seqs are gap-free, a page is a seq range
 * worked out from the head: no scanning to find where it starts.
 *
 * Threads: handlers run concurrently on the rpc workers; the timeline
 * locks its own lazy opening, LMDB readers need no more.
 */
#include "history.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "members.h"
#include "parley/v1/history.pb-c.h"
#include "timeline.h"

#define HISTORY_DEFAULT_LIMIT 50
#define HISTORY_MAX_LIMIT 500

struct history_service {
	rpc_server *srv;
	svc_authn *authn;
	rpc_client *rooms;
	timeline tl;
};

struct page {
	rpc_call *call;
	const char *room;
	Parley__V1__Event **events;
	size_t n;
	bool bad;		/* a stored event failed its checks */
	uint64_t bad_seq;
	char why[160];
};

/* Every event is checked before it is served: a damaged record is DATA_LOSS,
 * never a crash or invalid UTF-8 on the wire. */
static bool
collect(void *arg, uint64_t seq, store_val v)
{
	struct page *p = arg;
	Parley__V1__Event *ev = timeline_decode_for_call(p->call, p->room, seq, v.data, v.len,
							 p->why, sizeof(p->why));

	if (ev == NULL) {
		p->bad = true;
		p->bad_seq = seq;
		return false;
	}
	p->events[p->n++] = ev;
	return true;
}

static rpc_code
handle_get_history(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		   void *ctx)
{
	const Parley__V1__GetHistoryRequest *req = (const void *)reqm;
	Parley__V1__GetHistoryResponse *resp = (void *)respm;
	history_service *h = ctx;
	uint32_t limit = req->limit ? req->limit : HISTORY_DEFAULT_LIMIT;
	struct page p = {.call = call, .room = req->room_id};
	uint64_t head = 0, from, to;
	bool forward;
	store_txn *txn;
	store_err err;
	rpc_code code;

	if (!svc_valid_room_id(req->room_id))
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "room_id must be 1 to 64 characters of a-z 0-9 _ . - "
				     "starting with a letter or digit");
	if (req->before_seq != 0 && req->after_seq != 0)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "set before_seq or after_seq, not both");
	if (req->direction != PARLEY__V1__GET_HISTORY_REQUEST__DIRECTION__DIRECTION_UNSPECIFIED &&
	    req->direction != PARLEY__V1__GET_HISTORY_REQUEST__DIRECTION__BACKWARD &&
	    req->direction != PARLEY__V1__GET_HISTORY_REQUEST__DIRECTION__FORWARD)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "direction must be DIRECTION_UNSPECIFIED, BACKWARD or FORWARD "
				     "(got %d)",
				     (int)req->direction);
	if (req->direction == PARLEY__V1__GET_HISTORY_REQUEST__DIRECTION__BACKWARD &&
	    req->after_seq != 0)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "direction BACKWARD pages with before_seq; after_seq must be 0");
	if (req->direction == PARLEY__V1__GET_HISTORY_REQUEST__DIRECTION__FORWARD &&
	    req->before_seq != 0)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "direction FORWARD pages with after_seq; before_seq must be 0");
	if (limit > HISTORY_MAX_LIMIT)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT, "limit must be at most %d",
				     HISTORY_MAX_LIMIT);
	if ((code = members_require(call, h->rooms, req->room_id)) != RPC_OK)
		return code;

	err = timeline_open(&h->tl);
	if (err == STORE_NOTFOUND) {
		/* Read-only and nothing written yet: an empty room. */
		resp->head_seq = 0;
		resp->has_more = false;
		return RPC_OK;
	}
	if (err != STORE_OK || (err = store_begin(h->tl.env, false, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "history");
	if ((err = timeline_head(txn, &h->tl, req->room_id, &head)) != STORE_OK) {
		store_abort(txn);
		return svc_fail_store(call, err, "history");
	}

	forward = req->after_seq != 0 ||
		  req->direction == PARLEY__V1__GET_HISTORY_REQUEST__DIRECTION__FORWARD;
	if (forward && req->after_seq >= head) {
		from = 1;
		to = 0;
	} else if (forward) {
		from = req->after_seq + 1;
		to = head - req->after_seq > limit ? req->after_seq + limit : head;
		resp->has_more = to < head;
	} else {
		to = req->before_seq != 0 && req->before_seq - 1 < head ? req->before_seq - 1 : head;
		from = to > limit ? to - limit + 1 : 1;
		resp->has_more = from > 1;
	}
	resp->head_seq = head;
	if (from <= to) {
		p.events = rpc_call_alloc(call, (size_t)(to - from + 1) * sizeof(*p.events));
		err = timeline_read(txn, &h->tl, req->room_id, from, to, collect, &p);
	}
	store_abort(txn);
	if (p.bad) {
		plog_error("history", "room %s, seq %llu is damaged: %s", req->room_id,
			   (unsigned long long)p.bad_seq, p.why);
		return rpc_call_fail(call, RPC_DATA_LOSS,
				     "room '%s' has damaged history: the event at seq %llu cannot "
				     "be read",
				     req->room_id, (unsigned long long)p.bad_seq);
	}
	if (err == STORE_CORRUPT) {
		plog_error("history", "room %s, seqs %llu..%llu: %s", req->room_id,
			   (unsigned long long)from, (unsigned long long)to, store_strerror(err));
		return rpc_call_fail(call, RPC_DATA_LOSS, "room '%s' has damaged history",
				     req->room_id);
	}
	if (err != STORE_OK)
		return svc_fail_store(call, err, "history");
	if (from > to)
		resp->has_more = false;
	resp->events = p.events;
	resp->n_events = p.n;
	return RPC_OK;
}

static const rpc_method history_methods[] = {
	{.fn = handle_get_history, .auth = RPC_AUTH_REQUIRED},
};

int
history_service_start(const parley_config *cfg, history_service **out, rpc_status *st)
{
	rpc_server_opts opts = {.contexts = cfg->contexts, .workers = cfg->workers,
				.name = "history"};
	history_service *h;
	store_err err;

	if (parley__v1__history__descriptor.n_methods != 1 ||
	    strcmp(parley__v1__history__descriptor.methods[0].name, "GetHistory") != 0)
		return rpc_status_set(st, RPC_INTERNAL, "history method table out of date");
	h = calloc(1, sizeof(*h));
	if (h == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	timeline_init(&h->tl, cfg->env);
	err = timeline_open(&h->tl);
	if (err != STORE_OK && err != STORE_NOTFOUND) {
		rpc_status_set(st, RPC_INTERNAL, "cannot open the timeline: %s",
			       store_strerror(err));
		goto fail;
	}
	if (svc_authn_open(&h->authn, cfg->auth_addr, st) != RPC_OK ||
	    rpc_client_open(&h->rooms, cfg->rooms_addr, st) != RPC_OK)
		goto fail;
	if (rpc_server_open(&h->srv, cfg->history_listen, &opts, st) != RPC_OK)
		goto fail;
	rpc_server_add_service(h->srv, &parley__v1__history__descriptor, history_methods, h);
	rpc_server_set_authenticator(h->srv, svc_authn_validate, h->authn);
	if (rpc_server_start(h->srv, st) != RPC_OK)
		goto fail;
	*out = h;
	return RPC_OK;

fail:
	history_service_stop(h);
	return st->code;
}

void
history_service_shutdown(history_service *h)
{
	if (h != NULL && h->srv != NULL)
		rpc_server_shutdown(h->srv);
}

void
history_service_stop(history_service *h)
{
	if (h == NULL)
		return;
	if (h->srv != NULL)
		rpc_server_close(h->srv, 5000);
	rpc_client_close(h->rooms);
	svc_authn_close(h->authn);
	timeline_fini(&h->tl);
	free(h);
}

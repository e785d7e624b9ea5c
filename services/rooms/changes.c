/* changes.c — see changes.h. */
#include "changes.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>

#include "log.h"
#include "records.h"
#include "tls.h"
#include "tlskeep.h"
#include "parley/internal/v1/feed.pb-c.h"

#define LIST_DEFAULT 500
#define LIST_MAX 1000

static const char head_key[] = "changes.head";

struct changes {
	store_env *env;
	store_table log, meta;
	nng_socket pub;
	bool pub_open;
	rpc_conns *pub_conns; /* its connection caps (svc_pub_conns_open) */
	rpc_server *feed;
	pthread_mutex_t write_mtx;
	uint64_t written;	/* [write_mtx] the head the open write makes */
};

/* ---- writing ------------------------------------------------------------------ */

static store_err
read_head(changes *c, store_txn *txn, uint64_t *head)
{
	store_val v;
	store_err err = store_get(txn, c->meta, head_key, sizeof(head_key) - 1, &v);

	*head = 0;
	if (err == STORE_NOTFOUND)
		return STORE_OK;
	if (err != STORE_OK)
		return err;
	if (v.len != 8)
		return STORE_CORRUPT;
	*head = store_be64_get(v.data);
	return STORE_OK;
}

store_err
changes_append(changes *c, store_txn *txn, rpc_call *call, const char *room_id,
	       const char *user_id, Parley__V1__MembershipChange__Kind kind, change_frame *f)
{
	Parley__V1__Event ev = PARLEY__V1__EVENT__INIT;
	Parley__V1__MembershipChange mc = PARLEY__V1__MEMBERSHIP_CHANGE__INIT;

	mc.kind = kind;
	mc.actor = (char *)user_id; /* one's own join or leave */
	ev.room_id = (char *)room_id;
	ev.sender = (char *)user_id;
	ev.body_case = PARLEY__V1__EVENT__BODY_MEMBERSHIP;
	ev.membership = &mc;
	return changes_append_event(c, txn, call, &ev, f);
}

store_err
changes_append_event(changes *c, store_txn *txn, rpc_call *call, Parley__V1__Event *ev,
		     change_frame *f)
{
	const char *room_id = ev->room_id;
	size_t rlen = strlen(room_id), elen;
	uint8_t key[8], head_val[8];
	uint64_t head;
	store_err err;

	if ((err = read_head(c, txn, &head)) != STORE_OK)
		return err;
	ev->seq = head + 1;
	ev->ts_ms = rpc_wall_ms();

	/* The frame holds the log record after its topic: one packing. */
	elen = parley__v1__event__get_packed_size(ev);
	f->len = rlen + 1 + elen;
	f->data = rpc_call_alloc(call, f->len);
	memcpy(f->data, room_id, rlen);
	f->data[rlen] = '\0';
	parley__v1__event__pack(ev, f->data + rlen + 1);

	store_be64_put(key, head + 1);
	err = store_put(txn, c->log, key, sizeof(key), f->data + rlen + 1, elen,
			STORE_NOOVERWRITE);
	if (err != STORE_OK) {
		f->data = NULL;
		return err == STORE_EXISTS ? STORE_CORRUPT : err; /* head behind the log */
	}
	store_be64_put(head_val, head + 1);
	c->written = head + 1;
	return store_put(txn, c->meta, head_key, sizeof(head_key) - 1, head_val,
			 sizeof(head_val), 0);
}

store_err
changes_write_begin(changes *c, store_txn **txn)
{
	store_err err;

	pthread_mutex_lock(&c->write_mtx);
	c->written = 0;
	svc_rooms_log_write_begin();
	err = store_begin(c->env, true, txn);
	if (err != STORE_OK) {
		svc_rooms_log_write_end(0);
		pthread_mutex_unlock(&c->write_mtx);
	}
	return err;
}

store_err
changes_write_end(changes *c, store_txn *txn, store_err err, const change_frame *f)
{
	int rv;

	if (err != STORE_OK)
		store_abort(txn);
	else
		err = store_commit(txn);
	svc_rooms_log_write_end(err == STORE_OK ? c->written : 0);
	if (err == STORE_OK) {
		/* Subscribers catch up from the log: a lost frame costs latency. */
		for (; f != NULL; f = f->next) {
			if (f->data == NULL)
				continue;
			rv = nng_send(c->pub, f->data, f->len, NNG_FLAG_NONBLOCK);
			if (rv != 0)
				plog_error("rooms", "publishing a membership change: %s",
					   nng_strerror(rv));
		}
	}
	pthread_mutex_unlock(&c->write_mtx);
	return err;
}

/* ---- parley.internal.v1.RoomsFeed ---------------------------------------------- */

static void *
arena_alloc(void *call, size_t size)
{
	return rpc_call_alloc(call, size);
}

static void
arena_free(void *call, void *p)
{
	/* The arena goes away with the call. */
}

struct scan {
	rpc_call *call;
	Parley__V1__Event **events;
	size_t n, max;
	bool damaged;
};

static bool
collect(void *arg, store_val key, store_val val)
{
	struct scan *s = arg;
	ProtobufCAllocator a = {.alloc = arena_alloc, .free = arena_free, .allocator_data = s->call};
	Parley__V1__Event *ev =
	    key.len == 8 ? records_change(&a, store_be64_get(key.data), val.data, val.len) : NULL;

	if (ev == NULL) {
		s->damaged = true;
		return false;
	}
	s->events[s->n++] = ev;
	return s->n < s->max;
}

static rpc_code
handle_list_changes(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		    void *ctx)
{
	const Parley__Internal__V1__ListChangesRequest *req = (const void *)reqm;
	Parley__Internal__V1__ListChangesResponse *resp = (void *)respm;
	changes *c = ctx;
	struct scan s = {.call = call};
	uint8_t from[8];
	uint64_t head;
	store_txn *txn;
	store_err err;

	/* "At most 1000": a larger limit is served as 1000, not refused. */
	s.max = req->limit == 0 ? LIST_DEFAULT : req->limit > LIST_MAX ? LIST_MAX : req->limit;
	if ((err = store_begin(c->env, false, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "list changes");
	err = read_head(c, txn, &head);
	if (err == STORE_OK && req->after_seq < head) {
		s.events = rpc_call_alloc(call, s.max * sizeof(*s.events));
		store_be64_put(from, req->after_seq + 1);
		err = store_scan(txn, c->log, from, sizeof(from), false, collect, &s);
		if (err == STORE_OK && s.damaged)
			err = STORE_CORRUPT;
	}
	store_abort(txn);
	if (err != STORE_OK)
		return svc_fail_store(call, err, "list changes");
	resp->changes = s.events;
	resp->n_changes = s.n;
	resp->head_seq = head;
	return RPC_OK;
}

static const rpc_method feed_methods[] = {
	{.fn = handle_list_changes, .auth = RPC_AUTH_NONE},
};

/* ---- lifecycle ------------------------------------------------------------------- */

/* The head as stored, for a messaging service in this process (svc.h). */
static bool
tell_head(changes *c, rpc_status *st)
{
	store_txn *txn;
	uint64_t head;
	store_err err;

	if ((err = store_begin(c->env, false, &txn)) == STORE_OK) {
		err = read_head(c, txn, &head);
		store_abort(txn);
	}
	if (err != STORE_OK) {
		rpc_status_set(st, RPC_INTERNAL, "cannot read the rooms log's head: %s",
			       store_strerror(err));
		return false;
	}
	svc_rooms_log_opened(head);
	return true;
}

int
changes_open(store_env *env, const char *pub_url, changes **out, rpc_status *st)
{
	changes *c = calloc(1, sizeof(*c));
	rpc_status why = {0};
	int rv;

	if (c == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	c->env = env;
	pthread_mutex_init(&c->write_mtx, NULL);
	if (!svc_open_table(env, "rooms.changes", &c->log, st) ||
	    !svc_open_table(env, "rooms.meta", &c->meta, st))
		goto fail;
	if (!tell_head(c, st))
		goto fail;
	if ((rv = nng_pub0_open(&c->pub)) != 0) {
		rpc_status_set(st, rpc_code_from_nng(rv), "rooms PUB socket: %s", nng_strerror(rv));
		goto fail;
	}
	c->pub_open = true;
	if (svc_pub_conns_open(c->pub, "room-events-pub", &c->pub_conns, st) != RPC_OK)
		goto fail;
	if ((rv = rpc_socket_cap(c->pub, RPC_MAX_PUB_INBOUND)) != 0 ||
	    (rv = rpc_tls_listen(c->pub, pub_url, &why)) != 0) {
		rpc_status_set(st, rpc_code_from_nng(rv), "rooms PUB: cannot listen on %s: %s",
			       pub_url, why.message[0] != '\0' ? why.message : nng_strerror(rv));
		goto fail;
	}
	*out = c;
	return RPC_OK;

fail:
	changes_close(c);
	return st->code;
}

int
changes_serve(changes *c, const char *url, const rpc_server_opts *opts, rpc_status *st)
{
	const ProtobufCServiceDescriptor *d = &parley__internal__v1__rooms_feed__descriptor;

	/* The table above follows the descriptor's method order; check it. */
	if (d->n_methods != sizeof(feed_methods) / sizeof(feed_methods[0]) ||
	    strcmp(d->methods[0].name, "ListChanges") != 0)
		return rpc_status_set(st, RPC_INTERNAL, "RoomsFeed method table out of date");
	if (rpc_server_open(&c->feed, url, opts, st) != RPC_OK)
		return st->code;
	rpc_server_add_service(c->feed, d, feed_methods, c);
	return rpc_server_start(c->feed, st);
}

void
changes_shutdown(changes *c)
{
	if (c != NULL && c->feed != NULL)
		rpc_server_shutdown(c->feed);
}

void
changes_close(changes *c)
{
	if (c == NULL)
		return;
	if (c->feed != NULL)
		rpc_server_close(c->feed, 5000);
	if (c->pub_conns != NULL)
		conns_close_all(c->pub_conns);
	if (c->pub_open) {
		rpc_tls_forget(c->pub);
		nng_close(c->pub);
	}
	if (c->pub_conns != NULL)
		conns_free(c->pub_conns);
	pthread_mutex_destroy(&c->write_mtx);
	free(c);
}

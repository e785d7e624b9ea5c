/*
 * feed.c — copies the rooms service's membership log into room timelines.
 *
 * The log (parley.internal.v1.RoomsFeed/ListChanges) is the source of
 * truth; the rooms PUB socket only says "something changed" and may drop.
 * So one thread catches up from the log: at start, on every PUB frame, and
 * every FEED_TICK_MS whatever happens, which heals any dropped frame. Each
 * page of changes goes to the writer, which applies the changes after the
 * stored cursor and stores the new cursor in the same transaction: every
 * change lands in its room's timeline exactly once, across restarts too.
 *
 * Threads: the feed thread alone touches struct mx_feed after start;
 * `stop` is atomic.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "log.h"
#include "messaging_int.h"
#include "parley/internal/v1/feed.pb-c.h"

#define FEED_TICK_MS 500
#define FEED_PAGE 1000		/* the log's largest page */
#define FEED_PAGES_PER_ROUND 64 /* then let the next tick go on */
#define FEED_CALL_TIMEOUT_MS 2000
#define FEED_DRAIN_MAX 1024	/* wake-up frames swallowed at once */

struct mx_feed {
	messaging_service *m;
	pthread_t thread;
	bool started;
	bool stop;
	nng_socket sub;
	bool sub_open;
	uint64_t cursor;
	bool rooms_down; /* logged once per outage */
};

/* Reads the stored cursor (0 before the first change). */
static uint64_t
load_cursor(messaging_service *m)
{
	void *v;
	size_t len;
	uint64_t c = 0;

	if (store_get_copy(m->env, m->meta, MX_FEED_CURSOR_KEY, strlen(MX_FEED_CURSOR_KEY), &v,
			   &len) == STORE_OK) {
		if (len == 8)
			c = store_be64_get(v);
		free(v);
	}
	return c;
}

/* Fetches one page after the cursor and has the writer apply it. Returns
 * true when there may be more to fetch right away. */
static bool
catch_up_page(mx_feed *f)
{
	Parley__Internal__V1__ListChangesRequest req =
	    PARLEY__INTERNAL__V1__LIST_CHANGES_REQUEST__INIT;
	Parley__Internal__V1__ListChangesResponse *resp;
	rpc_call_opts opts = {.timeout_ms = FEED_CALL_TIMEOUT_MS};
	rpc_status st;
	uint64_t before = f->cursor;
	store_err err;
	bool more;

	req.after_seq = f->cursor;
	req.limit = FEED_PAGE;
	if (rpc_client_call(f->m->rooms_feed, &parley__internal__v1__rooms_feed__descriptor,
			    "ListChanges", &req.base, (ProtobufCMessage **)&resp, &opts,
			    &st) != RPC_OK) {
		if (!f->rooms_down)
			plog_info("messaging", "rooms feed not reachable yet: %s %s",
				  rpc_code_name(st.code), st.message);
		f->rooms_down = true;
		return false;
	}
	if (f->rooms_down)
		plog_info("messaging", "rooms feed reachable; membership cursor at %llu",
			  (unsigned long long)f->cursor);
	f->rooms_down = false;
	if (resp->n_changes == 0) {
		if (resp->head_seq < f->cursor)
			plog_error("messaging",
				   "rooms log ends at %llu, before our cursor %llu: was it reset?",
				   (unsigned long long)resp->head_seq,
				   (unsigned long long)f->cursor);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		return false;
	}
	err = mx_writer_apply_changes(f->m->writer, resp->changes, resp->n_changes, &f->cursor);
	more = err == STORE_OK && f->cursor > before && f->cursor < resp->head_seq;
	if (err != STORE_OK)
		plog_error("messaging", "cannot apply membership changes: %s",
			   store_strerror(err));
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return more;
}

static void
catch_up(mx_feed *f)
{
	for (int i = 0; i < FEED_PAGES_PER_ROUND; i++)
		if (__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE) || !catch_up_page(f))
			break;
}

static void *
feed_main(void *arg)
{
	mx_feed *f = arg;

	catch_up(f);
	while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
		nng_msg *msg;

		/* A frame or the tick (the receive timeout): either way,
		 * catch up. */
		if (nng_recvmsg(f->sub, &msg, 0) == 0) {
			nng_msg_free(msg);
			for (int i = 0; i < FEED_DRAIN_MAX &&
					nng_recvmsg(f->sub, &msg, NNG_FLAG_NONBLOCK) == 0;
			     i++)
				nng_msg_free(msg);
		}
		if (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE))
			catch_up(f);
	}
	return NULL;
}

int
mx_feed_start(messaging_service *m, mx_feed **out, rpc_status *st)
{
	mx_feed *f = calloc(1, sizeof(*f));
	int rv;

	if (f == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	f->m = m;
	f->cursor = load_cursor(m);
	if ((rv = nng_sub0_open(&f->sub)) == 0) {
		f->sub_open = true;
		nng_socket_set(f->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0);
		nng_socket_set_ms(f->sub, NNG_OPT_RECVTIMEO, FEED_TICK_MS);
		nng_socket_set_ms(f->sub, NNG_OPT_RECONNMINT, 50);
		nng_socket_set_ms(f->sub, NNG_OPT_RECONNMAXT, 1000);
		/* The rooms service may come up later: dial in the background. */
		rv = nng_dial(f->sub, m->room_events_addr, NULL, NNG_FLAG_NONBLOCK);
	}
	if (rv != 0) {
		rpc_status_set(st, RPC_INVALID_ARGUMENT, "cannot subscribe to %s: %s",
			       m->room_events_addr, nng_strerror(rv));
		mx_feed_stop(f);
		return st->code;
	}
	if (pthread_create(&f->thread, NULL, feed_main, f) != 0) {
		mx_feed_stop(f);
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "cannot start the feed thread");
	}
	f->started = true;
	*out = f;
	return RPC_OK;
}

void
mx_feed_stop(mx_feed *f)
{
	if (f == NULL)
		return;
	__atomic_store_n(&f->stop, true, __ATOMIC_RELEASE);
	if (f->started)
		pthread_join(f->thread, NULL);
	if (f->sub_open)
		nng_close(f->sub);
	free(f);
}

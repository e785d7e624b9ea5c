/*
 * messaging.c — the Messaging service's lifecycle, its method table, Send's
 * checks and the PUB backbone (see messaging.h and messaging_int.h).
 *
 * Threads: the rpc workers run the handlers; one writer thread writes
 * LMDB; one feed thread follows the rooms service; one worker thread per
 * session, fed by the router's SUB socket. The PUB socket is shared by all
 * of them; m->pub_mtx orders publishing against the closing of the
 * router's SUB socket (router.c).
 */
#include "messaging_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <sodium.h>

#include "log.h"
#include "tls.h"
#include "tlskeep.h"
#include "tsan.h"

/* Calls in flight on the endpoint at most (waiting Polls included). */
#define MAX_CALL_SLOTS 200000
/* Frames a slow tcp subscriber may have queued before PUB drops for it. */
#define PUB_SEND_BUFFER 1024

/* ---- the PUB backbone ---------------------------------------------------- */

nng_msg *
mx_event_frame(const Parley__V1__Event *ev)
{
	size_t rl = strlen(ev->room_id), len = parley__v1__event__get_packed_size(ev);
	nng_msg *msg;
	uint8_t *b;

	if (nng_msg_alloc(&msg, rl + 1 + len) != 0)
		return NULL;
	b = nng_msg_body(msg);
	memcpy(b, ev->room_id, rl);
	b[rl] = '\0';
	parley__v1__event__pack(ev, b + rl + 1);
	return msg;
}

void
mx_publish_locked(messaging_service *m, nng_msg *msg)
{
	if (msg == NULL)
		return;
	rpc_tsan_release(msg); /* the router's thread takes it out (inproc) */
	if (nng_sendmsg(m->pub, msg, 0) != 0)
		nng_msg_free(msg);
}

void
mx_publish(messaging_service *m, nng_msg *msg)
{
	pthread_mutex_lock(&m->pub_mtx);
	mx_publish_locked(m, msg);
	pthread_mutex_unlock(&m->pub_mtx);
}

nng_msg *
mx_presence_frame(const char *room, const char *user, Parley__V1__PresenceChange__State state)
{
	Parley__V1__Event ev = PARLEY__V1__EVENT__INIT;
	Parley__V1__PresenceChange pc = PARLEY__V1__PRESENCE_CHANGE__INIT;

	pc.state = state;
	ev.room_id = (char *)room;
	ev.seq = 0;
	ev.ts_ms = rpc_wall_ms();
	ev.sender = (char *)user;
	ev.body_case = PARLEY__V1__EVENT__BODY_PRESENCE;
	ev.presence = &pc;
	return mx_event_frame(&ev);
}

void
mx_publish_presence(messaging_service *m, const char *room, const char *user,
		    Parley__V1__PresenceChange__State state)
{
	mx_publish(m, mx_presence_frame(room, user, state));
}

static void
pub_pipe_event(void *arg)
{
	messaging_service *m = arg;

	rpc_tsan_acquire(m); /* registered in pub_open, run on nng's threads */
	pthread_mutex_lock(&m->pipe_mtx);
	m->pipes_gone++;
	pthread_cond_broadcast(&m->pipe_cv);
	pthread_mutex_unlock(&m->pipe_mtx);
	rpc_tsan_release(m);
}

uint64_t
mx_pub_pipes_gone(messaging_service *m)
{
	uint64_t n;

	pthread_mutex_lock(&m->pipe_mtx);
	n = m->pipes_gone;
	pthread_mutex_unlock(&m->pipe_mtx);
	return n;
}

void
mx_pub_wait_pipe_gone(messaging_service *m, uint64_t seen, int64_t until_ms)
{
	pthread_mutex_lock(&m->pipe_mtx);
	while (m->pipes_gone <= seen && rpc_now_ms() < until_ms)
		rpc_cond_wait_until(&m->pipe_cv, &m->pipe_mtx, until_ms);
	pthread_mutex_unlock(&m->pipe_mtx);
}

bool
mx_close_bounded(nng_socket sock, const char *what)
{
	if (rpc_close_bounded(sock, MX_CLOSE_WAIT_MS, "messaging", what))
		return true;
	plog_error("messaging", "closing %s did not finish in %d ms; shutting down without "
				"waiting for it",
		   what, MX_CLOSE_WAIT_MS);
	return false;
}

static int
pub_open(messaging_service *m, const char *listen, rpc_status *st)
{
	rpc_status why = {0};
	int rv;

	snprintf(m->inproc_url, sizeof(m->inproc_url), "inproc://parley-messaging-%p", (void *)m);
	if ((rv = nng_pub0_open(&m->pub)) != 0)
		return rpc_status_set(st, RPC_INTERNAL, "cannot open the PUB socket: %s",
				      nng_strerror(rv));
	m->pub_open = true;
	if ((rv = rpc_socket_cap(m->pub, RPC_MAX_PUB_INBOUND)) != 0)
		return rpc_status_set(st, RPC_INTERNAL, "PUB socket: %s", nng_strerror(rv));
	nng_socket_set_int(m->pub, NNG_OPT_SENDBUF, PUB_SEND_BUFFER);
	/* A subscriber has nothing to send: a frame it declares is refused
	 * by size before nng allocates it (unbounded by default). */
	nng_socket_set_size(m->pub, NNG_OPT_RECVMAXSZ, MX_PUB_RECV_MAX);
	/* Subscribers get the REP endpoints' connection caps (svc.h). */
	if (svc_pub_conns_open(m->pub, "events-pub", &m->pub_conns, st) != RPC_OK)
		return st->code;
	rpc_tsan_release(m);
	conns_on_removed(m->pub_conns, pub_pipe_event, m);
	if ((rv = rpc_tls_listen(m->pub, listen, &why)) != 0)
		return rpc_status_set(st, rpc_code_from_nng(rv), "cannot listen on %s: %s", listen,
				      why.message[0] != '\0' ? why.message : nng_strerror(rv));
	if ((rv = nng_listen(m->pub, m->inproc_url, NULL, 0)) != 0)
		return rpc_status_set(st, rpc_code_from_nng(rv), "cannot listen on %s: %s",
				      m->inproc_url, nng_strerror(rv));
	return RPC_OK;
}

/* ---- hashing ---------------------------------------------------------------- */

uint32_t
mx_pair_hash(const char *a, const char *b)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (; *a; a++)
		h = (h ^ (uint8_t)*a) * 16777619u;
	h = (h ^ 0xff) * 16777619u; /* a separator, so ("ab", "c") and ("a", "bc") differ */
	for (; b != NULL && *b; b++)
		h = (h ^ (uint8_t)*b) * 16777619u;
	return h;
}

/* ---- Send -------------------------------------------------------------------- */

/* The checks of one Send before the writer (UTF-8 and NUL bytes were
 * refused by the rpc runtime already). */
static rpc_code
check_send(rpc_call *call, const Parley__V1__SendRequest *req)
{
	size_t text_len = strlen(req->text);
	rpc_code code;

	if ((code = svc_check_room_id(call, req->room_id)) != RPC_OK)
		return code;
	if (text_len == 0 || text_len > MX_TEXT_MAX)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "text must be 1 to %d bytes of UTF-8 (got %zu)", MX_TEXT_MAX,
				     text_len);
	if (strlen(req->client_msg_id) > MX_CLIENT_MSG_ID_MAX)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "client_msg_id must be at most %d bytes", MX_CLIENT_MSG_ID_MAX);
	return RPC_OK;
}

static rpc_code
handle_send(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	const Parley__V1__SendRequest *req = (const void *)reqm;
	messaging_service *m = ctx;
	rpc_code code;

	if ((code = check_send(call, req)) != RPC_OK ||
	    (code = members_require(call, m->rooms, req->room_id)) != RPC_OK)
		return code;
	return mx_writer_op(m->writer, call, MX_OP_SEND, req->room_id, req->text,
			    req->client_msg_id, 0, false);
}

/* Every message is checked, and membership once per room, before the
 * writer takes them all at once (mx_writer_send_batch). */
static rpc_code
handle_send_batch(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		  void *ctx)
{
	const Parley__V1__SendBatchRequest *req = (const void *)reqm;
	messaging_service *m = ctx;
	rpc_code code;

	if (req->n_messages == 0 || req->n_messages > MX_SEND_BATCH_MAX)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "messages must hold 1 to %d Sends (got %zu)", MX_SEND_BATCH_MAX,
				     req->n_messages);
	for (size_t i = 0; i < req->n_messages; i++)
		if ((code = check_send(call, req->messages[i])) != RPC_OK)
			return rpc_call_fail_prefix(call, "messages[%zu]: ", i);
	for (size_t i = 0; i < req->n_messages; i++) {
		const char *room = req->messages[i]->room_id;
		size_t j = 0;

		while (j < i && strcmp(req->messages[j]->room_id, room) != 0)
			j++;
		if (j == i && (code = members_require(call, m->rooms, room)) != RPC_OK)
			return rpc_call_fail_prefix(call, "messages[%zu]: ", i);
	}
	return mx_writer_send_batch(m->writer, call, req,
				    (Parley__V1__SendBatchResponse *)respm);
}

/* Subscribe is a server stream: the HTTP face serves it on top of
 * Open/Poll/Close; a unary transport cannot carry it. */
static rpc_code
handle_subscribe(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm,
		 void *ctx)
{
	return rpc_call_fail(call, RPC_UNIMPLEMENTED,
			     "Subscribe is a server stream, served over HTTP (Connect protocol); "
			     "over nng use Open and Poll");
}

static const rpc_method messaging_methods[] = {
	{.fn = handle_send, .auth = RPC_AUTH_REQUIRED},
	{.fn = mx_handle_open, .auth = RPC_AUTH_REQUIRED},
	{.fn = mx_handle_poll, .auth = RPC_AUTH_REQUIRED},
	{.fn = mx_handle_close, .auth = RPC_AUTH_REQUIRED},
	{.fn = handle_subscribe, .auth = RPC_AUTH_NONE},
	{.fn = mx_handle_edit, .auth = RPC_AUTH_REQUIRED},
	{.fn = mx_handle_delete, .auth = RPC_AUTH_REQUIRED},
	{.fn = mx_handle_set_typing, .auth = RPC_AUTH_REQUIRED},
	{.fn = mx_handle_mark_read, .auth = RPC_AUTH_REQUIRED},
	{.fn = mx_handle_get_unread, .auth = RPC_AUTH_REQUIRED},
	{.fn = handle_send_batch, .auth = RPC_AUTH_REQUIRED},
};

static bool
methods_match_descriptor(void)
{
	static const char *const names[] = {"Send",	"Open",	  "Poll",      "Close",
					    "Subscribe", "Edit",  "Delete",    "SetTyping",
					    "MarkRead",	 "GetUnread", "SendBatch"};
	const ProtobufCServiceDescriptor *d = &parley__v1__messaging__descriptor;

	if (d->n_methods != sizeof(messaging_methods) / sizeof(messaging_methods[0]))
		return false;
	for (unsigned i = 0; i < d->n_methods; i++)
		if (strcmp(d->methods[i].name, names[i]) != 0)
			return false;
	return true;
}

/* ---- lifecycle ------------------------------------------------------------------ */

int
messaging_service_start(const parley_config *cfg, messaging_service **out, rpc_status *st)
{
	/* Every session may hold a waiting Poll and the writer 4096 Sends:
	 * they wait in the deferred budget; other calls keep the contexts. */
	uint64_t slots = (uint64_t)(cfg->max_sessions ? cfg->max_sessions : 20000) + 4096;
	rpc_server_opts opts = {.contexts = cfg->contexts,
				.deferred = slots > MAX_CALL_SLOTS ? MAX_CALL_SLOTS : (int)slots,
				.workers = cfg->workers, .name = "messaging"};
	messaging_service *m;
	store_err err;

	if (!methods_match_descriptor())
		return rpc_status_set(st, RPC_INTERNAL, "messaging method table out of date");
	if (sodium_init() < 0)
		return rpc_status_set(st, RPC_INTERNAL, "libsodium failed to initialise");
	if (store_read_only(cfg->env))
		return rpc_status_set(st, RPC_FAILED_PRECONDITION,
				      "messaging needs a writable store");
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	m->env = cfg->env;
	m->room_events_addr = cfg->room_events_addr;
	m->session_idle_ms = (cfg->session_idle_s ? cfg->session_idle_s : 60) * 1000u;
	m->max_sessions = cfg->max_sessions ? cfg->max_sessions : 20000;
	m->max_user_sessions = cfg->max_user_sessions ? cfg->max_user_sessions : 100;
	timeline_init(&m->tl, cfg->env);
	pthread_mutex_init(&m->pub_mtx, NULL);
	pthread_mutex_init(&m->pipe_mtx, NULL);
	rpc_cond_init(&m->pipe_cv);

	if ((err = timeline_open(&m->tl)) != STORE_OK) {
		rpc_status_set(st, RPC_INTERNAL, "cannot open the timeline: %s",
			       store_strerror(err));
		goto fail;
	}
	if (!svc_open_table(m->env, "msg.client_ids", &m->client_ids, st) ||
	    !svc_open_table(m->env, "msg.members", &m->members, st) ||
	    !svc_open_table(m->env, "msg.meta", &m->meta, st) ||
	    !svc_open_table(m->env, "msg.edits", &m->edits, st) ||
	    mx_unread_open(m, st) != RPC_OK)
		goto fail;
	if (svc_authn_open(&m->authn, cfg->auth_addr, st) != RPC_OK ||
	    rpc_client_open(&m->rooms, cfg->rooms_addr, st) != RPC_OK ||
	    rpc_client_open(&m->rooms_feed, cfg->rooms_internal_addr, st) != RPC_OK)
		goto fail;
	if (pub_open(m, cfg->events_listen, st) != RPC_OK)
		goto fail;
	if (mx_presence_start(m, &m->presence, st) != RPC_OK ||
	    mx_typing_start(m, &m->typing, st) != RPC_OK ||
	    mx_writer_start(m, &m->writer, st) != RPC_OK ||
	    mx_sessions_start(m, &m->sessions, st) != RPC_OK ||
	    mx_feed_start(m, &m->feed, st) != RPC_OK)
		goto fail;

	if (rpc_server_open(&m->srv, cfg->messaging_listen, &opts, st) != RPC_OK)
		goto fail;
	rpc_server_add_service(m->srv, &parley__v1__messaging__descriptor, messaging_methods, m);
	mx_presence_serve(m->presence, m->srv);
	rpc_server_set_authenticator(m->srv, svc_authn_validate, m->authn);
	if (rpc_server_start(m->srv, st) != RPC_OK)
		goto fail;
	*out = m;
	return RPC_OK;

fail:
	messaging_service_shutdown(m);
	messaging_service_stop(m);
	return st->code;
}

void
messaging_service_shutdown(messaging_service *m)
{
	if (m == NULL)
		return;
	/* No new calls; handlers in progress return (Sends queue, Polls
	 * defer). Then every session finishes its Poll and ends, the feed
	 * stops, and the writer answers what is queued. */
	if (m->srv != NULL)
		rpc_server_shutdown(m->srv);
	mx_sessions_stop(m->sessions);
	m->sessions = NULL;
	mx_feed_stop(m->feed);
	m->feed = NULL;
	mx_writer_stop(m->writer);
	m->writer = NULL;
}

void
messaging_service_stop(messaging_service *m)
{
	if (m == NULL)
		return;
	messaging_service_shutdown(m);
	if (m->srv != NULL)
		rpc_server_close(m->srv, 5000);
	mx_typing_stop(m->typing);
	mx_presence_stop(m->presence);
	rpc_client_close(m->rooms_feed);
	rpc_client_close(m->rooms);
	svc_authn_close(m->authn);
	timeline_fini(&m->tl);
	/* The PUB socket's pipe callback uses m: if its close could not
	 * finish, m stays (the process is on its way out). */
	if (m->pub_conns != NULL)
		conns_close_all(m->pub_conns);
	if (m->pub_open && !mx_close_bounded(m->pub, "the events PUB socket"))
		return;
	if (m->pub_conns != NULL)
		conns_free(m->pub_conns);
	rpc_tsan_acquire(m); /* closed: its last pub_pipe_event is over */
	pthread_mutex_destroy(&m->pub_mtx);
	pthread_cond_destroy(&m->pipe_cv);
	pthread_mutex_destroy(&m->pipe_mtx);
	free(m);
}

/*
 * idle_polls.c — keeps one long Poll waiting on each of many sessions, the
 * way idle clients do, from one REQ socket with an nng context per Poll
 * (10,000 blocking client threads would load the machine more than the
 * server under test). A Poll that comes back is sent again at once, so
 * every session always has one waiting. See bench.h.
 *
 * Threads: each context's callback runs on nng's threads and touches only
 * its own slot; `answered` is atomic.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/reqrep0/req.h>

#include "parley/v1/messaging.pb-c.h"
#include "parley/v1/rpc.pb-c.h"

#define IDLE_WAIT_MS 30000	/* the longest Poll the server takes */

struct idle_slot {
	idle_polls *p;
	nng_ctx ctx;
	nng_aio *aio;
	uint8_t *req;		/* the packed envelope, sent again and again */
	size_t len;
	bool sending;		/* the aio is a send (else a receive) */
};

struct idle_polls {
	nng_socket sock;
	struct idle_slot *slots;
	int n;
	bool stopping;		/* atomic */
	uint64_t answered;	/* atomic: Polls that came back */
	uint64_t failed;	/* atomic: ...with an error (not sent again) */
};

static void
slot_send(struct idle_slot *s)
{
	nng_msg *msg;

	if (__atomic_load_n(&s->p->stopping, __ATOMIC_ACQUIRE) ||
	    nng_msg_alloc(&msg, s->len) != 0)
		return;
	memcpy(nng_msg_body(msg), s->req, s->len);
	nng_aio_set_msg(s->aio, msg);
	s->sending = true;
	nng_ctx_send(s->ctx, s->aio);
}

static void
slot_cb(void *arg)
{
	struct idle_slot *s = arg;
	int rv = nng_aio_result(s->aio);
	Parley__V1__RpcResponse *resp;
	nng_msg *msg;
	bool ok;

	if (s->sending) {
		s->sending = false;
		if (rv != 0) {
			nng_msg_free(nng_aio_get_msg(s->aio)); /* still ours */
			nng_aio_set_msg(s->aio, NULL);
			return; /* closed or stopped: this slot is done */
		}
		nng_ctx_recv(s->ctx, s->aio); /* now its reply */
		return;
	}
	if (rv != 0)
		return;
	msg = nng_aio_get_msg(s->aio);
	nng_aio_set_msg(s->aio, NULL);
	resp = parley__v1__rpc_response__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	ok = resp != NULL && (resp->status == NULL || resp->status->code == 0);
	if (resp != NULL)
		parley__v1__rpc_response__free_unpacked(resp, NULL);
	nng_msg_free(msg);
	__atomic_add_fetch(&s->p->answered, 1, __ATOMIC_RELAXED);
	if (!ok) {
		__atomic_add_fetch(&s->p->failed, 1, __ATOMIC_RELAXED);
		return; /* refused: sending it again would only spin */
	}
	slot_send(s);
}

/* The envelope of Poll(sid, IDLE_WAIT_MS) with token. */
static bool
pack_poll(struct idle_slot *s, const char *token, const char *sid)
{
	Parley__V1__PollRequest poll = PARLEY__V1__POLL_REQUEST__INIT;
	Parley__V1__RpcRequest env = PARLEY__V1__RPC_REQUEST__INIT;
	Parley__V1__RpcRequest__MetadataEntry auth = PARLEY__V1__RPC_REQUEST__METADATA_ENTRY__INIT;
	Parley__V1__RpcRequest__MetadataEntry *md[1] = {&auth};
	char bearer[PA_TOKEN + 16];
	uint8_t body[256];

	poll.session_id = (char *)sid;
	poll.wait_ms = IDLE_WAIT_MS;
	if (parley__v1__poll_request__get_packed_size(&poll) > sizeof(body))
		return false;
	snprintf(bearer, sizeof(bearer), "Bearer %s", token);
	auth.key = "authorization";
	auth.value = bearer;
	env.method = "/parley.v1.Messaging/Poll";
	env.body.data = body;
	env.body.len = parley__v1__poll_request__pack(&poll, body);
	env.timeout_ms = IDLE_WAIT_MS + 5000;
	env.n_metadata = 1;
	env.metadata = md;
	s->len = parley__v1__rpc_request__get_packed_size(&env);
	if ((s->req = malloc(s->len)) == NULL)
		return false;
	parley__v1__rpc_request__pack(&env, s->req);
	return true;
}

idle_polls *
idle_polls_start(const char *url, const char *const *tokens, const char (*sids)[PA_SESSION],
		 int n)
{
	idle_polls *p = calloc(1, sizeof(*p));

	if (p == NULL || (p->slots = calloc((size_t)n, sizeof(*p->slots))) == NULL ||
	    nng_req0_open(&p->sock) != 0) {
		free(p != NULL ? p->slots : NULL);
		free(p);
		return NULL;
	}
	nng_socket_set_ms(p->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	if (nng_dial(p->sock, url, NULL, 0) != 0)
		goto fail;
	for (int i = 0; i < n; i++) {
		struct idle_slot *s = &p->slots[i];

		s->p = p;
		if (nng_ctx_open(&s->ctx, p->sock) != 0 || nng_aio_alloc(&s->aio, slot_cb, s) != 0 ||
		    !pack_poll(s, tokens[i], sids[i]))
			goto fail;
		p->n = i + 1;
		slot_send(s);
	}
	return p;

fail:
	idle_polls_stop(p);
	return NULL;
}

uint64_t
idle_polls_answered(idle_polls *p)
{
	return __atomic_load_n(&p->answered, __ATOMIC_RELAXED);
}

uint64_t
idle_polls_failed(idle_polls *p)
{
	return __atomic_load_n(&p->failed, __ATOMIC_RELAXED);
}

void
idle_polls_stop(idle_polls *p)
{
	if (p == NULL)
		return;
	__atomic_store_n(&p->stopping, true, __ATOMIC_RELEASE);
	for (int i = 0; i < p->n; i++)
		if (p->slots[i].aio != NULL)
			nng_aio_stop(p->slots[i].aio);
	nng_close(p->sock);
	for (int i = 0; i < p->n; i++) {
		nng_aio_free(p->slots[i].aio);
		free(p->slots[i].req);
	}
	free(p->slots);
	free(p);
}

/* client.c — see client.h. */
#include "client.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "local.h"
#include "tls.h"
#include "tsan.h"
#include "parley/v1/rpc.pb-c.h"

struct rpc_client {
	nng_socket sock;
	char url[256];
	int pipes;	/* connected pipes, kept by pipe_event */
	nng_dialer dialer;
	bool dialing;	/* dialer started: at the first call not served in process */
	uint64_t next_id;
	bool local;	/* [atomic] its server was found in this process */
	int64_t remote_until; /* [atomic] not found: no need to look before (ms) */
	pthread_mutex_t mtx;
	pthread_cond_t up; /* signalled when a pipe connects */
};

static void
pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	rpc_client *cli = arg;

	rpc_tsan_acquire(cli);
	pthread_mutex_lock(&cli->mtx);
	if (ev == NNG_PIPE_EV_ADD_POST) {
		cli->pipes++;
		pthread_cond_broadcast(&cli->up);
	}
	else if (ev == NNG_PIPE_EV_REM_POST && cli->pipes > 0)
		cli->pipes--;
	pthread_mutex_unlock(&cli->mtx);
	rpc_tsan_release(cli);
}

int
rpc_client_open(rpc_client **clip, const char *url, rpc_status *st)
{
	rpc_client *cli = calloc(1, sizeof(*cli));
	rpc_status why = {0};
	int rv;

	if (cli == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	pthread_mutex_init(&cli->mtx, NULL);
	rpc_cond_init(&cli->up);
	snprintf(cli->url, sizeof(cli->url), "%s", url);
	cli->next_id = (uint64_t)rpc_wall_ms() << 16;
	if ((rv = nng_req0_open(&cli->sock)) != 0)
		goto fail;
	rpc_tsan_release(cli); /* pipe_event runs on nng's threads */
	nng_pipe_notify(cli->sock, NNG_PIPE_EV_ADD_POST, pipe_event, cli);
	nng_pipe_notify(cli->sock, NNG_PIPE_EV_REM_POST, pipe_event, cli);
	if ((rv = rpc_socket_cap(cli->sock, RPC_MAX_RESPONSE)) != 0)
		goto fail;
	/* Redial quickly after a server restart. */
	nng_socket_set_ms(cli->sock, NNG_OPT_RECONNMINT, 20);
	nng_socket_set_ms(cli->sock, NNG_OPT_RECONNMAXT, 500);
	/* The address is checked now; the connection is made only when a call
	 * cannot go to a server in this process, so that the services of one
	 * parleyd hold no idle sockets to each other. */
	if ((rv = rpc_tls_dialer(cli->sock, url, &cli->dialer, &why)) != 0)
		goto fail;
	*clip = cli;
	return RPC_OK;

fail:
	nng_close(cli->sock);
	pthread_cond_destroy(&cli->up);
	pthread_mutex_destroy(&cli->mtx);
	free(cli);
	return rpc_status_set(st, rpc_code_from_nng(rv) == RPC_UNAVAILABLE ? RPC_UNAVAILABLE
									   : RPC_INVALID_ARGUMENT,
			      "cannot use address '%s': %s", url,
			      why.message[0] != '\0' ? why.message : nng_strerror(rv));
}

void
rpc_client_close(rpc_client *cli)
{
	if (cli == NULL)
		return;
	nng_close(cli->sock);
	rpc_tsan_acquire(cli); /* nng_close returns after the last pipe_event */
	pthread_cond_destroy(&cli->up);
	pthread_mutex_destroy(&cli->mtx);
	free(cli);
}

const char *
rpc_client_url(const rpc_client *cli)
{
	return cli->url;
}

bool
rpc_client_is_local(rpc_client *cli)
{
	rpc_server *srv;

	/* Once found, for good: a server of this process leaves only as the
	 * process stops. Not found: looked for again a second later (a
	 * server of this process may start after its clients), so that the
	 * hot paths that ask take the registry's lock once a second at most. */
	if (__atomic_load_n(&cli->local, __ATOMIC_ACQUIRE))
		return true;
	if (rpc_now_ms() < __atomic_load_n(&cli->remote_until, __ATOMIC_RELAXED))
		return false;
	if ((srv = rpc_local_acquire(cli->url)) == NULL) {
		__atomic_store_n(&cli->remote_until, rpc_now_ms() + 1000, __ATOMIC_RELAXED);
		return false;
	}
	rpc_local_release(srv);
	__atomic_store_n(&cli->local, true, __ATOMIC_RELEASE);
	return true;
}

/* True while at least one connection to the server is up. */
static bool
rpc_client_connected(rpc_client *cli)
{
	bool up;

	pthread_mutex_lock(&cli->mtx);
	up = cli->pipes > 0;
	pthread_mutex_unlock(&cli->mtx);
	return up;
}

/*
 * Waits until a connection is up, at most until `until` (monotonic ms).
 * nng redials in the background; a server still unreachable after a short
 * grace is reported at once instead of at the end of the call's deadline.
 */
static bool
wait_connected(rpc_client *cli, int64_t until)
{
	bool up;

	pthread_mutex_lock(&cli->mtx);
	while (cli->pipes == 0 && rpc_now_ms() < until)
		rpc_cond_wait_until(&cli->up, &cli->mtx, until);
	up = cli->pipes > 0;
	pthread_mutex_unlock(&cli->mtx);
	return up;
}

/* Starts the dialer once (it redials by itself from then on); 0 or an nng
 * error. */
static int
start_dialing(rpc_client *cli)
{
	int rv = 0;

	pthread_mutex_lock(&cli->mtx);
	if (!cli->dialing && (rv = nng_dialer_start(cli->dialer, NNG_FLAG_NONBLOCK)) == 0)
		cli->dialing = true;
	pthread_mutex_unlock(&cli->mtx);
	return rv;
}

/* Packs env into a new message; NULL when out of memory. */
static nng_msg *
pack_request(Parley__V1__RpcRequest *env)
{
	size_t len = parley__v1__rpc_request__get_packed_size(env);
	nng_msg *msg;

	if (nng_msg_alloc(&msg, len) != 0)
		return NULL;
	parley__v1__rpc_request__pack(env, nng_msg_body(msg));
	return msg;
}

static rpc_code
unpack_response(rpc_client *cli, nng_msg *msg, Parley__V1__RpcResponse **out, rpc_status *st)
{
	*out = parley__v1__rpc_response__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	/* A reply may carry a new session token (Login). */
	explicit_bzero(nng_msg_body(msg), nng_msg_len(msg));
	nng_msg_free(msg);
	if (*out == NULL)
		return rpc_status_set(st, RPC_INTERNAL, "%s sent a malformed response", cli->url);
	return RPC_OK;
}

/* The server lives in this process (see local.h): call it directly. */
static rpc_code
roundtrip_local(rpc_client *cli, rpc_server *srv, Parley__V1__RpcRequest *env,
		int64_t deadline, Parley__V1__RpcResponse **out, rpc_status *st)
{
	int64_t left = deadline - rpc_now_ms();
	nng_msg *msg;
	rpc_code code;

	if (left <= 0) {
		rpc_local_release(srv);
		return rpc_status_set(st, RPC_DEADLINE_EXCEEDED, "deadline passed before sending");
	}
	env->timeout_ms = (uint32_t)left;
	if ((msg = pack_request(env)) == NULL) {
		rpc_local_release(srv);
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	code = rpc_local_call(srv, msg, deadline, &msg, st); /* releases the pin */
	if (code != RPC_OK)
		return code;
	return unpack_response(cli, msg, out, st);
}

/* Sends env and waits for the matching RpcResponse; *out owned by caller.
 * resend: see rpc_call_opts. */
static rpc_code
roundtrip(rpc_client *cli, Parley__V1__RpcRequest *env, int64_t deadline, bool resend,
	  Parley__V1__RpcResponse **out, rpc_status *st)
{
	rpc_server *local;
	nng_ctx ctx;
	nng_aio *aio = NULL;
	nng_msg *msg = NULL;
	int64_t left = deadline - rpc_now_ms();
	int rv;

	*out = NULL;
	if (left <= 0)
		return rpc_status_set(st, RPC_DEADLINE_EXCEEDED, "deadline passed before sending");
	if ((local = rpc_local_acquire(cli->url)) != NULL)
		return roundtrip_local(cli, local, env, deadline, out, st);
	if ((rv = start_dialing(cli)) != 0)
		return rpc_status_set(st, rpc_code_from_nng(rv), "cannot dial %s: %s", cli->url,
				      nng_strerror(rv));
	if (!wait_connected(cli, rpc_now_ms() + (left < RPC_CONNECT_GRACE_MS ? left
									 : RPC_CONNECT_GRACE_MS)))
		return rpc_tls_diagnose(cli->url, deadline, st);
	left = deadline - rpc_now_ms();
	if (left <= 0)
		return rpc_status_set(st, RPC_DEADLINE_EXCEEDED, "deadline passed before sending");
	env->timeout_ms = (uint32_t)left;
	if ((rv = nng_ctx_open(&ctx, cli->sock)) != 0)
		return rpc_status_set(st, rpc_code_from_nng(rv), "%s", nng_strerror(rv));
	/* nng's REQ resends a request whose connection closed only when the
	 * context has a resend time; with none (INFINITE) the call fails with
	 * ECONNRESET instead. So an idempotent call gets a resend time past its
	 * deadline (resent after a dropped connection, never on a timer: that
	 * would run a slow call twice) and any other call none. */
	nng_ctx_set_ms(ctx, NNG_OPT_REQ_RESENDTIME,
		       resend ? (nng_duration)left + 1000 : NNG_DURATION_INFINITE);
	if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0)
		goto fail;
	if ((msg = pack_request(env)) == NULL) {
		rv = NNG_ENOMEM;
		goto fail;
	}

	nng_aio_set_timeout(aio, (nng_duration)left);
	rpc_tsan_release(msg);
	nng_aio_set_msg(aio, msg);
	nng_ctx_send(ctx, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0) {
		nng_msg_free(msg);
		goto fail;
	}
	left = deadline - rpc_now_ms();
	nng_aio_set_timeout(aio, left > 0 ? (nng_duration)left : 1);
	nng_ctx_recv(ctx, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0)
		goto fail;
	msg = nng_aio_get_msg(aio);
	rpc_tsan_acquire(msg);
	nng_aio_free(aio);
	nng_ctx_close(ctx);
	return unpack_response(cli, msg, out, st);

fail:
	if (aio != NULL)
		nng_aio_free(aio);
	nng_ctx_close(ctx);
	if (rv == NNG_ECONNRESET)
		return rpc_status_set(st, RPC_UNAVAILABLE,
				      "the connection to %s dropped during the call; it was not "
				      "sent again, since it may already have taken effect",
				      cli->url);
	if (rv == NNG_ETIMEDOUT && !rpc_client_connected(cli))
		return rpc_status_set(st, RPC_UNAVAILABLE, "cannot reach %s", cli->url);
	if (rv == NNG_ETIMEDOUT)
		return rpc_status_set(st, RPC_DEADLINE_EXCEEDED, "no answer from %s in time",
				      cli->url);
	return rpc_status_set(st, rpc_code_from_nng(rv), "%s: %s", cli->url, nng_strerror(rv));
}

rpc_code
rpc_client_call_raw(rpc_client *cli, const char *full_method, const void *body, size_t len,
		    void **reply, size_t *reply_len, const rpc_call_opts *opts, rpc_status *st)
{
	Parley__V1__RpcRequest env = PARLEY__V1__RPC_REQUEST__INIT;
	Parley__V1__RpcRequest__MetadataEntry auth = PARLEY__V1__RPC_REQUEST__METADATA_ENTRY__INIT;
	Parley__V1__RpcRequest__MetadataEntry peer = PARLEY__V1__RPC_REQUEST__METADATA_ENTRY__INIT;
	Parley__V1__RpcRequest__MetadataEntry *md[2];
	Parley__V1__RpcResponse *resp;
	uint32_t timeout = opts && opts->timeout_ms ? opts->timeout_ms : RPC_DEFAULT_TIMEOUT_MS;
	int64_t deadline = rpc_now_ms() + timeout;
	char bearer[512];
	rpc_code code;

	*reply = NULL;
	*reply_len = 0;
	if (opts && opts->deadline_ms && opts->deadline_ms < deadline)
		deadline = opts->deadline_ms;
	env.method = (char *)full_method;
	env.body.data = (uint8_t *)body;
	env.body.len = len;
	pthread_mutex_lock(&cli->mtx);
	env.request_id = ++cli->next_id;
	pthread_mutex_unlock(&cli->mtx);
	if (opts && opts->token) {
		snprintf(bearer, sizeof(bearer), "Bearer %s", opts->token);
		auth.key = "authorization";
		auth.value = bearer;
		md[env.n_metadata++] = &auth;
	}
	if (opts && opts->peer) {
		peer.key = "peer";
		peer.value = (char *)opts->peer;
		md[env.n_metadata++] = &peer;
	}
	env.metadata = env.n_metadata ? md : NULL;
	code = roundtrip(cli, &env, deadline, opts && opts->resend, &resp, st);
	explicit_bzero(bearer, sizeof(bearer));
	if (code != RPC_OK)
		return code;
	if (resp->status == NULL || resp->status->code == PARLEY__V1__CODE__OK) {
		*reply_len = resp->body.len;
		*reply = malloc(resp->body.len ? resp->body.len : 1);
		if (*reply == NULL)
			code = rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
		else if (resp->body.len > 0) /* an empty body has data == NULL */
			memcpy(*reply, resp->body.data, resp->body.len);
		if (code == RPC_OK)
			rpc_status_set(st, RPC_OK, NULL);
	} else {
		code = rpc_status_set(st, (rpc_code)resp->status->code, "%s",
				      resp->status->message);
		if (st)
			st->retry_after_ms = resp->status->retry_after_ms;
	}
	if (resp->body.data != NULL)
		explicit_bzero(resp->body.data, resp->body.len);
	parley__v1__rpc_response__free_unpacked(resp, NULL);
	return code;
}

rpc_code
rpc_client_call(rpc_client *cli, const ProtobufCServiceDescriptor *svc, const char *method,
		const ProtobufCMessage *req, ProtobufCMessage **resp, const rpc_call_opts *opts,
		rpc_status *st)
{
	const ProtobufCMethodDescriptor *m;
	char full[256];
	uint8_t stackbuf[1024];
	uint8_t *body = stackbuf;
	size_t len;
	void *reply;
	size_t reply_len;
	rpc_code code;

	*resp = NULL;
	m = protobuf_c_service_descriptor_get_method_by_name(svc, method);
	if (m == NULL)
		return rpc_status_set(st, RPC_UNIMPLEMENTED, "%s has no method %s", svc->name,
				      method);
	if (req->descriptor != m->input)
		return rpc_status_set(st, RPC_INVALID_ARGUMENT, "%s takes %s, not %s", method,
				      m->input->name, req->descriptor->name);
	rpc_full_method(full, sizeof(full), svc, m);
	len = protobuf_c_message_get_packed_size(req);
	if (len > sizeof(stackbuf) && (body = malloc(len)) == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	protobuf_c_message_pack(req, body);
	code = rpc_client_call_raw(cli, full, body, len, &reply, &reply_len, opts, st);
	/* The request may hold a password, the reply a token. */
	explicit_bzero(body, len);
	if (body != stackbuf)
		free(body);
	if (code != RPC_OK)
		return code;
	*resp = protobuf_c_message_unpack(m->output, NULL, reply_len, reply);
	explicit_bzero(reply, reply_len);
	free(reply);
	if (*resp == NULL)
		return rpc_status_set(st, RPC_INTERNAL, "malformed %s from %s", m->output->name,
				      cli->url);
	return RPC_OK;
}

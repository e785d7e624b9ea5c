/*
 * parley_api.c — the Parley calls the bench makes, over the blocking
 * thread-safe rpc client (rpc/client.h) and the generated stubs.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley/v1/auth.pb-c.h"
#include "parley/v1/events.pb-c.h"
#include "parley/v1/health.pb-c.h"
#include "parley/v1/messaging.pb-c.h"
#include "parley/v1/rooms.pb-c.h"

/* Calls and frees the reply when the caller has no use for it. */
static rpc_code
call0(rpc_client *c, const ProtobufCServiceDescriptor *svc, const char *method,
      const ProtobufCMessage *req, const char *token, rpc_status *st)
{
	ProtobufCMessage *resp = NULL;
	rpc_call_opts opts = {.timeout_ms = 30000, .token = token};
	rpc_code code = rpc_client_call(c, svc, method, req, &resp, &opts, st);

	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

rpc_client *
pa_client(const char *url)
{
	rpc_client *c;
	rpc_status st;

	if (rpc_client_open(&c, url, &st) != RPC_OK) {
		fprintf(stderr, "parley-bench: cannot open a client for %s: %s\n", url, st.message);
		return NULL;
	}
	return c;
}

rpc_code
pa_health(rpc_client *c, rpc_status *st)
{
	Parley__V1__HealthCheckRequest req = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	Parley__V1__HealthCheckResponse *resp = NULL;
	rpc_call_opts opts = {.timeout_ms = 2000};
	rpc_code code;

	code = rpc_client_call(c, &parley__v1__health__descriptor, "Check", &req.base,
			       (ProtobufCMessage **)&resp, &opts, st);
	if (code == RPC_OK && resp->status !=
				      PARLEY__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING)
		code = rpc_status_set(st, RPC_UNAVAILABLE, "not serving (status %d)",
				      (int)resp->status);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	return code;
}

void
pa_password(const char *user, char *pw, size_t len)
{
	snprintf(pw, len, "bench-password-%s", user);
}

rpc_code
pa_register(rpc_client *auth, const char *user, const char *pw, rpc_status *st)
{
	Parley__V1__RegisterRequest req = PARLEY__V1__REGISTER_REQUEST__INIT;
	rpc_code code;

	req.user_id = (char *)user;
	req.password = (char *)pw;
	req.display_name = (char *)user;
	code = call0(auth, &parley__v1__auth__descriptor, "Register", &req.base, NULL, st);
	return code == RPC_ALREADY_EXISTS ? RPC_OK : code;
}

rpc_code
pa_login(rpc_client *auth, const char *user, const char *pw, char token[PA_TOKEN],
	 rpc_status *st)
{
	Parley__V1__LoginRequest req = PARLEY__V1__LOGIN_REQUEST__INIT;
	Parley__V1__LoginResponse *resp = NULL;
	rpc_call_opts opts = {.timeout_ms = 30000};
	rpc_code code;

	req.user_id = (char *)user;
	req.password = (char *)pw;
	code = rpc_client_call(auth, &parley__v1__auth__descriptor, "Login", &req.base,
			       (ProtobufCMessage **)&resp, &opts, st);
	if (code == RPC_OK) {
		snprintf(token, PA_TOKEN, "%s", resp->token);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

rpc_code
pa_validate(rpc_client *auth, const char *token, rpc_status *st)
{
	Parley__V1__ValidateRequest req = PARLEY__V1__VALIDATE_REQUEST__INIT;

	req.token = (char *)token;
	return call0(auth, &parley__v1__auth__descriptor, "Validate", &req.base, NULL, st);
}

bool
pa_user(rpc_client *auth, const char *user, char token[PA_TOKEN])
{
	char pw[128];
	rpc_status st = {0};

	pa_password(user, pw, sizeof(pw));
	if (pa_register(auth, user, pw, &st) != RPC_OK ||
	    pa_login(auth, user, pw, token, &st) != RPC_OK) {
		fprintf(stderr, "parley-bench: cannot register/login %s: %s %s\n", user,
			rpc_code_name(st.code), st.message);
		return false;
	}
	return true;
}

rpc_code
pa_join(rpc_client *rooms, const char *token, const char *room, rpc_status *st)
{
	Parley__V1__JoinRoomRequest req = PARLEY__V1__JOIN_ROOM_REQUEST__INIT;
	rpc_code code;

	req.room_id = (char *)room;
	code = call0(rooms, &parley__v1__rooms__descriptor, "JoinRoom", &req.base, token, st);
	return code == RPC_ALREADY_EXISTS ? RPC_OK : code;
}

rpc_code
pa_create_join(rpc_client *rooms, const char *token, const char *room, rpc_status *st)
{
	Parley__V1__CreateRoomRequest req = PARLEY__V1__CREATE_ROOM_REQUEST__INIT;
	rpc_code code;

	req.room_id = (char *)room;
	code = call0(rooms, &parley__v1__rooms__descriptor, "CreateRoom", &req.base, token, st);
	if (code != RPC_OK && code != RPC_ALREADY_EXISTS)
		return code;
	return pa_join(rooms, token, room, st);
}

rpc_code
pa_send(rpc_client *m, const char *token, const char *room, const char *text,
	const char *cmid, uint64_t *seq, rpc_status *st)
{
	Parley__V1__SendRequest req = PARLEY__V1__SEND_REQUEST__INIT;
	Parley__V1__SendResponse *resp = NULL;
	rpc_call_opts opts = {.timeout_ms = 30000, .token = token};
	rpc_code code;

	req.room_id = (char *)room;
	req.text = (char *)text;
	req.client_msg_id = (char *)cmid;
	code = rpc_client_call(m, &parley__v1__messaging__descriptor, "Send", &req.base,
			       (ProtobufCMessage **)&resp, &opts, st);
	if (code == RPC_OK) {
		*seq = resp->seq;
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

rpc_code
pa_send_batch(rpc_client *m, const char *token, char (*rooms)[32], int nrooms, const char *text,
	      const char *cmid_prefix, int n, rpc_status *st)
{
	Parley__V1__SendBatchRequest req = PARLEY__V1__SEND_BATCH_REQUEST__INIT;
	Parley__V1__SendRequest msgs[100], *ptrs[100];
	Parley__V1__SendBatchResponse *resp = NULL;
	rpc_call_opts opts = {.timeout_ms = 30000, .token = token};
	char cmids[100][72];
	rpc_code code;

	if (n < 1 || n > 100)
		return rpc_status_set(st, RPC_INVALID_ARGUMENT, "the bench batches 1 to 100");
	for (int k = 0; k < n; k++) {
		parley__v1__send_request__init(&msgs[k]);
		snprintf(cmids[k], sizeof(cmids[k]), "%s-%d", cmid_prefix, k);
		msgs[k].room_id = rooms[k % nrooms];
		msgs[k].text = (char *)text;
		msgs[k].client_msg_id = cmids[k];
		ptrs[k] = &msgs[k];
	}
	req.messages = ptrs;
	req.n_messages = (size_t)n;
	code = rpc_client_call(m, &parley__v1__messaging__descriptor, "SendBatch", &req.base,
			       (ProtobufCMessage **)&resp, &opts, st);
	if (code == RPC_OK) {
		if (resp->n_results != (size_t)n)
			code = rpc_status_set(st, RPC_INTERNAL, "%zu results for %d messages",
					      resp->n_results, n);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

rpc_code
pa_open(rpc_client *m, const char *token, const char *const *rooms, int nrooms,
	char sid[PA_SESSION], rpc_status *st)
{
	Parley__V1__OpenRequest req = PARLEY__V1__OPEN_REQUEST__INIT;
	Parley__V1__OpenResponse *resp = NULL;
	Parley__V1__RoomCursor cur[16], *curp[16];
	rpc_call_opts opts = {.timeout_ms = 30000, .token = token};
	rpc_code code;

	if (nrooms > 16)
		return rpc_status_set(st, RPC_INVALID_ARGUMENT, "the bench opens at most 16 rooms");
	for (int i = 0; i < nrooms; i++) {
		parley__v1__room_cursor__init(&cur[i]);
		cur[i].room_id = (char *)rooms[i];
		cur[i].since_seq = 0;
		curp[i] = &cur[i];
	}
	req.rooms = curp;
	req.n_rooms = (size_t)nrooms;
	code = rpc_client_call(m, &parley__v1__messaging__descriptor, "Open", &req.base,
			       (ProtobufCMessage **)&resp, &opts, st);
	if (code == RPC_OK) {
		snprintf(sid, PA_SESSION, "%s", resp->session_id);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

rpc_code
pa_poll(rpc_client *m, const char *token, const char *sid, uint32_t wait_ms, pa_event_fn fn,
	void *arg, int *nevents, rpc_status *st)
{
	Parley__V1__PollRequest req = PARLEY__V1__POLL_REQUEST__INIT;
	Parley__V1__PollResponse *resp = NULL;
	rpc_call_opts opts = {.timeout_ms = wait_ms + 10000, .token = token};
	rpc_code code;

	req.session_id = (char *)sid;
	req.wait_ms = wait_ms;
	code = rpc_client_call(m, &parley__v1__messaging__descriptor, "Poll", &req.base,
			       (ProtobufCMessage **)&resp, &opts, st);
	if (nevents != NULL)
		*nevents = 0;
	if (code != RPC_OK)
		return code;
	for (size_t i = 0; i < resp->n_events; i++) {
		const Parley__V1__Event *ev = resp->events[i];
		bool chat = ev->body_case == PARLEY__V1__EVENT__BODY_MESSAGE && ev->message != NULL;

		if (fn != NULL)
			fn(arg, ev->room_id, ev->seq, chat, chat ? ev->message->text : "");
	}
	if (nevents != NULL)
		*nevents = (int)resp->n_events;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return code;
}

rpc_code
pa_close(rpc_client *m, const char *token, const char *sid, rpc_status *st)
{
	Parley__V1__CloseRequest req = PARLEY__V1__CLOSE_REQUEST__INIT;

	req.session_id = (char *)sid;
	return call0(m, &parley__v1__messaging__descriptor, "Close", &req.base, token, st);
}

/* ---- closed-loop load ------------------------------------------------------------ */

typedef struct load_thread {
	const char *url;
	int index;
	pa_load_fn fn;
	void *arg;
	uint64_t dur_ns;
	samples lat;
	double rate;
	int errors;
	rpc_status first;
} load_thread;

static void *
load_main(void *arg)
{
	load_thread *t = arg;
	rpc_client *c = pa_client(t->url);
	uint64_t start, end, i = 0;
	rpc_status st = {0};

	if (c == NULL) {
		t->errors++;
		return NULL;
	}
	if (t->fn(c, t->arg, t->index, i++, &st) != RPC_OK) {
		t->errors++;
		t->first = st;
		goto out;
	}
	start = bench_now_ns();
	end = start + t->dur_ns;
	do {
		uint64_t t0 = bench_now_ns();

		if (t->fn(c, t->arg, t->index, i++, &st) != RPC_OK) {
			if (t->errors++ == 0)
				t->first = st;
			if (t->errors > 100)
				break;
			continue;
		}
		samples_add(&t->lat, bench_now_ns() - t0);
	} while (bench_now_ns() < end && i < 10000000);
	t->rate = (double)t->lat.count * 1e9 / (double)(bench_now_ns() - start);
out:
	rpc_client_close(c);
	return NULL;
}

double
pa_load(const char *url, int clients, pa_load_fn fn, void *arg, uint64_t dur_ns,
	samples *lat, int *errors, rpc_status *first)
{
	load_thread *t = calloc((size_t)clients, sizeof(*t));
	double rate = 0;

	if (t == NULL) {
		(*errors)++;
		return 0;
	}
	for (int i = 0; i < clients; i++) {
		t[i].url = url;
		t[i].index = i;
		t[i].fn = fn;
		t[i].arg = arg;
		t[i].dur_ns = dur_ns;
		samples_init(&t[i].lat, lat->cap / (size_t)clients + 1);
	}
	if (!bench_run_threads(clients, load_main, t, sizeof(*t)))
		(*errors)++;
	for (int i = 0; i < clients; i++) {
		samples_merge(lat, &t[i].lat);
		rate += t[i].rate;
		if (t[i].errors && *errors == 0 && first != NULL)
			*first = t[i].first;
		*errors += t[i].errors;
		samples_free(&t[i].lat);
	}
	free(t);
	return rate;
}

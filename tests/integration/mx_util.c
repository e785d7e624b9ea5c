/* mx_util.c — see mx_util.h. */
#include "mx_util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parley/v1/rooms.pb-c.h"

th_daemon mx_d;
rpc_client *mx_auth, *mx_rooms, *mx_msg, *mx_hist;

uint32_t mx_timeout_ms = 20000;

void
mx_start(const char *const *extra)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; extra != NULL && extra[i] != NULL && i < 15; i++)
		mx_d.extra[i] = extra[i];
	TH_CHECK(th_start(&mx_d, NULL), "start parleyd");
	mx_auth = th_client(mx_d.auth);
	mx_rooms = th_client(mx_d.rooms);
	mx_msg = th_client(mx_d.messaging);
	mx_hist = th_client(mx_d.history);
}

void
mx_stop(void)
{
	rpc_client_close(mx_auth);
	rpc_client_close(mx_rooms);
	rpc_client_close(mx_msg);
	rpc_client_close(mx_hist);
	TH_CHECK(th_stop(&mx_d) == 0, "parleyd exits 0 on SIGTERM");
	th_cleanup(&mx_d);
}

void
mx_user_new(mx_user *u, const char *prefix)
{
	snprintf(u->name, sizeof(u->name), "%s", th_name(prefix));
	th_register_login(mx_auth, u->name, u->token, sizeof(u->token));
}

struct user_job {
	mx_user *u;
	char name[40];
};

static void *
user_job(void *arg)
{
	struct user_job *j = arg;

	snprintf(j->u->name, sizeof(j->u->name), "%s", j->name);
	th_register_login(mx_auth, j->u->name, j->u->token, sizeof(j->u->token));
	return NULL;
}

void
mx_users_new(mx_user *u, int n, const char *prefix)
{
	pthread_t t[256];
	struct user_job jobs[256];

	TH_CHECK(n <= 256, "at most 256 users at once");
	for (int i = 0; i < n; i++) {
		jobs[i].u = &u[i];
		snprintf(jobs[i].name, sizeof(jobs[i].name), "%s", th_name(prefix));
		TH_CHECK(pthread_create(&t[i], NULL, user_job, &jobs[i]) == 0, "thread");
	}
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
}

rpc_code
mx_call_token(rpc_client *c, const ProtobufCServiceDescriptor *svc, const char *method,
	      const char *token, const ProtobufCMessage *req, ProtobufCMessage **resp,
	      rpc_status *st)
{
	rpc_call_opts o = {.timeout_ms = mx_timeout_ms, .token = token};
	ProtobufCMessage *r = NULL;
	rpc_code code = rpc_client_call(c, svc, method, req, &r, &o, st);

	if (resp != NULL)
		*resp = r;
	else if (r != NULL)
		protobuf_c_message_free_unpacked(r, NULL);
	return code;
}

rpc_code
mx_call(rpc_client *c, const ProtobufCServiceDescriptor *svc, const char *method,
     const mx_user *u, const ProtobufCMessage *req, ProtobufCMessage **resp, rpc_status *st)
{
	return mx_call_token(c, svc, method, u ? u->token : NULL, req, resp, st);
}

void
mx_expect(rpc_code got, rpc_code want, const rpc_status *st, const char *msg, const char *what)
{
	TH_CHECK(got == want, "%s: got %s (%s), want %s", what, rpc_code_name(got),
		 got == RPC_OK ? "" : st->message, rpc_code_name(want));
	if (want != RPC_OK && msg != NULL)
		TH_CHECK(strstr(st->message, msg) != NULL, "%s: message '%s' lacks '%s'", what,
			 st->message, msg);
}

#define call mx_call

rpc_code
mx_create_room(const mx_user *u, const char *room, rpc_status *st)
{
	Parley__V1__CreateRoomRequest r = PARLEY__V1__CREATE_ROOM_REQUEST__INIT;

	r.room_id = (char *)room;
	r.name = (char *)room;
	return call(mx_rooms, &parley__v1__rooms__descriptor, "CreateRoom", u, &r.base, NULL, st);
}

rpc_code
mx_join(const mx_user *u, const char *room, rpc_status *st)
{
	Parley__V1__JoinRoomRequest r = PARLEY__V1__JOIN_ROOM_REQUEST__INIT;

	r.room_id = (char *)room;
	return call(mx_rooms, &parley__v1__rooms__descriptor, "JoinRoom", u, &r.base, NULL, st);
}

rpc_code
mx_leave(const mx_user *u, const char *room, rpc_status *st)
{
	Parley__V1__LeaveRoomRequest r = PARLEY__V1__LEAVE_ROOM_REQUEST__INIT;

	r.room_id = (char *)room;
	return call(mx_rooms, &parley__v1__rooms__descriptor, "LeaveRoom", u, &r.base, NULL, st);
}

rpc_code
mx_send(const mx_user *u, const char *room, const char *text, const char *cmid, uint64_t *seq,
	uint64_t *ts, rpc_status *st)
{
	Parley__V1__SendRequest r = PARLEY__V1__SEND_REQUEST__INIT;
	Parley__V1__SendResponse *resp;
	rpc_code code;

	r.room_id = (char *)room;
	r.text = (char *)text;
	r.client_msg_id = (char *)(cmid ? cmid : "");
	code = call(mx_msg, &parley__v1__messaging__descriptor, "Send", u, &r.base,
		    (ProtobufCMessage **)&resp, st);
	if (code == RPC_OK) {
		if (seq)
			*seq = resp->seq;
		if (ts)
			*ts = resp->ts_ms;
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

rpc_code
mx_send_batch(const mx_user *u, const mx_batch_msg *m, size_t n, uint64_t *seqs, uint64_t *ts,
	      rpc_status *st)
{
	Parley__V1__SendBatchRequest r = PARLEY__V1__SEND_BATCH_REQUEST__INIT;
	Parley__V1__SendRequest *reqs = calloc(n + 1, sizeof(*reqs));
	Parley__V1__SendRequest **ptrs = calloc(n + 1, sizeof(*ptrs));
	Parley__V1__SendBatchResponse *resp;
	rpc_code code;

	TH_CHECK(reqs != NULL && ptrs != NULL, "out of memory");
	for (size_t i = 0; i < n; i++) {
		parley__v1__send_request__init(&reqs[i]);
		reqs[i].room_id = (char *)m[i].room;
		reqs[i].text = (char *)m[i].text;
		reqs[i].client_msg_id = (char *)(m[i].cmid != NULL ? m[i].cmid : "");
		ptrs[i] = &reqs[i];
	}
	r.messages = ptrs;
	r.n_messages = n;
	code = call(mx_msg, &parley__v1__messaging__descriptor, "SendBatch", u, &r.base,
		    (ProtobufCMessage **)&resp, st);
	if (code == RPC_OK) {
		TH_CHECK(resp->n_results == n, "%zu results for %zu messages", resp->n_results, n);
		for (size_t i = 0; i < n; i++) {
			if (seqs != NULL)
				seqs[i] = resp->results[i]->seq;
			if (ts != NULL && i == 0)
				*ts = resp->results[i]->ts_ms;
			TH_CHECK(ts == NULL || resp->results[i]->ts_ms == *ts,
				 "one timestamp for a batch");
		}
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	free(ptrs);
	free(reqs);
	return code;
}

rpc_code
mx_open(const mx_user *u, size_t n, const char *const *rooms, const uint64_t *since, char *sid,
	uint64_t *heads, rpc_status *st)
{
	Parley__V1__OpenRequest r = PARLEY__V1__OPEN_REQUEST__INIT;
	Parley__V1__RoomCursor cur[128], *curp[128];
	Parley__V1__OpenResponse *resp;
	rpc_code code;

	TH_CHECK(n <= 128, "at most 128 rooms in a test");
	for (size_t i = 0; i < n; i++) {
		parley__v1__room_cursor__init(&cur[i]);
		cur[i].room_id = (char *)rooms[i];
		cur[i].since_seq = since ? since[i] : 0;
		curp[i] = &cur[i];
	}
	r.rooms = curp;
	r.n_rooms = n;
	code = call(mx_msg, &parley__v1__messaging__descriptor, "Open", u, &r.base,
		    (ProtobufCMessage **)&resp, st);
	if (code == RPC_OK) {
		TH_CHECK(strlen(resp->session_id) >= 32, "session id '%s'", resp->session_id);
		TH_CHECK(resp->n_heads == n, "one head per room");
		snprintf(sid, 65, "%s", resp->session_id);
		for (size_t i = 0; heads != NULL && i < n; i++) {
			TH_CHECK(strcmp(resp->heads[i]->room_id, rooms[i]) == 0, "heads in order");
			heads[i] = resp->heads[i]->since_seq;
		}
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

rpc_code
mx_poll(const mx_user *u, const char *sid, uint32_t wait_ms, uint32_t max,
	Parley__V1__PollResponse **out, rpc_status *st)
{
	Parley__V1__PollRequest r = PARLEY__V1__POLL_REQUEST__INIT;

	r.session_id = (char *)sid;
	r.wait_ms = wait_ms;
	r.max_events = max;
	return call(mx_msg, &parley__v1__messaging__descriptor, "Poll", u, &r.base,
		    (ProtobufCMessage **)out, st);
}

rpc_code
mx_poll_acked(const mx_user *u, const char *sid, uint32_t wait_ms, const char *room,
	      uint64_t acked, Parley__V1__PollResponse **out, rpc_status *st)
{
	Parley__V1__PollRequest r = PARLEY__V1__POLL_REQUEST__INIT;
	Parley__V1__RoomCursor c = PARLEY__V1__ROOM_CURSOR__INIT, *cs[1] = {&c};

	r.session_id = (char *)sid;
	r.wait_ms = wait_ms;
	c.room_id = (char *)room;
	c.since_seq = acked;
	r.acked = cs;
	r.n_acked = 1;
	return call(mx_msg, &parley__v1__messaging__descriptor, "Poll", u, &r.base,
		    (ProtobufCMessage **)out, st);
}

rpc_code
mx_close(const mx_user *u, const char *sid, rpc_status *st)
{
	Parley__V1__CloseRequest r = PARLEY__V1__CLOSE_REQUEST__INIT;

	r.session_id = (char *)sid;
	return call(mx_msg, &parley__v1__messaging__descriptor, "Close", u, &r.base, NULL, st);
}

rpc_code
mx_history(const mx_user *u, const char *room, uint64_t before, uint64_t after, uint32_t limit,
	   Parley__V1__GetHistoryResponse **out, rpc_status *st)
{
	Parley__V1__GetHistoryRequest r = PARLEY__V1__GET_HISTORY_REQUEST__INIT;

	r.room_id = (char *)room;
	r.before_seq = before;
	r.after_seq = after;
	r.limit = limit;
	return call(mx_hist, &parley__v1__history__descriptor, "GetHistory", u, &r.base,
		    (ProtobufCMessage **)out, st);
}

uint64_t
mx_wait_membership(const mx_user *reader, const char *room, const char *user,
		   Parley__V1__MembershipChange__Kind kind)
{
	for (int tries = 0; tries < 300; tries++) {
		size_t n;
		Parley__V1__Event **tl = mx_timeline(reader, room, &n);
		uint64_t found = 0;

		for (size_t i = n; i-- > 0;) {
			const Parley__V1__Event *e = tl[i];

			if (found == 0 && e->body_case == PARLEY__V1__EVENT__BODY_MEMBERSHIP &&
			    e->membership->kind == kind && strcmp(e->sender, user) == 0)
				found = e->seq;
			parley__v1__event__free_unpacked(tl[i], NULL);
		}
		free(tl);
		if (found)
			return found;
		usleep(50000);
	}
	TH_CHECK(false, "no %s event of %s in %s",
		 kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED ? "JOINED" : "LEFT", user,
		 room);
	return 0;
}

static Parley__V1__Event *
copy_event(const Parley__V1__Event *e)
{
	size_t len = parley__v1__event__get_packed_size(e);
	uint8_t *buf = malloc(len ? len : 1);
	Parley__V1__Event *c;

	TH_CHECK(buf != NULL, "memory");
	parley__v1__event__pack(e, buf);
	c = parley__v1__event__unpack(NULL, len, buf);
	free(buf);
	TH_CHECK(c != NULL, "event copies");
	return c;
}

Parley__V1__Event **
mx_timeline(const mx_user *u, const char *room, size_t *n)
{
	Parley__V1__Event **all = NULL;
	uint64_t after = 0;
	size_t cap = 0;
	bool more = true;

	*n = 0;
	/* after_seq 0 with before_seq 0 means "the latest"; the first page
	 * is therefore asked for as "before seq limit + 1". */
	while (more) {
		Parley__V1__GetHistoryResponse *h;
		rpc_status st;

		if (after == 0)
			TH_CODE(mx_history(u, room, 501, 0, 500, &h, &st), RPC_OK, &st);
		else
			TH_CODE(mx_history(u, room, 0, after, 500, &h, &st), RPC_OK, &st);
		for (size_t i = 0; i < h->n_events; i++) {
			if (*n == cap) {
				cap = cap ? cap * 2 : 1024;
				all = realloc(all, cap * sizeof(*all));
				TH_CHECK(all != NULL, "memory");
			}
			all[(*n)++] = copy_event(h->events[i]);
		}
		after = *n > 0 ? all[*n - 1]->seq : 0;
		more = after < h->head_seq && h->n_events > 0;
		protobuf_c_message_free_unpacked(&h->base, NULL);
	}
	return all;
}

long
mx_rss_kib(pid_t pid)
{
	long kib = th_proc_kib(pid, "VmRSS");

	return kib < 0 ? 0 : kib;
}

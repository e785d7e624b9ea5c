/*
 * messaging_order_test.c — exactly once, in order: 20 clients send 500
 * messages each into 3 rooms while a session of every member polls. Every
 * session must receive every event of its rooms once, in seq order, with
 * no gap, and GetHistory must return the very same sequence.
 */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "mx_util.h"

#define USERS 20
#define PER_USER 500
#define ROOMS 3
#define MAX_SEQ (USERS * PER_USER + USERS + 16) /* per room, generously */
#define EMPTY_POLLS_MAX 60			 /* a stuck session fails the test */

static mx_user users[USERS];
static char rooms[ROOMS][65];
static const char *room_ptrs[ROOMS];

/* What each session saw: a fingerprint of each event by room and seq. */
struct session_view {
	int user;
	char sid[65];
	uint32_t *fp[ROOMS];  /* fp[r][seq] */
	uint64_t last[ROOMS]; /* last seq seen per room */
	size_t presence;
};

static struct session_view views[USERS];
static uint64_t acked[USERS][PER_USER];
static uint64_t final_head[ROOMS];
static bool heads_known; /* set once every send is acknowledged */
static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;

static uint32_t
fingerprint(const Parley__V1__Event *e)
{
	uint32_t h = 2166136261u;
	const char *parts[2] = {e->sender, ""};
	char kind[16];

	if (e->body_case == PARLEY__V1__EVENT__BODY_MESSAGE) {
		parts[1] = e->message->text;
	} else if (e->body_case == PARLEY__V1__EVENT__BODY_MEMBERSHIP) {
		snprintf(kind, sizeof(kind), "member:%d", e->membership->kind);
		parts[1] = kind;
	}
	for (int p = 0; p < 2; p++) {
		for (const char *c = parts[p]; *c; c++)
			h = (h ^ (uint8_t)*c) * 16777619u;
		h = (h ^ 0xff) * 16777619u;
	}
	return h | 1; /* never 0: 0 marks "not seen" */
}

static int
room_index(const char *room)
{
	for (int r = 0; r < ROOMS; r++)
		if (strcmp(rooms[r], room) == 0)
			return r;
	return -1;
}

static bool
caught_up(const struct session_view *v)
{
	bool done;

	pthread_mutex_lock(&mtx);
	done = heads_known;
	for (int r = 0; r < ROOMS && done; r++)
		done = v->last[r] == final_head[r];
	pthread_mutex_unlock(&mtx);
	return done;
}

static void *
poller(void *arg)
{
	struct session_view *v = arg;
	const mx_user *u = &users[v->user];
	int empty = 0;

	while (!caught_up(v)) {
		Parley__V1__PollResponse *resp;
		rpc_status st;

		TH_CODE(mx_poll(u, v->sid, 1000, 1000, &resp, &st), RPC_OK, &st);
		empty = resp->n_events == 0 ? empty + 1 : 0;
		TH_CHECK(empty < EMPTY_POLLS_MAX, "session of %s gets nothing more (at %llu %llu %llu)",
			 u->name, (unsigned long long)v->last[0], (unsigned long long)v->last[1],
			 (unsigned long long)v->last[2]);
		for (size_t i = 0; i < resp->n_events; i++) {
			const Parley__V1__Event *e = resp->events[i];
			int r = room_index(e->room_id);

			TH_CHECK(r >= 0, "event of a room the session did not open: %s", e->room_id);
			if (e->seq == 0) {
				TH_CHECK(e->body_case == PARLEY__V1__EVENT__BODY_PRESENCE,
					 "seq 0 is presence");
				v->presence++;
				continue;
			}
			TH_CHECK(e->seq == v->last[r] + 1,
				 "%s, room %s: seq %llu after %llu (a gap or a repeat)", u->name,
				 e->room_id, (unsigned long long)e->seq,
				 (unsigned long long)v->last[r]);
			TH_CHECK(e->seq < MAX_SEQ, "seq within bounds");
			v->fp[r][e->seq] = fingerprint(e);
			v->last[r] = e->seq;
		}
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return NULL;
}

static void *
sender(void *arg)
{
	int i = (int)(intptr_t)arg;
	char text[128], cmid[32];

	for (int k = 0; k < PER_USER; k++) {
		rpc_status st;

		snprintf(text, sizeof(text), "%.39s says %d", users[i].name, k);
		snprintf(cmid, sizeof(cmid), "m%d", k);
		TH_CODE(mx_send(&users[i], rooms[k % ROOMS], text, cmid, &acked[i][k], NULL, &st),
			RPC_OK, &st);
	}
	return NULL;
}

int
main(void)
{
	pthread_t pollers[USERS], senders[USERS];
	int64_t t0;
	size_t total_msgs = 0;
	rpc_status st;

	mx_start(NULL);
	t0 = rpc_now_ms();
	mx_users_new(users, USERS, "u");
	printf("%d users registered (%lld ms)\n", USERS, (long long)(rpc_now_ms() - t0));
	for (int r = 0; r < ROOMS; r++) {
		snprintf(rooms[r], sizeof(rooms[r]), "%s", th_name("order"));
		room_ptrs[r] = rooms[r];
		TH_CODE(mx_create_room(&users[0], rooms[r], &st), RPC_OK, &st);
		for (int i = 1; i < USERS; i++)
			TH_CODE(mx_join(&users[i], rooms[r], &st), RPC_OK, &st);
	}
	/* Sessions open from seq 0: they catch up (the JOINED events, maybe
	 * more) from storage and go live while the sends flow. */
	for (int i = 0; i < USERS; i++) {
		views[i].user = i;
		for (int r = 0; r < ROOMS; r++) {
			views[i].fp[r] = calloc(MAX_SEQ, sizeof(uint32_t));
			TH_CHECK(views[i].fp[r] != NULL, "memory");
		}
		TH_CODE(mx_open(&users[i], ROOMS, room_ptrs, NULL, views[i].sid, NULL, &st), RPC_OK,
			&st);
		TH_CHECK(pthread_create(&pollers[i], NULL, poller, &views[i]) == 0, "thread");
	}
	printf("rooms joined, sessions open (%lld ms)\n", (long long)(rpc_now_ms() - t0));
	t0 = rpc_now_ms();
	for (int i = 0; i < USERS; i++)
		TH_CHECK(pthread_create(&senders[i], NULL, sender, (void *)(intptr_t)i) == 0,
			 "thread");
	for (int i = 0; i < USERS; i++)
		pthread_join(senders[i], NULL);
	printf("ok %d sends acknowledged (%lld ms)\n", USERS * PER_USER,
	       (long long)(rpc_now_ms() - t0));

	/* Every member's JOINED must be in before the heads are final. */
	for (int r = 0; r < ROOMS; r++)
		mx_wait_membership(&users[0], rooms[r], users[USERS - 1].name,
				   PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED);
	pthread_mutex_lock(&mtx);
	for (int r = 0; r < ROOMS; r++) {
		Parley__V1__GetHistoryResponse *h;

		TH_CODE(mx_history(&users[0], rooms[r], 0, 0, 1, &h, &st), RPC_OK, &st);
		final_head[r] = h->head_seq;
		protobuf_c_message_free_unpacked(&h->base, NULL);
	}
	heads_known = true;
	pthread_mutex_unlock(&mtx);
	for (int i = 0; i < USERS; i++)
		pthread_join(pollers[i], NULL);
	printf("ok every session caught up, in order, without gaps\n");

	/* The timeline: every send once, at its acknowledged seq; every
	 * session saw exactly it. */
	for (int r = 0; r < ROOMS; r++) {
		size_t n, msgs = 0, joined = 0;
		Parley__V1__Event **tl = mx_timeline(&users[0], rooms[r], &n);

		TH_CHECK(n == final_head[r], "room %d: %zu events, head %llu", r, n,
			 (unsigned long long)final_head[r]);
		for (size_t k = 0; k < n; k++) {
			uint32_t fp = fingerprint(tl[k]);

			TH_CHECK(tl[k]->seq == k + 1, "history is gap-free");
			msgs += tl[k]->body_case == PARLEY__V1__EVENT__BODY_MESSAGE;
			joined += tl[k]->body_case == PARLEY__V1__EVENT__BODY_MEMBERSHIP;
			for (int i = 0; i < USERS; i++)
				TH_CHECK(views[i].fp[r][k + 1] == fp,
					 "session of %s, room %d, seq %zu differs from history",
					 users[i].name, r, k + 1);
		}
		TH_CHECK(joined == USERS, "room %d: %zu JOINED events", r, joined);
		for (int i = 0; i < USERS; i++)
			for (int k = r; k < PER_USER; k += ROOMS) {
				char text[128];
				const Parley__V1__Event *e;

				snprintf(text, sizeof(text), "%.39s says %d", users[i].name, k);
				TH_CHECK(acked[i][k] >= 1 && acked[i][k] <= n, "acked seq in range");
				e = tl[acked[i][k] - 1];
				TH_CHECK(e->body_case == PARLEY__V1__EVENT__BODY_MESSAGE &&
					     strcmp(e->message->text, text) == 0 &&
					     strcmp(e->sender, users[i].name) == 0,
					 "seq %llu holds '%s'", (unsigned long long)acked[i][k], text);
			}
		total_msgs += msgs;
		for (size_t k = 0; k < n; k++)
			parley__v1__event__free_unpacked(tl[k], NULL);
		free(tl);
	}
	TH_CHECK(total_msgs == USERS * PER_USER, "%zu messages stored", total_msgs);
	printf("ok GetHistory returns the same sequences; each send stored once\n");

	for (int i = 0; i < USERS; i++) {
		TH_CODE(mx_close(&users[i], views[i].sid, &st), RPC_OK, &st);
		for (int r = 0; r < ROOMS; r++)
			free(views[i].fp[r]);
	}
	mx_stop();
	return 0;
}

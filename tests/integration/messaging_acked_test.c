/*
 * messaging_acked_test.c — a Poll's `acked` rewind never makes the session
 * send an event twice. The rewind a Poll carries belongs to that Poll: a
 * reply built for it must already start from it. (It used to be applied on
 * the worker's next loop turn: a Poll arriving while the worker sorted
 * frames was answered from the old cursors, and the late rewind then sent
 * the same events again.)
 *
 * The window is made wide: a session over 64 rooms, senders flooding those
 * rooms, presence frames keeping the worker busy sorting, and a client
 * that polls with small replies, acks every room each time and is slower
 * than the reply gap (so its Poll is answered as soon as it is taken).
 * Every event must come exactly once, in seq order. Before the fix this
 * saw 32-84 duplicates in ~450 polls on every run.
 */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "mx_util.h"

#define NROOMS 64
#define SENDERS 4
#define SENDS_PER_SENDER 400
#define POLL_MAX 4
#define PRESENCE_THREADS 4
#define CLIENT_PAUSE_US 11000 /* > SESSION_REPLY_GAP_MS */

static char room_ids[NROOMS][65];
static const char *rooms[NROOMS];
static mx_user reader, sender;
static int senders_done; /* atomic */

static void *
send_job(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	rpc_status st;
	uint64_t seq;

	for (int i = 0; i < SENDS_PER_SENDER; i++) {
		char text[48];

		snprintf(text, sizeof(text), "from %u, number %d", seed, i);
		TH_CODE(mx_send(&sender, rooms[rand_r(&seed) % NROOMS], text, "", &seq, NULL, &st),
			RPC_OK, &st);
	}
	__atomic_add_fetch(&senders_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Presence floods the session's inbox without touching the disk: every
 * Open and Close of another session over the same rooms puts a frame into
 * each room, which the reader's worker sorts while a Poll may arrive. They
 * are the reader's own sessions, so the frames are sorted and dropped
 * (nobody hears their own presence) and replies carry messages only. */
static void *
presence_job(void *arg)
{
	uint64_t since[NROOMS] = {0};
	rpc_status st;
	char sid[65];

	while (__atomic_load_n(&senders_done, __ATOMIC_ACQUIRE) < SENDERS) {
		TH_CODE(mx_open(&reader, NROOMS, rooms, since, sid, NULL, &st), RPC_OK, &st);
		TH_CODE(mx_close(&reader, sid, &st), RPC_OK, &st);
	}
	return NULL;
}

/* One Poll acking every room at last[]. */
static rpc_code
poll_acked(const char *sid, const uint64_t *last, Parley__V1__PollResponse **out,
	   rpc_status *st)
{
	Parley__V1__PollRequest r = PARLEY__V1__POLL_REQUEST__INIT;
	Parley__V1__RoomCursor c[NROOMS], *cs[NROOMS];
	rpc_call_opts o = {.timeout_ms = 20000, .token = reader.token};

	for (int i = 0; i < NROOMS; i++) {
		parley__v1__room_cursor__init(&c[i]);
		c[i].room_id = (char *)rooms[i];
		c[i].since_seq = last[i];
		cs[i] = &c[i];
	}
	r.session_id = (char *)sid;
	r.wait_ms = 2000;
	r.max_events = POLL_MAX;
	r.n_acked = NROOMS;
	r.acked = cs;
	return rpc_client_call(mx_msg, &parley__v1__messaging__descriptor, "Poll", &r.base,
			       (ProtobufCMessage **)out, &o, st);
}

static int
room_index(const char *id)
{
	for (int i = 0; i < NROOMS; i++)
		if (strcmp(rooms[i], id) == 0)
			return i;
	return -1;
}

int
main(void)
{
	uint64_t last[NROOMS] = {0}, heads[NROOMS], since[NROOMS] = {0};
	uint64_t received = 0, dups = 0, polls = 0, want = 0;
	pthread_t t[SENDERS], pt[PRESENCE_THREADS];
	char sid[65];
	rpc_status st;
	bool sending = true;

	mx_start(NULL);
	mx_user_new(&reader, "ackr");
	mx_user_new(&sender, "acks");
	for (int i = 0; i < NROOMS; i++) {
		snprintf(room_ids[i], sizeof(room_ids[i]), "%s", th_name("ack"));
		rooms[i] = room_ids[i];
		TH_CODE(mx_create_room(&reader, rooms[i], &st), RPC_OK, &st);
		TH_CODE(mx_join(&sender, rooms[i], &st), RPC_OK, &st);
	}
	TH_CODE(mx_open(&reader, NROOMS, rooms, since, sid, heads, &st), RPC_OK, &st);
	for (int i = 0; i < SENDERS; i++)
		TH_CHECK(pthread_create(&t[i], NULL, send_job, (void *)(uintptr_t)(i + 1)) == 0,
			 "thread");
	for (int i = 0; i < PRESENCE_THREADS; i++)
		TH_CHECK(pthread_create(&pt[i], NULL, presence_job, NULL) == 0, "thread");

	for (;;) {
		Parley__V1__PollResponse *p;

		if (sending && polls % 8 == 0) {
			/* Done sending? Then the heads are final. */
			if (__atomic_load_n(&senders_done, __ATOMIC_ACQUIRE) == SENDERS) {
				for (int i = 0; i < SENDERS; i++)
					pthread_join(t[i], NULL);
				for (int i = 0; i < PRESENCE_THREADS; i++)
					pthread_join(pt[i], NULL);
				sending = false;
				char sid2[65];

				TH_CODE(mx_open(&reader, NROOMS, rooms, since, sid2, heads, &st),
					RPC_OK, &st);
				TH_CODE(mx_close(&reader, sid2, &st), RPC_OK, &st);
				want = 0;
				for (int i = 0; i < NROOMS; i++)
					want += heads[i];
			}
		}
		if (!sending) {
			bool done = true;

			for (int i = 0; i < NROOMS; i++)
				done &= last[i] >= heads[i];
			if (done)
				break;
		}
		/* A client slower than the session's reply gap: its Poll is
		 * answered as soon as it is taken, not held for the gap. */
		usleep(CLIENT_PAUSE_US);
		TH_CODE(poll_acked(sid, last, &p, &st), RPC_OK, &st);
		polls++;
		for (size_t k = 0; k < p->n_events; k++) {
			Parley__V1__Event *ev = p->events[k];
			int i;

			if (ev->seq == 0)
				continue; /* presence */
			i = room_index(ev->room_id);
			TH_CHECK(i >= 0, "an event of a room not in the session: %s", ev->room_id);
			if (ev->seq <= last[i]) {
				dups++;
				continue;
			}
			TH_CHECK(ev->seq == last[i] + 1, "room %s: seq %llu after %llu (a gap)",
				 rooms[i], (unsigned long long)ev->seq,
				 (unsigned long long)last[i]);
			last[i] = ev->seq;
			received++;
		}
		protobuf_c_message_free_unpacked(&p->base, NULL);
		TH_CHECK(polls < 100000, "the session never caught up (%llu of %llu)",
			 (unsigned long long)received, (unsigned long long)want);
	}
	TH_CHECK(dups == 0, "%llu events came twice in %llu polls (%llu events)",
		 (unsigned long long)dups, (unsigned long long)polls,
		 (unsigned long long)received);
	TH_CHECK(received == want, "received %llu of %llu", (unsigned long long)received,
		 (unsigned long long)want);
	printf("ok %llu events over %d rooms in %llu polls acking every room, none twice\n",
	       (unsigned long long)received, NROOMS, (unsigned long long)polls);
	mx_stop();
	return 0;
}

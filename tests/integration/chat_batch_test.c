/*
 * chat_batch_test.c — Messaging.SendBatch (issue 15: a batched send path)
 * against a real parleyd.
 *
 *   - a batch over two rooms is written in order: each room's messages get
 *     consecutive seqs in request order, one timestamp, and read back so in
 *     history and live in a session;
 *   - a retried batch returns the original seqs and writes nothing;
 *   - every refusal names the message by its index and writes nothing:
 *     no messages, more than 100, an empty or oversized text, a bad room
 *     id, a room the caller is not in, invalid UTF-8, no token;
 *   - a client_msg_id reused for another text refuses that message alone;
 *   - 4 threads sending batches and single Sends to one room at once: every
 *     batch's seqs are consecutive, none lost, none twice;
 *   - after kill -9 right after an acknowledged batch, all of it is there.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mx_util.h"

#define THREADS 4
#define ROUNDS 15
#define PER_BATCH 25

static uint64_t
head_of(const mx_user *u, const char *room)
{
	Parley__V1__GetHistoryResponse *h;
	rpc_status st = {0};
	uint64_t head;

	TH_CODE(mx_history(u, room, 0, 0, 1, &h, &st), RPC_OK, &st);
	head = h->head_seq;
	protobuf_c_message_free_unpacked(&h->base, NULL);
	return head;
}

/* The text of the chat message at seq ("" if it is another event). */
static void
text_at(const mx_user *u, const char *room, uint64_t seq, char *out, size_t cap)
{
	Parley__V1__GetHistoryResponse *h;
	rpc_status st = {0};

	TH_CODE(mx_history(u, room, 0, seq - 1, 1, &h, &st), RPC_OK, &st);
	TH_CHECK(h->n_events == 1 && h->events[0]->seq == seq, "history has seq %llu",
		 (unsigned long long)seq);
	snprintf(out, cap, "%s",
		 h->events[0]->body_case == PARLEY__V1__EVENT__BODY_MESSAGE
			 ? h->events[0]->message->text
			 : "");
	protobuf_c_message_free_unpacked(&h->base, NULL);
}

#define REFUSED(expr, want, needle)                                                       \
	do {                                                                              \
		rpc_status st_ = {0};                                                     \
		rpc_code c_ = (expr);                                                     \
		TH_CODE(c_, want, &st_);                                                  \
		TH_CHECK(strstr(st_.message, needle) != NULL, "message '%s' lacks '%s'", \
			 st_.message, needle);                                            \
	} while (0)

static mx_user writers[THREADS];
static char shared_room[65];
static uint64_t got[THREADS][ROUNDS][PER_BATCH + 1];

static void *
writer_main(void *arg)
{
	int t = (int)(intptr_t)arg;
	char texts[PER_BATCH][48], cmids[PER_BATCH][48], one[48];
	mx_batch_msg m[PER_BATCH];
	rpc_status st = {0};

	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < PER_BATCH; i++) {
			snprintf(texts[i], sizeof(texts[i]), "t%d r%d m%d", t, r, i);
			snprintf(cmids[i], sizeof(cmids[i]), "c%d-%d-%d", t, r, i);
			m[i] = (mx_batch_msg){shared_room, texts[i], cmids[i]};
		}
		TH_CODE(mx_send_batch(&writers[t], m, PER_BATCH, got[t][r], NULL, &st), RPC_OK, &st);
		snprintf(one, sizeof(one), "t%d r%d single", t, r);
		snprintf(cmids[0], sizeof(cmids[0]), "s%d-%d", t, r);
		TH_CODE(mx_send(&writers[t], shared_room, one, cmids[0], &got[t][r][PER_BATCH],
				NULL, &st),
			RPC_OK, &st);
	}
	return NULL;
}

int
main(void)
{
	mx_user alice, bob;
	char r1[65], r2[65], big[4098], buf[128], sid[80];
	const char *open_rooms[1];
	uint64_t seqs[8], again[8], ts, ts2, head1, head2, base;
	mx_batch_msg m[8], many[101];
	Parley__V1__PollResponse *p;
	pthread_t th[THREADS];
	rpc_status st = {0};
	size_t seen = 0;

	mx_start(NULL);
	mx_user_new(&alice, "ba");
	mx_user_new(&bob, "ba");
	snprintf(r1, sizeof(r1), "%s", th_name("batch1"));
	snprintf(r2, sizeof(r2), "%s", th_name("batch2"));
	TH_CODE(mx_create_room(&alice, r1, &st), RPC_OK, &st);
	TH_CODE(mx_create_room(&alice, r2, &st), RPC_OK, &st);
	TH_CODE(mx_join(&bob, r1, &st), RPC_OK, &st);
	mx_wait_membership(&alice, r1, bob.name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED);
	open_rooms[0] = r1;
	TH_CODE(mx_open(&bob, 1, open_rooms, NULL, sid, NULL, &st), RPC_OK, &st);
	head1 = head_of(&alice, r1);
	head2 = head_of(&alice, r2);

	/* In order, per room consecutive, one timestamp. */
	m[0] = (mx_batch_msg){r1, "a0", "b-a0"};
	m[1] = (mx_batch_msg){r2, "b0", "b-b0"};
	m[2] = (mx_batch_msg){r1, "a1", "b-a1"};
	m[3] = (mx_batch_msg){r1, "a2 with ünïcödé", "b-a2"};
	m[4] = (mx_batch_msg){r2, "b1", "b-b1"};
	TH_CODE(mx_send_batch(&alice, m, 5, seqs, &ts, &st), RPC_OK, &st);
	TH_CHECK(seqs[0] == head1 + 1 && seqs[2] == head1 + 2 && seqs[3] == head1 + 3,
		 "room 1's messages are consecutive after its head %llu (%llu %llu %llu)",
		 (unsigned long long)head1, (unsigned long long)seqs[0],
		 (unsigned long long)seqs[2], (unsigned long long)seqs[3]);
	TH_CHECK(seqs[1] == head2 + 1 && seqs[4] == head2 + 2, "room 2's messages follow its head");
	for (int i = 0; i < 5; i++) {
		text_at(&alice, m[i].room, seqs[i], buf, sizeof(buf));
		TH_CHECK(strcmp(buf, m[i].text) == 0, "message %d reads '%s' (want '%s')", i, buf,
			 m[i].text);
	}
	printf("ok a batch over two rooms: in order, consecutive seqs, one timestamp\n");

	/* Live: bob's session gets room 1's three, in order. */
	while (seen < 3) {
		TH_CODE(mx_poll(&bob, sid, 5000, 0, &p, &st), RPC_OK, &st);
		TH_CHECK(p->n_events > 0, "the batch reaches the session");
		for (size_t i = 0; i < p->n_events; i++) {
			const Parley__V1__Event *ev = p->events[i];
			static const int want[3] = {0, 2, 3};

			if (ev->body_case != PARLEY__V1__EVENT__BODY_MESSAGE)
				continue;
			TH_CHECK(seen < 3 && ev->seq == seqs[want[seen]] &&
					 strcmp(ev->message->text, m[want[seen]].text) == 0,
				 "live event %zu is '%s' at %llu", seen, ev->message->text,
				 (unsigned long long)ev->seq);
			seen++;
		}
		protobuf_c_message_free_unpacked(&p->base, NULL);
	}
	printf("ok a session receives the batch live, in order\n");

	/* A retry returns the original seqs and writes nothing. */
	TH_CODE(mx_send_batch(&alice, m, 5, again, &ts2, &st), RPC_OK, &st);
	TH_CHECK(memcmp(again, seqs, 5 * sizeof(seqs[0])) == 0 && ts2 == ts,
		 "a retried batch returns the original seqs and time");
	TH_CHECK(head_of(&alice, r1) == seqs[3] && head_of(&alice, r2) == seqs[4],
		 "a retried batch writes nothing");
	printf("ok a retried batch returns the original seqs\n");

	/* Refusals: named by index, nothing written. */
	head1 = head_of(&alice, r1);
	head2 = head_of(&alice, r2);
	REFUSED(mx_send_batch(&alice, m, 0, NULL, NULL, &st_), RPC_INVALID_ARGUMENT, "1 to 100");
	for (int i = 0; i < 101; i++)
		many[i] = (mx_batch_msg){r1, "x", NULL};
	REFUSED(mx_send_batch(&alice, many, 101, NULL, NULL, &st_), RPC_INVALID_ARGUMENT,
		"got 101");
	m[0] = (mx_batch_msg){r1, "fine", NULL};
	m[1] = (mx_batch_msg){r2, "fine too", NULL};
	m[2] = (mx_batch_msg){r1, "", NULL};
	REFUSED(mx_send_batch(&alice, m, 3, NULL, NULL, &st_), RPC_INVALID_ARGUMENT,
		"messages[2]: text must be 1 to 4096 bytes");
	memset(big, 'z', 4097);
	big[4097] = '\0';
	m[2] = (mx_batch_msg){r1, big, NULL};
	REFUSED(mx_send_batch(&alice, m, 3, NULL, NULL, &st_), RPC_INVALID_ARGUMENT,
		"messages[2]: text must be");
	m[2] = (mx_batch_msg){"Not A Room!", "x", NULL};
	REFUSED(mx_send_batch(&alice, m, 3, NULL, NULL, &st_), RPC_INVALID_ARGUMENT,
		"messages[2]: room_id must be");
	m[2] = (mx_batch_msg){r1, "bad \xff\xfe utf-8", NULL};
	REFUSED(mx_send_batch(&alice, m, 3, NULL, NULL, &st_), RPC_INVALID_ARGUMENT, "UTF-8");
	m[2] = (mx_batch_msg){r1, "x", "a client_msg_id far longer than the sixty-four bytes it may hold...."};
	REFUSED(mx_send_batch(&alice, m, 3, NULL, NULL, &st_), RPC_INVALID_ARGUMENT,
		"messages[2]: client_msg_id must be");
	/* bob is in r1, not r2. */
	REFUSED(mx_send_batch(&bob, m, 2, NULL, NULL, &st_), RPC_PERMISSION_DENIED,
		"messages[1]: ");
	REFUSED(mx_send_batch(NULL, m, 2, NULL, NULL, &st_), RPC_UNAUTHENTICATED, "");
	TH_CHECK(head_of(&alice, r1) == head1 && head_of(&alice, r2) == head2,
		 "a refused batch writes nothing");
	printf("ok refusals name the message and write nothing\n");

	/* A client_msg_id reused for another text: that message alone. */
	m[0] = (mx_batch_msg){r1, "new one", "b-new"};
	m[1] = (mx_batch_msg){r1, "not a0", "b-a0"};
	REFUSED(mx_send_batch(&alice, m, 2, NULL, NULL, &st_), RPC_INVALID_ARGUMENT,
		"messages[1]: client_msg_id 'b-a0' was already used");
	TH_CHECK(head_of(&alice, r1) == head1 + 1, "the other message was written");
	text_at(&alice, r1, head1 + 1, buf, sizeof(buf));
	TH_CHECK(strcmp(buf, "new one") == 0, "and reads '%s'", buf);
	printf("ok a reused client_msg_id refuses that message alone\n");

	/* Concurrent batches and Sends: each batch's seqs consecutive. */
	snprintf(shared_room, sizeof(shared_room), "%s", th_name("batchmix"));
	TH_CODE(mx_create_room(&alice, shared_room, &st), RPC_OK, &st);
	mx_users_new(writers, THREADS, "bw");
	for (int t = 0; t < THREADS; t++)
		TH_CODE(mx_join(&writers[t], shared_room, &st), RPC_OK, &st);
	for (int t = 0; t < THREADS; t++)
		mx_wait_membership(&alice, shared_room, writers[t].name,
				   PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED);
	base = head_of(&alice, shared_room);
	for (int t = 0; t < THREADS; t++)
		TH_CHECK(pthread_create(&th[t], NULL, writer_main, (void *)(intptr_t)t) == 0,
			 "thread");
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	{
		size_t total = (size_t)THREADS * ROUNDS * (PER_BATCH + 1);
		char *hit = calloc(total + 1, 1);

		TH_CHECK(head_of(&alice, shared_room) == base + total, "%zu messages, none lost",
			 total);
		for (int t = 0; t < THREADS; t++)
			for (int r = 0; r < ROUNDS; r++)
				for (int i = 0; i <= PER_BATCH; i++) {
					uint64_t s = got[t][r][i];

					TH_CHECK(s > base && s <= base + total && !hit[s - base],
						 "seq %llu once", (unsigned long long)s);
					hit[s - base] = 1;
					TH_CHECK(i == 0 || i == PER_BATCH || s == got[t][r][i - 1] + 1,
						 "a batch's seqs are consecutive");
				}
		free(hit);
		printf("ok %d threads of batches and Sends: %zu messages, each batch "
		       "consecutive, none lost or twice\n",
		       THREADS, total);
	}

	/* kill -9 right after the acknowledged batch: all of it survives. */
	m[0] = (mx_batch_msg){r1, "durable 0", "d0"};
	m[1] = (mx_batch_msg){r2, "durable 1", "d1"};
	m[2] = (mx_batch_msg){r1, "durable 2", "d2"};
	TH_CODE(mx_send_batch(&alice, m, 3, seqs, NULL, &st), RPC_OK, &st);
	th_kill9(&mx_d);
	TH_CHECK(th_restart(&mx_d), "restart after kill -9");
	for (int i = 0; i < 3; i++) {
		text_at(&alice, m[i].room, seqs[i], buf, sizeof(buf));
		TH_CHECK(strcmp(buf, m[i].text) == 0, "after kill -9 seq %llu reads '%s'",
			 (unsigned long long)seqs[i], buf);
	}
	TH_CODE(mx_send_batch(&alice, m, 3, again, NULL, &st), RPC_OK, &st);
	TH_CHECK(memcmp(again, seqs, 3 * sizeof(seqs[0])) == 0,
		 "a retry after the restart returns the original seqs");
	printf("ok an acknowledged batch survives kill -9\n");

	mx_stop();
	return 0;
}

/*
 * chat_unread_test.c — MarkRead and GetUnread (issue 10, item 6) against a
 * real parleyd, across 10,000 messages: unread counts messages by others
 * after read_seq, mention_count those naming the caller as @user_id,
 * last_event is the head; MarkRead never moves back and refuses a seq past
 * the head; empty room_ids means every room of the caller; bad input and
 * non-members are refused with their messages. That the answer does not
 * scan history is proven structurally in tests/unit/unread_test.c.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mx_util.h"

#define THREADS 8
#define PER_THREAD 1250 /* 10,000 messages */

static mx_user alice, bob;
static char room[65];

static void *
sender(void *arg)
{
	int t = (int)(intptr_t)arg;
	char text[64];
	rpc_status st = {0};

	for (int k = 0; k < PER_THREAD; k++) {
		if (k % 50 == 0)
			snprintf(text, sizeof(text), "ping @%s number %d.%d", alice.name, t, k);
		else
			snprintf(text, sizeof(text), "message %d.%d for mail@%s", t, k, alice.name);
		TH_CODE(mx_send(&bob, room, text, NULL, NULL, NULL, &st), RPC_OK, &st);
	}
	return NULL;
}

static rpc_code
mark(const mx_user *u, const char *r, uint64_t seq, rpc_status *st)
{
	Parley__V1__MarkReadRequest q = PARLEY__V1__MARK_READ_REQUEST__INIT;

	q.room_id = (char *)r;
	q.seq = seq;
	return mx_call(mx_msg, &parley__v1__messaging__descriptor, "MarkRead", u, &q.base, NULL,
		       st);
}

static rpc_code
unread(const mx_user *u, const char *const *ids, size_t n, Parley__V1__GetUnreadResponse **out,
       rpc_status *st)
{
	Parley__V1__GetUnreadRequest q = PARLEY__V1__GET_UNREAD_REQUEST__INIT;

	q.room_ids = (char **)ids;
	q.n_room_ids = n;
	return mx_call(mx_msg, &parley__v1__messaging__descriptor, "GetUnread", u, &q.base,
		       (ProtobufCMessage **)out, st);
}

static Parley__V1__RoomUnread *
one(const char *r, uint64_t *head)
{
	static Parley__V1__GetUnreadResponse *last;
	const char *ids[1] = {r};
	rpc_status st = {0};

	if (last != NULL)
		protobuf_c_message_free_unpacked(&last->base, NULL);
	TH_CODE(unread(&alice, ids, 1, &last, &st), RPC_OK, &st);
	TH_CHECK(last->n_rooms == 1 && strcmp(last->rooms[0]->room_id, r) == 0, "one room back");
	*head = last->rooms[0]->head_seq;
	return last->rooms[0];
}

/* Mentions of alice after seq, counted from history. */
static uint64_t
mentions_after(uint64_t seq)
{
	Parley__V1__GetHistoryResponse *h;
	rpc_status st = {0};
	char needle[48];
	uint64_t n = 0;

	snprintf(needle, sizeof(needle), "ping @%s ", alice.name);
	TH_CODE(mx_history(&alice, room, 0, seq, 500, &h, &st), RPC_OK, &st);
	for (size_t i = 0; i < h->n_events; i++)
		n += h->events[i]->body_case == PARLEY__V1__EVENT__BODY_MESSAGE &&
		     strncmp(h->events[i]->message->text, needle, strlen(needle)) == 0;
	protobuf_c_message_free_unpacked(&h->base, NULL);
	return n;
}

int
main(void)
{
	pthread_t th[THREADS];
	char room2[65], other[65], mine_sid[80];
	const char *ids[101];
	Parley__V1__GetUnreadResponse *all;
	Parley__V1__RoomUnread *u;
	rpc_status st = {0};
	uint64_t head, own_seq, h2;
	bool saw1 = false, saw2 = false;

	(void)mine_sid;
	mx_start(NULL);
	mx_user_new(&alice, "un");
	mx_user_new(&bob, "un");
	snprintf(room, sizeof(room), "%s", th_name("unread"));
	snprintf(room2, sizeof(room2), "%s", th_name("unread"));
	snprintf(other, sizeof(other), "%s", th_name("unread"));
	TH_CODE(mx_create_room(&alice, room, &st), RPC_OK, &st);
	TH_CODE(mx_create_room(&alice, room2, &st), RPC_OK, &st);
	TH_CODE(mx_create_room(&bob, other, &st), RPC_OK, &st);
	TH_CODE(mx_join(&bob, room, &st), RPC_OK, &st);
	mx_wait_membership(&alice, room, bob.name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED);

	for (int i = 0; i < 3; i++)
		TH_CODE(mx_send(&alice, room, "my own @self words", NULL, &own_seq, NULL, &st),
			RPC_OK, &st);
	for (int t = 0; t < THREADS; t++)
		pthread_create(&th[t], NULL, sender, (void *)(intptr_t)t);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);

	u = one(room, &head);
	TH_CHECK(u->read_seq == 0 && u->unread_count == THREADS * PER_THREAD,
		 "10,000 unread by others (got %llu)", (unsigned long long)u->unread_count);
	TH_CHECK(u->mention_count == THREADS * (PER_THREAD / 50),
		 "every 50th mentions alice (got %llu)", (unsigned long long)u->mention_count);
	TH_CHECK(u->last_event != NULL && u->last_event->seq == head &&
			 u->last_event->body_case == PARLEY__V1__EVENT__BODY_MESSAGE,
		 "last_event is the head");

	/* Read up to alice's own last message: all of bob's still unread. */
	TH_CODE(mark(&alice, room, own_seq, &st), RPC_OK, &st);
	u = one(room, &head);
	TH_CHECK(u->read_seq == own_seq && u->unread_count == THREADS * PER_THREAD,
		 "own messages never count (%llu)", (unsigned long long)u->unread_count);
	TH_CODE(mark(&alice, room, head - 100, &st), RPC_OK, &st);
	u = one(room, &head);
	TH_CHECK(u->read_seq == head - 100 && u->unread_count == 100,
		 "100 left after reading up to head-100 (%llu)", (unsigned long long)u->unread_count);
	TH_CHECK(u->mention_count == mentions_after(head - 100),
		 "mentions after the marker only (%llu)", (unsigned long long)u->mention_count);
	TH_CODE(mark(&alice, room, 5, &st), RPC_OK, &st);
	u = one(room, &head);
	TH_CHECK(u->read_seq == head - 100, "MarkRead never moves back");
	TH_CODE(mark(&alice, room, head + 1, &st), RPC_OUT_OF_RANGE, &st);
	TH_CHECK(strstr(st.message, "past the end") != NULL, "%s", st.message);
	TH_CODE(mark(&alice, room, head, &st), RPC_OK, &st);
	u = one(room, &head);
	TH_CHECK(u->unread_count == 0 && u->mention_count == 0, "all read");

	/* Every room of the caller. */
	TH_CODE(unread(&alice, NULL, 0, &all, &st), RPC_OK, &st);
	for (size_t i = 0; i < all->n_rooms; i++) {
		saw1 |= strcmp(all->rooms[i]->room_id, room) == 0;
		saw2 |= strcmp(all->rooms[i]->room_id, room2) == 0;
		TH_CHECK(strcmp(all->rooms[i]->room_id, other) != 0, "not bob's room");
	}
	TH_CHECK(saw1 && saw2 && all->n_rooms == 2, "both of alice's rooms (%zu)", all->n_rooms);
	protobuf_c_message_free_unpacked(&all->base, NULL);
	u = one(room2, &h2);
	TH_CHECK(u->unread_count == 0 && u->head_seq == 1, "a room with only alice's join");

	/* Refusals. */
	ids[0] = other;
	TH_CODE(unread(&alice, ids, 1, &all, &st), RPC_PERMISSION_DENIED, &st);
	TH_CHECK(strstr(st.message, "not a member") != NULL, "%s", st.message);
	ids[0] = "Bad Room";
	TH_CODE(unread(&alice, ids, 1, &all, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CHECK(strstr(st.message, "room_ids[0]") != NULL, "%s", st.message);
	for (int i = 0; i < 101; i++)
		ids[i] = room;
	TH_CODE(unread(&alice, ids, 101, &all, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CHECK(strstr(st.message, "at most 100") != NULL, "%s", st.message);
	TH_CODE(mark(&alice, other, 1, &st), RPC_PERMISSION_DENIED, &st);
	TH_CHECK(strstr(st.message, "not a member") != NULL, "%s", st.message);
	TH_CODE(mark(&alice, "Bad Room", 1, &st), RPC_INVALID_ARGUMENT, &st);
	TH_CHECK(strstr(st.message, "room_id must be") != NULL, "%s", st.message);
	TH_CODE(unread(NULL, NULL, 0, &all, &st), RPC_UNAUTHENTICATED, &st);

	mx_stop();
	printf("chat_unread_test: ok\n");
	return 0;
}

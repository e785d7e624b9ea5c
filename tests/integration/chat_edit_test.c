/*
 * chat_edit_test.c — Messaging.Edit and Messaging.Delete (issue 10, item 4)
 * against a real parleyd.
 *
 *   - an edit is its own event; the message reads with the latest text and
 *     edited_at_ms in history; sessions receive the edit live;
 *   - retries with the same client_msg_id return the original seq, another
 *     request under it is INVALID_ARGUMENT;
 *   - every refusal with its status and message (not the sender, not a
 *     member, no such seq, not a chat message, deleted, bad arguments);
 *   - a delete leaves the message redacted with empty text, empties its
 *     edits, and after kill -9 right after the acknowledged Delete, no
 *     version of the text is anywhere in data.mdb while a message that was
 *     not deleted still is (the grep can fail); after the restart a retried
 *     Delete returns the original seq.
 */
#define _GNU_SOURCE 1 /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mx_util.h"
#include "parley/v1/rooms.pb-c.h"

static rpc_code
edit(const mx_user *u, const char *room, uint64_t seq, const char *text, const char *cmid,
     uint64_t *out_seq, uint64_t *ts, rpc_status *st)
{
	Parley__V1__EditRequest r = PARLEY__V1__EDIT_REQUEST__INIT;
	Parley__V1__EditResponse *resp;
	rpc_code code;

	r.room_id = (char *)room;
	r.seq = seq;
	r.text = (char *)text;
	r.client_msg_id = (char *)cmid;
	code = mx_call(mx_msg, &parley__v1__messaging__descriptor, "Edit", u, &r.base,
		       (ProtobufCMessage **)&resp, st);
	if (code == RPC_OK) {
		*out_seq = resp->seq;
		if (ts != NULL)
			*ts = resp->ts_ms;
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

static rpc_code
del(const mx_user *u, const char *room, uint64_t seq, const char *cmid, uint64_t *out_seq,
    rpc_status *st)
{
	Parley__V1__DeleteRequest r = PARLEY__V1__DELETE_REQUEST__INIT;
	Parley__V1__DeleteResponse *resp;
	rpc_code code;

	r.room_id = (char *)room;
	r.seq = seq;
	r.client_msg_id = (char *)cmid;
	code = mx_call(mx_msg, &parley__v1__messaging__descriptor, "Delete", u, &r.base,
		       (ProtobufCMessage **)&resp, st);
	if (code == RPC_OK) {
		*out_seq = resp->seq;
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

#define REFUSED(code_expr, want, needle)                                                  \
	do {                                                                              \
		rpc_status st_ = {0};                                                     \
		uint64_t s_ = 0;                                                            \
		rpc_code c_ = (code_expr);                                                \
		(void)s_;                                                                 \
		TH_CODE(c_, want, &st_);                                                  \
		TH_CHECK(strstr(st_.message, needle) != NULL, "message '%s' lacks '%s'", \
			 st_.message, needle);                                            \
	} while (0)

/* The event at seq, from history (freed by the caller). */
static Parley__V1__GetHistoryResponse *
event_at(const mx_user *u, const char *room, uint64_t seq, Parley__V1__Event **ev)
{
	Parley__V1__GetHistoryResponse *h;
	rpc_status st = {0};

	TH_CODE(mx_history(u, room, 0, seq - 1, 1, &h, &st), RPC_OK, &st);
	TH_CHECK(h->n_events == 1 && h->events[0]->seq == seq, "history has seq %llu",
		 (unsigned long long)seq);
	*ev = h->events[0];
	return h;
}

/* The whole data file in memory. */
static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	TH_CHECK(f != NULL, "open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	TH_CHECK(buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n, "read %s", path);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static bool
file_has(const char *path, const char *needle)
{
	size_t len;
	char *buf = read_file(path, &len);
	bool has = memmem(buf, len, needle, strlen(needle)) != NULL;

	free(buf);
	return has;
}

int
main(void)
{
	mx_user alice, bob, carol;
	char room[65], sid[80], secret[64], second[64], kept[64], path[400];
	uint64_t s1, e1, e1_again, e1_ts, e1_ts_again, d1, d1_again, joined, head, x, other;
	Parley__V1__GetHistoryResponse *h;
	Parley__V1__PollResponse *p;
	Parley__V1__Event *ev;
	rpc_status st = {0};
	const char *r1[1];
	bool seen_edit = false;

	mx_start(NULL);
	mx_user_new(&alice, "ed");
	mx_user_new(&bob, "ed");
	mx_user_new(&carol, "ed");
	snprintf(room, sizeof(room), "%s", th_name("edits"));
	r1[0] = room;
	TH_CODE(mx_create_room(&alice, room, &st), RPC_OK, &st);
	TH_CODE(mx_join(&bob, room, &st), RPC_OK, &st);
	joined = mx_wait_membership(&alice, room, bob.name,
				    PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED);
	TH_CODE(mx_open(&bob, 1, r1, NULL, sid, NULL, &st), RPC_OK, &st);

	/* Edit: its own event; the message reads edited; retries repeat. */
	TH_CODE(mx_send(&alice, room, "first version", "m1", &s1, NULL, &st), RPC_OK, &st);
	TH_CODE(edit(&alice, room, s1, "second version", "e1", &e1, &e1_ts, &st), RPC_OK, &st);
	TH_CHECK(e1 == s1 + 1, "the edit has its own seq (%llu after %llu)",
		 (unsigned long long)e1, (unsigned long long)s1);
	TH_CODE(edit(&alice, room, s1, "second version", "e1", &e1_again, &e1_ts_again, &st),
		RPC_OK, &st);
	TH_CHECK(e1_again == e1 && e1_ts_again == e1_ts, "a retried Edit returns the original");
	REFUSED(edit(&alice, room, s1, "another text", "e1", &s_, NULL, &st_),
		RPC_INVALID_ARGUMENT, "already used");
	REFUSED(edit(&alice, room, s1 + 1, "x", "m1", &s_, NULL, &st_), RPC_INVALID_ARGUMENT,
		"already used");
	h = event_at(&bob, room, s1, &ev);
	TH_CHECK(ev->body_case == PARLEY__V1__EVENT__BODY_MESSAGE &&
			 strcmp(ev->message->text, "second version") == 0 &&
			 ev->message->edited_at_ms == e1_ts && !ev->message->redacted,
		 "history reads the latest text and edited_at_ms (got '%s', %llu)",
		 ev->message->text, (unsigned long long)ev->message->edited_at_ms);
	protobuf_c_message_free_unpacked(&h->base, NULL);
	h = event_at(&bob, room, e1, &ev);
	TH_CHECK(ev->body_case == PARLEY__V1__EVENT__BODY_EDIT && ev->edit->target_seq == s1 &&
			 strcmp(ev->edit->text, "second version") == 0 &&
			 strcmp(ev->sender, alice.name) == 0,
		 "the MessageEdit event names its target and text");
	protobuf_c_message_free_unpacked(&h->base, NULL);
	while (!seen_edit) {
		TH_CODE(mx_poll(&bob, sid, 5000, 0, &p, &st), RPC_OK, &st);
		for (size_t i = 0; i < p->n_events; i++)
			seen_edit |= p->events[i]->seq == e1 &&
				     p->events[i]->body_case == PARLEY__V1__EVENT__BODY_EDIT;
		protobuf_c_message_free_unpacked(&p->base, NULL);
	}

	/* Refusals, each with its message. */
	REFUSED(edit(&bob, room, s1, "mine now", "b1", &s_, NULL, &st_), RPC_PERMISSION_DENIED,
		"only its sender can edit");
	REFUSED(edit(&carol, room, s1, "hello", "c1", &s_, NULL, &st_), RPC_PERMISSION_DENIED,
		"not a member");
	REFUSED(edit(&alice, room, 99999, "hello", "a9", &s_, NULL, &st_), RPC_NOT_FOUND,
		"no event at seq 99999");
	REFUSED(edit(&alice, room, joined, "hello", "a8", &s_, NULL, &st_),
		RPC_FAILED_PRECONDITION, "not a chat message");
	REFUSED(edit(&alice, room, e1, "hello", "a7", &s_, NULL, &st_), RPC_FAILED_PRECONDITION,
		"not a chat message");
	REFUSED(edit(&alice, room, 0, "hello", "a6", &s_, NULL, &st_), RPC_INVALID_ARGUMENT,
		"seq must name a message");
	REFUSED(edit(&alice, room, s1, "", "a5", &s_, NULL, &st_), RPC_INVALID_ARGUMENT,
		"text must be 1 to 4096 bytes");
	REFUSED(edit(&alice, "Bad Room", s1, "x", "a4", &s_, NULL, &st_), RPC_INVALID_ARGUMENT,
		"room_id must be");
	REFUSED(edit(&alice, room, s1, "x",
		     "0123456789012345678901234567890123456789012345678901234567890123456789",
		     &s_, NULL, &st_),
		RPC_INVALID_ARGUMENT, "client_msg_id must be at most 64 bytes");
	REFUSED(edit(NULL, room, s1, "x", "a3", &s_, NULL, &st_), RPC_UNAUTHENTICATED, "");
	REFUSED(del(&bob, room, s1, "b2", &s_, &st_), RPC_PERMISSION_DENIED,
		"only its sender or a moderator or admin");
	REFUSED(del(&carol, room, s1, "c2", &s_, &st_), RPC_PERMISSION_DENIED, "not a member");

	/* A MODERATOR (made one by alice, the room's ADMIN) may delete anyone's
	 * message; made a MEMBER again, no longer. */
	{
		Parley__V1__SetRoleRequest sr = PARLEY__V1__SET_ROLE_REQUEST__INIT;
		ProtobufCMessage *resp = NULL;
		uint64_t target, dseq;

		TH_CODE(mx_send(&alice, room, "a moderator removes this", "mod-1", &target, NULL, &st),
			RPC_OK, &st);
		sr.room_id = room;
		sr.user_id = bob.name;
		sr.role = PARLEY__V1__ROLE__MODERATOR;
		TH_CODE(mx_call(mx_rooms, &parley__v1__rooms__descriptor, "SetRole", &alice,
				&sr.base, &resp, &st),
			RPC_OK, &st);
		protobuf_c_message_free_unpacked(resp, NULL);
		TH_CODE(del(&bob, room, target, "mod-b3", &dseq, &st), RPC_OK, &st);
		TH_CHECK(dseq > target, "the moderator's delete is an event of its own (%llu)",
			 (unsigned long long)dseq);
		sr.role = PARLEY__V1__ROLE__MEMBER;
		TH_CODE(mx_call(mx_rooms, &parley__v1__rooms__descriptor, "SetRole", &alice,
				&sr.base, &resp, &st),
			RPC_OK, &st);
		protobuf_c_message_free_unpacked(resp, NULL);
		TH_CODE(mx_send(&alice, room, "and keeps this", "mod-2", &target, NULL, &st), RPC_OK,
			&st);
		REFUSED(del(&bob, room, target, "mod-b4", &s_, &st_), RPC_PERMISSION_DENIED,
			"only its sender or a moderator or admin");
		printf("ok a moderator deletes another's message; a member again, no longer\n");
	}
	REFUSED(del(&alice, room, 99999, "a2", &s_, &st_), RPC_NOT_FOUND, "no event at seq");
	REFUSED(del(&alice, room, joined, "a1", &s_, &st_), RPC_FAILED_PRECONDITION,
		"not a chat message");

	/* Delete: a secret edited once, deleted, the process killed at once. */
	snprintf(secret, sizeof(secret), "zebra-secret-%d-first", (int)getpid());
	snprintf(second, sizeof(second), "zebra-secret-%d-second", (int)getpid());
	snprintf(kept, sizeof(kept), "zebra-kept-%d-message", (int)getpid());
	TH_CODE(mx_send(&alice, room, kept, "k1", &other, NULL, &st), RPC_OK, &st);
	TH_CODE(mx_send(&alice, room, secret, "s1", &x, NULL, &st), RPC_OK, &st);
	TH_CODE(edit(&alice, room, x, second, "s2", &e1, NULL, &st), RPC_OK, &st);
	TH_CODE(del(&alice, room, x, "s3", &d1, &st), RPC_OK, &st);
	th_kill9(&mx_d);
	snprintf(path, sizeof(path), "%s/data.mdb", mx_d.dir);
	TH_CHECK(file_has(path, kept), "a message not deleted is in data.mdb (the grep works)");
	TH_CHECK(!file_has(path, secret), "the deleted text is gone from data.mdb");
	TH_CHECK(!file_has(path, second), "the deleted message's edit is gone from data.mdb");

	TH_CHECK(th_restart(&mx_d), "restart after kill -9");
	TH_CODE(del(&alice, room, x, "s3", &d1_again, &st), RPC_OK, &st);
	TH_CHECK(d1_again == d1, "a retried Delete returns the original seq (%llu, %llu)",
		 (unsigned long long)d1_again, (unsigned long long)d1);
	h = event_at(&bob, room, x, &ev);
	TH_CHECK(ev->body_case == PARLEY__V1__EVENT__BODY_MESSAGE && ev->message->redacted &&
			 ev->message->text[0] == '\0' && strcmp(ev->sender, alice.name) == 0,
		 "the deleted message stays, redacted, without text");
	protobuf_c_message_free_unpacked(&h->base, NULL);
	h = event_at(&bob, room, e1, &ev);
	TH_CHECK(ev->body_case == PARLEY__V1__EVENT__BODY_EDIT && ev->edit->text[0] == '\0' &&
			 ev->edit->target_seq == x,
		 "the edit of a deleted message has no text");
	protobuf_c_message_free_unpacked(&h->base, NULL);
	h = event_at(&bob, room, d1, &ev);
	TH_CHECK(ev->body_case == PARLEY__V1__EVENT__BODY_REDACTION &&
			 ev->redaction->target_seq == x,
		 "the MessageRedaction event names its target");
	head = h->head_seq;
	protobuf_c_message_free_unpacked(&h->base, NULL);
	TH_CHECK(head == d1, "nothing else was written");
	REFUSED(edit(&alice, room, x, "back", "s4", &s_, NULL, &st_), RPC_FAILED_PRECONDITION,
		"was deleted");
	REFUSED(del(&alice, room, x, "s5", &s_, &st_), RPC_FAILED_PRECONDITION, "was deleted");
	REFUSED(del(&alice, room, x, "s1", &s_, &st_), RPC_INVALID_ARGUMENT, "already used");

	/* A retried Edit after the restart also returns the original. */
	TH_CODE(edit(&alice, room, x, second, "s2", &e1_again, NULL, &st), RPC_OK, &st);
	TH_CHECK(e1_again == e1, "a retried Edit after a restart returns the original seq");

	mx_stop();
	printf("chat_edit_test: ok\n");
	return 0;
}

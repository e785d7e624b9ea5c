/*
 * messaging_full_test.c — a full store refuses new messages with
 * RESOURCE_EXHAUSTED and nothing else breaks: retries of stored sends still
 * answer, history and sessions still read, the service stays up.
 */
#include <string.h>

#include "mx_util.h"

#define TEXT_BYTES 4000
#define MAX_SENDS 2000 /* the 2 MiB map fills long before */

int
main(void)
{
	static const char *const extra[] = {"--map-size", "2", NULL};
	static char text[TEXT_BYTES + 1];
	char room[65], cmid[16], sid[65];
	const char *rooms[1] = {room};
	uint64_t seq, first_seq = 0, last_seq = 0, again, head;
	Parley__V1__GetHistoryResponse *h;
	Parley__V1__PollResponse *p;
	rpc_code code = RPC_OK;
	int sent = 0;
	rpc_status st;
	mx_user a;

	mx_start(extra);
	mx_users_new(&a, 1, "full");
	snprintf(room, sizeof(room), "%s", th_name("full"));
	TH_CODE(mx_create_room(&a, room, &st), RPC_OK, &st);
	mx_wait_membership(&a, room, a.name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED);

	memset(text, 'f', TEXT_BYTES);
	for (sent = 0; sent < MAX_SENDS; sent++) {
		snprintf(cmid, sizeof(cmid), "f%d", sent);
		code = mx_send(&a, room, text, cmid, &seq, NULL, &st);
		if (code != RPC_OK)
			break;
		if (first_seq == 0)
			first_seq = seq;
		last_seq = seq;
	}
	TH_CODE(code, RPC_RESOURCE_EXHAUSTED, &st);
	TH_CHECK(strstr(st.message, "full") != NULL && strstr(st.message, "map size") != NULL,
		 "says the map is full, not the disk: %s", st.message);
	TH_CHECK(sent > 10, "some messages fit first (%d)", sent);
	printf("ok the store filled after %d messages: %s\n", sent, st.message);

	/* Still refused, still up. */
	TH_CODE(mx_send(&a, room, text, "one-more", &seq, NULL, &st), RPC_RESOURCE_EXHAUSTED, &st);
	TH_CHECK(th_wait_serving(mx_d.messaging, 5000), "messaging serving");
	/* A retry of a stored send is answered from its record. */
	TH_CODE(mx_send(&a, room, text, "f0", &again, NULL, &st), RPC_OK, &st);
	TH_CHECK(again == first_seq, "retry answered: %llu", (unsigned long long)again);
	/* Reading goes on. */
	TH_CODE(mx_history(&a, room, 0, 0, 0, &h, &st), RPC_OK, &st);
	TH_CHECK(h->head_seq == last_seq, "history intact up to %llu", (unsigned long long)last_seq);
	protobuf_c_message_free_unpacked(&h->base, NULL);
	TH_CODE(mx_open(&a, 1, rooms, &last_seq, sid, &head, &st), RPC_OK, &st);
	TH_CHECK(head == last_seq, "open sees the head");
	TH_CODE(mx_poll(&a, sid, 0, 0, &p, &st), RPC_OK, &st);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	TH_CODE(mx_close(&a, sid, &st), RPC_OK, &st);
	printf("ok a full store still answers retries, history and sessions\n");
	mx_stop();
	return 0;
}

/*
 * messaging_login_test.c — a messaging session belongs to the login (token)
 * that opened it and ends with it: another token of the same user may not
 * Poll or Close it, and after Logout a Poll that was already waiting gets
 * UNAUTHENTICATED, never a message sent after the Logout.
 */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "mx_util.h"
#include "parley/v1/auth.pb-c.h"

struct poll_job {
	const mx_user *u;
	const char *sid;
	rpc_code code;
	rpc_status st;
	size_t n_events;
	bool done; /* atomic */
};

static void *
poll_job(void *arg)
{
	struct poll_job *j = arg;
	Parley__V1__PollResponse *p = NULL;

	j->code = mx_poll(j->u, j->sid, 20000, 0, &p, &j->st);
	if (p != NULL) {
		j->n_events = p->n_events;
		protobuf_c_message_free_unpacked(&p->base, NULL);
	}
	__atomic_store_n(&j->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static void
logout(const mx_user *u)
{
	Parley__V1__LogoutRequest req = PARLEY__V1__LOGOUT_REQUEST__INIT;
	rpc_call_opts o = {.timeout_ms = 20000, .token = u->token};
	ProtobufCMessage *resp = NULL;
	rpc_status st;

	TH_CODE(rpc_client_call(mx_auth, &parley__v1__auth__descriptor, "Logout", &req.base, &resp,
				&o, &st),
		RPC_OK, &st);
	protobuf_c_message_free_unpacked(resp, NULL);
}

int
main(void)
{
	char room[65], sid[65];
	const char *rooms[1] = {room};
	struct poll_job j1 = {0}, j2 = {0}, *waiting;
	Parley__V1__PollResponse *p;
	uint64_t head, seq;
	pthread_t t1, t2;
	mx_user u[2], a2;
	rpc_status st;

	mx_start(NULL);
	mx_users_new(u, 2, "login");
	/* A second login of the same user: another token. */
	a2 = u[0];
	th_register_login(mx_auth, a2.name, a2.token, sizeof(a2.token));
	TH_CHECK(strcmp(a2.token, u[0].token) != 0, "two logins, two tokens");

	snprintf(room, sizeof(room), "%s", th_name("login"));
	TH_CODE(mx_create_room(&u[0], room, &st), RPC_OK, &st);
	TH_CODE(mx_join(&u[1], room, &st), RPC_OK, &st);
	mx_wait_membership(&u[0], room, u[1].name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED);
	TH_CODE(mx_open(&u[0], 1, rooms, NULL, sid, &head, &st), RPC_OK, &st);
	/* Catch up to now, so the Polls below wait. */
	do {
		TH_CODE(mx_poll(&u[0], sid, 0, 0, &p, &st), RPC_OK, &st);
		head = p->n_events;
		protobuf_c_message_free_unpacked(&p->base, NULL);
	} while (head > 0);

	/* Another token of the same user may neither Poll nor Close it. */
	TH_CODE(mx_poll(&a2, sid, 0, 0, &p, &st), RPC_PERMISSION_DENIED, &st);
	TH_CHECK(strstr(st.message, "another login of yours") != NULL, "says why: %s", st.message);
	TH_CODE(mx_close(&a2, sid, &st), RPC_PERMISSION_DENIED, &st);
	TH_CHECK(strstr(st.message, "another login of yours") != NULL, "says why: %s", st.message);
	printf("ok another login of the same user is refused: %s\n", st.message);

	/* Two Polls on the session: the second to arrive answers the first
	 * empty, so once one has returned the other is known to be waiting. */
	j1.u = j2.u = &u[0];
	j1.sid = j2.sid = sid;
	TH_CHECK(pthread_create(&t1, NULL, poll_job, &j1) == 0 &&
			 pthread_create(&t2, NULL, poll_job, &j2) == 0,
		 "threads");
	while (!__atomic_load_n(&j1.done, __ATOMIC_ACQUIRE) &&
	       !__atomic_load_n(&j2.done, __ATOMIC_ACQUIRE))
		usleep(1000);
	waiting = __atomic_load_n(&j1.done, __ATOMIC_ACQUIRE) ? &j2 : &j1;
	{
		struct poll_job *first = waiting == &j1 ? &j2 : &j1;

		TH_CODE(first->code, RPC_OK, &first->st);
		TH_CHECK(first->n_events == 0, "the replaced Poll is answered empty");
	}

	/* Logout, then a message from the other member. */
	logout(&u[0]);
	TH_CODE(mx_send(&u[1], room, "after the logout", "", &seq, NULL, &st), RPC_OK, &st);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	TH_CHECK(waiting->code == RPC_UNAUTHENTICATED,
		 "the waiting Poll must not deliver what was sent after Logout: got %s (%s), %zu "
		 "events",
		 rpc_code_name(waiting->code), waiting->st.message, waiting->n_events);
	TH_CHECK(strstr(waiting->st.message, "your login ended") != NULL, "says why: %s",
		 waiting->st.message);
	printf("ok after Logout the waiting Poll gets UNAUTHENTICATED: %s\n", waiting->st.message);

	/* The session ended with its login; the other login goes on. */
	TH_CODE(mx_poll(&a2, sid, 0, 0, &p, &st), RPC_NOT_FOUND, &st);
	TH_CODE(mx_open(&a2, 1, rooms, NULL, sid, &head, &st), RPC_OK, &st);
	TH_CHECK(head == seq, "the other login opens a session at %llu", (unsigned long long)head);
	TH_CODE(mx_close(&a2, sid, &st), RPC_OK, &st);
	printf("ok the session ended with its login; another login works\n");
	mx_stop();
	return 0;
}

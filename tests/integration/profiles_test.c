/*
 * profiles_test.c — Auth.UpdateProfile, GetUsers, DeleteAccount (issue 10,
 * item 1) on one real parleyd with every service, over tcp: profile
 * changes, who sees which email, the bounds of GetUsers, and an account
 * deleted: password checked and limited like Login, sessions revoked,
 * rooms left (LEFT in each timeline, past messages kept), the id never
 * registered again.
 */
#include <string.h>

#include "mx_util.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/rooms.pb-c.h"

static rpc_code
ac(const char *token, const char *method, const ProtobufCMessage *req, ProtobufCMessage **resp,
   rpc_status *st)
{
	rpc_call_opts o = {.timeout_ms = mx_timeout_ms, .token = token};
	ProtobufCMessage *r = NULL;
	rpc_code code = rpc_client_call(mx_auth, &parley__v1__auth__descriptor, method, req, &r,
					&o, st);

	if (resp != NULL)
		*resp = r;
	else if (r != NULL)
		protobuf_c_message_free_unpacked(r, NULL);
	return code;
}

static void
expect(rpc_code got, rpc_code want, const rpc_status *st, const char *msg, const char *what)
{
	TH_CHECK(got == want, "%s: got %s (%s), want %s", what, rpc_code_name(got),
		 got == RPC_OK ? "" : st->message, rpc_code_name(want));
	if (want != RPC_OK && msg != NULL)
		TH_CHECK(strstr(st->message, msg) != NULL, "%s: message '%s' lacks '%s'", what,
			 st->message, msg);
}

static rpc_code
update_profile(const mx_user *u, const char *name, const char *email,
	       Parley__V1__UpdateProfileResponse **resp, rpc_status *st)
{
	Parley__V1__UpdateProfileRequest r = PARLEY__V1__UPDATE_PROFILE_REQUEST__INIT;

	r.display_name = (char *)name;
	r.email = (char *)email;
	return ac(u->token, "UpdateProfile", &r.base, (ProtobufCMessage **)resp, st);
}

static rpc_code
get_users(const mx_user *u, char **ids, size_t n, Parley__V1__GetUsersResponse **resp,
	  rpc_status *st)
{
	Parley__V1__GetUsersRequest r = PARLEY__V1__GET_USERS_REQUEST__INIT;

	r.user_ids = ids;
	r.n_user_ids = n;
	return ac(u->token, "GetUsers", &r.base, (ProtobufCMessage **)resp, st);
}

static rpc_code
delete_account(const char *token, const char *password, rpc_status *st)
{
	Parley__V1__DeleteAccountRequest r = PARLEY__V1__DELETE_ACCOUNT_REQUEST__INIT;

	r.password = (char *)password;
	return ac(token, "DeleteAccount", &r.base, NULL, st);
}

static rpc_code
login(const char *user, const char *password, rpc_status *st)
{
	Parley__V1__LoginRequest r = PARLEY__V1__LOGIN_REQUEST__INIT;

	r.user_id = (char *)user;
	r.password = (char *)password;
	return ac(NULL, "Login", &r.base, NULL, st);
}

static void
test_profiles(const mx_user *a, const mx_user *b)
{
	Parley__V1__UpdateProfileResponse *u;
	Parley__V1__GetUsersResponse *g;
	char *ids[101];
	rpc_status st;

	TH_CODE(update_profile(a, "Alice A.", "alice@example.org", &u, &st), RPC_OK, &st);
	TH_CHECK(strcmp(u->user->display_name, "Alice A.") == 0 &&
		     strcmp(u->user->email, "alice@example.org") == 0,
		 "both changed");
	protobuf_c_message_free_unpacked(&u->base, NULL);
	TH_CODE(update_profile(a, "Alice", "", &u, &st), RPC_OK, &st);
	TH_CHECK(strcmp(u->user->display_name, "Alice") == 0 &&
		     strcmp(u->user->email, "alice@example.org") == 0,
		 "an empty email leaves it unchanged");
	protobuf_c_message_free_unpacked(&u->base, NULL);
	expect(update_profile(a, "bad\tname", "", NULL, &st), RPC_INVALID_ARGUMENT, &st,
	       "display_name must be 1 to 64 characters", "a tab in a display name");
	expect(update_profile(a, "", "two@@at", NULL, &st), RPC_INVALID_ARGUMENT, &st,
	       "email must be at most 254 bytes with exactly one '@'", "a bad email");
	expect(update_profile(a, "0123456789012345678901234567890123456789012345678901234567890123"
				 "4",
			      "", NULL, &st),
	       RPC_INVALID_ARGUMENT, &st, "display_name must be", "65 characters");

	ids[0] = (char *)a->name;
	ids[1] = (char *)b->name;
	ids[2] = (char *)"nobody-at-all";
	ids[3] = (char *)a->name;
	TH_CODE(get_users(b, ids, 4, &g, &st), RPC_OK, &st);
	TH_CHECK(g->n_users == 2, "unknown left out, each once (%zu)", g->n_users);
	TH_CHECK(strcmp(g->users[0]->user_id, a->name) == 0 &&
		     strcmp(g->users[0]->display_name, "Alice") == 0 &&
		     g->users[0]->email[0] == '\0' && g->users[0]->created_at_ms > 0,
		 "another's profile without the email");
	protobuf_c_message_free_unpacked(&g->base, NULL);
	TH_CODE(get_users(a, ids, 1, &g, &st), RPC_OK, &st);
	TH_CHECK(g->n_users == 1 && strcmp(g->users[0]->email, "alice@example.org") == 0,
		 "one's own email");
	protobuf_c_message_free_unpacked(&g->base, NULL);
	for (int i = 0; i < 101; i++)
		ids[i] = (char *)a->name;
	expect(get_users(a, ids, 101, NULL, &st), RPC_INVALID_ARGUMENT, &st,
	       "user_ids holds 101 ids; at most 100", "101 ids");
	TH_CODE(get_users(a, ids, 100, &g, &st), RPC_OK, &st);
	protobuf_c_message_free_unpacked(&g->base, NULL);
	ids[1] = (char *)"Not An Id";
	expect(get_users(a, ids, 2, NULL, &st), RPC_INVALID_ARGUMENT, &st,
	       "user_ids[1] is not a user id", "a bad id");
	expect(get_users(&(mx_user){.token = "bogus"}, ids, 1, NULL, &st), RPC_UNAUTHENTICATED,
	       &st, NULL, "without a valid token");
	printf("ok UpdateProfile and GetUsers\n");
}

static void
test_delete(const mx_user *a)
{
	mx_user d;
	char r1[65], r2[65], password[80], *ids[1];
	Parley__V1__ListMyRoomsRequest mr = PARLEY__V1__LIST_MY_ROOMS_REQUEST__INIT;
	Parley__V1__RegisterRequest reg = PARLEY__V1__REGISTER_REQUEST__INIT;
	Parley__V1__GetUsersResponse *g;
	Parley__V1__GetHistoryResponse *h;
	rpc_call_opts o = {.timeout_ms = mx_timeout_ms};
	ProtobufCMessage *resp;
	uint64_t seq;
	bool kept = false;
	rpc_status st;

	mx_user_new(&d, "del");
	snprintf(password, sizeof(password), "password-%s", d.name);
	snprintf(r1, sizeof(r1), "%s", th_name("dr"));
	snprintf(r2, sizeof(r2), "%s", th_name("dr"));
	TH_CODE(mx_create_room(a, r1, &st), RPC_OK, &st);
	TH_CODE(mx_create_room(&d, r2, &st), RPC_OK, &st); /* d is its ADMIN */
	TH_CODE(mx_join(a, r2, &st), RPC_OK, &st);
	TH_CODE(mx_join(&d, r1, &st), RPC_OK, &st);
	TH_CODE(mx_send(&d, r1, "my last words", NULL, &seq, NULL, &st), RPC_OK, &st);

	expect(delete_account(d.token, "", &st), RPC_INVALID_ARGUMENT, &st,
	       "password is required", "no password");
	expect(delete_account(d.token, "wrong-password", &st), RPC_PERMISSION_DENIED, &st,
	       "password is wrong", "a wrong password");
	expect(delete_account("bogus", password, &st), RPC_UNAUTHENTICATED, &st, NULL,
	       "without a session");
	TH_CODE(delete_account(d.token, password, &st), RPC_OK, &st);

	/* Every session revoked, the password gone with the profile. */
	o.token = d.token;
	expect(rpc_client_call(mx_rooms, &parley__v1__rooms__descriptor, "ListMyRooms", &mr.base,
			       &resp, &o, &st),
	       RPC_UNAUTHENTICATED, &st, NULL, "the old session");
	expect(login(d.name, password, &st), RPC_UNAUTHENTICATED, &st,
	       "invalid user id or password", "Login to a deleted account");
	reg.user_id = d.name;
	reg.password = password;
	reg.display_name = (char *)"Again";
	expect(ac(NULL, "Register", &reg.base, NULL, &st), RPC_ALREADY_EXISTS, &st,
	       "already exists", "registering the id again");
	ids[0] = d.name;
	TH_CODE(get_users(a, ids, 1, &g, &st), RPC_OK, &st);
	TH_CHECK(g->n_users == 0, "a deleted profile is left out");
	protobuf_c_message_free_unpacked(&g->base, NULL);

	/* Every room left before DeleteAccount answered: LEFT in each
	 * timeline (the messaging service copies it in), messages kept. */
	mx_wait_membership(a, r1, d.name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT);
	mx_wait_membership(a, r2, d.name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT);
	TH_CODE(mx_history(a, r1, 0, 0, 0, &h, &st), RPC_OK, &st);
	for (size_t i = 0; i < h->n_events; i++)
		kept |= h->events[i]->body_case == PARLEY__V1__EVENT__BODY_MESSAGE &&
			strcmp(h->events[i]->sender, d.name) == 0 &&
			strcmp(h->events[i]->message->text, "my last words") == 0;
	TH_CHECK(kept, "past messages stay under the id");
	protobuf_c_message_free_unpacked(&h->base, NULL);

	reg.user_id = (char *)"parley";
	expect(ac(NULL, "Register", &reg.base, NULL, &st), RPC_INVALID_ARGUMENT, &st,
	       "is reserved", "registering 'parley'");
	printf("ok DeleteAccount: sessions revoked, rooms left, id kept\n");
}

/* Guessing the password through DeleteAccount is limited like Login. */
static void
test_delete_limited(void)
{
	mx_user v;
	rpc_status st;
	rpc_code code = RPC_OK;
	int tries;

	mx_user_new(&v, "lim");
	for (tries = 0; tries < 10; tries++) {
		code = delete_account(v.token, "not-the-password", &st);
		if (code != RPC_PERMISSION_DENIED)
			break;
	}
	expect(code, RPC_RESOURCE_EXHAUSTED, &st, NULL, "guess after guess");
	TH_CHECK(st.retry_after_ms > 0 && tries >= 5, "retry_after_ms %u after %d wrong guesses",
		 st.retry_after_ms, tries);
	printf("ok DeleteAccount limited after %d wrong passwords: %s\n", tries, st.message);
}

int
main(void)
{
	mx_user a, b;

	mx_start(NULL);
	mx_user_new(&a, "pa");
	mx_user_new(&b, "pb");
	test_profiles(&a, &b);
	test_delete(&a);
	test_delete_limited();
	mx_stop();
	return 0;
}

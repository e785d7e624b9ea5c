/*
 * listmembers.c — ListMembers, and the rooms service's questions to Auth
 * (GetUsers: display names; does this user exist?) and to Messaging
 * (parley.internal.v1.Presence/Online: who is connected).
 *
 * ListMembers is for members only. A page is read in one LMDB read
 * transaction (user_id order, the page token says "after this user_id",
 * authenticated like ListRooms's), then completed by one GetUsers call and
 * one Online call for the whole page, both made with the caller's token,
 * after the transaction ended. A member whose account is gone meanwhile
 * keeps an empty display_name. When messaging cannot say who is online the
 * call fails (UNAVAILABLE): `online` is never guessed.
 *
 * Locking: none of its own; rpc clients are thread-safe.
 */
#include <stdio.h>
#include <string.h>

#include "rooms_int.h"
#include "parley/internal/v1/presence.pb-c.h"

#define PAGE_DEFAULT 50
#define PAGE_MAX 100	/* one GetUsers call (at most 100 ids) per page */
#define PEER_TIMEOUT_MS 5000

static rpc_call_opts
peer_opts(rpc_call *call)
{
	rpc_call_opts o = {.timeout_ms = PEER_TIMEOUT_MS, .token = rpc_call_token(call)};

	o.deadline_ms = rpc_call_deadline(call);
	return o;
}

/* A peer's failure as this call's: the peer's own refusals are ours. */
static rpc_code
peer_failed(rpc_status *st, const char *peer, rpc_code code)
{
	char why[RPC_STATUS_MESSAGE_MAX];

	if (code == RPC_UNAUTHENTICATED || code == RPC_PERMISSION_DENIED ||
	    code == RPC_INVALID_ARGUMENT)
		return code;
	snprintf(why, sizeof(why), "%s", st->message);
	return rpc_status_set(st, code == RPC_DEADLINE_EXCEEDED ? code : RPC_UNAVAILABLE,
			      "%s service: %s %s", peer, rpc_code_name(code), why);
}

rpc_code
rooms_get_users(rooms_service *r, rpc_call *call, char **ids, size_t n,
		Parley__V1__GetUsersResponse **resp, rpc_status *st)
{
	Parley__V1__GetUsersRequest req = PARLEY__V1__GET_USERS_REQUEST__INIT;
	rpc_call_opts o = peer_opts(call);
	rpc_code code;

	req.user_ids = ids;
	req.n_user_ids = n;
	code = rpc_client_call(r->auth, &parley__v1__auth__descriptor, "GetUsers", &req.base,
			       (ProtobufCMessage **)resp, &o, st);
	return code == RPC_OK ? RPC_OK : peer_failed(st, "auth", code);
}

rpc_code
rooms_require_user(rooms_service *r, rpc_call *call, const char *user_id)
{
	Parley__V1__GetUsersResponse *resp;
	rpc_status st = {0};
	char *ids[1] = {(char *)user_id};
	bool found;

	if (rooms_get_users(r, call, ids, 1, &resp, &st) != RPC_OK)
		return rpc_call_fail_status(call, &st);
	found = resp->n_users == 1;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	if (!found)
		return rpc_call_fail(call, RPC_NOT_FOUND, "no user '%s'", user_id);
	return RPC_OK;
}

/* Sets members[i]->online from messaging's answer for the page. */
static rpc_code
fill_online(rooms_service *r, rpc_call *call, const char *room_id, char **ids, size_t n,
	    Parley__V1__Member **members, rpc_status *st)
{
	Parley__Internal__V1__OnlineRequest req = PARLEY__INTERNAL__V1__ONLINE_REQUEST__INIT;
	Parley__Internal__V1__OnlineResponse *resp;
	rpc_call_opts o = peer_opts(call);
	rpc_code code;

	if (r->messaging == NULL)
		return rpc_status_set(st, RPC_UNAVAILABLE,
				      "no messaging service address: cannot tell who is online");
	req.room_id = (char *)room_id;
	req.user_ids = ids;
	req.n_user_ids = n;
	code = rpc_client_call(r->messaging, &parley__internal__v1__presence__descriptor,
			       "Online", &req.base, (ProtobufCMessage **)&resp, &o, st);
	if (code != RPC_OK)
		return peer_failed(st, "messaging", code);
	for (size_t i = 0; i < resp->n_online_user_ids; i++)
		for (size_t j = 0; j < n; j++)
			if (strcmp(resp->online_user_ids[i], ids[j]) == 0)
				members[j]->online = true;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return RPC_OK;
}

/* Sets members[i]->display_name from Auth's profiles of the page. */
static rpc_code
fill_names(rooms_service *r, rpc_call *call, char **ids, size_t n,
	   Parley__V1__Member **members, rpc_status *st)
{
	Parley__V1__GetUsersResponse *resp;

	if (rooms_get_users(r, call, ids, n, &resp, st) != RPC_OK)
		return st->code;
	for (size_t i = 0; i < resp->n_users; i++)
		for (size_t j = 0; j < n; j++)
			if (strcmp(resp->users[i]->user_id, ids[j]) == 0)
				members[j]->display_name =
				    rpc_call_strdup(call, resp->users[i]->display_name);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return RPC_OK;
}

struct page_scan {
	rpc_call *call;
	const room_rec *rec;
	const uint8_t *prefix;
	size_t prefix_len;
	Parley__V1__Member **members;
	char **ids;
	size_t n, want;
	bool damaged;
};

static bool
collect_member(void *arg, store_val key, store_val val)
{
	struct page_scan *s = arg;
	size_t n = key.len - s->prefix_len;
	Parley__V1__Member *mb;
	rooms_member m;
	char *id;

	if (key.len <= s->prefix_len || memcmp(key.data, s->prefix, s->prefix_len) != 0)
		return false;
	if (n >= RPC_USER_ID_MAX) {
		s->damaged = true;
		return false;
	}
	id = rpc_call_alloc(s->call, n + 1);
	memcpy(id, (const uint8_t *)key.data + s->prefix_len, n);
	if (!rooms_member_decode(s->rec, id, val, &m)) {
		s->damaged = true;
		return false;
	}
	mb = rpc_call_alloc(s->call, sizeof(*mb));
	parley__v1__member__init(mb);
	mb->user_id = id;
	mb->role = m.role;
	mb->joined_at_ms = m.joined_at_ms;
	s->ids[s->n] = id;
	s->members[s->n++] = mb;
	return s->n < s->want;
}

ROOMS_HANDLER(rooms_handle_list_members)
{
	const Parley__V1__ListMembersRequest *req = (const void *)reqm;
	Parley__V1__ListMembersResponse *resp = (void *)respm;
	rooms_service *r = ctx;
	struct page_scan s = {.call = call};
	uint8_t from[PAIR_KEY_MAX + 1], prefix[ROOM_ID_MAX + 1];
	char after[PAGETOKEN_ROOM_ID_MAX + 1];
	size_t page = req->page_size ? req->page_size : PAGE_DEFAULT, from_len;
	rpc_status st = {0};
	rooms_member me;
	room_rec *rec;
	store_txn *txn;
	store_err err;
	rpc_code code;

	if ((code = rooms_check_room_id(call, req->room_id)) != RPC_OK)
		return code;
	if (req->page_size > PAGE_MAX)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "page_size must be at most %d (0 means %d)", PAGE_MAX,
				     PAGE_DEFAULT);
	after[0] = '\0';
	if (req->page_token[0] != '\0' &&
	    (!pagetoken_decode(r->page_key, req->page_token, after) ||
	     !svc_valid_user_id(after)))
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "page_token is not one this service issued");

	s.prefix_len = strlen(req->room_id) + 1;
	memcpy(prefix, req->room_id, s.prefix_len);
	s.prefix = prefix;
	if (after[0] != '\0') {
		/* Right after "room \0 user" comes "room \0 user \0": user ids
		 * hold no NUL. */
		from_len = rooms_pair_key(from, req->room_id, after);
		from[from_len++] = '\0';
	} else {
		memcpy(from, prefix, s.prefix_len);
		from_len = s.prefix_len;
	}
	s.want = page + 1;
	s.members = rpc_call_alloc(call, s.want * sizeof(*s.members));
	s.ids = rpc_call_alloc(call, s.want * sizeof(*s.ids));

	if ((err = store_begin(r->env, false, &txn)) != STORE_OK)
		return svc_fail_store(call, err, "list members");
	err = rooms_read_room(r, txn, call, req->room_id, &rec);
	if (err == STORE_OK)
		err = rooms_member_get(r, txn, rec, rpc_call_caller(call), &me);
	/* A stranger to a room it may not know of: "no room". */
	if (err == STORE_OK && me.role == PARLEY__V1__ROLE__ROLE_UNSPECIFIED)
		err = rooms_hidden_from_caller(r, txn, call, rec);
	if (err == STORE_OK && me.role == PARLEY__V1__ROLE__ROLE_UNSPECIFIED) {
		store_abort(txn);
		return rpc_call_fail(call, RPC_PERMISSION_DENIED,
				     "you are not a member of room '%s'", req->room_id);
	}
	if (err == STORE_OK) {
		s.rec = rec;
		err = store_scan(txn, r->members, from, from_len, false, collect_member, &s);
		if (err == STORE_OK && s.damaged)
			err = STORE_CORRUPT;
	}
	store_abort(txn);
	if (err == STORE_NOTFOUND)
		return rooms_fail_no_room(call, req->room_id);
	if (err != STORE_OK)
		return svc_fail_store(call, err, "list members");

	if (s.n > page) {
		char *token = rpc_call_alloc(call, PAGETOKEN_TEXT_MAX);

		s.n = page;
		pagetoken_encode(r->page_key, s.ids[page - 1], token);
		resp->next_page_token = token;
	}
	if (s.n > 0 && (fill_names(r, call, s.ids, s.n, s.members, &st) != RPC_OK ||
			fill_online(r, call, req->room_id, s.ids, s.n, s.members, &st) != RPC_OK))
		return rpc_call_fail_status(call, &st);
	resp->members = s.members;
	resp->n_members = s.n;
	return RPC_OK;
}

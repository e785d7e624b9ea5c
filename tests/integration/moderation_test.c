/*
 * moderation_test.c — roles, moderation, PRIVATE and DIRECT rooms (issue
 * 10, items 2, 3): one real parleyd with every service, called over tcp.
 *
 *   - the permission matrix: an ADMIN, a MODERATOR and a MEMBER each try
 *     Kick, Ban, SetRole against each other and Unban, UpdateRoom, Invite;
 *     so do a non-member and a banned user (a fresh room per try)
 *   - bans keep a user out until Unban; the timeline holds KICKED,
 *     BANNED, UNBANNED, INVITED with actor and reason, and RoomUpdate
 *   - a kicked user's waiting Poll delivers nothing after the kick; Send,
 *     Open and GetHistory are refused at once
 *   - PRIVATE rooms: unlisted, joined by Invite only
 *   - a PRIVATE or DIRECT room answers a stranger exactly as a room that
 *     does not exist, in every call that takes a room id (issue 14, item 6)
 *   - DIRECT rooms: one per pair, nobody else joins, reads or sends
 *   - ListMembers: members only, roles, display names, online, paging
 *   - the last ADMIN leaving hands ADMIN on
 */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "mx_util.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/rooms.pb-c.h"

#define K(x) PARLEY__V1__MEMBERSHIP_CHANGE__KIND__##x
#define ROLE(x) PARLEY__V1__ROLE__##x

static mx_user A, M, U, N, B; /* admin, moderator, member, non-member, banned */

static rpc_code
rc(const mx_user *u, const char *method, const ProtobufCMessage *req, ProtobufCMessage **resp,
   rpc_status *st)
{
	return mx_call(mx_rooms, &parley__v1__rooms__descriptor, method, u, req, resp, st);
}

static rpc_code
create(const mx_user *u, const char *room, Parley__V1__Visibility vis, rpc_status *st)
{
	Parley__V1__CreateRoomRequest r = PARLEY__V1__CREATE_ROOM_REQUEST__INIT;

	r.room_id = (char *)room;
	r.visibility = vis;
	return rc(u, "CreateRoom", &r.base, NULL, st);
}

/*
 * Kick, Ban, Unban and Invite: their requests are the same fields, room_id,
 * user_id and (Kick, Ban) reason, so one builder fills them through the
 * method's input descriptor. reason NULL: the request has none.
 */
static rpc_code
on_user(const mx_user *u, const char *method, const char *room, const char *user,
	const char *reason, rpc_status *st)
{
	const ProtobufCMethodDescriptor *m =
	    protobuf_c_service_descriptor_get_method_by_name(&parley__v1__rooms__descriptor,
							     method);
	const char *const names[] = {"room_id", "user_id", "reason"};
	const char *const values[] = {room, user, reason};
	union {
		ProtobufCMessage base;
		Parley__V1__KickRequest kick;
		Parley__V1__BanRequest ban;
		Parley__V1__UnbanRequest unban;
		Parley__V1__InviteRequest invite;
	} r;

	TH_CHECK(m != NULL && m->input->sizeof_message <= sizeof(r),
		 "%s is not a Rooms method of on_user's", method);
	protobuf_c_message_init(m->input, &r);
	for (int i = 0; i < 3; i++) {
		const ProtobufCFieldDescriptor *f;

		if (values[i] == NULL)
			continue;
		f = protobuf_c_message_descriptor_get_field_by_name(m->input, names[i]);
		TH_CHECK(f != NULL && f->type == PROTOBUF_C_TYPE_STRING, "%s has no string %s",
			 method, names[i]);
		*(const char **)((char *)&r + f->offset) = values[i];
	}
	return rc(u, method, &r.base, NULL, st);
}

static rpc_code
set_role(const mx_user *u, const char *room, const char *user, Parley__V1__Role role,
	 rpc_status *st)
{
	Parley__V1__SetRoleRequest r = PARLEY__V1__SET_ROLE_REQUEST__INIT;

	r.room_id = (char *)room;
	r.user_id = (char *)user;
	r.role = role;
	return rc(u, "SetRole", &r.base, NULL, st);
}

static rpc_code
update(const mx_user *u, const char *room, const char *name, const char *topic,
       Parley__V1__UpdateRoomResponse **resp, rpc_status *st)
{
	Parley__V1__UpdateRoomRequest r = PARLEY__V1__UPDATE_ROOM_REQUEST__INIT;

	r.room_id = (char *)room;
	r.name = (char *)name;
	r.topic = (char *)topic;
	return rc(u, "UpdateRoom", &r.base, (ProtobufCMessage **)resp, st);
}

static rpc_code
list_members(const mx_user *u, const char *room, uint32_t size, const char *token,
	     Parley__V1__ListMembersResponse **resp, rpc_status *st)
{
	Parley__V1__ListMembersRequest r = PARLEY__V1__LIST_MEMBERS_REQUEST__INIT;

	r.room_id = (char *)room;
	r.page_size = size;
	r.page_token = (char *)(token ? token : "");
	return rc(u, "ListMembers", &r.base, (ProtobufCMessage **)resp, st);
}

static rpc_code
open_direct(const mx_user *u, const char *user, Parley__V1__OpenDirectResponse **resp,
	    rpc_status *st)
{
	Parley__V1__OpenDirectRequest r = PARLEY__V1__OPEN_DIRECT_REQUEST__INIT;

	r.user_id = (char *)user;
	return rc(u, "OpenDirect", &r.base, (ProtobufCMessage **)resp, st);
}

/* The role of user in room as ListMembers tells (ROLE_UNSPECIFIED: not
 * listed), asked by asker. */
static Parley__V1__Role
role_of(const mx_user *asker, const char *room, const char *user)
{
	Parley__V1__ListMembersResponse *l;
	Parley__V1__Role role = ROLE(ROLE_UNSPECIFIED);
	rpc_status st;

	TH_CODE(list_members(asker, room, 100, NULL, &l, &st), RPC_OK, &st);
	for (size_t i = 0; i < l->n_members; i++)
		if (strcmp(l->members[i]->user_id, user) == 0)
			role = l->members[i]->role;
	protobuf_c_message_free_unpacked(&l->base, NULL);
	return role;
}

static void
ok(rpc_code code, const rpc_status *st, const char *what)
{
	mx_expect(code, RPC_OK, st, NULL, what);
}

/* A PUBLIC room where A is ADMIN, M MODERATOR, U MEMBER, B banned. */
static void
setup(char *room)
{
	rpc_status st;

	snprintf(room, 65, "%s", th_name("mod"));
	ok(create(&A, room, PARLEY__V1__VISIBILITY__PUBLIC, &st), &st, "create");
	ok(mx_join(&M, room, &st), &st, "M joins");
	ok(mx_join(&U, room, &st), &st, "U joins");
	ok(mx_join(&B, room, &st), &st, "B joins");
	ok(set_role(&A, room, M.name, ROLE(MODERATOR), &st), &st, "A makes M MODERATOR");
	ok(on_user(&A, "Ban", room, B.name, "spam", &st), &st, "A bans B");
}

enum op { KICK, BAN, SETROLE, UNBAN, UPDATE, INVITE };
static const char *const op_names[] = {"Kick", "Ban", "SetRole", "Unban", "UpdateRoom",
				       "Invite"};

static rpc_code
do_op(enum op op, const mx_user *actor, const char *room, const mx_user *target, rpc_status *st)
{
	switch (op) {
	case KICK:
		return on_user(actor, "Kick", room, target->name, "matrix", st);
	case BAN:
		return on_user(actor, "Ban", room, target->name, "matrix", st);
	case SETROLE:
		return set_role(actor, room, target->name,
				target == &U ? ROLE(MODERATOR) : ROLE(MEMBER), st);
	case UNBAN:
		return on_user(actor, "Unban", room, B.name, NULL, st);
	case UPDATE:
		return update(actor, room, "", "a new topic", NULL, st);
	default:
		return on_user(actor, "Invite", room, N.name, NULL, st);
	}
}

static int
rank(const mx_user *u)
{
	return u == &A ? 3 : u == &M ? 2 : u == &U ? 1 : 0;
}

/* What the rules say actor gets for op on target, and a piece of the
 * message when refused. */
static rpc_code
expected(enum op op, const mx_user *actor, const mx_user *target, const char **msg)
{
	if (rank(actor) == 0) {
		*msg = "you are not a member of room";
		return RPC_PERMISSION_DENIED;
	}
	if (op == SETROLE) {
		if (actor != &A) {
			*msg = "needs the ADMIN role; you are";
			return RPC_PERMISSION_DENIED;
		}
		if (target == &A) {
			*msg = "must keep at least one ADMIN";
			return RPC_FAILED_PRECONDITION;
		}
		return RPC_OK;
	}
	if (actor == &U) {
		*msg = "needs the MODERATOR role or above; you are MEMBER";
		return RPC_PERMISSION_DENIED;
	}
	if ((op == KICK || op == BAN) && rank(target) >= rank(actor)) {
		*msg = op == KICK ? "may kick only members whose role is below yours"
				  : "may ban only users whose role is below yours";
		return RPC_PERMISSION_DENIED;
	}
	return RPC_OK;
}

/* After a call that succeeded: its effect is there. */
static void
check_effect(enum op op, const char *room, const mx_user *target)
{
	rpc_status st;

	switch (op) {
	case KICK:
		TH_CHECK(role_of(&A, room, target->name) == ROLE(ROLE_UNSPECIFIED), "kicked out");
		ok(mx_join(target, room, &st), &st, "a kicked user may join again");
		break;
	case BAN:
		TH_CHECK(role_of(&A, room, target->name) == ROLE(ROLE_UNSPECIFIED), "banned out");
		mx_expect(mx_join(target, room, &st), RPC_PERMISSION_DENIED, &st,
		          "you are banned from room", "a banned user joins");
		break;
	case SETROLE:
		TH_CHECK(role_of(&A, room, target->name) ==
			     (target == &U ? ROLE(MODERATOR) : ROLE(MEMBER)),
			 "role set");
		break;
	case UNBAN:
		ok(mx_join(&B, room, &st), &st, "an unbanned user joins");
		break;
	case UPDATE:
		break;
	case INVITE:
		ok(mx_join(&N, room, &st), &st, "the invited user joins");
		break;
	}
}

static void
test_matrix(void)
{
	const mx_user *actors[] = {&A, &M, &U, &N, &B};
	const mx_user *targets[] = {&A, &M, &U};
	int cases = 0;

	for (size_t a = 0; a < 5; a++)
		for (int op = KICK; op <= INVITE; op++)
			for (size_t t = 0; t < (op <= SETROLE ? 3u : 1u); t++) {
				char room[65], what[160];
				const char *msg = NULL;
				rpc_code want;
				rpc_status st;

				setup(room);
				want = expected(op, actors[a], targets[t], &msg);
				snprintf(what, sizeof(what), "%s by %s on %s", op_names[op],
					 actors[a]->name, op <= SETROLE ? targets[t]->name : "-");
				mx_expect(do_op(op, actors[a], room, targets[t], &st), want, &st,
				          msg, what);
				if (want == RPC_OK)
					check_effect(op, room, targets[t]);
				cases++;
			}
	printf("ok permission matrix: %d cases\n", cases);
}

/* The newest membership event of user in room, or NULL; caller frees. */
static Parley__V1__Event *
find_event(const mx_user *reader, const char *room, const char *user, int kind)
{
	size_t n;
	Parley__V1__Event **tl = mx_timeline(reader, room, &n), *found = NULL;

	for (size_t i = n; i-- > 0;) {
		Parley__V1__Event *e = tl[i];
		bool hit = found == NULL && strcmp(e->sender, user) == 0 &&
			   (kind < 0 ? e->body_case == PARLEY__V1__EVENT__BODY_ROOM_UPDATE
				     : e->body_case == PARLEY__V1__EVENT__BODY_MEMBERSHIP &&
					   (int)e->membership->kind == kind);
		if (hit)
			found = e;
		else
			parley__v1__event__free_unpacked(e, NULL);
	}
	free(tl);
	return found;
}

static void
test_timeline_and_bad_input(void)
{
	char room[65];
	Parley__V1__Event *e;
	Parley__V1__UpdateRoomResponse *u;
	rpc_status st;

	setup(room);
	ok(on_user(&M, "Kick", room, U.name, "be nice", &st), &st, "kick");
	ok(on_user(&M, "Unban", room, B.name, NULL, &st), &st, "unban");
	ok(on_user(&M, "Invite", room, N.name, NULL, &st), &st, "invite");
	ok(update(&M, room, "Renamed", "", &u, &st), &st, "update");
	TH_CHECK(strcmp(u->room->name, "Renamed") == 0 && u->room->topic[0] == '\0',
		 "empty topic = unchanged");
	protobuf_c_message_free_unpacked(&u->base, NULL);

	/* The messaging service copies the rooms log into the timeline. */
	mx_wait_membership(&A, room, N.name, K(INVITED));
	e = find_event(&A, room, U.name, K(KICKED));
	TH_CHECK(e && strcmp(e->membership->actor, M.name) == 0 &&
		     strcmp(e->membership->reason, "be nice") == 0,
		 "KICKED with actor and reason");
	parley__v1__event__free_unpacked(e, NULL);
	e = find_event(&A, room, B.name, K(BANNED));
	TH_CHECK(e && strcmp(e->membership->actor, A.name) == 0 &&
		     strcmp(e->membership->reason, "spam") == 0,
		 "BANNED with actor and reason");
	parley__v1__event__free_unpacked(e, NULL);
	e = find_event(&A, room, B.name, K(UNBANNED));
	TH_CHECK(e && strcmp(e->membership->actor, M.name) == 0, "UNBANNED with actor");
	parley__v1__event__free_unpacked(e, NULL);
	e = find_event(&A, room, N.name, K(INVITED));
	TH_CHECK(e && strcmp(e->membership->actor, M.name) == 0, "INVITED with actor");
	parley__v1__event__free_unpacked(e, NULL);
	for (int i = 0; i < 300 && (e = find_event(&A, room, M.name, -1)) == NULL; i++)
		usleep(20000); /* room updates follow the log like memberships */
	TH_CHECK(e && strcmp(e->room_update->name, "Renamed") == 0, "RoomUpdate in the timeline");
	parley__v1__event__free_unpacked(e, NULL);

	mx_expect(on_user(&A, "Kick", room, "no such user!", "", &st), RPC_INVALID_ARGUMENT, &st,
	          "user_id must be 3 to 32 characters", "kick a bad id");
	mx_expect(on_user(&A, "Kick", room, N.name, "", &st), RPC_FAILED_PRECONDITION, &st,
	          "is not a member of room", "kick a non-member");
	mx_expect(on_user(&A, "Kick", room, M.name, "bad\nreason", &st), RPC_INVALID_ARGUMENT, &st,
	          "reason must be at most 500 characters", "a reason with a newline");
	mx_expect(on_user(&A, "Kick", "No Such Room", M.name, "", &st), RPC_INVALID_ARGUMENT, &st,
	          "room_id must be", "kick in a bad room id");
	mx_expect(on_user(&A, "Kick", "no-such-room", M.name, "", &st), RPC_NOT_FOUND, &st,
	          "no room 'no-such-room'", "kick in no room");
	mx_expect(set_role(&A, room, M.name, ROLE(ROLE_UNSPECIFIED), &st), RPC_INVALID_ARGUMENT,
	          &st, "role must be MEMBER, MODERATOR or ADMIN", "set role 0");
	mx_expect(set_role(&A, room, M.name, (Parley__V1__Role)9, &st), RPC_INVALID_ARGUMENT, &st,
	          "role must be", "set role 9");
	mx_expect(on_user(&A, "Unban", room, N.name, NULL, &st), RPC_FAILED_PRECONDITION, &st,
	          "is not banned", "unban the unbanned");
	mx_expect(on_user(&A, "Invite", room, M.name, NULL, &st), RPC_ALREADY_EXISTS, &st,
	          "already a member", "invite a member");
	mx_expect(on_user(&A, "Invite", room, "nobody-here-at-all", NULL, &st), RPC_NOT_FOUND, &st,
	          "no user 'nobody-here-at-all'", "invite nobody");
	mx_expect(update(&A, room, "bad\x01name", "", NULL, &st), RPC_INVALID_ARGUMENT, &st,
	          "name must be 1 to 100 characters", "a name with a control character");
	ok(on_user(&A, "Ban", room, N.name, "pre-emptive", &st), &st, "ban a non-member");
	mx_expect(on_user(&A, "Invite", room, N.name, NULL, &st), RPC_FAILED_PRECONDITION, &st,
	          "unban them first", "invite the banned");
	printf("ok timeline events with actor and reason; bad input refused\n");
}

struct waiting_poll {
	const mx_user *u;
	const char *sid;
	rpc_code code;
	rpc_status st;
	Parley__V1__PollResponse *resp;
};

static void *
poll_thread(void *arg)
{
	struct waiting_poll *w = arg;

	w->code = mx_poll(w->u, w->sid, 3000, 100, &w->resp, &w->st);
	return NULL;
}

static bool
has_text(const Parley__V1__PollResponse *p, const char *text)
{
	for (size_t i = 0; p != NULL && i < p->n_events; i++)
		if (p->events[i]->body_case == PARLEY__V1__EVENT__BODY_MESSAGE &&
		    strcmp(p->events[i]->message->text, text) == 0)
			return true;
	return false;
}

/* Kicked (and banned) users stop receiving and sending at once. */
static void
test_kick_stops_delivery(bool by_ban)
{
	char room[65], sid[65];
	const char *rooms[1] = {room};
	struct waiting_poll w = {.u = &U, .sid = sid};
	Parley__V1__PollResponse *p = NULL;
	Parley__V1__GetHistoryResponse *h;
	uint64_t head, seq;
	pthread_t t;
	rpc_status st;

	setup(room);
	TH_CODE(mx_open(&U, 1, rooms, NULL, sid, &head, &st), RPC_OK, &st);
	/* Catch up to the head, so the next Poll waits. */
	for (uint64_t got = 0; got < head;) {
		TH_CODE(mx_poll(&U, sid, 2000, 100, &p, &st), RPC_OK, &st);
		for (size_t i = 0; i < p->n_events; i++)
			if (p->events[i]->seq > got)
				got = p->events[i]->seq;
		protobuf_c_message_free_unpacked(&p->base, NULL);
	}
	TH_CHECK(pthread_create(&t, NULL, poll_thread, &w) == 0, "thread");
	if (by_ban)
		ok(on_user(&M, "Ban", room, U.name, "out", &st), &st, "ban U");
	else
		ok(on_user(&M, "Kick", room, U.name, "out", &st), &st, "kick U");
	/* Refused at once, as after LeaveRoom. */
	mx_expect(mx_send(&U, room, "still here?", NULL, &seq, NULL, &st), RPC_PERMISSION_DENIED,
	          &st, "you are not a member of room", "send after the kick");
	mx_expect(mx_history(&U, room, 0, 0, 0, &h, &st), RPC_PERMISSION_DENIED, &st, NULL,
	          "history after the kick");
	ok(mx_send(&A, room, "after the kick", NULL, &seq, NULL, &st), &st, "A sends");
	pthread_join(t, NULL);
	TH_CHECK(w.code != RPC_OK || !has_text(w.resp, "after the kick"),
		 "the waiting Poll delivered a message sent after the kick");
	if (w.resp != NULL)
		protobuf_c_message_free_unpacked(&w.resp->base, NULL);
	if (mx_poll(&U, sid, 500, 100, &p, &st) == RPC_OK) {
		TH_CHECK(!has_text(p, "after the kick"), "a later Poll delivered it");
		protobuf_c_message_free_unpacked(&p->base, NULL);
	}
	mx_expect(mx_open(&U, 1, rooms, NULL, sid, NULL, &st), RPC_PERMISSION_DENIED, &st, NULL,
	          "open after the kick");
	printf("ok %s: the waiting Poll, Send, GetHistory and Open refused at once\n",
	       by_ban ? "ban" : "kick");
}

static void
test_private(void)
{
	char room[65];
	Parley__V1__ListRoomsRequest lr = PARLEY__V1__LIST_ROOMS_REQUEST__INIT;
	Parley__V1__ListRoomsResponse *l;
	Parley__V1__GetRoomRequest gr = PARLEY__V1__GET_ROOM_REQUEST__INIT;
	Parley__V1__GetRoomResponse *g;
	rpc_status st;

	snprintf(room, sizeof(room), "%s", th_name("priv"));
	ok(create(&A, room, PARLEY__V1__VISIBILITY__PRIVATE, &st), &st, "create PRIVATE");
	mx_expect(create(&A, th_name("dir"), PARLEY__V1__VISIBILITY__DIRECT, &st),
	          RPC_INVALID_ARGUMENT, &st, "OpenDirect", "create DIRECT");
	mx_expect(create(&A, th_name("vis"), (Parley__V1__Visibility)7, &st), RPC_INVALID_ARGUMENT,
	          &st, "visibility must be PUBLIC or PRIVATE", "create with visibility 7");
	lr.page_size = 500;
	TH_CODE(rc(&N, "ListRooms", &lr.base, (ProtobufCMessage **)&l, &st), RPC_OK, &st);
	for (size_t i = 0; i < l->n_rooms; i++)
		TH_CHECK(strcmp(l->rooms[i]->room_id, room) != 0, "ListRooms shows a PRIVATE room");
	protobuf_c_message_free_unpacked(&l->base, NULL);
	gr.room_id = room;
	mx_expect(rc(&N, "GetRoom", &gr.base, NULL, &st), RPC_NOT_FOUND, &st, "no room",
	          "GetRoom of a PRIVATE room by a stranger");
	mx_expect(mx_join(&N, room, &st), RPC_NOT_FOUND, &st, "no room",
	          "join PRIVATE uninvited");
	mx_expect(on_user(&U, "Invite", room, N.name, NULL, &st), RPC_NOT_FOUND, &st, "no room",
	          "invite by a non-member");
	ok(on_user(&A, "Invite", room, N.name, NULL, &st), &st, "invite N");
	TH_CODE(rc(&N, "GetRoom", &gr.base, (ProtobufCMessage **)&g, &st), RPC_OK, &st);
	TH_CHECK(g->room->visibility == PARLEY__V1__VISIBILITY__PRIVATE, "visibility PRIVATE");
	protobuf_c_message_free_unpacked(&g->base, NULL);
	ok(mx_join(&N, room, &st), &st, "the invited user joins");
	ok(mx_leave(&N, room, &st), &st, "and leaves");
	mx_expect(mx_join(&N, room, &st), RPC_NOT_FOUND, &st, "no room",
	          "an invitation is spent by joining");
	printf("ok PRIVATE rooms: unlisted, invitation only\n");
}

/* ---- a hidden room answers as one that does not exist -------------------------- */

enum probe {
	P_GETROOM, P_ISMEMBER_SELF, P_ISMEMBER_OTHER, P_LISTMEMBERS, P_JOIN, P_LEAVE, P_UPDATE,
	P_SETROLE, P_KICK, P_BAN, P_UNBAN, P_INVITE, P_SEND, P_OPEN, P_HISTORY, P_EDIT, P_DELETE,
	P_TYPING, P_MARKREAD, P_UNREAD, P_COUNT
};
static const char *const probe_names[P_COUNT] = {
	"GetRoom", "IsMember(self)", "IsMember(other)", "ListMembers", "JoinRoom", "LeaveRoom",
	"UpdateRoom", "SetRole", "Kick", "Ban", "Unban", "Invite", "Send", "Open", "GetHistory",
	"Edit", "Delete", "SetTyping", "MarkRead", "GetUnread"};

/* Call p by who on room (other: a member of the real room). */
static rpc_code
probe(enum probe p, const mx_user *who, const char *room, const mx_user *other, rpc_status *st)
{
	const char *rooms[1] = {room};
	char sid[65];
	uint64_t seq;

	switch (p) {
	case P_GETROOM: {
		Parley__V1__GetRoomRequest r = PARLEY__V1__GET_ROOM_REQUEST__INIT;
		r.room_id = (char *)room;
		return rc(who, "GetRoom", &r.base, NULL, st);
	}
	case P_ISMEMBER_SELF:
	case P_ISMEMBER_OTHER: {
		Parley__V1__IsMemberRequest r = PARLEY__V1__IS_MEMBER_REQUEST__INIT;
		r.room_id = (char *)room;
		r.user_id = (char *)(p == P_ISMEMBER_SELF ? who : other)->name;
		return rc(who, "IsMember", &r.base, NULL, st);
	}
	case P_LISTMEMBERS:
		return list_members(who, room, 0, NULL, NULL, st);
	case P_JOIN:
		return mx_join(who, room, st);
	case P_LEAVE:
		return mx_leave(who, room, st);
	case P_UPDATE:
		return update(who, room, "", "a topic", NULL, st);
	case P_SETROLE:
		return set_role(who, room, other->name, ROLE(MEMBER), st);
	case P_KICK:
		return on_user(who, "Kick", room, other->name, "", st);
	case P_BAN:
		return on_user(who, "Ban", room, other->name, "", st);
	case P_UNBAN:
		return on_user(who, "Unban", room, other->name, NULL, st);
	case P_INVITE:
		return on_user(who, "Invite", room, who->name, NULL, st);
	case P_SEND:
		return mx_send(who, room, "hello?", NULL, &seq, NULL, st);
	case P_OPEN:
		return mx_open(who, 1, rooms, NULL, sid, NULL, st);
	case P_HISTORY:
		return mx_history(who, room, 0, 0, 0, NULL, st);
	case P_EDIT: {
		Parley__V1__EditRequest r = PARLEY__V1__EDIT_REQUEST__INIT;
		r.room_id = (char *)room;
		r.seq = 1;
		r.text = "edited";
		return mx_call(mx_msg, &parley__v1__messaging__descriptor, "Edit", who, &r.base,
			       NULL, st);
	}
	case P_DELETE: {
		Parley__V1__DeleteRequest r = PARLEY__V1__DELETE_REQUEST__INIT;
		r.room_id = (char *)room;
		r.seq = 1;
		return mx_call(mx_msg, &parley__v1__messaging__descriptor, "Delete", who, &r.base,
			       NULL, st);
	}
	case P_TYPING: {
		Parley__V1__SetTypingRequest r = PARLEY__V1__SET_TYPING_REQUEST__INIT;
		r.room_id = (char *)room;
		r.typing = true;
		return mx_call(mx_msg, &parley__v1__messaging__descriptor, "SetTyping", who,
			       &r.base, NULL, st);
	}
	case P_MARKREAD: {
		Parley__V1__MarkReadRequest r = PARLEY__V1__MARK_READ_REQUEST__INIT;
		r.room_id = (char *)room;
		r.seq = 1;
		return mx_call(mx_msg, &parley__v1__messaging__descriptor, "MarkRead", who,
			       &r.base, NULL, st);
	}
	default: {
		Parley__V1__GetUnreadRequest r = PARLEY__V1__GET_UNREAD_REQUEST__INIT;
		char *ids[1] = {(char *)room};
		r.room_ids = ids;
		r.n_room_ids = 1;
		return mx_call(mx_msg, &parley__v1__messaging__descriptor, "GetUnread", who,
			       &r.base, NULL, st);
	}
	}
}

/* msg with every room replaced by "<room>". */
static void
unroom(const char *msg, const char *room, char *out, size_t cap)
{
	size_t n = strlen(room), o = 0;

	while (*msg != '\0' && o + 7 < cap) {
		if (strncmp(msg, room, n) == 0) {
			memcpy(out + o, "<room>", 6);
			o += 6;
			msg += n;
		} else {
			out[o++] = *msg++;
		}
	}
	out[o] = '\0';
}

/* Every call that takes a room id gives a stranger to real (a PRIVATE or a
 * DIRECT room with a message) the same answer, code and message, as for a
 * room that was never made. */
static void
check_hidden(const mx_user *stranger, const char *real, const mx_user *member, const char *kind)
{
	char ghost[65], a[RPC_STATUS_MESSAGE_MAX + 8], b[RPC_STATUS_MESSAGE_MAX + 8];

	snprintf(ghost, sizeof(ghost), "%s", th_name("ghost"));
	for (int p = 0; p < P_COUNT; p++) {
		rpc_status sr = {0}, sg = {0};
		rpc_code cr = probe(p, stranger, real, member, &sr);
		rpc_code cg = probe(p, stranger, ghost, member, &sg);

		unroom(sr.message, real, a, sizeof(a));
		unroom(sg.message, ghost, b, sizeof(b));
		TH_CHECK(cr == RPC_NOT_FOUND && cg == RPC_NOT_FOUND && strcmp(a, b) == 0,
			 "%s of a %s room by a stranger: %s '%s'; of no room: %s '%s'",
			 probe_names[p], kind, rpc_code_name(cr), a, rpc_code_name(cg), b);
	}
}

static void
test_hidden(void)
{
	Parley__V1__OpenDirectResponse *d;
	char room[65], dm[65];
	uint64_t seq;
	rpc_status st;

	snprintf(room, sizeof(room), "%s", th_name("hid"));
	ok(create(&A, room, PARLEY__V1__VISIBILITY__PRIVATE, &st), &st, "create PRIVATE");
	ok(mx_send(&A, room, "secret", NULL, &seq, NULL, &st), &st, "A sends");
	check_hidden(&N, room, &A, "PRIVATE");
	/* A former member is a stranger again; an invited user is not. */
	ok(on_user(&A, "Invite", room, U.name, NULL, &st), &st, "invite U");
	TH_CODE(probe(P_ISMEMBER_SELF, &U, room, &A, &st), RPC_OK, &st);
	ok(mx_join(&U, room, &st), &st, "U joins");
	ok(mx_leave(&U, room, &st), &st, "U leaves");
	check_hidden(&U, room, &A, "PRIVATE, left,");

	ok(open_direct(&A, M.name, &d, &st), &st, "A opens a DM with M");
	snprintf(dm, sizeof(dm), "%s", d->room->room_id);
	protobuf_c_message_free_unpacked(&d->base, NULL);
	ok(mx_send(&A, dm, "psst", NULL, &seq, NULL, &st), &st, "A sends in the DM");
	check_hidden(&N, dm, &A, "DIRECT");
	printf("ok PRIVATE and DIRECT rooms answer strangers as no room, in %d calls\n", P_COUNT);
}

static void
test_direct(void)
{
	Parley__V1__OpenDirectResponse *d1, *d2, *d3;
	Parley__V1__ListMyRoomsRequest mr = PARLEY__V1__LIST_MY_ROOMS_REQUEST__INIT;
	Parley__V1__ListMyRoomsResponse *my;
	Parley__V1__ListRoomsRequest lr = PARLEY__V1__LIST_ROOMS_REQUEST__INIT;
	Parley__V1__ListRoomsResponse *l;
	Parley__V1__GetHistoryResponse *h;
	char room[65], sid[65];
	const char *rooms[1] = {room};
	bool mine = false;
	uint64_t seq;
	rpc_status st;

	ok(open_direct(&U, M.name, &d1, &st), &st, "U opens a DM with M");
	ok(open_direct(&M, U.name, &d2, &st), &st, "M opens the DM with U");
	ok(open_direct(&U, M.name, &d3, &st), &st, "U opens it again");
	snprintf(room, sizeof(room), "%s", d1->room->room_id);
	TH_CHECK(strncmp(room, "dm.", 3) == 0 && strlen(room) == 35, "id %s", room);
	TH_CHECK(strcmp(d2->room->room_id, room) == 0 && strcmp(d3->room->room_id, room) == 0,
		 "one room for the pair: %s %s", d2->room->room_id, d3->room->room_id);
	TH_CHECK(d1->room->visibility == PARLEY__V1__VISIBILITY__DIRECT &&
		     d3->room->member_count == 2,
		 "DIRECT with two members (%u)", d3->room->member_count);
	protobuf_c_message_free_unpacked(&d1->base, NULL);
	protobuf_c_message_free_unpacked(&d2->base, NULL);
	protobuf_c_message_free_unpacked(&d3->base, NULL);
	TH_CHECK(role_of(&U, room, M.name) == ROLE(MEMBER) && role_of(&M, room, U.name) ==
		 ROLE(MEMBER), "both MEMBERs");

	ok(mx_send(&U, room, "psst", NULL, &seq, NULL, &st), &st, "U sends");
	ok(mx_send(&M, room, "hi", NULL, &seq, NULL, &st), &st, "M sends");
	/* A third user: no join, invite, read, send, session, nor a peek. */
	mx_expect(mx_join(&N, room, &st), RPC_NOT_FOUND, &st, "no room", "a third user joins");
	mx_expect(on_user(&U, "Invite", room, N.name, NULL, &st), RPC_FAILED_PRECONDITION, &st,
	          "no moderation", "invite into a DM");
	mx_expect(mx_history(&N, room, 0, 0, 0, &h, &st), RPC_NOT_FOUND, &st, "does not exist",
	          "a third user reads");
	mx_expect(mx_send(&N, room, "me too", NULL, &seq, NULL, &st), RPC_NOT_FOUND, &st,
	          "does not exist", "a third user sends");
	mx_expect(mx_open(&N, 1, rooms, NULL, sid, NULL, &st), RPC_NOT_FOUND, &st,
	          "does not exist", "a third user opens a session");
	mx_expect(list_members(&N, room, 0, NULL, NULL, &st), RPC_NOT_FOUND, &st, "no room",
	          "a third user lists members");
	mx_expect(on_user(&U, "Kick", room, M.name, "", &st), RPC_FAILED_PRECONDITION, &st,
	          "no moderation", "kick in a DM");

	lr.page_size = 500;
	TH_CODE(rc(&U, "ListRooms", &lr.base, (ProtobufCMessage **)&l, &st), RPC_OK, &st);
	for (size_t i = 0; i < l->n_rooms; i++)
		TH_CHECK(strcmp(l->rooms[i]->room_id, room) != 0, "ListRooms shows a DM");
	protobuf_c_message_free_unpacked(&l->base, NULL);
	TH_CODE(rc(&M, "ListMyRooms", &mr.base, (ProtobufCMessage **)&my, &st), RPC_OK, &st);
	for (size_t i = 0; i < my->n_rooms; i++)
		mine |= strcmp(my->rooms[i]->room_id, room) == 0;
	TH_CHECK(mine, "ListMyRooms of the other user shows the DM");
	protobuf_c_message_free_unpacked(&my->base, NULL);

	/* Leaving and coming back: only the two. */
	ok(mx_leave(&M, room, &st), &st, "M leaves the DM");
	ok(mx_join(&M, room, &st), &st, "M comes back");

	mx_expect(create(&A, "dm.0123", PARLEY__V1__VISIBILITY__PUBLIC, &st), RPC_INVALID_ARGUMENT,
	          &st, "reserved for direct conversations", "create a dm. room");
	mx_expect(open_direct(&U, U.name, NULL, &st), RPC_INVALID_ARGUMENT, &st,
	          "another user than yourself", "a DM with oneself");
	mx_expect(open_direct(&U, "nobody-here-at-all", NULL, &st), RPC_NOT_FOUND, &st,
	          "no user 'nobody-here-at-all'", "a DM with nobody");
	mx_expect(open_direct(&U, "Bad Id", NULL, &st), RPC_INVALID_ARGUMENT, &st,
	          "user_id must be", "a DM with a bad id");
	printf("ok DIRECT rooms: one per pair, private to the two\n");
}

static void
test_list_members(void)
{
	char room[65], sid[65], token[200] = "";
	const char *rooms[1] = {room};
	Parley__V1__ListMembersResponse *l;
	size_t seen = 0;
	bool u_online = false, a_online = true;
	rpc_status st;

	setup(room);
	TH_CODE(mx_open(&U, 1, rooms, NULL, sid, NULL, &st), RPC_OK, &st);
	/* One per page: every member once, in user_id order. */
	do {
		TH_CODE(list_members(&A, room, 1, token, &l, &st), RPC_OK, &st);
		TH_CHECK(l->n_members <= 1, "page of 1");
		for (size_t i = 0; i < l->n_members; i++) {
			const Parley__V1__Member *m = l->members[i];

			seen++;
			TH_CHECK(strcmp(m->display_name, m->user_id) == 0,
				 "display_name from the profile: '%s'", m->display_name);
			TH_CHECK(m->joined_at_ms > 0, "joined_at_ms");
			if (strcmp(m->user_id, U.name) == 0)
				u_online = m->online;
			if (strcmp(m->user_id, A.name) == 0) {
				a_online = m->online;
				TH_CHECK(m->role == ROLE(ADMIN), "creator is ADMIN");
			}
			if (strcmp(m->user_id, M.name) == 0)
				TH_CHECK(m->role == ROLE(MODERATOR), "M is MODERATOR");
		}
		snprintf(token, sizeof(token), "%s", l->next_page_token);
		protobuf_c_message_free_unpacked(&l->base, NULL);
	} while (token[0] != '\0');
	TH_CHECK(seen == 3, "A, M, U listed (%zu)", seen);
	TH_CHECK(u_online && !a_online, "online: U with a session, A without");
	TH_CODE(mx_close(&U, sid, &st), RPC_OK, &st);

	mx_expect(list_members(&N, room, 0, NULL, NULL, &st), RPC_PERMISSION_DENIED, &st,
	          "you are not a member of room", "a non-member lists");
	mx_expect(list_members(&B, room, 0, NULL, NULL, &st), RPC_PERMISSION_DENIED, &st,
	          "you are not a member of room", "a banned user lists");
	mx_expect(list_members(&A, room, 101, NULL, NULL, &st), RPC_INVALID_ARGUMENT, &st,
	          "page_size must be at most 100", "page_size 101");
	mx_expect(list_members(&A, room, 0, "forged", NULL, &st), RPC_INVALID_ARGUMENT, &st,
	          "page_token is not one this service issued", "a forged page token");
	printf("ok ListMembers: roles, names, online, pages\n");
}

static void
test_admin_heir(void)
{
	char room[65];
	rpc_status st;

	setup(room);
	ok(mx_leave(&A, room, &st), &st, "the only ADMIN leaves");
	TH_CHECK(role_of(&M, room, M.name) == ROLE(ADMIN), "the MODERATOR is now ADMIN");
	TH_CHECK(role_of(&M, room, U.name) == ROLE(MEMBER), "U stays MEMBER");
	ok(set_role(&M, room, U.name, ROLE(ADMIN), &st), &st, "two ADMINs");
	ok(set_role(&M, room, M.name, ROLE(MEMBER), &st), &st, "one steps down");
	mx_expect(set_role(&U, room, U.name, ROLE(MODERATOR), &st), RPC_FAILED_PRECONDITION, &st,
	          "must keep at least one ADMIN", "the last ADMIN steps down");
	printf("ok a room keeps an ADMIN\n");
}

int
main(void)
{
	mx_start(NULL);
	mx_user_new(&A, "ad");
	mx_user_new(&M, "mo");
	mx_user_new(&U, "me");
	mx_user_new(&N, "no");
	mx_user_new(&B, "ba");
	test_matrix();
	test_timeline_and_bad_input();
	test_kick_stops_delivery(false);
	test_kick_stops_delivery(true);
	test_private();
	test_hidden();
	test_direct();
	test_list_members();
	test_admin_heir();
	mx_stop();
	return 0;
}

/*
 * records_fuzz.c — every record type services read back from the store,
 * through the functions they read it with (services/common/records.h,
 * timeline_check_event, rooms_member_decode), fed arbitrary bytes as if a
 * disk had damaged them (issue 14, item 12).
 *
 * The first input byte picks a record type; the rest is the record. A
 * record that is accepted must be safe to serve: its strings valid UTF-8
 * (it packs again into bytes rpc_check_wire accepts), its ids valid, its
 * key its own, its enums known, and it encodes as JSON (what the HTTP face
 * does with it). Nothing may crash, leak or read out of bounds (ASan/UBSan
 * in CI, libFuzzer's own checks).
 *
 * Built by default as a seeded mutation loop under ctest; with
 * -DPARLEY_LIBFUZZER=ON (clang) as a libFuzzer target for timed runs.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mutate.h"
#include "json.h"
#include "records.h"
#include "rooms_int.h"
#include "svc.h"
#include "timeline.h"

#define KEY_USER "alice"
#define KEY_ROOM "lobby"
#define KEY_SEQ 7

enum target {
	T_USER, T_TOKEN, T_ROOM, T_CHANGE, T_CLIENT_MSG, T_EVENT, T_MEMBER, T_BAN, T_INVITE,
	T_COUNT
};

/* What was accepted packs again into bytes the wire check accepts, and
 * encodes as JSON. */
static void
servable(const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m), jlen;
	uint8_t *again = malloc(n ? n : 1);
	rpc_status st = {0};
	char *json;

	TH_CHECK(again != NULL, "alloc");
	TH_CHECK(protobuf_c_message_pack(m, again) == n, "pack size");
	TH_CHECK(rpc_check_wire(m->descriptor, again, n, &st) == RPC_OK, "%s repacked: %s",
		 m->descriptor->name, st.message);
	free(again);
	json = rpc_json_encode(m, &jlen);
	TH_CHECK(json != NULL, "%s encodes as JSON", m->descriptor->name);
	free(json);
}

static void
fuzz_user(const uint8_t *d, size_t n)
{
	Parley__Store__V1__UserRecord *r = records_user(NULL, KEY_USER, d, n);

	if (r == NULL)
		return;
	TH_CHECK(strcmp(r->user_id, KEY_USER) == 0, "a user record under another key");
	servable(&r->base);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void
fuzz_token(const uint8_t *d, size_t n)
{
	Parley__Store__V1__TokenRecord *r = records_token(NULL, d, n);

	if (r == NULL)
		return;
	TH_CHECK(svc_valid_user_id(r->user_id) && r->token_hash.len == RECORDS_HASH_BYTES,
		 "a token record for '%s' with %zu hash bytes", r->user_id, r->token_hash.len);
	servable(&r->base);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void
fuzz_room(const uint8_t *d, size_t n)
{
	Parley__Store__V1__RoomRecord *r = records_room(NULL, KEY_ROOM, d, n);
	rooms_member m;

	if (r == NULL)
		return;
	TH_CHECK(strcmp(r->room_id, KEY_ROOM) == 0 && svc_valid_user_id(r->created_by),
		 "room record '%s' by '%s'", r->room_id, r->created_by);
	TH_CHECK(rooms_visibility(r) >= PARLEY__V1__VISIBILITY__PUBLIC &&
		     rooms_visibility(r) <= PARLEY__V1__VISIBILITY__DIRECT,
		 "visibility %d", (int)r->visibility);
	TH_CHECK(r->visibility == PARLEY__V1__VISIBILITY__DIRECT ? r->n_direct_users == 2
								 : r->n_direct_users == 0,
		 "%zu direct users", r->n_direct_users);
	/* A member record read against it: an empty value is the older form. */
	TH_CHECK(rooms_member_decode(r, r->created_by, (store_val){.data = "", .len = 0}, &m),
		 "empty member value");
	servable(&r->base);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void
fuzz_change(const uint8_t *d, size_t n)
{
	Parley__V1__Event *ev = records_change(NULL, KEY_SEQ, d, n);

	if (ev == NULL)
		return;
	TH_CHECK(ev->seq == KEY_SEQ && svc_valid_room_id(ev->room_id), "change %llu of '%s'",
		 (unsigned long long)ev->seq, ev->room_id);
	servable(&ev->base);
	protobuf_c_message_free_unpacked(&ev->base, NULL);
}

static void
fuzz_client_msg(const uint8_t *d, size_t n)
{
	Parley__Store__V1__ClientMsgRecord *r = records_client_msg(NULL, d, n);

	if (r == NULL)
		return;
	TH_CHECK(svc_valid_room_id(r->room_id) && r->seq != 0 &&
		     r->text_hash.len == RECORDS_HASH_BYTES,
		 "client msg record");
	servable(&r->base);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void
fuzz_event(const uint8_t *d, size_t n)
{
	Parley__V1__Event *ev;
	char why[160];

	if (!timeline_check_event(KEY_ROOM, KEY_SEQ, d, n, why, sizeof(why))) {
		TH_CHECK(why[0] != '\0', "a refusal says why");
		return;
	}
	/* What the readers then do with it. */
	TH_CHECK((ev = parley__v1__event__unpack(NULL, n, d)) != NULL, "accepted, then unpacks");
	TH_CHECK(strcmp(ev->room_id, KEY_ROOM) == 0 && ev->seq == KEY_SEQ, "its own key");
	servable(&ev->base);
	parley__v1__event__free_unpacked(ev, NULL);
}

static void
fuzz_member(const uint8_t *d, size_t n)
{
	Parley__Store__V1__RoomRecord room = PARLEY__STORE__V1__ROOM_RECORD__INIT;
	rooms_member m;

	room.room_id = KEY_ROOM;
	room.created_by = KEY_USER;
	room.visibility = PARLEY__V1__VISIBILITY__PUBLIC;
	if (!rooms_member_decode(&room, "bob", (store_val){.data = d, .len = n}, &m))
		return;
	TH_CHECK(m.role >= PARLEY__V1__ROLE__MEMBER && m.role <= PARLEY__V1__ROLE__ADMIN,
		 "a member's role %d", (int)m.role);
}

static void
fuzz_plain(const ProtobufCMessageDescriptor *desc, const uint8_t *d, size_t n)
{
	ProtobufCMessage *m = records_unpack(desc, NULL, d, n);

	if (m == NULL)
		return;
	servable(m);
	protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *d = data + 1;
	size_t n = size - 1;

	if (size == 0)
		return 0;
	switch (data[0] % T_COUNT) {
	case T_USER: fuzz_user(d, n); break;
	case T_TOKEN: fuzz_token(d, n); break;
	case T_ROOM: fuzz_room(d, n); break;
	case T_CHANGE: fuzz_change(d, n); break;
	case T_CLIENT_MSG: fuzz_client_msg(d, n); break;
	case T_EVENT: fuzz_event(d, n); break;
	case T_MEMBER: fuzz_member(d, n); break;
	case T_BAN: fuzz_plain(&parley__store__v1__ban_record__descriptor, d, n); break;
	default: fuzz_plain(&parley__store__v1__invite_record__descriptor, d, n); break;
	}
	return 0;
}

#ifndef PARLEY_LIBFUZZER

static uint8_t hash[RECORDS_HASH_BYTES] = {1, 2, 3};

/* A valid record of target t, packed after the target byte. */
static size_t
seed(uint8_t *buf, size_t cap, unsigned t)
{
	Parley__Store__V1__UserRecord u = PARLEY__STORE__V1__USER_RECORD__INIT;
	Parley__Store__V1__TokenRecord tk = PARLEY__STORE__V1__TOKEN_RECORD__INIT;
	Parley__Store__V1__RoomRecord r = PARLEY__STORE__V1__ROOM_RECORD__INIT;
	Parley__Store__V1__ClientMsgRecord c = PARLEY__STORE__V1__CLIENT_MSG_RECORD__INIT;
	Parley__Store__V1__MemberRecord m = PARLEY__STORE__V1__MEMBER_RECORD__INIT;
	Parley__Store__V1__BanRecord b = PARLEY__STORE__V1__BAN_RECORD__INIT;
	Parley__Store__V1__InviteRecord iv = PARLEY__STORE__V1__INVITE_RECORD__INIT;
	Parley__V1__Event ev = PARLEY__V1__EVENT__INIT;
	Parley__V1__ChatMessage msg = PARLEY__V1__CHAT_MESSAGE__INIT;
	char *direct[2] = {"alice", "bob"};
	ProtobufCMessage *m0;

	switch (t) {
	case T_USER:
		u.user_id = KEY_USER, u.display_name = "Alice \xc3\xa9", u.email = "a@b";
		u.password_hash = "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA";
		m0 = &u.base;
		break;
	case T_TOKEN:
		tk.user_id = KEY_USER, tk.expires_at_ms = 99;
		tk.token_hash = (ProtobufCBinaryData){sizeof(hash), hash};
		m0 = &tk.base;
		break;
	case T_ROOM:
		r.room_id = KEY_ROOM, r.name = "Lobby", r.topic = "t\xc3\xa9", r.created_by = "alice";
		r.visibility = rand() % 2 ? PARLEY__V1__VISIBILITY__DIRECT : PARLEY__V1__VISIBILITY__PUBLIC;
		if (r.visibility == PARLEY__V1__VISIBILITY__DIRECT)
			r.direct_users = direct, r.n_direct_users = 2;
		m0 = &r.base;
		break;
	case T_CHANGE:
	case T_EVENT:
		ev.room_id = KEY_ROOM, ev.seq = KEY_SEQ, ev.sender = "alice";
		ev.body_case = PARLEY__V1__EVENT__BODY_MESSAGE;
		ev.message = &msg;
		msg.text = "hello \xc3\xa9";
		m0 = &ev.base;
		break;
	case T_CLIENT_MSG:
		c.room_id = KEY_ROOM, c.seq = 3;
		c.text_hash = (ProtobufCBinaryData){sizeof(hash), hash};
		m0 = &c.base;
		break;
	case T_MEMBER:
		m.role = PARLEY__V1__ROLE__MODERATOR, m.joined_at_ms = 5;
		m0 = &m.base;
		break;
	case T_BAN:
		b.actor = "alice", b.reason = "spam";
		m0 = &b.base;
		break;
	default:
		iv.actor = "alice";
		m0 = &iv.base;
		break;
	}
	buf[0] = (uint8_t)t;
	TH_CHECK(protobuf_c_message_get_packed_size(m0) + 1 <= cap, "seed fits");
	return 1 + protobuf_c_message_pack(m0, buf + 1);
}

int
main(int argc, char **argv)
{
	static uint8_t buf[1024];
	int iterations = argc > 1 ? atoi(argv[1]) : 200000;

	srand(20261207);
	for (int i = 0; i < iterations; i++) {
		size_t len = seed(buf, sizeof(buf), (unsigned)i % T_COUNT);
		int rounds = rand() % 4;

		LLVMFuzzerTestOneInput(buf, len); /* the seed itself is accepted */
		len = fuzz_mutate(buf, sizeof(buf), len, rounds, i);
		LLVMFuzzerTestOneInput(buf, len);
	}
	printf("ok %d mutated records of %d types\n", iterations, T_COUNT);
	return 0;
}

#endif

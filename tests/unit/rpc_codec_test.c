/* rpc_codec_test.c — rpc/: UTF-8 validation, the recursive string check over
 * protobuf-c descriptors, status codes, full method names. */
#include <string.h>

#include "harness.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/events.pb-c.h"
#include "parley/v1/history.pb-c.h"
#include "parley/v1/messaging.pb-c.h"
#include "parley/v1/rpc.pb-c.h"

static void
test_utf8(void)
{
	static const struct {
		const char *s;
		size_t len;
		bool ok;
	} cases[] = {
		{"", 0, true},
		{"hello", 5, true},
		{"h\0i", 3, true}, /* NUL is valid UTF-8; text checks forbid it separately */
		{"\xc3\xa9", 2, true},		/* é */
		{"\xe2\x82\xac", 3, true},	/* € */
		{"\xf0\x9f\x98\x80", 4, true},	/* 😀 */
		{"\xf4\x8f\xbf\xbf", 4, true},	/* U+10FFFF */
		{"\xff", 1, false},
		{"\xc3", 1, false},		/* truncated */
		{"\xc0\xaf", 2, false},		/* overlong '/' */
		{"\xe0\x80\xaf", 3, false},	/* overlong */
		{"\xf0\x80\x80\xaf", 4, false}, /* overlong */
		{"\xed\xa0\x80", 3, false},	/* surrogate U+D800 */
		{"\xf4\x90\x80\x80", 4, false}, /* above U+10FFFF */
		{"\xe2\x82", 2, false},		/* truncated */
		{"a\x80", 2, false},		/* stray continuation */
		{"\xf5\x80\x80\x80", 4, false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		TH_CHECK(rpc_utf8_valid(cases[i].s, cases[i].len) == cases[i].ok, "case %zu", i);
	TH_CHECK(rpc_utf8_length("h\xc3\xa9\xe2\x82\xac") == 3, "length in code points");
	printf("ok utf-8\n");
}

/* Packs msg and runs the wire check on the bytes. */
static rpc_code
check_packed(const ProtobufCMessage *msg, rpc_status *st)
{
	uint8_t buf[1024];
	size_t n = protobuf_c_message_pack(msg, buf);

	return rpc_check_wire(msg->descriptor, buf, n, st);
}

static void
test_check_wire_nested(void)
{
	Parley__V1__PollResponse resp = PARLEY__V1__POLL_RESPONSE__INIT;
	Parley__V1__Event ev = PARLEY__V1__EVENT__INIT, *evs[1] = {&ev};
	Parley__V1__ChatMessage msg = PARLEY__V1__CHAT_MESSAGE__INIT;
	Parley__V1__RpcRequest env = PARLEY__V1__RPC_REQUEST__INIT;
	Parley__V1__RpcRequest__MetadataEntry md = PARLEY__V1__RPC_REQUEST__METADATA_ENTRY__INIT;
	Parley__V1__RpcRequest__MetadataEntry *mds[1] = {&md};
	rpc_status st;

	ev.room_id = "general";
	ev.seq = 12345678901ull;
	ev.body_case = PARLEY__V1__EVENT__BODY_MESSAGE;
	ev.message = &msg;
	msg.text = "fine \xc3\xa9";
	resp.events = evs;
	resp.n_events = 1;
	TH_CHECK(check_packed(&resp.base, &st) == RPC_OK, "valid nested: %s", st.message);
	msg.text = "bad \xff";
	TH_CHECK(check_packed(&resp.base, &st) == RPC_INVALID_ARGUMENT, "bad nested");
	TH_CHECK(strstr(st.message, "events[0].message.text") != NULL, "path named: %s", st.message);
	msg.text = "ok";
	ev.sender = "\xc0\xaf";
	TH_CHECK(check_packed(&resp.base, &st) == RPC_INVALID_ARGUMENT, "bad sender");
	TH_CHECK(strstr(st.message, "events[0].sender") != NULL, "path: %s", st.message);
	/* The element of a repeated field is named by its index. */
	{
		Parley__V1__Event ev2 = PARLEY__V1__EVENT__INIT, *two[2] = {&ev, &ev2};
		Parley__V1__ChatMessage msg2 = PARLEY__V1__CHAT_MESSAGE__INIT;

		ev.sender = "ok";
		ev2.body_case = PARLEY__V1__EVENT__BODY_MESSAGE;
		ev2.message = &msg2;
		msg2.text = "fine";
		resp.events = two;
		resp.n_events = 2;
		TH_CHECK(check_packed(&resp.base, &st) == RPC_OK, "two good events");
		msg2.text = "bad \xff";
		TH_CHECK(check_packed(&resp.base, &st) == RPC_INVALID_ARGUMENT, "bad second");
		TH_CHECK(strstr(st.message, "'events[1].message.text'") != NULL, "index named: %s",
			 st.message);
		resp.events = evs;
		resp.n_events = 1;
	}

	/* Map entries are messages too. */
	env.method = "/x/y";
	env.request_id = 7;
	md.key = "authorization";
	md.value = "Bearer \xed\xa0\x80";
	env.metadata = mds;
	env.n_metadata = 1;
	TH_CHECK(check_packed(&env.base, &st) == RPC_INVALID_ARGUMENT, "bad map value");
	TH_CHECK(strstr(st.message, "metadata[0].value") != NULL, "path: %s", st.message);
	md.value = "Bearer ok";
	TH_CHECK(check_packed(&env.base, &st) == RPC_OK, "good map value");
	/* bytes fields may hold anything */
	env.body.data = (uint8_t *)"\xff\x00\xfe";
	env.body.len = 3;
	TH_CHECK(check_packed(&env.base, &st) == RPC_OK, "bytes are not strings");
	printf("ok wire check walks nested messages and maps\n");
}

static void
test_wire_utf8_and_nul(void)
{
	/* LoginRequest field 1 (user_id), hand-encoded. */
	static const uint8_t bad_utf8[] = {0x0a, 0x02, 0xc3, 0x28};
	static const uint8_t with_nul[] = {0x0a, 0x05, 'a', 'l', 0x00, 'c', 'e'};
	static const uint8_t nested_nul[] = {
	    /* PollResponse.events[0] = Event { message (5) { text (1) = "a\0" } } */
	    0x0a, 0x06, 0x2a, 0x04, 0x0a, 0x02, 'a', 0x00};
	static const uint8_t truncated[] = {0x0a, 0x09, 'a'};
	ProtobufCMessage *m =
	    protobuf_c_message_unpack(&parley__v1__login_request__descriptor, NULL, sizeof(bad_utf8),
				      bad_utf8);
	rpc_status st;

	TH_CHECK(m != NULL, "protobuf-c itself accepts invalid UTF-8");
	protobuf_c_message_free_unpacked(m, NULL);
	TH_CHECK(rpc_check_wire(&parley__v1__login_request__descriptor, bad_utf8, sizeof(bad_utf8),
				&st) == RPC_INVALID_ARGUMENT, "we do not");
	TH_CHECK(strstr(st.message, "user_id") != NULL, "%s", st.message);

	m = protobuf_c_message_unpack(&parley__v1__login_request__descriptor, NULL,
				      sizeof(with_nul), with_nul);
	TH_CHECK(m != NULL && strcmp(((Parley__V1__LoginRequest *)m)->user_id, "al") == 0,
		 "protobuf-c silently cuts a string at a NUL");
	protobuf_c_message_free_unpacked(m, NULL);
	TH_CHECK(rpc_check_wire(&parley__v1__login_request__descriptor, with_nul, sizeof(with_nul),
				&st) == RPC_INVALID_ARGUMENT, "we refuse it");
	TH_CHECK(strstr(st.message, "NUL") != NULL, "%s", st.message);
	TH_CHECK(rpc_check_wire(&parley__v1__poll_response__descriptor, nested_nul,
				sizeof(nested_nul), &st) == RPC_INVALID_ARGUMENT, "nested NUL");
	TH_CHECK(strstr(st.message, "events[0].message.text") != NULL, "%s", st.message);
	TH_CHECK(rpc_check_wire(&parley__v1__login_request__descriptor, truncated,
				sizeof(truncated), &st) == RPC_INVALID_ARGUMENT, "truncated");
	printf("ok invalid utf-8 and NUL bytes off the wire\n");
}

static void
test_codes_and_names(void)
{
	char buf[128];

	TH_CHECK(strcmp(rpc_code_name(RPC_OK), "OK") == 0, "OK");
	TH_CHECK(strcmp(rpc_code_name(RPC_UNAUTHENTICATED), "UNAUTHENTICATED") == 0, "16");
	TH_CHECK(strcmp(rpc_code_name((rpc_code)99), "UNKNOWN_CODE") == 0, "out of range");
	/* Our enum and the wire enum agree on every value. */
	for (int c = 0; c <= 16; c++) {
		const ProtobufCEnumValue *v =
		    protobuf_c_enum_descriptor_get_value(&parley__v1__code__descriptor, c);
		TH_CHECK(v != NULL && strcmp(v->name, rpc_code_name((rpc_code)c)) == 0,
			 "code %d: %s vs %s", c, v ? v->name : "?", rpc_code_name((rpc_code)c));
	}
	rpc_full_method(buf, sizeof(buf), &parley__v1__auth__descriptor,
			&parley__v1__auth__descriptor.methods[1]);
	TH_CHECK(strcmp(buf, "/parley.v1.Auth/Login") == 0, "%s", buf);
	printf("ok status codes match the wire enum\n");
}

/* A body-less request (Health/Check with every field default) reaches the
 * check as (NULL, 0): valid, and no pointer arithmetic on NULL (UBSan, as
 * CI builds it with clang, aborts on that). */
static void
test_check_wire_empty(void)
{
	rpc_status st = {0};

	TH_CHECK(rpc_check_wire(&parley__v1__login_request__descriptor, NULL, 0, &st) == RPC_OK,
		 "an empty body is valid: %s", st.message);
	TH_CHECK(rpc_check_wire(&parley__v1__rpc_request__descriptor, "", 0, &st) == RPC_OK,
		 "an empty buffer is valid: %s", st.message);
	printf("ok empty bodies\n");
}

int
main(void)
{
	test_utf8();
	test_check_wire_empty();
	test_check_wire_nested();
	test_wire_utf8_and_nul();
	test_codes_and_names();
	return 0;
}

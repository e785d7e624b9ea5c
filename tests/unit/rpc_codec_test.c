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

static void
test_check_strings_nested(void)
{
	Parley__V1__PollResponse resp = PARLEY__V1__POLL_RESPONSE__INIT;
	Parley__V1__Event ev = PARLEY__V1__EVENT__INIT, *evs[1] = {&ev};
	Parley__V1__ChatMessage msg = PARLEY__V1__CHAT_MESSAGE__INIT;
	Parley__V1__RpcRequest env = PARLEY__V1__RPC_REQUEST__INIT;
	Parley__V1__RpcRequest__MetadataEntry md = PARLEY__V1__RPC_REQUEST__METADATA_ENTRY__INIT;
	Parley__V1__RpcRequest__MetadataEntry *mds[1] = {&md};
	rpc_status st;

	ev.room_id = "general";
	ev.body_case = PARLEY__V1__EVENT__BODY_MESSAGE;
	ev.message = &msg;
	msg.text = "fine \xc3\xa9";
	resp.events = evs;
	resp.n_events = 1;
	TH_CHECK(rpc_check_strings(&resp.base, &st) == RPC_OK, "valid nested");
	msg.text = "bad \xff";
	TH_CHECK(rpc_check_strings(&resp.base, &st) == RPC_INVALID_ARGUMENT, "bad nested");
	TH_CHECK(strstr(st.message, "events.message.text") != NULL, "path named: %s", st.message);
	msg.text = "ok";
	ev.sender = "\xc0\xaf";
	TH_CHECK(rpc_check_strings(&resp.base, &st) == RPC_INVALID_ARGUMENT, "bad sender");
	TH_CHECK(strstr(st.message, "events.sender") != NULL, "path: %s", st.message);

	/* Map entries are messages too. */
	env.method = "/x/y";
	md.key = "authorization";
	md.value = "Bearer \xed\xa0\x80";
	env.metadata = mds;
	env.n_metadata = 1;
	TH_CHECK(rpc_check_strings(&env.base, &st) == RPC_INVALID_ARGUMENT, "bad map value");
	TH_CHECK(strstr(st.message, "metadata.value") != NULL, "path: %s", st.message);

	/* Repeated strings (history has none; build one via unpack of a
	 * GetRoomResponse-like wire: members is field 2, repeated string). */
	printf("ok recursive string check\n");
}

static void
test_unpacked_invalid_utf8(void)
{
	/* protobuf-c accepts invalid UTF-8 in a string: prove the check
	 * catches what came off the wire. LoginRequest field 1, length 2. */
	static const uint8_t wire[] = {0x0a, 0x02, 0xc3, 0x28};
	ProtobufCMessage *m =
	    protobuf_c_message_unpack(&parley__v1__login_request__descriptor, NULL, sizeof(wire),
				      wire);
	rpc_status st;

	TH_CHECK(m != NULL, "protobuf-c itself accepts it");
	TH_CHECK(rpc_check_strings(m, &st) == RPC_INVALID_ARGUMENT, "we do not");
	TH_CHECK(strstr(st.message, "user_id") != NULL, "%s", st.message);
	protobuf_c_message_free_unpacked(m, NULL);
	printf("ok invalid utf-8 off the wire\n");
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

int
main(void)
{
	test_utf8();
	test_check_strings_nested();
	test_unpacked_invalid_utf8();
	test_codes_and_names();
	return 0;
}

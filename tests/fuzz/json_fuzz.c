/*
 * json_fuzz.c — libFuzzer target for rpc/json (built only with
 * -DPARLEY_LIBFUZZER=ON; the seeded mutation loop in tests/unit/json_test.c
 * runs under ctest). The first byte picks the message type: every message
 * generated from proto/, or the test message with every field type. Input
 * the decoder accepts must encode, and its encoding must decode to the same
 * wire bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "json.h"
#include "json_test.pb-c.h"

extern const ProtobufCMessageDescriptor *const json_all_descriptors[];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *
pack(const ProtobufCMessage *m, size_t *n)
{
	uint8_t *buf;

	*n = protobuf_c_message_get_packed_size(m);
	buf = malloc(*n + 1);
	TH_CHECK(buf != NULL, "malloc");
	protobuf_c_message_pack(m, buf);
	return buf;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static size_t n_types;
	const ProtobufCMessageDescriptor *d;
	ProtobufCMessage *m, *back;
	rpc_status st;
	size_t alen, blen;
	uint8_t *a, *b;
	char *json;

	if (n_types == 0)
		while (json_all_descriptors[n_types] != NULL)
			n_types++;
	if (size == 0)
		return 0;
	d = data[0] % (n_types + 1) == n_types ? &parley__jsontest__everything__descriptor
					       : json_all_descriptors[data[0] % (n_types + 1)];
	if (rpc_json_decode(d, (const char *)data + 1, size - 1, &m, &st) != RPC_OK) {
		TH_CHECK(m == NULL && st.message[0] != '\0', "error without message");
		return 0;
	}
	json = rpc_json_encode(m, NULL);
	TH_CHECK(json != NULL, "encode");
	TH_CHECK(rpc_json_decode(d, json, strlen(json), &back, &st) == RPC_OK, "%s: %s", json,
		 st.message);
	a = pack(m, &alen);
	b = pack(back, &blen);
	TH_CHECK(alen == blen && memcmp(a, b, alen) == 0, "round trip differs: %s", json);
	free(a);
	free(b);
	free(json);
	protobuf_c_message_free_unpacked(m, NULL);
	protobuf_c_message_free_unpacked(back, NULL);
	return 0;
}

/*
 * bodies_fuzz.c — every request body type of every service, and the rooms
 * page token, through the checks a server applies before trusting them.
 *
 * The first input byte picks a target: a method of one of the service
 * descriptors (its input type goes through rpc_check_wire, then protobuf-c's
 * unpack, then a pack of what was unpacked, which must check clean again),
 * or the ListRooms page token (pagetoken_decode of the rest as text, which
 * must only ever accept what pagetoken_encode made). Nothing may crash,
 * leak or read out of bounds (ASan/UBSan in CI, libFuzzer's own checks).
 *
 * Built by default as a seeded mutation loop under ctest; with
 * -DPARLEY_LIBFUZZER=ON (clang) as a libFuzzer target for timed runs.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mutate.h"
#include "pagetoken.h"
#include "parley/internal/v1/feed.pb-c.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/health.pb-c.h"
#include "parley/v1/history.pb-c.h"
#include "parley/v1/messaging.pb-c.h"
#include "parley/v1/rooms.pb-c.h"

static const ProtobufCServiceDescriptor *const services[] = {
	&parley__v1__auth__descriptor,	    &parley__v1__rooms__descriptor,
	&parley__v1__history__descriptor,   &parley__v1__messaging__descriptor,
	&parley__v1__health__descriptor,    &parley__internal__v1__rooms_feed__descriptor,
};
#define NSERVICES (sizeof(services) / sizeof(services[0]))

static const unsigned char key[PAGETOKEN_KEY_BYTES] = "parley-fuzz-page-token-key-32byt";

/* The input type of target t (0 .. ntargets-1), or NULL for the page token. */
static const ProtobufCMessageDescriptor *
target(unsigned t)
{
	for (size_t i = 0; i < NSERVICES; i++) {
		if (t < services[i]->n_methods)
			return services[i]->methods[t].input;
		t -= services[i]->n_methods;
	}
	return NULL;
}

static unsigned
ntargets(void)
{
	unsigned n = 1; /* the page token */

	for (size_t i = 0; i < NSERVICES; i++)
		n += services[i]->n_methods;
	return n;
}

static void
fuzz_body(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len)
{
	rpc_status st;
	ProtobufCMessage *m;
	uint8_t *again;
	size_t n;

	if (rpc_check_wire(d, data, len, &st) != RPC_OK) {
		TH_CHECK(st.code == RPC_INVALID_ARGUMENT && st.message[0] != '\0',
			 "a refusal has a code and a message");
		return;
	}
	if ((m = protobuf_c_message_unpack(d, NULL, len, data)) == NULL)
		return;
	/* What was accepted packs again into bytes that pass the same check. */
	n = protobuf_c_message_get_packed_size(m);
	TH_CHECK((again = malloc(n ? n : 1)) != NULL, "alloc");
	TH_CHECK(protobuf_c_message_pack(m, again) == n, "pack size");
	TH_CHECK(rpc_check_wire(d, again, n, &st) == RPC_OK, "%s repacked: %s", d->name,
		 st.message);
	free(again);
	protobuf_c_message_free_unpacked(m, NULL);
}

static void
fuzz_token(const uint8_t *data, size_t len)
{
	char token[512], room[PAGETOKEN_ROOM_ID_MAX + 1], again[PAGETOKEN_TEXT_MAX];

	if (len >= sizeof(token))
		len = sizeof(token) - 1;
	memcpy(token, data, len);
	token[len] = '\0';
	if (!pagetoken_decode(key, token, room))
		return;
	/* Only a token made by this key decodes: it is the one encode makes. */
	pagetoken_encode(key, room, again);
	TH_CHECK(strcmp(again, token) == 0, "a decoded token is the encoding of its room");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const ProtobufCMessageDescriptor *d;

	if (size == 0)
		return 0;
	d = target(data[0] % ntargets());
	if (d == NULL)
		fuzz_token(data + 1, size - 1);
	else
		fuzz_body(d, data + 1, size - 1);
	return 0;
}

#ifndef PARLEY_LIBFUZZER

/* A valid encoding to mutate: every string and bytes field of d set (one
 * level deep), packed after the target byte. */
static size_t
seed(uint8_t *buf, size_t cap, unsigned t)
{
	const ProtobufCMessageDescriptor *d = target(t);
	ProtobufCMessage *m;
	size_t n;

	buf[0] = (uint8_t)t;
	if (d == NULL) {
		char tok[PAGETOKEN_TEXT_MAX];
		pagetoken_encode(key, "lobby", tok);
		n = strlen(tok);
		memcpy(buf + 1, tok, n);
		return n + 1;
	}
	TH_CHECK((m = calloc(1, d->sizeof_message)) != NULL, "alloc");
	d->message_init(m);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->label == PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_STRING)
			continue;
		*(char **)((char *)m + f->offset) = "fuzz-\xc3\xa9";
	}
	n = protobuf_c_message_get_packed_size(m);
	TH_CHECK(n + 1 <= cap, "seed fits");
	protobuf_c_message_pack(m, buf + 1);
	free(m);
	return n + 1;
}

int
main(int argc, char **argv)
{
	static uint8_t buf[2048];
	int iterations = argc > 1 ? atoi(argv[1]) : 20000;
	unsigned nt = ntargets();

	srand(20261207);
	for (int i = 0; i < iterations; i++) {
		size_t len = seed(buf, sizeof(buf), (unsigned)i % nt);
		int rounds = 1 + rand() % 4;

		len = fuzz_mutate(buf, sizeof(buf), len, rounds, i);
		LLVMFuzzerTestOneInput(buf, len);
	}
	printf("ok %d mutated bodies of %u request types and page tokens\n", iterations, nt - 1);
	return 0;
}

#endif

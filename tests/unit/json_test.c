/* json_test.c — rpc/json: proto3 canonical JSON over protobuf-c descriptors.
 * Round trips of every message generated from proto/ (json_all_descriptors,
 * listed at build time) and of a test message with every field type; each
 * mapping rule; each refusal with its message; allocation failures inside
 * jansson; and a seeded mutation loop that must never crash or leak (the
 * ASan build runs it with leak detection). */
#include <math.h>
#include <string.h>

#include <jansson.h>

#include "harness.h"
#include "json.h"
#include "json_presence_test.pb-c.h"
#include "json_test.pb-c.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/events.pb-c.h"
#include "parley/v1/messaging.pb-c.h"
#include "parley/v1/rpc.pb-c.h"

extern const ProtobufCMessageDescriptor *const json_all_descriptors[];

/* ---- deterministic random messages ---------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static char *
rnd_string(void)
{
	static const char *pieces[] = {"a", "Z", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
				       "\"", "\\", "\n", "\x01", "/", "<", " ", "7"};
	size_t n = rnd() % 6;
	char *s = malloc(n * 4 + 1);

	TH_CHECK(s != NULL, "malloc");
	s[0] = '\0';
	for (size_t i = 0; i < n; i++)
		strcat(s, pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))]);
	return s;
}

static void fill_message(ProtobufCMessage *m, int depth);

/* A random value of f's type into slot; key_index >= 0 asks for the
 * key_index-th distinct map key. */
static void
fill_value(const ProtobufCFieldDescriptor *f, void *slot, int depth, int key_index)
{
	static const double doubles[] = {0.5, -1.25, 1e300, -2.5e-310, 3.141592653589793, 1e21,
					 123456789012345678.0};
	static const float floats[] = {0.5f, -1.25f, 3.4e38f, 1e-45f, 0.1f, 16777216.0f};

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		*(int32_t *)slot = key_index >= 0 ? key_index * 7 - 5 : (int32_t)rnd();
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_ENUM:
		if (f->type == PROTOBUF_C_TYPE_ENUM) {
			const ProtobufCEnumDescriptor *ed = f->descriptor;

			/* sometimes a number the enum does not name (open enums) */
			*(int *)slot = rnd() % 5 == 0 ? 99 : ed->values[rnd() % ed->n_values].value;
		} else {
			*(uint32_t *)slot = key_index >= 0 ? (uint32_t)key_index : (uint32_t)rnd();
		}
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		*(int64_t *)slot = key_index >= 0 ? (int64_t)key_index - 1 : (int64_t)rnd();
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		*(uint64_t *)slot = key_index >= 0 ? UINT64_MAX - (uint64_t)key_index : rnd();
		break;
	case PROTOBUF_C_TYPE_FLOAT: {
		uint64_t r = rnd() % 10;

		*(float *)slot = r < 6 ? floats[r] : r == 6 ? NAN : r == 7 ? INFINITY
						      : r == 8 ? -INFINITY : (float)rnd() / 7.0f;
		break;
	}
	case PROTOBUF_C_TYPE_DOUBLE: {
		uint64_t r = rnd() % 10;

		*(double *)slot = r < 7 ? doubles[r] : r == 7 ? NAN : r == 8 ? -INFINITY
							: (double)rnd() / 3.0;
		break;
	}
	case PROTOBUF_C_TYPE_BOOL:
		*(protobuf_c_boolean *)slot = key_index >= 0 ? key_index & 1 : (int)(rnd() & 1);
		break;
	case PROTOBUF_C_TYPE_STRING:
		if (key_index >= 0) {
			char *s = malloc(16);

			TH_CHECK(s != NULL, "malloc");
			snprintf(s, 16, "k\xc3\xa9%d", key_index);
			*(char **)slot = s;
		} else {
			*(char **)slot = rnd_string();
		}
		break;
	case PROTOBUF_C_TYPE_BYTES: {
		ProtobufCBinaryData *b = slot;

		b->len = rnd() % 9;
		b->data = b->len ? malloc(b->len) : NULL;
		for (size_t i = 0; i < b->len; i++)
			b->data[i] = (uint8_t)rnd();
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessageDescriptor *md = f->descriptor;
		ProtobufCMessage *m = malloc(md->sizeof_message);

		TH_CHECK(m != NULL, "malloc");
		md->message_init(m);
		if (depth < 4)
			fill_message(m, depth + 1);
		*(ProtobufCMessage **)slot = m;
		break;
	}
	}
}

static size_t
size_of(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	default:
		return 4;
	}
}

/* Every field set at random (freed by protobuf_c_message_free_unpacked). */
static void
fill_message(ProtobufCMessage *m, int depth)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;

	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		char *slot = (char *)m + f->offset;

		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			uint32_t *which = (uint32_t *)((char *)m + f->quantifier_offset);

			if (*which != 0 || rnd() % 3 != 0)
				continue;
			*which = f->id;
			fill_value(f, slot, depth, -1);
		} else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			const ProtobufCMessageDescriptor *ed = f->descriptor;
			bool map = f->type == PROTOBUF_C_TYPE_MESSAGE && strstr(ed->name, "Entry");
			size_t n = rnd() % 4, size = size_of(f->type);
			char *arr;

			if (map && ed->fields[0].type == PROTOBUF_C_TYPE_BOOL && n > 2)
				n = 2;
			if (n == 0 || depth >= 4)
				continue;
			arr = calloc(n, size);
			TH_CHECK(arr != NULL, "calloc");
			*(char **)slot = arr;
			*(size_t *)((char *)m + f->quantifier_offset) = n;
			for (size_t k = 0; k < n; k++) {
				if (!map) {
					fill_value(f, arr + k * size, depth, -1);
					continue;
				}
				ProtobufCMessage *e = malloc(ed->sizeof_message);

				TH_CHECK(e != NULL, "malloc");
				ed->message_init(e);
				fill_value(&ed->fields[0], (char *)e + ed->fields[0].offset, depth,
					   (int)k);
				fill_value(&ed->fields[1], (char *)e + ed->fields[1].offset, depth,
					   -1);
				((ProtobufCMessage **)arr)[k] = e;
			}
		} else if (f->type == PROTOBUF_C_TYPE_MESSAGE && depth >= 3) {
			continue;
		} else if (rnd() % 4 != 0) {
			fill_value(f, slot, depth, -1);
			if (f->label == PROTOBUF_C_LABEL_OPTIONAL &&
			    f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
				*(protobuf_c_boolean *)((char *)m + f->quantifier_offset) = 1;
		}
	}
}

static ProtobufCMessage *
random_message(const ProtobufCMessageDescriptor *d)
{
	ProtobufCMessage *m = malloc(d->sizeof_message);

	TH_CHECK(m != NULL, "malloc");
	d->message_init(m);
	fill_message(m, 0);
	return m;
}

/* ---- helpers --------------------------------------------------------------- */

static uint8_t *
pack(const ProtobufCMessage *m, size_t *n)
{
	uint8_t *buf;

	*n = protobuf_c_message_get_packed_size(m);
	buf = malloc(*n + 1);
	TH_CHECK(buf != NULL, "malloc");
	TH_CHECK(protobuf_c_message_pack(m, buf) == *n, "pack");
	return buf;
}

/* Encodes m, decodes the JSON, and requires the same wire bytes. */
static void
round_trip(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	size_t alen, blen, jlen;
	uint8_t *a = pack(m, &alen), *b;
	char *json = rpc_json_encode(m, &jlen);
	ProtobufCMessage *back = NULL;
	rpc_status st;

	TH_CHECK(json != NULL && jlen == strlen(json), "encode %s", d->name);
	TH_CHECK(rpc_json_decode(d, json, jlen, &back, &st) == RPC_OK, "%s: %s\n%s", d->name,
		 st.message, json);
	b = pack(back, &blen);
	TH_CHECK(alen == blen && memcmp(a, b, alen) == 0, "%s differs after the round trip:\n%s",
		 d->name, json);
	free(a);
	free(b);
	free(json);
	protobuf_c_message_free_unpacked(back, NULL);
}

static void
test_round_trip_all(void)
{
	size_t n = 0;

	for (const ProtobufCMessageDescriptor *const *d = json_all_descriptors; *d; d++, n++)
		for (int i = 0; i < 40; i++) {
			ProtobufCMessage *m = random_message(*d);

			round_trip(m);
			protobuf_c_message_free_unpacked(m, NULL);
		}
	TH_CHECK(n >= 40, "only %zu message types listed from proto/", n);
	for (int i = 0; i < 400; i++) {
		ProtobufCMessage *m = random_message(&parley__jsontest__everything__descriptor);

		round_trip(m);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	printf("ok round trip of %zu message types from proto/ and Everything\n", n);
}

/* Decodes json as Everything; requires success. */
static Parley__Jsontest__Everything *
dec_ok(const char *json)
{
	ProtobufCMessage *m = NULL;
	rpc_status st;
	rpc_code rc = rpc_json_decode(&parley__jsontest__everything__descriptor, json,
				      strlen(json), &m, &st);

	TH_CHECK(rc == RPC_OK, "%s: %s %s", json, rpc_code_name(rc), st.message);
	return (Parley__Jsontest__Everything *)m;
}

/* Decodes json as type d; requires INVALID_ARGUMENT with exactly msg. */
static void
dec_err_len(const ProtobufCMessageDescriptor *d, const char *json, size_t len, const char *msg)
{
	ProtobufCMessage *m = (ProtobufCMessage *)&m; /* must come back NULL */
	rpc_status st;
	rpc_code rc = rpc_json_decode(d, json, len, &m, &st);

	json = json != NULL ? json : "(null)";
	TH_CHECK(rc == RPC_INVALID_ARGUMENT, "%s: got %s", json, rpc_code_name(rc));
	TH_CHECK(m == NULL, "out not NULL on error");
	TH_CHECK(strcmp(st.message, msg) == 0, "%s:\n  got  %s\n  want %s", json, st.message, msg);

}

static void
dec_err(const char *json, const char *msg)
{
	dec_err_len(&parley__jsontest__everything__descriptor, json, strlen(json), msg);
}

static void
dec_err_as(const ProtobufCMessageDescriptor *d, const char *json, const char *msg)
{
	dec_err_len(d, json, strlen(json), msg);
}

static void
enc_is(const ProtobufCMessage *m, const char *want)
{
	char *got = rpc_json_encode(m, NULL);

	TH_CHECK(got != NULL && strcmp(got, want) == 0, "\n  got  %s\n  want %s", got, want);
	free(got);
}

/* ---- output rules ---------------------------------------------------------- */

static void
test_encode(void)
{
	Parley__Jsontest__Everything e = PARLEY__JSONTEST__EVERYTHING__INIT;
	Parley__Jsontest__Inner in = PARLEY__JSONTEST__INNER__INIT, *ins[1] = {&in};
	Parley__V1__Event ev = PARLEY__V1__EVENT__INIT;
	Parley__V1__MembershipChange mc = PARLEY__V1__MEMBERSHIP_CHANGE__INIT;
	Parley__V1__RpcRequest rq = PARLEY__V1__RPC_REQUEST__INIT;
	Parley__V1__RpcRequest__MetadataEntry md = PARLEY__V1__RPC_REQUEST__METADATA_ENTRY__INIT;
	Parley__V1__RpcRequest__MetadataEntry *mds[1] = {&md};
	int32_t r_i32[] = {1, -2};
	char *r_str[] = {"x", "y\"z"};
	uint8_t raw[] = {0xfb, 0xff, 0x01};
	char bad[] = {'a', (char)0xff, 'b', (char)0xe2, (char)0x82, 0};

	enc_is(&e.base, "{}"); /* defaults omitted */
	ev.room_id = "general";
	ev.seq = 18446744073709551615ull;
	ev.sender = "ann";
	ev.body_case = PARLEY__V1__EVENT__BODY_MEMBERSHIP;
	ev.membership = &mc;
	/* 64-bit as strings, camelCase, oneof message emitted even when empty,
	 * enum zero omitted inside it */
	enc_is(&ev.base, "{\"roomId\":\"general\",\"seq\":\"18446744073709551615\","
			 "\"sender\":\"ann\",\"membership\":{}}");
	mc.kind = PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED;
	enc_is(&mc.base, "{\"kind\":\"JOINED\"}");
	mc.kind = 42; /* open enum: an unnamed number stays a number */
	enc_is(&mc.base, "{\"kind\":42}");

	e.i32 = -5;
	e.u32 = 4000000000u;
	e.i64 = INT64_MIN;
	e.s64 = -1;
	e.fl = NAN;
	e.db = -INFINITY;
	e.flag = 1;
	e.str = "caf\xc3\xa9 \"q\"\n";
	e.data.data = raw;
	e.data.len = sizeof(raw);
	e.color = PARLEY__JSONTEST__COLOR__GREEN;
	e.inner = &in;
	e.n_r_i32 = 2;
	e.r_i32 = r_i32;
	e.n_r_str = 2;
	e.r_str = r_str;
	e.n_r_inner = 1;
	e.r_inner = ins;
	e.choice_case = PARLEY__JSONTEST__EVERYTHING__CHOICE_O_U64;
	e.o_u64 = 0; /* a oneof member is emitted when set, even at zero */
	enc_is(&e.base, "{\"i32\":-5,\"u32\":4000000000,\"i64\":\"-9223372036854775808\","
			"\"s64\":\"-1\",\"fl\":\"NaN\",\"db\":\"-Infinity\",\"flag\":true,"
			"\"str\":\"caf\xc3\xa9 \\\"q\\\"\\n\",\"data\":\"+/8B\",\"color\":\"GREEN\","
			"\"inner\":{},\"rI32\":[1,-2],\"rStr\":[\"x\",\"y\\\"z\"],\"rInner\":[{}],"
			"\"oU64\":\"0\"}");

	/* maps: keys as strings */
	rq.method = "/parley.v1.Auth/Logout";
	md.key = "authorization";
	md.value = "Bearer t";
	rq.n_metadata = 1;
	rq.metadata = mds;
	enc_is(&rq.base, "{\"method\":\"/parley.v1.Auth/Logout\","
			 "\"metadata\":{\"authorization\":\"Bearer t\"}}");

	/* bytes that are not UTF-8 never make invalid JSON */
	ev = (Parley__V1__Event)PARLEY__V1__EVENT__INIT;
	ev.sender = bad;
	enc_is(&ev.base, "{\"sender\":\"a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd\"}");
	printf("ok encode rules\n");
}

/* ---- input rules ----------------------------------------------------------- */

static void
test_decode_rules(void)
{
	Parley__Jsontest__Everything *e;

	/* both names; null means default */
	e = dec_ok("{\"r_i32\":[1],\"rU64\":[\"2\"],\"i32\":null,\"str\":null,\"inner\":null}");
	TH_CHECK(e->n_r_i32 == 1 && e->r_i32[0] == 1 && e->n_r_u64 == 1 && e->r_u64[0] == 2,
		 "names");
	TH_CHECK(e->i32 == 0 && e->str[0] == '\0' && e->inner == NULL, "nulls");
	protobuf_c_message_free_unpacked(&e->base, NULL);

	/* integers: numbers, strings, exponents, limits */
	e = dec_ok("{\"i32\":\"-2147483648\",\"u32\":4294967295,\"i64\":\"-9223372036854775808\","
		   "\"u64\":\"18446744073709551615\",\"s64\":9223372036854775807,\"sf32\":1e2,"
		   "\"f32\":\"3E1\",\"f64\":2.0,\"sf64\":-0}");
	TH_CHECK(e->i32 == INT32_MIN && e->u32 == UINT32_MAX && e->i64 == INT64_MIN &&
		     e->u64 == UINT64_MAX && e->s64 == INT64_MAX && e->sf32 == 100 &&
		     e->f32 == 30 && e->f64 == 2 && e->sf64 == 0,
		 "integers");
	protobuf_c_message_free_unpacked(&e->base, NULL);

	/* floats */
	e = dec_ok("{\"fl\":\"NaN\",\"db\":\"Infinity\",\"rDb\":[\"-Infinity\",1.5,\"2.5e3\",7],"
		   "\"rFl\":[3.4e38,-1e-3]}");
	TH_CHECK(isnan(e->fl) && isinf(e->db) && e->db > 0 && e->n_r_db == 4 &&
		     isinf(e->r_db[0]) && e->r_db[0] < 0 && e->r_db[1] == 1.5 &&
		     e->r_db[2] == 2500 && e->r_db[3] == 7 && e->n_r_fl == 2,
		 "floats");
	protobuf_c_message_free_unpacked(&e->base, NULL);

	/* bools, enums by name and number, bytes in every base64 form */
	e = dec_ok("{\"flag\":true,\"color\":\"RED\",\"rColor\":[2,\"GREEN\",7],"
		   "\"rData\":[\"+/8B\",\"-_8B\",\"+/8\",\"-_8=\",\"\"]}");
	TH_CHECK(e->flag && e->color == 1 && e->n_r_color == 3 && e->r_color[0] == 2 &&
		     e->r_color[1] == 2 && e->r_color[2] == 7,
		 "bool/enum");
	TH_CHECK(e->n_r_data == 5 && e->r_data[2].len == 2 && e->r_data[4].len == 0, "bytes count");
	for (int i = 0; i < 2; i++)
		TH_CHECK(e->r_data[i].len == 3 && memcmp(e->r_data[i].data, "\xfb\xff\x01", 3) == 0,
			 "bytes %d", i);
	TH_CHECK(memcmp(e->r_data[2].data, "\xfb\xff", 2) == 0 &&
		     memcmp(e->r_data[3].data, "\xfb\xff", 2) == 0,
		 "unpadded");
	protobuf_c_message_free_unpacked(&e->base, NULL);

	/* maps with int, bool, uint64 and string keys; oneof; nesting */
	e = dec_ok("{\"mInner\":{\"-3\":{\"n\":1},\"7\":{}},\"mBool\":{\"true\":\"5\",\"false\":6},"
		   "\"m_u64\":{\"18446744073709551615\":\"RED\"},\"mStr\":{\"\":\"e\",\"k\":\"v\"},"
		   "\"oInner\":{\"child\":{\"child\":{\"name\":\"deep\"}}}}");
	TH_CHECK(e->n_m_inner == 2 && e->m_inner[0]->key == -3 && e->m_inner[0]->value->n == 1 &&
		     e->m_inner[1]->key == 7 && e->n_m_bool == 2 && e->m_bool[0]->key &&
		     e->m_bool[0]->value == 5 && !e->m_bool[1]->key && e->n_m_u64 == 1 &&
		     e->m_u64[0]->key == UINT64_MAX && e->m_u64[0]->value == 1 &&
		     e->n_m_str == 2 && strcmp(e->m_str[1]->value, "v") == 0,
		 "maps");
	TH_CHECK(e->choice_case == PARLEY__JSONTEST__EVERYTHING__CHOICE_O_INNER &&
		     strcmp(e->o_inner->child->child->name, "deep") == 0,
		 "oneof");
	protobuf_c_message_free_unpacked(&e->base, NULL);

	/* a oneof member given as null leaves the oneof free for another */
	e = dec_ok("{\"oStr\":null,\"oU64\":\"3\"}");
	TH_CHECK(e->choice_case == PARLEY__JSONTEST__EVERYTHING__CHOICE_O_U64 && e->o_u64 == 3,
		 "oneof null");
	protobuf_c_message_free_unpacked(&e->base, NULL);

	/* whitespace and UTF-8 escapes */
	e = dec_ok(" {\n\t\"str\" : \"\\u00e9\\ud83d\\ude00\" } ");
	TH_CHECK(strcmp(e->str, "\xc3\xa9\xf0\x9f\x98\x80") == 0, "escapes");
	protobuf_c_message_free_unpacked(&e->base, NULL);
	printf("ok decode rules\n");
}

static void
test_decode_errors(void)
{
	char deep[1024] = "{";
	size_t n;

	dec_err_as(&parley__v1__open_request__descriptor,
		   "{\"rooms\":[{},{\"roomId\":\"a\"},{\"sinceSeq\":\"x\"}]}",
		   "field 'rooms[2].sinceSeq': expected an unsigned 64-bit integer");
	dec_err_as(&parley__v1__open_request__descriptor, "{\"rooms\":[{\"since_seq\":-1}]}",
		   "field 'rooms[0].since_seq': expected an unsigned 64-bit integer");
	dec_err("{\"bogus\":1}", "field 'bogus': no such field in parley.jsontest.Everything");
	dec_err("{\"inner\":{\"Name\":\"x\"}}",
		"field 'inner.Name': no such field in parley.jsontest.Inner");
	dec_err("{\"rI32\":[1],\"r_i32\":[2]}", "field 'r_i32': given twice (as 'rI32' and 'r_i32')");
	dec_err("{\"str\":\"a\",\"str\":\"b\"}",
		"invalid JSON at line 1, column 16: duplicate object key near '\"str\"'");
	dec_err("{\"oStr\":\"a\",\"oU64\":1}",
		"field 'oU64': only one field of a oneof may be set, and 'o_str' is");
	dec_err("{\"i32\":2147483648}", "field 'i32': expected a signed 32-bit integer");
	dec_err("{\"i32\":\"1.5\"}", "field 'i32': expected a signed 32-bit integer");
	dec_err("{\"i32\":\" 1\"}", "field 'i32': expected a signed 32-bit integer");
	dec_err("{\"u32\":-1}", "field 'u32': expected an unsigned 32-bit integer");
	dec_err("{\"u64\":\"18446744073709551616\"}",
		"field 'u64': expected an unsigned 64-bit integer");
	dec_err("{\"u64\":\"-1\"}", "field 'u64': expected an unsigned 64-bit integer");
	dec_err("{\"i64\":\"9223372036854775808\"}", "field 'i64': expected a signed 64-bit integer");
	dec_err("{\"i64\":true}", "field 'i64': expected a signed 64-bit integer");
	dec_err("{\"i64\":\"0x10\"}", "field 'i64': expected a signed 64-bit integer");
	dec_err("{\"fl\":1e39}", "field 'fl': out of range for a 32-bit float");
	dec_err("{\"db\":\"inf\"}",
		"field 'db': expected a number, \"NaN\", \"Infinity\" or \"-Infinity\"");
	dec_err("{\"flag\":\"true\"}", "field 'flag': expected true or false");
	dec_err("{\"color\":\"BLUE\"}",
		"field 'color': no value named 'BLUE' in enum parley.jsontest.Color");
	dec_err("{\"color\":1.5}",
		"field 'color': expected a value name of enum parley.jsontest.Color or a 32-bit number");
	dec_err("{\"data\":\"a$==\"}", "field 'data': expected base64 (standard or URL-safe)");
	dec_err("{\"data\":\"+_8B\"}", "field 'data': expected base64 (standard or URL-safe)");
	dec_err("{\"str\":7}", "field 'str': expected a string");
	dec_err("{\"str\":\"a\\u0000b\"}", "field 'str': string holds a NUL character");
	dec_err("{\"rStr\":[\"a\",null]}", "field 'rStr[1]': null is not a list element");
	dec_err("{\"rStr\":\"a\"}", "field 'rStr': expected an array");
	dec_err("{\"rInner\":[{},{\"n\":\"x\"}]}", "field 'rInner[1].n': expected a signed 32-bit integer");
	dec_err("{\"inner\":[]}", "field 'inner': expected an object (parley.jsontest.Inner)");
	dec_err("{\"mInner\":{\"x\":{}}}", "field 'mInner[\"x\"]': expected a signed 32-bit integer");
	dec_err("{\"mBool\":{\"1\":\"2\"}}", "field 'mBool[\"1\"]': map key must be \"true\" or \"false\"");
	dec_err("{\"mStr\":{\"k\":null}}", "field 'mStr[\"k\"]': null is not a map value");
	dec_err("{\"mStr\":[]}", "field 'mStr': expected an object (a map)");
	dec_err("{\"mInner\":{\"1\":{\"n\":true}}}",
		"field 'mInner[\"1\"].n': expected a signed 32-bit integer");
	dec_err("[]", "expected a JSON object (parley.jsontest.Everything)");
	dec_err("", "invalid JSON at line 1, column 0: '[' or '{' expected near end of file");
	dec_err_len(&parley__v1__logout_request__descriptor, NULL, 0,
		    "invalid JSON at line 1, column 0: '[' or '{' expected near end of file");
	dec_err("{\"str\":\"a\"", "invalid JSON at line 1, column 10: '}' expected near end of file");
	dec_err("{} {}", "invalid JSON at line 1, column 4: end of file expected near '{'");
	dec_err("{\"str\":\"\xff\"}",
		"invalid JSON at line 1, column 8: unable to decode byte 0xff near '\"'");
	dec_err("{\"str\":\"\\ud800\"}",
		"invalid JSON at line 1, column 15: invalid Unicode '\\uD800' near '\"\\ud800\"'");
	dec_err_len(&parley__v1__open_request__descriptor, "{\"x\":1}", 6,
		   "invalid JSON at line 1, column 6: '}' expected near end of file"); /* len counts */

	/* nesting: 32 messages deep is fine, 33 is not */
	n = strlen(deep);
	for (int i = 0; i < 31; i++)
		n += (size_t)snprintf(deep + n, sizeof(deep) - n, "\"child\":{");
	n += (size_t)snprintf(deep + n, sizeof(deep) - n, "\"n\":1");
	for (int i = 0; i < 32; i++)
		deep[n++] = '}';
	deep[n] = '\0';
	{
		ProtobufCMessage *m;
		rpc_status st;

		TH_CHECK(rpc_json_decode(&parley__jsontest__inner__descriptor, deep, n, &m, &st) ==
			     RPC_OK,
			 "32 deep: %s", st.message);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	memmove(deep + 9, deep, n + 1);
	memcpy(deep, "{\"child\":", 9);
	memcpy(deep + n + 9, "}", 2);
	dec_err_len(&parley__jsontest__inner__descriptor, deep, n + 10,
		   "field 'child.child.child.child.child.child.child.child.child.child.child.child."
		   "child.child.child.child.child.child.child.child.child.child.child.child.child."
		   "child.child.child.child.child.child.child': messages nested deeper than 32");
	printf("ok decode errors\n");
}

/* Explicit presence (proto2 optional here, which is how protobuf-c would
 * hold proto3 `optional`): emitted when set, even at the zero value. */
static void
test_presence(void)
{
	Parley__Jsontest__Presence p = PARLEY__JSONTEST__PRESENCE__INIT, sub = p;
	ProtobufCMessage *m;
	Parley__Jsontest__Presence *q;
	rpc_status st;
	const char *in = "{\"optI32\":0,\"opt_str\":\"\",\"optData\":\"\",\"optMood\":\"CALM\","
			 "\"optMsg\":{},\"optU64\":\"0\"}";

	enc_is(&p.base, "{}");
	p.has_opt_i32 = 1;
	p.opt_str = "";
	p.has_opt_data = 1;
	p.has_opt_mood = 1;
	p.opt_msg = &sub;
	p.has_opt_u64 = 1;
	enc_is(&p.base, "{\"optI32\":0,\"optStr\":\"\",\"optData\":\"\",\"optMood\":\"CALM\","
			"\"optMsg\":{},\"optU64\":\"0\"}");
	TH_CHECK(rpc_json_decode(&parley__jsontest__presence__descriptor, in, strlen(in), &m, &st) ==
		     RPC_OK,
		 "%s", st.message);
	q = (Parley__Jsontest__Presence *)m;
	TH_CHECK(q->has_opt_i32 && q->opt_str != NULL && q->has_opt_data && q->has_opt_mood &&
		     q->opt_msg != NULL && q->has_opt_u64,
		 "presence kept");
	round_trip(m);
	protobuf_c_message_free_unpacked(m, NULL);
	TH_CHECK(rpc_json_decode(&parley__jsontest__presence__descriptor, "{\"optI32\":null}", 15,
				 &m, &st) == RPC_OK &&
		     !((Parley__Jsontest__Presence *)m)->has_opt_i32,
		 "null is absent");
	protobuf_c_message_free_unpacked(m, NULL);
	printf("ok explicit presence\n");
}

/* ---- allocation failures inside jansson ------------------------------------ */

static long alloc_budget = -1; /* < 0: unlimited */

static void *
budget_malloc(size_t n)
{
	if (alloc_budget == 0)
		return NULL;
	if (alloc_budget > 0)
		alloc_budget--;
	return malloc(n);
}

static void
test_out_of_memory(void)
{
	ProtobufCMessage *m = random_message(&parley__jsontest__everything__descriptor);
	char *want = rpc_json_encode(m, NULL), *got;
	int failed_enc = 0, failed_dec = 0, oom_dec = 0;
	ProtobufCMessage *back;
	rpc_status st;
	rpc_code rc;

	TH_CHECK(want != NULL, "encode");
	json_set_alloc_funcs(budget_malloc, free);
	for (long b = 0;; b++) {
		alloc_budget = b;
		got = rpc_json_encode(m, NULL);
		alloc_budget = -1;
		if (got == NULL) {
			failed_enc++;
			continue;
		}
		TH_CHECK(strcmp(got, want) == 0, "budget %ld: %s", b, got);
		free(got);
		break;
	}
	for (long b = 0;; b++) {
		alloc_budget = b;
		rc = rpc_json_decode(m->descriptor, want, strlen(want), &back, &st);
		alloc_budget = -1;
		if (rc == RPC_OK) {
			protobuf_c_message_free_unpacked(back, NULL);
			break;
		}
		/* jansson reports some failed allocations in its lexer as syntax
		 * errors; either way nothing is returned and nothing leaks */
		TH_CHECK((rc == RPC_RESOURCE_EXHAUSTED || rc == RPC_INVALID_ARGUMENT) && back == NULL,
			 "budget %ld: %s %s", b, rpc_code_name(rc), st.message);
		failed_dec++;
		oom_dec += rc == RPC_RESOURCE_EXHAUSTED;
	}
	json_set_alloc_funcs(malloc, free);
	TH_CHECK(failed_enc > 10 && failed_dec > 10 && oom_dec > 0, "failures %d %d %d", failed_enc,
		 failed_dec, oom_dec);
	free(want);
	protobuf_c_message_free_unpacked(m, NULL);
	printf("ok out of memory: %d encode and %d decode failures, nothing leaked\n", failed_enc,
	       failed_dec);
}

/* ---- seeded mutation loop -------------------------------------------------- */

static const char *const tokens[] = {
    "null", "{}", "[]", "\"NaN\"", "1e999", "-", "18446744073709551616", "\"\\u0000\"",
    "\"\\ud800\"", "0", "-0", "1.5", "\"\xff\"", "true", "\"x\"", "[1,2]", ",", ":",
    "\"mStr\"", "\"rInner\"", "\"oStr\"", "\"oU64\"", "\"child\"", "{\"child\":{\"child\":{}}}"};

/* Changes buf (NUL-terminated, capacity cap) in one random way. */
static size_t
mutate(char *buf, size_t n, size_t cap)
{
	size_t at = n ? rnd() % n : 0, k;
	const char *t;

	switch (rnd() % 6) {
	case 0: /* flip a byte */
		if (n)
			buf[at] = (char)(buf[at] ^ (1u << (rnd() % 8)));
		break;
	case 1: /* insert a token */
		t = tokens[rnd() % (sizeof(tokens) / sizeof(tokens[0]))];
		k = strlen(t);
		if (n + k < cap) {
			memmove(buf + at + k, buf + at, n - at);
			memcpy(buf + at, t, k);
			n += k;
		}
		break;
	case 2: /* delete a range */
		k = n - at ? rnd() % (n - at) % 16 : 0;
		memmove(buf + at, buf + at + k, n - at - k);
		n -= k;
		break;
	case 3: /* duplicate a range */
		k = n - at ? rnd() % (n - at) % 32 : 0;
		if (n + k < cap) {
			memmove(buf + at + k, buf + at, n - at);
			n += k;
		}
		break;
	case 4: /* truncate */
		n = at;
		break;
	default: /* a random byte */
		if (n)
			buf[at] = (char)rnd();
		break;
	}
	buf[n] = '\0';
	return n;
}

static void
test_fuzz(void)
{
	enum { ROUNDS = 60000, CAP = 8192 };
	char *buf = malloc(CAP);
	int ok = 0, bad = 0;
	size_t n_types = 0;

	TH_CHECK(buf != NULL, "malloc");
	while (json_all_descriptors[n_types] != NULL)
		n_types++;
	rng = 12345;
	for (int r = 0; r < ROUNDS; r++) {
		const ProtobufCMessageDescriptor *d =
		    r % 2 ? &parley__jsontest__everything__descriptor
			  : json_all_descriptors[rnd() % n_types];
		ProtobufCMessage *seed = random_message(d), *m;
		char *json = rpc_json_encode(seed, NULL);
		size_t n = strlen(json);
		rpc_status st;
		rpc_code rc;

		protobuf_c_message_free_unpacked(seed, NULL);
		TH_CHECK(json != NULL && n < CAP, "seed");
		memcpy(buf, json, n + 1);
		free(json);
		for (int k = 1 + (int)(rnd() % 3); k > 0; k--)
			n = mutate(buf, n, CAP);
		st.message[0] = '\0';
		rc = rpc_json_decode(d, buf, n, &m, &st);
		if (rc != RPC_OK) {
			TH_CHECK(rc == RPC_INVALID_ARGUMENT && m == NULL && st.message[0] != '\0',
				 "%s: %s %s", buf, rpc_code_name(rc), st.message);
			bad++;
			continue;
		}
		/* whatever was accepted encodes, and its encoding decodes to the
		 * same message */
		round_trip(m);
		protobuf_c_message_free_unpacked(m, NULL);
		ok++;
	}
	free(buf);
	TH_CHECK(ok > ROUNDS / 40 && bad > ROUNDS / 4, "accepted %d refused %d", ok, bad);
	printf("ok mutation loop: %d accepted, %d refused\n", ok, bad);
}

/* ---- helpers for json_interop_test (Google's json_format on the other side) -- */

/* --dump N: N random messages of every type from proto/, one per line:
 * "<full name> <packed bytes in hex> <our JSON>". */
static int
dump(int n)
{
	rng = 4242;
	for (const ProtobufCMessageDescriptor *const *d = json_all_descriptors; *d; d++)
		for (int i = 0; i < n; i++) {
			ProtobufCMessage *m = random_message(*d);
			size_t len;
			uint8_t *bin = pack(m, &len);
			char *json = rpc_json_encode(m, NULL);

			TH_CHECK(json != NULL, "encode");
			printf("%s ", (*d)->name);
			for (size_t k = 0; k < len; k++)
				printf("%02x", bin[k]);
			printf(" %s\n", json);
			free(json);
			free(bin);
			protobuf_c_message_free_unpacked(m, NULL);
		}
	return 0;
}

/* --reencode: reads "<full name> <JSON>" lines; answers each with our
 * encoding of what we decoded, or "ERROR <status message>". */
static int
reencode(void)
{
	static char line[1 << 16];

	while (fgets(line, sizeof(line), stdin) != NULL) {
		char *sp = strchr(line, ' ');
		const ProtobufCMessageDescriptor *const *d;
		ProtobufCMessage *m;
		rpc_status st;
		char *json;

		TH_CHECK(sp != NULL && strchr(sp, '\n') != NULL, "malformed line: %.80s", line);
		*sp++ = '\0';
		for (d = json_all_descriptors; *d && strcmp((*d)->name, line) != 0; d++)
			;
		TH_CHECK(*d != NULL, "no message type %s", line);
		if (rpc_json_decode(*d, sp, strlen(sp), &m, &st) != RPC_OK) {
			printf("ERROR %s\n", st.message);
			continue;
		}
		json = rpc_json_encode(m, NULL);
		TH_CHECK(json != NULL, "encode");
		printf("%s\n", json);
		free(json);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--dump") == 0)
		return dump(atoi(argv[2]));
	if (argc == 2 && strcmp(argv[1], "--reencode") == 0)
		return reencode();
	test_encode();
	test_presence();
	test_decode_rules();
	test_decode_errors();
	test_round_trip_all();
	test_out_of_memory();
	test_fuzz();
	return 0;
}

/*
 * json_encode.c — protobuf-c messages -> proto3 canonical JSON, generically
 * through descriptors (see json.h for the mapping). Every jansson value is
 * either attached to its parent or released before a function returns, so a
 * failed allocation anywhere leaves nothing behind.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "json.h"
#include "json_fields.h"

#define CMEMBER(type, msg, off) (*(const type *)((const char *)(msg) + (off)))

/* A JSON string of s[0..n); bytes that are not UTF-8 become U+FFFD. */
static json_t *
encode_text(const char *s, size_t n)
{
	char *fixed;
	size_t o = 0;
	json_t *j;

	if (rpc_utf8_valid(s, n))
		return json_stringn(s, n);
	if ((fixed = malloc(n * 3 + 1)) == NULL)
		return NULL;
	for (size_t i = 0; i < n;) {
		size_t k = 1;

		if ((unsigned char)s[i] >= 0x80) {
			for (k = 2; k <= 4 && i + k <= n; k++)
				if (rpc_utf8_valid(s + i, k))
					break;
			if (k > 4 || i + k > n) {
				memcpy(fixed + o, "\xef\xbf\xbd", 3);
				o += 3;
				i++;
				continue;
			}
		}
		memcpy(fixed + o, s + i, k);
		o += k;
		i += k;
	}
	j = json_stringn(fixed, o);
	free(fixed);
	return j;
}

static json_t *encode_message(const ProtobufCMessage *msg);

static json_t *
encode_value(const ProtobufCFieldDescriptor *f, const void *slot)
{
	char num[32];
	double d;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return json_integer(*(const int32_t *)slot);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return json_integer(*(const uint32_t *)slot);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(num, sizeof(num), "%" PRId64, *(const int64_t *)slot);
		return json_string(num);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		snprintf(num, sizeof(num), "%" PRIu64, *(const uint64_t *)slot);
		return json_string(num);
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE:
		d = f->type == PROTOBUF_C_TYPE_FLOAT ? *(const float *)slot : *(const double *)slot;
		if (isnan(d))
			return json_string("NaN");
		if (isinf(d))
			return json_string(d > 0 ? "Infinity" : "-Infinity");
		return json_real(d);
	case PROTOBUF_C_TYPE_BOOL:
		return json_boolean(*(const protobuf_c_boolean *)slot);
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)slot;
		const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);

		return ev != NULL ? json_string(ev->name) : json_integer(v);
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)slot;

		return s != NULL ? encode_text(s, strlen(s)) : json_string("");
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = slot;
		size_t cap = sodium_base64_ENCODED_LEN(b->len, sodium_base64_VARIANT_ORIGINAL);
		char *s = malloc(cap);
		json_t *j;

		if (s == NULL)
			return NULL;
		sodium_bin2base64(s, cap, b->data, b->len, sodium_base64_VARIANT_ORIGINAL);
		j = json_string(s);
		free(s);
		return j;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(ProtobufCMessage *const *)slot;

		return m != NULL ? encode_message(m) : json_object();
	}
	}
	return NULL;
}

/* A map key as JSON's object key: a string, or the number or bool as text. */
static json_t *
encode_map_key(const ProtobufCFieldDescriptor *kf, const void *slot)
{
	if (kf->type == PROTOBUF_C_TYPE_STRING || kf->type == PROTOBUF_C_TYPE_INT64 ||
	    kf->type == PROTOBUF_C_TYPE_SINT64 || kf->type == PROTOBUF_C_TYPE_SFIXED64 ||
	    kf->type == PROTOBUF_C_TYPE_UINT64 || kf->type == PROTOBUF_C_TYPE_FIXED64)
		return encode_value(kf, slot);
	if (kf->type == PROTOBUF_C_TYPE_BOOL)
		return json_string(*(const protobuf_c_boolean *)slot ? "true" : "false");
	{
		json_t *n = encode_value(kf, slot); /* 32-bit integers */
		char num[32];

		if (n == NULL)
			return NULL;
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(n));
		json_decref(n);
		return json_string(num);
	}
}

static json_t *
encode_map(const ProtobufCFieldDescriptor *f, ProtobufCMessage *const *entries, size_t n)
{
	const ProtobufCMessageDescriptor *ed = f->descriptor;
	json_t *obj = json_object();

	if (obj == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		json_t *k = encode_map_key(&ed->fields[0], (char *)entries[i] + ed->fields[0].offset);
		json_t *v = encode_value(&ed->fields[1], (char *)entries[i] + ed->fields[1].offset);
		int err;

		if (k == NULL || v == NULL) {
			json_decref(v);
			err = -1;
		} else { /* takes v, even when it fails */
			err = json_object_setn_new(obj, json_string_value(k), json_string_length(k), v);
		}
		json_decref(k);
		if (err != 0) {
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

/* True when a field holds something the encoding must show. */
static bool
present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
	const void *slot = (const char *)msg + f->offset;

	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		return CMEMBER(uint32_t, msg, f->quantifier_offset) == f->id;
	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		return CMEMBER(size_t, msg, f->quantifier_offset) > 0;
	if (f->label == PROTOBUF_C_LABEL_REQUIRED)
		return true;
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
		if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE) {
			const void *p = *(const void *const *)slot;

			return p != NULL && p != f->default_value;
		}
		return CMEMBER(protobuf_c_boolean, msg, f->quantifier_offset);
	}
	/* implicit presence: present when not the zero value */
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)slot;

		return s != NULL && s[0] != '\0';
	}
	case PROTOBUF_C_TYPE_BYTES:
		return ((const ProtobufCBinaryData *)slot)->len > 0;
	case PROTOBUF_C_TYPE_MESSAGE:
		return *(const void *const *)slot != NULL;
	default: {
		static const uint8_t zero[8];

		return memcmp(slot, zero, rpc_json_elem_size(f->type)) != 0;
	}
	}
}

static json_t *
encode_message(const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	json_t *obj = json_object();

	if (obj == NULL)
		return NULL;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *slot = (const char *)msg + f->offset;
		char small[128], *name = small;
		size_t nlen;
		json_t *v;
		int rc;

		if (!present(msg, f))
			continue;
		if (f->label != PROTOBUF_C_LABEL_REPEATED) {
			v = encode_value(f, slot);
		} else if (rpc_json_is_map(d, f)) {
			v = encode_map(f, *(ProtobufCMessage *const *const *)slot,
				       CMEMBER(size_t, msg, f->quantifier_offset));
		} else {
			size_t n = CMEMBER(size_t, msg, f->quantifier_offset);
			const char *arr = *(const char *const *)slot;
			size_t size = rpc_json_elem_size(f->type);

			v = json_array();
			for (size_t k = 0; v != NULL && k < n; k++)
				if (json_array_append_new(v, encode_value(f, arr + k * size)) != 0) {
					json_decref(v);
					v = NULL;
				}
		}
		nlen = rpc_json_field_name(f->name, small, sizeof(small));
		if (nlen >= sizeof(small)) {
			if ((name = malloc(nlen + 1)) != NULL)
				rpc_json_field_name(f->name, name, nlen + 1);
		}
		/* json_object_setn_new takes v even when it fails */
		rc = v == NULL || name == NULL ? -1 : json_object_setn_new(obj, name, nlen, v);
		if (name == NULL)
			json_decref(v);
		if (name != small)
			free(name);
		if (rc != 0) {
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

char *
rpc_json_encode(const ProtobufCMessage *msg, size_t *len)
{
	json_t *root = encode_message(msg);
	char *s;

	if (root == NULL)
		return NULL;
	s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (s != NULL && len != NULL)
		*len = strlen(s);
	return s;
}

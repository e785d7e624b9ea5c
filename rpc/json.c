/*
 * json.c — proto3 canonical JSON -> protobuf-c messages, generically
 * through descriptors (see json.h for the mapping and what it refuses), and
 * the field helpers the encoder (json_encode.c) shares.
 *
 * Decoding builds the message tree in place as it goes: every allocation is
 * hung on the tree (and counted in its n_ field) before it is filled, so one
 * protobuf_c_message_free_unpacked of the root frees a half-built message
 * on any error path.
 */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "json.h"
#include "json_fields.h"
#include "secret.h"

#define MEMBER(type, msg, off) (*(type *)((char *)(msg) + (off)))

/* jansson copies every string of a body it parses (a Login's password):
 * its allocator zeroes what it frees. json_set_alloc_funcs must come
 * before any other jansson call, so it runs before main. */
__attribute__((constructor)) static void
json_wiping_allocator(void)
{
	json_set_alloc_funcs(rpc_secret_malloc, rpc_secret_free);
}

/* ---- names --------------------------------------------------------------- */

size_t
rpc_json_field_name(const char *proto, char *buf, size_t cap)
{
	size_t n = 0;
	bool upper = false;

	for (; *proto != '\0'; proto++) {
		char c = *proto;

		if (c == '_') {
			upper = true;
			continue;
		}
		if (upper && c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		upper = false;
		if (n + 1 < cap)
			buf[n] = c;
		n++;
	}
	if (cap > 0)
		buf[n < cap ? n : cap - 1] = '\0';
	return n;
}

/* True when key is the lowerCamelCase name of the proto field name. */
static bool
json_name_eq(const char *proto, const char *key)
{
	bool upper = false;

	for (; *proto != '\0'; proto++) {
		char c = *proto;

		if (c == '_') {
			upper = true;
			continue;
		}
		if (upper && c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		upper = false;
		if (*key++ != c)
			return false;
	}
	return *key == '\0';
}

static const ProtobufCFieldDescriptor *
field_by_id(const ProtobufCMessageDescriptor *d, uint32_t id)
{
	for (unsigned i = 0; i < d->n_fields; i++)
		if (d->fields[i].id == id)
			return &d->fields[i];
	return NULL;
}

bool
rpc_json_is_map(const ProtobufCMessageDescriptor *parent, const ProtobufCFieldDescriptor *f)
{
	const ProtobufCMessageDescriptor *e = f->descriptor;
	size_t plen = strlen(parent->name), elen;
	char camel[128];

	if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE ||
	    e == NULL || e->n_fields != 2 || e->fields[0].id != 1 || e->fields[1].id != 2 ||
	    strcmp(e->fields[0].name, "key") != 0 || strcmp(e->fields[1].name, "value") != 0)
		return false;
	/* <parent>.<Field>Entry, Field being the camel-cased name, first letter up */
	elen = rpc_json_field_name(f->name, camel, sizeof(camel));
	if (elen == 0 || elen >= sizeof(camel))
		return false;
	if (camel[0] >= 'a' && camel[0] <= 'z')
		camel[0] = (char)(camel[0] - 'a' + 'A');
	return strncmp(e->name, parent->name, plen) == 0 && e->name[plen] == '.' &&
	       strncmp(e->name + plen + 1, camel, elen) == 0 &&
	       strcmp(e->name + plen + 1 + elen, "Entry") == 0;
}

size_t
rpc_json_elem_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return 8;
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	default: /* the 32-bit integers and enums */
		return 4;
	}
}

/* ---- decoding ------------------------------------------------------------ */

typedef struct decoder {
	rpc_status *st;
	int depth;
	size_t plen;
	char path[RPC_STATUS_MESSAGE_MAX];
} decoder;

/* Appends a path segment; returns the mark to restore with path_pop. */
static size_t
path_push(decoder *dec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static size_t
path_push(decoder *dec, const char *fmt, ...)
{
	size_t mark = dec->plen;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(dec->path + mark, sizeof(dec->path) - mark, fmt, ap);
	va_end(ap);
	if (n > 0)
		dec->plen += (size_t)n < sizeof(dec->path) - mark ? (size_t)n
							    : sizeof(dec->path) - mark - 1;
	return mark;
}

static void
path_pop(decoder *dec, size_t mark)
{
	dec->plen = mark;
	dec->path[mark] = '\0';
}

static rpc_code
fail(decoder *dec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static rpc_code
fail(decoder *dec, const char *fmt, ...)
{
	char what[RPC_STATUS_MESSAGE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (dec->plen == 0)
		return rpc_status_set(dec->st, RPC_INVALID_ARGUMENT, "%s", what);
	return rpc_status_set(dec->st, RPC_INVALID_ARGUMENT, "field '%s': %s", dec->path, what);
}

static rpc_code
oom(decoder *dec)
{
	return rpc_status_set(dec->st, RPC_RESOURCE_EXHAUSTED, "out of memory decoding JSON");
}

/* Characters a numeric string may hold; keeps strtod from reading "inf",
 * hex floats or leading blanks. */
static bool
numeric_chars(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (strchr("0123456789+-.eE", *s) == NULL)
			return false;
	return true;
}

/* A JSON number or numeric string as a double; false when it is neither. */
static bool
as_double(const json_t *v, double *out)
{
	const char *s;
	char *end;

	if (json_is_number(v)) {
		*out = json_number_value(v);
		return true;
	}
	if (!json_is_string(v))
		return false;
	s = json_string_value(v);
	if (!numeric_chars(s))
		return false;
	errno = 0;
	*out = strtod(s, &end);
	return errno == 0 && *end == '\0' && end != s;
}

/* An integral value in [min, max]: a JSON integer, an integral real, or a
 * string holding either. */
static bool
as_int64(const json_t *v, int64_t min, int64_t max, int64_t *out)
{
	double d;

	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);

		if (i < min || i > max)
			return false;
		*out = (int64_t)i;
		return true;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		long long ll;

		if ((s[0] >= '0' && s[0] <= '9') || (s[0] == '-' && s[1] >= '0' && s[1] <= '9')) {
			errno = 0;
			ll = strtoll(s, &end, 10);
			if (*end == '\0')
				return errno == 0 && ll >= min && ll <= max && ((*out = ll), true);
		}
	}
	/* exponent or fraction forms: exact only where a double is */
	if (!as_double(v, &d) || !isfinite(d) || d != trunc(d) || d < (double)min ||
	    d >= -(double)INT64_MIN || d > (double)max)
		return false;
	*out = (int64_t)d;
	return *out >= min && *out <= max;
}

static bool
as_uint64(const json_t *v, uint64_t max, uint64_t *out)
{
	double d;

	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);

		if (i < 0 || (uint64_t)i > max)
			return false;
		*out = (uint64_t)i;
		return true;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		unsigned long long ull;

		if (s[0] >= '0' && s[0] <= '9') {
			errno = 0;
			ull = strtoull(s, &end, 10);
			if (*end == '\0')
				return errno == 0 && ull <= max && ((*out = ull), true);
		}
	}
	if (!as_double(v, &d) || !isfinite(d) || d != trunc(d) || d < 0 ||
	    d >= 18446744073709551616.0 || d > (double)max)
		return false;
	*out = (uint64_t)d;
	return *out <= max;
}

static rpc_code decode_message(decoder *dec, const ProtobufCMessageDescriptor *d,
			       const json_t *obj, ProtobufCMessage *msg);

/* A new message of type d, initialised; hung on the tree by the caller. */
static ProtobufCMessage *
new_message(const ProtobufCMessageDescriptor *d)
{
	ProtobufCMessage *m = malloc(d->sizeof_message);

	if (m != NULL)
		d->message_init(m);
	return m;
}

static rpc_code
decode_string(decoder *dec, const json_t *v, char **slot)
{
	size_t n;
	char *s;

	if (!json_is_string(v))
		return fail(dec, "expected a string");
	n = json_string_length(v);
	if (memchr(json_string_value(v), '\0', n) != NULL)
		return fail(dec, "string holds a NUL character");
	if (!rpc_utf8_valid(json_string_value(v), n))
		return fail(dec, "string is not valid UTF-8");
	if ((s = malloc(n + 1)) == NULL)
		return oom(dec);
	memcpy(s, json_string_value(v), n + 1);
	*slot = s;
	return RPC_OK;
}

static rpc_code
decode_bytes(decoder *dec, const json_t *v, ProtobufCBinaryData *slot)
{
	const char *s;
	size_t n, cap, got;
	int variant;
	uint8_t *buf;

	if (!json_is_string(v))
		return fail(dec, "expected a base64 string");
	s = json_string_value(v);
	n = json_string_length(v);
	if (memchr(s, '=', n) != NULL)
		variant = strpbrk(s, "-_") != NULL ? sodium_base64_VARIANT_URLSAFE
						   : sodium_base64_VARIANT_ORIGINAL;
	else
		variant = strpbrk(s, "-_") != NULL ? sodium_base64_VARIANT_URLSAFE_NO_PADDING
						   : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
	cap = n / 4 * 3 + 3;
	if ((buf = malloc(cap)) == NULL)
		return oom(dec);
	if (sodium_base642bin(buf, cap, s, n, NULL, &got, NULL, variant) != 0) {
		free(buf);
		return fail(dec, "expected base64 (standard or URL-safe)");
	}
	if (got == 0) {
		free(buf);
		buf = NULL;
	}
	slot->data = buf;
	slot->len = got;
	return RPC_OK;
}

/* Decodes one value of field f's type (a single element for repeated
 * fields) into slot. */
static rpc_code
decode_value(decoder *dec, const ProtobufCFieldDescriptor *f, const json_t *v, void *slot)
{
	int64_t i;
	uint64_t u;
	double d;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		if (!as_int64(v, INT32_MIN, INT32_MAX, &i))
			return fail(dec, "expected a signed 32-bit integer");
		*(int32_t *)slot = (int32_t)i;
		return RPC_OK;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		if (!as_uint64(v, UINT32_MAX, &u))
			return fail(dec, "expected an unsigned 32-bit integer");
		*(uint32_t *)slot = (uint32_t)u;
		return RPC_OK;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		if (!as_int64(v, INT64_MIN, INT64_MAX, &i))
			return fail(dec, "expected a signed 64-bit integer");
		*(int64_t *)slot = i;
		return RPC_OK;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		if (!as_uint64(v, UINT64_MAX, &u))
			return fail(dec, "expected an unsigned 64-bit integer");
		*(uint64_t *)slot = u;
		return RPC_OK;
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE: {
		const char *s = json_string_value(v); /* NULL unless a string */

		if (s != NULL && strcmp(s, "NaN") == 0)
			d = NAN;
		else if (s != NULL && strcmp(s, "Infinity") == 0)
			d = INFINITY;
		else if (s != NULL && strcmp(s, "-Infinity") == 0)
			d = -INFINITY;
		else if (!as_double(v, &d) || !isfinite(d))
			return fail(dec, "expected a number, \"NaN\", \"Infinity\" or \"-Infinity\"");
		if (f->type == PROTOBUF_C_TYPE_DOUBLE) {
			*(double *)slot = d;
			return RPC_OK;
		}
		if (isfinite(d) && (d > FLT_MAX || d < -FLT_MAX))
			return fail(dec, "out of range for a 32-bit float");
		*(float *)slot = (float)d;
		return RPC_OK;
	}
	case PROTOBUF_C_TYPE_BOOL:
		if (!json_is_boolean(v))
			return fail(dec, "expected true or false");
		*(protobuf_c_boolean *)slot = json_is_true(v);
		return RPC_OK;
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumDescriptor *ed = f->descriptor;
		const ProtobufCEnumValue *ev;

		if (json_is_string(v)) {
			ev = protobuf_c_enum_descriptor_get_value_by_name(ed, json_string_value(v));
			if (ev == NULL)
				return fail(dec, "no value named '%.64s' in enum %s",
					    json_string_value(v), ed->name);
			*(int *)slot = ev->value;
			return RPC_OK;
		}
		/* proto3 enums are open: any int32 number is kept */
		if (!json_is_integer(v) || !as_int64(v, INT32_MIN, INT32_MAX, &i))
			return fail(dec, "expected a value name of enum %s or a 32-bit number",
				    ed->name);
		*(int *)slot = (int)i;
		return RPC_OK;
	}
	case PROTOBUF_C_TYPE_STRING:
		return decode_string(dec, v, slot);
	case PROTOBUF_C_TYPE_BYTES:
		return decode_bytes(dec, v, slot);
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessageDescriptor *md = f->descriptor;
		ProtobufCMessage *m;

		if (!json_is_object(v))
			return fail(dec, "expected an object (%s)", md->name);
		if ((m = new_message(md)) == NULL)
			return oom(dec);
		*(ProtobufCMessage **)slot = m; /* on the tree before it is filled */
		return decode_message(dec, md, v, m);
	}
	}
	return fail(dec, "unsupported field type");
}

/* Explicit presence (proto2, proto3 `optional`) of a scalar is a has_ flag;
 * strings and messages are present when non-NULL. */
static void
mark_present(const ProtobufCFieldDescriptor *f, void *msg)
{
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
	    f->type != PROTOBUF_C_TYPE_MESSAGE && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
		MEMBER(protobuf_c_boolean, msg, f->quantifier_offset) = 1;
}

static rpc_code
decode_map(decoder *dec, const ProtobufCFieldDescriptor *f, const json_t *v, void *msg)
{
	const ProtobufCMessageDescriptor *ed = f->descriptor;
	const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
	size_t *count = &MEMBER(size_t, msg, f->quantifier_offset);
	ProtobufCMessage **entries;
	const char *key;
	json_t *val;
	rpc_code rc;

	if (!json_is_object(v))
		return fail(dec, "expected an object (a map)");
	if (json_object_size(v) == 0)
		return RPC_OK;
	if ((entries = calloc(json_object_size(v), sizeof(*entries))) == NULL)
		return oom(dec);
	MEMBER(ProtobufCMessage **, msg, f->offset) = entries;
	json_object_foreach((json_t *)v, key, val) {
		ProtobufCMessage *e = new_message(ed);
		size_t mark = path_push(dec, "[\"%.40s\"]", key);

		if (e == NULL)
			return oom(dec);
		entries[(*count)++] = e;
		if (kf->type == PROTOBUF_C_TYPE_BOOL) {
			if (strcmp(key, "true") != 0 && strcmp(key, "false") != 0)
				return fail(dec, "map key must be \"true\" or \"false\"");
			MEMBER(protobuf_c_boolean, e, kf->offset) = key[0] == 't';
		} else {
			json_t *k = json_string(key);

			if (k == NULL)
				return oom(dec);
			rc = decode_value(dec, kf, k, (char *)e + kf->offset);
			json_decref(k);
			if (rc != RPC_OK)
				return rc;
		}
		mark_present(kf, e);
		if (json_is_null(val))
			return fail(dec, "null is not a map value");
		if ((rc = decode_value(dec, vf, val, (char *)e + vf->offset)) != RPC_OK)
			return rc;
		mark_present(vf, e);
		path_pop(dec, mark);
	}
	return RPC_OK;
}

static rpc_code
decode_repeated(decoder *dec, const ProtobufCFieldDescriptor *f, const json_t *v, void *msg)
{
	size_t *count = &MEMBER(size_t, msg, f->quantifier_offset);
	size_t size = rpc_json_elem_size(f->type), n;
	char *arr;
	rpc_code rc;

	if (!json_is_array(v))
		return fail(dec, "expected an array");
	if ((n = json_array_size(v)) == 0)
		return RPC_OK;
	if ((arr = calloc(n, size)) == NULL)
		return oom(dec);
	MEMBER(char *, msg, f->offset) = arr;
	for (size_t i = 0; i < n; i++) {
		const json_t *el = json_array_get(v, i);
		size_t mark = path_push(dec, "[%zu]", i);

		if (json_is_null(el))
			return fail(dec, "null is not a list element");
		rc = decode_value(dec, f, el, arr + i * size);
		/* counted once it owns what it points to: a value when decoded, a
		 * message as soon as it is allocated (it is filled in place) */
		if (rc == RPC_OK ||
		    (f->type == PROTOBUF_C_TYPE_MESSAGE && *(void **)(arr + i * size) != NULL))
			(*count)++;
		if (rc != RPC_OK)
			return rc;
		path_pop(dec, mark);
	}
	return RPC_OK;
}

static rpc_code
decode_field(decoder *dec, const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
	     const json_t *v, ProtobufCMessage *msg)
{
	rpc_code rc;

	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		return rpc_json_is_map(d, f) ? decode_map(dec, f, v, msg) : decode_repeated(dec, f, v, msg);
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		uint32_t *which = &MEMBER(uint32_t, msg, f->quantifier_offset);

		if (*which != 0) {
			const ProtobufCFieldDescriptor *other = field_by_id(d, *which);

			return fail(dec, "only one field of a oneof may be set, and '%s' is",
				    other != NULL ? other->name : "another");
		}
		*which = f->id; /* before the value, so freeing sees what it holds */
		return decode_value(dec, f, v, (char *)msg + f->offset);
	}
	if ((rc = decode_value(dec, f, v, (char *)msg + f->offset)) != RPC_OK)
		return rc;
	mark_present(f, msg);
	return RPC_OK;
}

static rpc_code
decode_message(decoder *dec, const ProtobufCMessageDescriptor *d, const json_t *obj,
	       ProtobufCMessage *msg)
{
	const char **seen = NULL; /* per field: the key that set it */
	const char *key;
	json_t *val;
	rpc_code rc = RPC_OK;

	if (++dec->depth > RPC_JSON_MAX_DEPTH) {
		rc = fail(dec, "messages nested deeper than %d", RPC_JSON_MAX_DEPTH);
		goto done;
	}
	if (d->n_fields > 0 && (seen = calloc(d->n_fields, sizeof(*seen))) == NULL) {
		rc = oom(dec);
		goto done;
	}
	json_object_foreach((json_t *)obj, key, val) {
		size_t mark = path_push(dec, "%s%.64s", dec->plen > 0 ? "." : "", key);
		unsigned i;

		for (i = 0; i < d->n_fields; i++)
			if (strcmp(d->fields[i].name, key) == 0 || json_name_eq(d->fields[i].name, key))
				break;
		if (i == d->n_fields) {
			rc = fail(dec, "no such field in %s", d->name);
			goto done;
		}
		if (seen[i] != NULL) {
			rc = fail(dec, "given twice (as '%.64s' and '%.64s')", seen[i], key);
			goto done;
		}
		seen[i] = key;
		if (!json_is_null(val) && (rc = decode_field(dec, d, &d->fields[i], val, msg)) != RPC_OK)
			goto done;
		path_pop(dec, mark);
	}
done:
	free(seen);
	dec->depth--;
	return rc;
}

rpc_code
rpc_json_decode(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
		ProtobufCMessage **out, rpc_status *st)
{
	decoder dec = {.st = st};
	json_error_t err;
	json_t *root;
	ProtobufCMessage *msg = NULL;
	rpc_code rc;

	*out = NULL;
	if (json == NULL) /* an empty body, as some callers hold it */
		json = "", len = 0;
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
	if (root == NULL) {
		/* jansson leaves the text empty when it could not even start */
		if (json_error_code(&err) == json_error_out_of_memory || err.text[0] == '\0')
			return oom(&dec);
		return rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "invalid JSON at line %d, column %d: %s", err.line,
				      err.column, err.text);
	}
	if (!json_is_object(root)) {
		rc = rpc_status_set(st, RPC_INVALID_ARGUMENT, "expected a JSON object (%s)",
				    d->name);
		goto fail;
	}
	if ((msg = new_message(d)) == NULL) {
		rc = oom(&dec);
		goto fail;
	}
	if ((rc = decode_message(&dec, d, root, msg)) != RPC_OK)
		goto fail;
	json_decref(root);
	*out = msg;
	return RPC_OK;
fail:
	/* A refused body may have had a password decoded already. */
	rpc_secret_free_message(msg);
	json_decref(root);
	return rc;
}

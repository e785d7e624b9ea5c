/* secret.c — wiping allocator and message wipe (see secret.h). */
#include "secret.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

void *
rpc_secret_malloc(size_t size)
{
	return malloc(size);
}

void
rpc_secret_free(void *p)
{
	size_t size;

	if (p == NULL)
		return;
	size = malloc_usable_size(p);
	sodium_memzero(p, size);
	free(p);
}

void
rpc_secret_wipe_free(void *p, size_t len)
{
	if (p == NULL)
		return;
	sodium_memzero(p, len);
	free(p);
}

/* The size of one element of a repeated field that may hold secrets
 * (strings, bytes, messages); 0 for the rest (numbers, enums, bools). */
static size_t
element_size(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	default:
		return 0;
	}
}

/* Zeroes what the field at v holds (a string's or bytes' contents, a
 * message's fields, recursively); other types hold no secret text. */
static void
wipe_value(const ProtobufCFieldDescriptor *f, void *v)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING: {
		char *s = *(char **)v;

		/* protobuf-c points unset strings at the descriptor's
		 * default (read-only): only what was unpacked is ours. */
		if (s != NULL && s != f->default_value && s[0] != '\0')
			sodium_memzero(s, strlen(s));
		break;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		ProtobufCBinaryData *b = v;

		if (b->data != NULL && b->len > 0 &&
		    (f->default_value == NULL ||
		     b->data != ((const ProtobufCBinaryData *)f->default_value)->data))
			sodium_memzero(b->data, b->len);
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		ProtobufCMessage *m = *(ProtobufCMessage **)v;

		if (m != NULL) {
			for (unsigned i = 0; i < m->descriptor->n_fields; i++) {
				const ProtobufCFieldDescriptor *g = &m->descriptor->fields[i];
				char *base = (char *)m + g->offset;

				if (g->label == PROTOBUF_C_LABEL_REPEATED) {
					size_t n = *(size_t *)((char *)m + g->quantifier_offset);
					char *arr = *(char **)base;
					size_t sz = element_size(g->type);

					for (size_t k = 0; sz > 0 && arr != NULL && k < n; k++)
						wipe_value(g, arr + k * sz);
				} else if ((g->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0) {
					uint32_t which =
					    *(uint32_t *)((char *)m + g->quantifier_offset);

					if (which == g->id)
						wipe_value(g, base);
				} else {
					wipe_value(g, base);
				}
			}
		}
		break;
	}
	default:
		break;
	}
}

void
rpc_secret_free_message(ProtobufCMessage *m)
{
	static const ProtobufCFieldDescriptor root = {.type = PROTOBUF_C_TYPE_MESSAGE};

	if (m == NULL)
		return;
	wipe_value(&root, &m);
	protobuf_c_message_free_unpacked(m, NULL);
}

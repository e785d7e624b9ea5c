/*
 * json_fields.h — what rpc/json.c (decoding) and rpc/json_encode.c share
 * about protobuf-c fields: JSON names, map detection, element sizes. Private
 * to rpc/; no state, no locks.
 */
#ifndef PARLEY_RPC_JSON_FIELDS_H
#define PARLEY_RPC_JSON_FIELDS_H

#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

/* protoc's ToJsonName: drops each '_' and upper-cases the letter after it.
 * Writes at most cap bytes with a NUL (truncating); returns the full length. */
size_t rpc_json_field_name(const char *proto, char *buf, size_t cap);

/* True for a repeated field whose type is protoc's generated map entry
 * (see json.h). */
bool rpc_json_is_map(const ProtobufCMessageDescriptor *parent, const ProtobufCFieldDescriptor *f);

/* Size of one element of a repeated field of this type. */
size_t rpc_json_elem_size(ProtobufCType t);

#endif

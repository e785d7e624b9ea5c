/*
 * json.h — proto3's canonical JSON mapping for any protobuf-c message,
 * driven by its descriptor (https://protobuf.dev/programming-guides/proto3/#json),
 * on jansson. The HTTP face uses it for `application/json`; nothing in it
 * knows a Parley message.
 *
 * Output: field names in lowerCamelCase (derived from the proto name, as
 * protoc does; protobuf-c keeps no json_name); fields at their default value
 * omitted (implicit presence), except oneof members and explicit-presence
 * (`optional`) fields, which are emitted whenever set; 64-bit integers as
 * decimal strings; 32-bit integers as numbers; floats and doubles as numbers
 * or "NaN", "Infinity", "-Infinity"; enums by value name (the number when
 * the value has no name); bytes as standard padded base64; repeated fields
 * as arrays; maps as objects whose keys are strings.
 *
 * Input: either the lowerCamelCase or the original field name; integers as
 * numbers (exponent forms too, when integral) or strings, range-checked;
 * enums by name or number; bytes as standard or URL-safe base64, padded or
 * not; `null` for any field means its default. Refused with
 * INVALID_ARGUMENT and a message naming the field path as the client wrote
 * it ("field 'rooms[2].sinceSeq': expected an unsigned 64-bit integer"):
 * malformed JSON, wrong types, values out of range, unknown fields, one field
 * given under both its names, two members of one oneof, null inside a list
 * or as a map value, strings that are not UTF-8 or hold a NUL, messages
 * nested deeper than RPC_JSON_MAX_DEPTH.
 *
 * Not covered, because no Parley message uses them: the special forms of
 * the well-known types (Timestamp, Duration, Any, wrappers, Struct) are
 * treated as ordinary messages. A JSON *number* above 2^63-1 for a uint64
 * field is refused by jansson ("too big integer"); the string form, which is
 * what every proto3 JSON encoder writes, covers the whole range.
 *
 * Maps: protobuf-c records no map flag, so a repeated field is treated as a
 * map when its type is the nested message <Parent>.<FieldInCamelCase>Entry
 * with exactly the fields key = 1 and value = 2 (what protoc generates, and
 * wire-identical to a map in any case).
 *
 * Threads: no shared state; both functions may run on any thread at once.
 */
#ifndef PARLEY_RPC_JSON_H
#define PARLEY_RPC_JSON_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "rpc.h"

/* Messages nested deeper than this in a JSON input are refused. */
#define RPC_JSON_MAX_DEPTH 32

/*
 * Parses json[0..len) as a message of type d (json may be NULL when len is
 * 0). The caller bounds len (the HTTP layer refuses large bodies before
 * reading them); memory used is a small multiple of len.
 *
 * Ownership: on RPC_OK, *out is a new message allocated with the system
 * allocator; free it with protobuf_c_message_free_unpacked(*out, NULL). On
 * any error *out is NULL and nothing is left allocated.
 *
 * Returns RPC_OK; RPC_INVALID_ARGUMENT with a message naming the field path
 * for any input it refuses (see above); RPC_RESOURCE_EXHAUSTED when out of
 * memory. st may be NULL.
 */
rpc_code rpc_json_decode(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
			 ProtobufCMessage **out, rpc_status *st);

/*
 * Writes msg as compact JSON, fields in field-number order.
 *
 * Ownership: returns a NUL-terminated string from jansson's allocator
 * (malloc: Parley never calls json_set_alloc_funcs), which the caller
 * free()s; its length (without the NUL) in *len when len is not NULL.
 * Returns NULL only when out of memory. Strings that are not valid UTF-8
 * (which rpc_check_wire keeps out of requests) are written with U+FFFD in
 * place of each bad byte, so the output is always valid JSON.
 */
char *rpc_json_encode(const ProtobufCMessage *msg, size_t *len);

#endif

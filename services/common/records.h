/*
 * records.h — the records services read back from the store, decoded and
 * checked before anything trusts them.
 *
 * A record on disk may be damaged (a bad sector, a truncated file, a bug of
 * an older version): protobuf-c checks no UTF-8, ends a C string at a NUL
 * and accepts any enum value, so a record that unpacks may still carry
 * text a client cannot parse or an id that names nobody. Each function
 * here is the one way its record type is read: rpc_check_wire, unpack,
 * then the record's own rules. NULL means damaged (the caller answers
 * DATA_LOSS, store_err STORE_CORRUPT); otherwise the record is freed by the
 * caller with protobuf_c_message_free_unpacked(rec, a) (a = NULL: malloc;
 * an arena allocator frees nothing). tests/fuzz/records_fuzz feeds them
 * arbitrary bytes.
 *
 * No state, no locks.
 */
#ifndef PARLEY_RECORDS_H
#define PARLEY_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "parley/store/v1/auth_records.pb-c.h"
#include "parley/store/v1/messaging_records.pb-c.h"
#include "parley/store/v1/rooms_records.pb-c.h"
#include "parley/v1/events.pb-c.h"

/* Bytes of TokenRecord.token_hash and ClientMsgRecord.text_hash. */
#define RECORDS_HASH_BYTES 32

/* Any record type: strings valid UTF-8 without NUL, then unpacked. */
ProtobufCMessage *records_unpack(const ProtobufCMessageDescriptor *d, ProtobufCAllocator *a,
				 const void *data, size_t len);

/* auth.users under key user_id: its user_id is that id. */
Parley__Store__V1__UserRecord *records_user(ProtobufCAllocator *a, const char *user_id,
					    const void *data, size_t len);

/* auth.tokens: a valid user id and a hash of RECORDS_HASH_BYTES. */
Parley__Store__V1__TokenRecord *records_token(ProtobufCAllocator *a, const void *data,
					      size_t len);

/* rooms.rooms under key room_id: its room_id is that id, a known
 * visibility, a valid creator; a DIRECT room names its two users. */
Parley__Store__V1__RoomRecord *records_room(ProtobufCAllocator *a, const char *room_id,
					    const void *data, size_t len);

/* rooms.changes under key seq: an Event with that seq, a valid room id. */
Parley__V1__Event *records_change(ProtobufCAllocator *a, uint64_t seq, const void *data,
				  size_t len);

/* msg.client_ids: a valid room id, a seq, a hash of RECORDS_HASH_BYTES. */
Parley__Store__V1__ClientMsgRecord *records_client_msg(ProtobufCAllocator *a, const void *data,
						       size_t len);

#endif

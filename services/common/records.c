/* records.c — see records.h. */
#include "records.h"

#include <string.h>

#include "rpc.h"
#include "svc.h"

ProtobufCMessage *
records_unpack(const ProtobufCMessageDescriptor *d, ProtobufCAllocator *a, const void *data,
	       size_t len)
{
	rpc_status st = {0};

	if (rpc_check_wire(d, data, len, &st) != RPC_OK)
		return NULL;
	return protobuf_c_message_unpack(d, a, len, data);
}

/* Frees m when !ok; returns m or NULL. */
static void *
keep_if(ProtobufCMessage *m, ProtobufCAllocator *a, bool ok)
{
	if (m != NULL && !ok) {
		protobuf_c_message_free_unpacked(m, a);
		return NULL;
	}
	return m;
}

Parley__Store__V1__UserRecord *
records_user(ProtobufCAllocator *a, const char *user_id, const void *data, size_t len)
{
	Parley__Store__V1__UserRecord *r =
	    (void *)records_unpack(&parley__store__v1__user_record__descriptor, a, data, len);

	return r == NULL ? NULL : keep_if(&r->base, a, strcmp(r->user_id, user_id) == 0);
}

Parley__Store__V1__TokenRecord *
records_token(ProtobufCAllocator *a, const void *data, size_t len)
{
	Parley__Store__V1__TokenRecord *r =
	    (void *)records_unpack(&parley__store__v1__token_record__descriptor, a, data, len);

	return r == NULL ? NULL
			 : keep_if(&r->base, a,
				   svc_valid_user_id(r->user_id) &&
				       r->token_hash.len == RECORDS_HASH_BYTES);
}

Parley__Store__V1__RoomRecord *
records_room(ProtobufCAllocator *a, const char *room_id, const void *data, size_t len)
{
	Parley__Store__V1__RoomRecord *r =
	    (void *)records_unpack(&parley__store__v1__room_record__descriptor, a, data, len);
	bool ok;

	if (r == NULL)
		return NULL;
	ok = strcmp(r->room_id, room_id) == 0 && svc_valid_room_id(r->room_id) &&
	     svc_valid_user_id(r->created_by) &&
	     (unsigned)r->visibility <= PARLEY__V1__VISIBILITY__DIRECT;
	if (r->visibility == PARLEY__V1__VISIBILITY__DIRECT)
		ok = ok && r->n_direct_users == 2 && svc_valid_user_id(r->direct_users[0]) &&
		     svc_valid_user_id(r->direct_users[1]);
	else
		ok = ok && r->n_direct_users == 0;
	return keep_if(&r->base, a, ok);
}

Parley__V1__Event *
records_change(ProtobufCAllocator *a, uint64_t seq, const void *data, size_t len)
{
	Parley__V1__Event *ev = (void *)records_unpack(&parley__v1__event__descriptor, a, data, len);

	return ev == NULL ? NULL
			  : keep_if(&ev->base, a, ev->seq == seq && svc_valid_room_id(ev->room_id));
}

Parley__Store__V1__ClientMsgRecord *
records_client_msg(ProtobufCAllocator *a, const void *data, size_t len)
{
	Parley__Store__V1__ClientMsgRecord *r = (void *)records_unpack(
	    &parley__store__v1__client_msg_record__descriptor, a, data, len);

	return r == NULL ? NULL
			 : keep_if(&r->base, a,
				   svc_valid_room_id(r->room_id) && r->seq != 0 &&
				       r->text_hash.len == RECORDS_HASH_BYTES);
}

/*
 * connect.c — the Connect protocol's unary calls (see http.h): content
 * types and codecs, the error body and the HTTP status of each code, and
 * one call from HTTP body to rpc_client_call_raw and back.
 */
#include "http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "json.h"
#include "secret.h"

/* ---- content types ----------------------------------------------------------- */

http_codec
connect_codec(const char *ctype, bool *streaming)
{
	static const struct {
		const char *name;
		http_codec codec;
		bool streaming;
	} types[] = {
		{"application/json", CODEC_JSON, false},
		{"application/proto", CODEC_PROTO, false},
		{"application/connect+json", CODEC_JSON, true},
		{"application/connect+proto", CODEC_PROTO, true},
	};
	size_t n = strcspn(ctype, ";");

	while (n > 0 && (ctype[n - 1] == ' ' || ctype[n - 1] == '\t'))
		n--;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strlen(types[i].name) == n && strncasecmp(types[i].name, ctype, n) == 0) {
			*streaming = types[i].streaming;
			return types[i].codec;
		}
	return CODEC_NONE;
}

const char *
connect_content_type(http_codec c, bool streaming)
{
	if (streaming)
		return c == CODEC_JSON ? "application/connect+json" : "application/connect+proto";
	return c == CODEC_JSON ? "application/json" : "application/proto";
}

/* ---- codes ------------------------------------------------------------------------- */

static const struct {
	const char *name;
	unsigned http;
} codes[] = {
	[RPC_OK] = {"ok", 200},
	[RPC_CANCELLED] = {"canceled", 499},
	[RPC_UNKNOWN] = {"unknown", 500},
	[RPC_INVALID_ARGUMENT] = {"invalid_argument", 400},
	[RPC_DEADLINE_EXCEEDED] = {"deadline_exceeded", 504},
	[RPC_NOT_FOUND] = {"not_found", 404},
	[RPC_ALREADY_EXISTS] = {"already_exists", 409},
	[RPC_PERMISSION_DENIED] = {"permission_denied", 403},
	[RPC_RESOURCE_EXHAUSTED] = {"resource_exhausted", 429},
	[RPC_FAILED_PRECONDITION] = {"failed_precondition", 400},
	[RPC_ABORTED] = {"aborted", 409},
	[RPC_OUT_OF_RANGE] = {"out_of_range", 400},
	[RPC_UNIMPLEMENTED] = {"unimplemented", 501},
	[RPC_INTERNAL] = {"internal", 500},
	[RPC_UNAVAILABLE] = {"unavailable", 503},
	[RPC_DATA_LOSS] = {"data_loss", 500},
	[RPC_UNAUTHENTICATED] = {"unauthenticated", 401},
};

unsigned
connect_http_status(rpc_code code)
{
	if ((unsigned)code < sizeof(codes) / sizeof(codes[0]))
		return codes[code].http;
	return 500;
}

const char *
connect_code_name(rpc_code code)
{
	if ((unsigned)code < sizeof(codes) / sizeof(codes[0]) && code != RPC_OK)
		return codes[code].name;
	return "unknown";
}

/* ---- errors -------------------------------------------------------------------------- */

json_t *
connect_error_json(const rpc_status *st)
{
	char msg[RPC_STATUS_MESSAGE_MAX];
	size_t n;
	json_t *o = json_object();

	if (o == NULL)
		return NULL;
	/* A message cut at its buffer's end may end inside a character. */
	snprintf(msg, sizeof(msg), "%s", st->message[0] ? st->message : rpc_code_name(st->code));
	n = strlen(msg);
	while (n > 0 && !rpc_utf8_valid(msg, n))
		n--;
	json_object_set_new(o, "code", json_string(connect_code_name(st->code)));
	json_object_set_new(o, "message", json_stringn(msg, n));
	return o;
}

enum MHD_Result
connect_queue_error(struct MHD_Connection *c, unsigned http_status, const rpc_status *st,
		    const char *hname, const char *hvalue)
{
	json_t *o = connect_error_json(st);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char retry[16];

	json_decref(o);
	if (text == NULL)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (st->retry_after_ms > 0) {
		/* Whole seconds, rounded up: never earlier than the server said. */
		snprintf(retry, sizeof(retry), "%u", (st->retry_after_ms + 999) / 1000);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry);
	}
	if (hname != NULL)
		MHD_add_response_header(resp, hname, hvalue);
	ret = MHD_queue_response(c, http_status ? http_status : connect_http_status(st->code),
				 resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ---- codecs ---------------------------------------------------------------------------- */

rpc_code
connect_to_wire(http_codec codec, const ProtobufCMessageDescriptor *d, const uint8_t *body,
		size_t len, uint8_t **wire, size_t *wlen, bool *owned, rpc_status *st)
{
	ProtobufCMessage *msg = NULL;

	*owned = false;
	if (codec == CODEC_PROTO) {
		*wire = (uint8_t *)body;
		*wlen = len;
	} else {
		if (rpc_json_decode(d, (const char *)body, len, &msg, st) != RPC_OK)
			return st->code;
		/* The decoded message and the packed copy may hold a
		 * password: both are wiped before they are freed. */
		*wlen = protobuf_c_message_get_packed_size(msg);
		*wire = malloc(*wlen ? *wlen : 1);
		if (*wire == NULL) {
			rpc_secret_free_message(msg);
			return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
		}
		protobuf_c_message_pack(msg, *wire);
		rpc_secret_free_message(msg);
		*owned = true;
	}
	if (rpc_check_wire(d, *wire, *wlen, st) != RPC_OK) {
		if (*owned)
			rpc_secret_wipe_free(*wire, *wlen);
		return st->code;
	}
	return RPC_OK;
}

void *
connect_encode(http_codec codec, const ProtobufCMessage *msg, size_t *len)
{
	uint8_t *buf;

	if (codec == CODEC_JSON)
		return rpc_json_encode(msg, len);
	*len = protobuf_c_message_get_packed_size(msg);
	if ((buf = malloc(*len ? *len : 1)) != NULL)
		protobuf_c_message_pack(msg, buf);
	return buf;
}

/* ---- unary calls ------------------------------------------------------------------------- */

enum MHD_Result
connect_unary(rpc_http *h, struct MHD_Connection *c, struct http_req *r)
{
	rpc_call_opts opts = {.timeout_ms = r->timeout_ms,
			      .token = r->has_token ? r->token : NULL,
			      .peer = r->conn->peer[0] ? r->conn->peer : NULL};
	struct MHD_Response *resp;
	enum MHD_Result ret;
	uint8_t *wire = NULL;
	size_t wlen, len, reply_len = 0;
	void *reply = NULL, *out;
	bool owned;
	rpc_status st = {0};

	if (connect_to_wire(r->codec, r->method->input, r->body, r->len, &wire, &wlen, &owned,
			    &st) != RPC_OK)
		return connect_queue_error(c, 0, &st, NULL, NULL);
	http_count(h, &h->calls, 1);
	rpc_client_call_raw(r->svc->cli, r->full_method, wire, wlen, &reply, &reply_len, &opts,
			    &st);
	http_count(h, &h->calls, -1);
	/* A request may carry a password, a reply a new token: every copy
	 * is wiped before it is freed, the one handed to libmicrohttpd too. */
	if (owned)
		rpc_secret_wipe_free(wire, wlen);
	if (st.code != RPC_OK)
		return connect_queue_error(c, 0, &st, NULL, NULL);

	if (r->codec == CODEC_PROTO) {
		out = reply;
		len = reply_len;
	} else {
		ProtobufCMessage *m = protobuf_c_message_unpack(r->method->output, NULL, reply_len,
								reply);

		rpc_secret_wipe_free(reply, reply_len);
		out = m ? rpc_json_encode(m, &len) : NULL;
		rpc_secret_free_message(m);
		if (out == NULL) {
			rpc_status_set(&st, m ? RPC_RESOURCE_EXHAUSTED : RPC_INTERNAL,
				       m ? "out of memory" : "the service sent a malformed %s",
				       r->method->output->name);
			return connect_queue_error(c, 0, &st, NULL, NULL);
		}
	}
	resp = MHD_create_response_from_buffer_with_free_callback(len, out, rpc_secret_free);
	if (resp == NULL) {
		rpc_secret_free(out);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				connect_content_type(r->codec, false));
	ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

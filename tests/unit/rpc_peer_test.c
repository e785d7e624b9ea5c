/*
 * rpc_peer_test.c — rpc_call_peer: the caller's address as a handler sees
 * it, over tcp (from two source addresses), over ipc, and in process, where
 * only an in-process caller may name the address with "peer" metadata; the
 * same metadata over a socket changes nothing.
 */
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "client.h"
#include "harness.h"
#include "local.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/rpc.pb-c.h"
#include "server.h"

/* Validate answers the caller's address as the user id. */
static rpc_code
validate(rpc_call *c, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	Parley__V1__ValidateResponse *resp = (void *)respm;

	(void)reqm;
	(void)ctx;
	resp->user_id = rpc_call_strdup(c, rpc_call_peer(c));
	/* Asking twice gives the same answer. */
	if (strcmp(resp->user_id, rpc_call_peer(c)) != 0)
		return rpc_call_fail(c, RPC_INTERNAL, "peer changed between two questions");
	return RPC_OK;
}

static const rpc_method methods[] = {
	{.fn = NULL}, {.fn = NULL}, {.fn = NULL}, {.fn = validate, .auth = RPC_AUTH_NONE},
	{.fn = NULL}, {.fn = NULL}, {.fn = NULL}, {.fn = NULL},
};

/* The peer the server saw for a Validate through a client on url. */
static void
peer_via(const char *url, char *out, size_t len)
{
	Parley__V1__ValidateRequest req = PARLEY__V1__VALIDATE_REQUEST__INIT;
	Parley__V1__ValidateResponse *resp;
	rpc_client *cli = th_client(url);
	rpc_status st;

	req.token = "t";
	TH_CODE(rpc_client_call(cli, &parley__v1__auth__descriptor, "Validate", &req.base,
				(ProtobufCMessage **)&resp, NULL, &st),
		RPC_OK, &st);
	snprintf(out, len, "%s", resp->user_id);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	rpc_client_close(cli);
}

/* A Validate envelope carrying metadata peer = claimed (NULL: none). */
static nng_msg *
envelope(const char *claimed)
{
	Parley__V1__RpcRequest env = PARLEY__V1__RPC_REQUEST__INIT;
	Parley__V1__RpcRequest__MetadataEntry e = PARLEY__V1__RPC_REQUEST__METADATA_ENTRY__INIT;
	Parley__V1__RpcRequest__MetadataEntry *ep = &e;
	nng_msg *m;

	env.method = "/parley.v1.Auth/Validate";
	env.timeout_ms = 10000;
	if (claimed != NULL) {
		e.key = "peer";
		e.value = (char *)claimed;
		env.metadata = &ep;
		env.n_metadata = 1;
	}
	TH_CHECK(nng_msg_alloc(&m, parley__v1__rpc_request__get_packed_size(&env)) == 0,
		 "alloc");
	parley__v1__rpc_request__pack(&env, nng_msg_body(m));
	return m;
}

/* The user id (= the peer the handler saw) in a packed reply. */
static void
peer_of_reply(nng_msg *m, char *out, size_t len)
{
	Parley__V1__RpcResponse *r =
	    parley__v1__rpc_response__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
	Parley__V1__ValidateResponse *v;

	TH_CHECK(r != NULL && (r->status == NULL || r->status->code == 0), "an OK reply: %s",
		 r && r->status ? r->status->message : "malformed");
	v = parley__v1__validate_response__unpack(NULL, r->body.len, r->body.data);
	TH_CHECK(v != NULL, "a ValidateResponse");
	snprintf(out, len, "%s", v->user_id);
	parley__v1__validate_response__free_unpacked(v, NULL);
	parley__v1__rpc_response__free_unpacked(r, NULL);
	nng_msg_free(m);
}

/* The peer seen for an in-process call claiming `claimed`. */
static void
peer_in_process(const char *url, const char *claimed, char *out, size_t len)
{
	rpc_server *srv = rpc_local_acquire(url);
	nng_msg *reply;
	rpc_status st;

	TH_CHECK(srv != NULL, "server registered for in-process calls");
	TH_CODE(rpc_local_call(srv, envelope(claimed), rpc_now_ms() + 10000, &reply, &st), RPC_OK,
		&st);
	peer_of_reply(reply, out, len);
}

static void
expect_peer(const char *got, const char *want, const char *how)
{
	TH_CHECK(strcmp(got, want) == 0, "%s: peer '%s', want '%s'", how, got, want);
}

int
main(void)
{
	rpc_server_opts opts = {.name = "peer-test", .workers = 2};
	char url[64], from[96], ipc[300], peer[RPC_PEER_MAX];
	rpc_server *srv, *isrv;
	rpc_status st;
	nng_socket s;
	nng_msg *m;
	int port = th_free_port();

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
	snprintf(ipc, sizeof(ipc), "ipc:///tmp/parley-peer-test-%d.sock", (int)getpid());
	TH_CHECK(rpc_server_open(&srv, url, &opts, &st) == RPC_OK, "open: %s", st.message);
	TH_CHECK(rpc_server_open(&isrv, ipc, &opts, &st) == RPC_OK, "open: %s", st.message);
	rpc_server_add_service(srv, &parley__v1__auth__descriptor, methods, NULL);
	rpc_server_add_service(isrv, &parley__v1__auth__descriptor, methods, NULL);
	TH_CHECK(rpc_server_start(srv, &st) == RPC_OK, "start: %s", st.message);
	TH_CHECK(rpc_server_start(isrv, &st) == RPC_OK, "start: %s", st.message);

	/* Over tcp: the source address, whatever spelling of the server's
	 * address was dialled ("localhost" is not the server's own URL, so
	 * the call goes over the socket). */
	snprintf(from, sizeof(from), "tcp://localhost:%d", port);
	peer_via(from, peer, sizeof(peer));
	expect_peer(peer, "127.0.0.1", "tcp from 127.0.0.1");
	snprintf(from, sizeof(from), "tcp://127.0.0.9;127.0.0.1:%d", port);
	peer_via(from, peer, sizeof(peer));
	expect_peer(peer, "127.0.0.9", "tcp bound to 127.0.0.9");
	printf("ok tcp callers are told apart by address\n");

	/* Metadata cannot claim an address over a socket. */
	TH_CHECK(nng_req0_open(&s) == 0 && nng_dial(s, from, NULL, 0) == 0, "dial");
	TH_CHECK(nng_sendmsg(s, envelope("203.0.113.5"), 0) == 0 && nng_recvmsg(s, &m, 0) == 0,
		 "raw call");
	peer_of_reply(m, peer, sizeof(peer));
	expect_peer(peer, "127.0.0.9", "tcp claiming 203.0.113.5");
	nng_close(s);
	printf("ok peer metadata over a socket is ignored\n");

	/* ipc has no address to tell. */
	TH_CHECK(nng_req0_open(&s) == 0 && nng_dial(s, ipc, NULL, 0) == 0, "dial ipc");
	TH_CHECK(nng_sendmsg(s, envelope(NULL), 0) == 0 && nng_recvmsg(s, &m, 0) == 0, "ipc call");
	peer_of_reply(m, peer, sizeof(peer));
	expect_peer(peer, "ipc", "ipc");
	nng_close(s);
	printf("ok ipc callers are \"ipc\"\n");

	/* In process: "local", unless the caller names an IP address. */
	peer_via(url, peer, sizeof(peer));
	expect_peer(peer, "local", "in process, no metadata");
	peer_in_process(url, "203.0.113.5", peer, sizeof(peer));
	expect_peer(peer, "203.0.113.5", "in process for 203.0.113.5");
	peer_in_process(url, "::ffff:198.51.100.7", peer, sizeof(peer));
	expect_peer(peer, "198.51.100.7", "in process for an IPv4-mapped address");
	peer_in_process(url, "2001:DB8:0:0::1", peer, sizeof(peer));
	expect_peer(peer, "2001:db8::1", "in process for an IPv6 address");
	peer_in_process(url, "not-an-address", peer, sizeof(peer));
	expect_peer(peer, "local", "in process for a non-address");
	printf("ok in-process callers name the address, or are \"local\"\n");

	rpc_server_close(srv, 1000);
	rpc_server_close(isrv, 1000);
	unlink(ipc + strlen("ipc://"));
	return 0;
}

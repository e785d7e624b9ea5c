/*
 * rpc_calls.c — client calls shared by the rpc runtime's unit tests.
 */
#include "rpc_calls.h"

#include <stdio.h>

#include "parley/v1/auth.pb-c.h"
#include "parley/v1/health.pb-c.h"

rpc_code
call_validate(rpc_client *cli, const char *token, char *user, size_t len, rpc_status *st)
{
	Parley__V1__ValidateRequest req = PARLEY__V1__VALIDATE_REQUEST__INIT;
	Parley__V1__ValidateResponse *resp;
	rpc_code code;

	req.token = (char *)token;
	code = rpc_client_call(cli, &parley__v1__auth__descriptor, "Validate", &req.base,
			       (ProtobufCMessage **)&resp, NULL, st);
	if (code == RPC_OK) {
		snprintf(user, len, "%s", resp->user_id);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

rpc_code
call_logout(rpc_client *cli, const char *token, rpc_status *st)
{
	Parley__V1__LogoutRequest req = PARLEY__V1__LOGOUT_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	rpc_call_opts o = {.token = token};
	rpc_code code;

	code = rpc_client_call(cli, &parley__v1__auth__descriptor, "Logout", &req.base, &resp, &o,
			       st);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

int
health(rpc_client *cli)
{
	Parley__V1__HealthCheckRequest req = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	Parley__V1__HealthCheckResponse *resp;
	rpc_status st;
	int status;

	if (rpc_client_call(cli, &parley__v1__health__descriptor, "Check", &req.base,
			    (ProtobufCMessage **)&resp, NULL, &st) != RPC_OK)
		return -1;
	status = resp->status;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return status;
}

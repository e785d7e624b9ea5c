/*
 * envelope_fuzz.c — throws mutated frames at a real auth service (its rpc
 * server, handlers and LMDB) over nng's inproc transport, and requires a
 * well-formed RpcResponse for every frame and a working service at the end.
 *
 * Two drivers share LLVMFuzzerTestOneInput:
 *   - built by default: a seeded mutation loop run under ctest (and under
 *     ASan/UBSan in CI): valid envelopes for every Auth and Health method,
 *     with bytes flipped, inserted, deleted and truncated, plus pure noise;
 *   - with -DPARLEY_LIBFUZZER=ON (clang): a libFuzzer target for long runs.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "auth.h"
#include "harness.h"
#include "tsan.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/health.pb-c.h"
#include "parley/v1/rpc.pb-c.h"

#define URL "inproc://parley-fuzz-auth"

static auth_service *svc;
static store_env *env;
static nng_socket req;
static char dir[256];

static void
setup(void)
{
	parley_config cfg = {0};
	rpc_status st;
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/parley-fuzz-XXXXXX", tmp ? tmp : "/tmp");
	TH_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	TH_CHECK(store_open(&env, dir, NULL, NULL, 0) == STORE_OK, "store");
	cfg.data_dir = dir;
	cfg.env = env;
	cfg.auth_listen = URL;
	cfg.token_ttl_s = 60;
	cfg.workers = 2;
	cfg.contexts = 4;
	TH_CHECK(auth_service_start(&cfg, &svc, &st) == RPC_OK, "auth: %s", st.message);
	TH_CHECK(nng_req0_open(&req) == 0 && nng_dial(req, URL, NULL, 0) == 0, "dial");
	nng_socket_set_ms(req, NNG_OPT_RECVTIMEO, 10000);
	nng_socket_set_ms(req, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
}

static void __attribute__((unused))
teardown(void)
{
	char cmd[300];

	nng_close(req);
	auth_service_shutdown(svc);
	auth_service_stop(svc);
	store_close(env);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	TH_CHECK(system(cmd) == 0, "rm");
}

/* One frame in, one well-formed reply out; returns the status code. */
static int
roundtrip(const uint8_t *data, size_t len)
{
	Parley__V1__RpcResponse *r;
	nng_msg *m;
	int code;

	TH_CHECK(nng_msg_alloc(&m, len) == 0, "alloc");
	if (len)
		memcpy(nng_msg_body(m), data, len);
	rpc_tsan_release(m); /* inproc: the server's worker reads this very message */
	TH_CHECK(nng_sendmsg(req, m, 0) == 0, "send");
	TH_CHECK(nng_recvmsg(req, &m, 0) == 0, "every frame is answered (len %zu)", len);
	rpc_tsan_acquire(m);
	r = parley__v1__rpc_response__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
	TH_CHECK(r != NULL, "reply decodes");
	code = r->status ? (int)r->status->code : 0;
	TH_CHECK(code >= 0 && code <= 16, "a canonical code: %d", code);
	TH_CHECK(code == 0 || (r->status->message && r->status->message[0]),
		 "errors carry a message");
	parley__v1__rpc_response__free_unpacked(r, NULL);
	nng_msg_free(m);
	return code;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (svc == NULL)
		setup();
	roundtrip(data, size);
	return 0;
}

#ifndef PARLEY_LIBFUZZER

static size_t
seed(uint8_t *buf, size_t cap, int which)
{
	Parley__V1__RpcRequest e = PARLEY__V1__RPC_REQUEST__INIT;
	Parley__V1__RpcRequest__MetadataEntry md = PARLEY__V1__RPC_REQUEST__METADATA_ENTRY__INIT;
	Parley__V1__RpcRequest__MetadataEntry *mds[1] = {&md};
	Parley__V1__RegisterRequest reg = PARLEY__V1__REGISTER_REQUEST__INIT;
	Parley__V1__LoginRequest login = PARLEY__V1__LOGIN_REQUEST__INIT;
	Parley__V1__ValidateRequest val = PARLEY__V1__VALIDATE_REQUEST__INIT;
	Parley__V1__ChangePasswordRequest cp = PARLEY__V1__CHANGE_PASSWORD_REQUEST__INIT;
	Parley__V1__HealthCheckRequest hc = PARLEY__V1__HEALTH_CHECK_REQUEST__INIT;
	uint8_t body[512];

	md.key = "authorization";
	md.value = "Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
	e.metadata = mds;
	e.n_metadata = 1;
	e.request_id = (uint64_t)which;
	switch (which % 6) {
	case 0:
		e.method = "/parley.v1.Auth/Register";
		reg.user_id = "fuzzer";
		reg.password = "fuzz-password";
		reg.display_name = "Fuzz \xc3\xa9";
		reg.email = "f@x.org";
		e.body.len = parley__v1__register_request__pack(&reg, body);
		break;
	case 1:
		e.method = "/parley.v1.Auth/Login";
		login.user_id = "fuzzer";
		login.password = "fuzz-password";
		e.body.len = parley__v1__login_request__pack(&login, body);
		break;
	case 2:
		e.method = "/parley.v1.Auth/Validate";
		val.token = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
		e.body.len = parley__v1__validate_request__pack(&val, body);
		break;
	case 3:
		e.method = "/parley.v1.Auth/ChangePassword";
		cp.old_password = "fuzz-password";
		cp.new_password = "fuzz-password-2";
		e.body.len = parley__v1__change_password_request__pack(&cp, body);
		break;
	case 4:
		e.method = "/parley.v1.Auth/Logout";
		break;
	default:
		e.method = "/parley.v1.Health/Check";
		hc.service = "parley.v1.Auth";
		e.body.len = parley__v1__health_check_request__pack(&hc, body);
		break;
	}
	e.body.data = body;
	TH_CHECK(parley__v1__rpc_request__get_packed_size(&e) <= cap, "seed fits");
	return parley__v1__rpc_request__pack(&e, buf);
}

static size_t
mutate(uint8_t *buf, size_t len, size_t cap)
{
	int rounds = 1 + rand() % 4;

	for (int r = 0; r < rounds; r++) {
		size_t at = len ? (size_t)rand() % len : 0;

		switch (rand() % 5) {
		case 0: /* flip a bit */
			if (len)
				buf[at] ^= (uint8_t)(1u << (rand() % 8));
			break;
		case 1: /* random byte */
			if (len)
				buf[at] = (uint8_t)rand();
			break;
		case 2: /* insert a byte */
			if (len < cap) {
				memmove(buf + at + 1, buf + at, len - at);
				buf[at] = (uint8_t)rand();
				len++;
			}
			break;
		case 3: /* delete a byte */
			if (len) {
				memmove(buf + at, buf + at + 1, len - at - 1);
				len--;
			}
			break;
		default: /* truncate */
			len = at;
			break;
		}
	}
	return len;
}

int
main(int argc, char **argv)
{
	static uint8_t buf[4096];
	int iterations = argc > 1 ? atoi(argv[1]) : 3000;
	int ok = 0;

	srand(20261124);
	setup();
	for (int i = 0; i < iterations; i++) {
		size_t len;

		if (i % 10 == 9) { /* pure noise */
			len = (size_t)rand() % 600;
			for (size_t k = 0; k < len; k++)
				buf[k] = (uint8_t)rand();
		} else {
			len = mutate(buf, seed(buf, sizeof(buf), i), sizeof(buf));
		}
		ok += LLVMFuzzerTestOneInput(buf, len) == 0;
	}
	/* The service still does real work after all that. */
	{
		size_t n = seed(buf, sizeof(buf), 5);
		TH_CHECK(roundtrip(buf, n) == 0, "health after fuzzing");
	}
	printf("ok %d fuzzed frames answered\n", ok);
	teardown();
	return 0;
}

#endif

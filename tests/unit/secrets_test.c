/*
 * secrets_test.c — a password sent over HTTP and the token in the reply
 * are wiped from every buffer before it is freed (issue 14, item 7): the
 * request body libmicrohttpd hands over, jansson's copies of its strings,
 * the decoded message, the packed wire copy, the reply and its JSON text.
 *
 * Every free() of the process is scanned for the password and the token:
 * the test defines free() itself (it runs before glibc's, for the shared
 * libraries too: jansson, protobuf-c, nng, libmicrohttpd) or, in sanitizer
 * builds, which own free(), installs the sanitizer's free hook. A real
 * rpc_http listener forwards Connect calls (JSON and proto) to a real
 * rpc_server in the process whose Login answers a token; a Login body is
 * padded so that it grows while it is read. Then both are closed and no
 * freed block may have held either secret.
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <jansson.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "harness.h"
#include "http.h"
#include "parley/v1/auth.pb-c.h"
#include "server.h"

#if defined(PARLEY_ASAN) || defined(PARLEY_TSAN)
#include <sanitizer/allocator_interface.h>
#define SCAN_BY_SANITIZER 1
#endif

/* Built at run time so that no copy sits in the binary's data. */
static char password[32], token[48];
static atomic_long scanned, leaked_pw, leaked_token;
static atomic_int scanning;

static void
scan(const void *p, size_t n)
{
	if (!atomic_load(&scanning) || p == NULL)
		return;
	atomic_fetch_add(&scanned, 1);
	if (memmem(p, n, password, strlen(password)) != NULL)
		atomic_fetch_add(&leaked_pw, 1);
	if (memmem(p, n, token, strlen(token)) != NULL)
		atomic_fetch_add(&leaked_token, 1);
}

#ifdef SCAN_BY_SANITIZER
/* The sanitizer takes both hooks or none. */
static void
malloc_hook(const volatile void *p, size_t n)
{
	(void)p;
	(void)n;
}

static void
free_hook(const volatile void *p)
{
	scan((const void *)p, __sanitizer_get_allocated_size((const void *)p));
}
#else
extern void __libc_free(void *p);

/* Default visibility (the build hides symbols) and -rdynamic: the shared
 * libraries' calls come here too. */
__attribute__((visibility("default"))) void
free(void *p)
{
	if (p != NULL)
		scan(p, malloc_usable_size(p));
	__libc_free(p);
}
#endif

/* Login: answers the token; the handler's part is what auth does (the
 * unpacked request's password, the arena with the reply). */
static rpc_code
login(rpc_call *c, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	Parley__V1__LoginRequest *req = (void *)reqm;
	Parley__V1__LoginResponse *resp = (void *)respm;

	(void)ctx;
	rpc_call_wipe_after_reply(c);
	TH_CHECK(strcmp(req->password, password) == 0, "the password arrived: '%s'", req->password);
	explicit_bzero(req->password, strlen(req->password));
	resp->token = rpc_call_strdup(c, token);
	resp->expires_at_ms = 1;
	return RPC_OK;
}

/* POSTs body to path with content type ctype; the answer (headers and
 * body) into out. */
static size_t
post(int port, const char *path, const char *ctype, const void *body, size_t len, char *out,
     size_t cap)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	char head[512];
	size_t got = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	TH_CHECK(fd >= 0, "socket");
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	TH_CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect");
	n = snprintf(head, sizeof(head),
		     "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Connection: close\r\n\r\n",
		     path, ctype, len);
	TH_CHECK(write(fd, head, (size_t)n) == n, "write head");
	/* In pieces: the server's body buffer grows while it reads. */
	for (size_t off = 0; off < len; off += 700) {
		size_t k = len - off < 700 ? len - off : 700;
		TH_CHECK(write(fd, (const char *)body + off, k) == (ssize_t)k, "write body");
		usleep(2000);
	}
	while (got + 1 < cap && (n = read(fd, out + got, cap - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	close(fd);
	return got;
}

int
main(void)
{
	static rpc_method methods[16];
	const ProtobufCServiceDescriptor *svc = &parley__v1__auth__descriptor;
	const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(svc, "Login");
	rpc_server_opts sopts = {.name = "secrets-test", .workers = 2};
	char url[64], hurl[64], json[6000], answer[8192];
	uint8_t proto[256];
	Parley__V1__LoginRequest lr = PARLEY__V1__LOGIN_REQUEST__INIT;
	rpc_http_opts hopts = {0};
	rpc_server *srv;
	rpc_http *h;
	rpc_status st;
	int port = th_free_port(), hport = th_free_port();
	size_t n, plen;

	/* The secrets, made at run time. */
	snprintf(password, sizeof(password), "pw-%08x-wipe-me", (unsigned)getpid() * 2654435761u);
	snprintf(token, sizeof(token), "tok-%08x-wipe-me-too", (unsigned)getpid() * 40503u);
	TH_CHECK(m != NULL && svc->n_methods <= 16, "Login");
	methods[m - svc->methods] = (rpc_method){.fn = login, .auth = RPC_AUTH_NONE};

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
	snprintf(hurl, sizeof(hurl), "http://127.0.0.1:%d", hport);
	TH_CHECK(rpc_server_open(&srv, url, &sopts, &st) == RPC_OK, "open: %s", st.message);
	rpc_server_add_service(srv, svc, methods, NULL);
	TH_CHECK(rpc_server_start(srv, &st) == RPC_OK, "start: %s", st.message);
	hopts.url = hurl;
	TH_CHECK(rpc_http_open(&h, &hopts, &st) == RPC_OK, "http open: %s", st.message);
	TH_CHECK(rpc_http_add_service(h, svc, url, &st) == RPC_OK, "add: %s", st.message);
	TH_CHECK(rpc_http_start(h, &st) == RPC_OK, "http start: %s", st.message);

#ifdef SCAN_BY_SANITIZER
	TH_CHECK(__sanitizer_install_malloc_and_free_hooks(malloc_hook, free_hook) != 0, "free hook");
#endif
	atomic_store(&scanning, 1);

	/* JSON, padded past the body buffer's first sizes (1, 2, 4 KiB). */
	n = (size_t)snprintf(json, sizeof(json), "{\"userId\":\"alice\",\"password\":\"%s\"", password);
	memset(json + n, ' ', 5000);
	n += 5000;
	json[n++] = '}';
	json[n] = '\0';
	for (int i = 0; i < 3; i++) {
		post(hport, "/parley.v1.Auth/Login", "application/json", json, n, answer,
		     sizeof(answer));
		TH_CHECK(strstr(answer, " 200 ") != NULL && strstr(answer, token) != NULL,
			 "a Login over JSON: %.300s", answer);
	}
	/* The binary codec. */
	lr.user_id = "alice";
	lr.password = password;
	plen = protobuf_c_message_pack(&lr.base, proto);
	post(hport, "/parley.v1.Auth/Login", "application/proto", proto, plen, answer,
	     sizeof(answer));
	TH_CHECK(strstr(answer, " 200 ") != NULL, "a Login over proto: %.300s", answer);
	/* A refused body (an unknown field) with a password in it. */
	n = (size_t)snprintf(json, sizeof(json), "{\"password\":\"%s\",\"nope\":1}", password);
	post(hport, "/parley.v1.Auth/Login", "application/json", json, n, answer, sizeof(answer));
	TH_CHECK(strstr(answer, " 400 ") != NULL, "a bad body: %.300s", answer);

	rpc_http_close(h);
	rpc_server_close(srv, 1000);
	explicit_bzero(answer, sizeof(answer));
	explicit_bzero(json, sizeof(json));
	explicit_bzero(proto, sizeof(proto));
	atomic_store(&scanning, 0);
	printf("scanned %ld freed blocks\n", atomic_load(&scanned));
	TH_CHECK(atomic_load(&scanned) > 100, "the scan saw the frees (%ld)", atomic_load(&scanned));
	TH_CHECK(atomic_load(&leaked_pw) == 0, "%ld freed blocks still held the password",
		 atomic_load(&leaked_pw));
	TH_CHECK(atomic_load(&leaked_token) == 0, "%ld freed blocks still held the token",
		 atomic_load(&leaked_token));
	printf("ok no freed block held the password or the token\n");
	return 0;
}

/* rpc.c — status codes, clocks and input checks shared by server and client. */
#include "rpc.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <nng/nng.h>

static const char *const code_names[] = {
	[RPC_OK] = "OK",
	[RPC_CANCELLED] = "CANCELLED",
	[RPC_UNKNOWN] = "UNKNOWN",
	[RPC_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
	[RPC_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
	[RPC_NOT_FOUND] = "NOT_FOUND",
	[RPC_ALREADY_EXISTS] = "ALREADY_EXISTS",
	[RPC_PERMISSION_DENIED] = "PERMISSION_DENIED",
	[RPC_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
	[RPC_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
	[RPC_ABORTED] = "ABORTED",
	[RPC_OUT_OF_RANGE] = "OUT_OF_RANGE",
	[RPC_UNIMPLEMENTED] = "UNIMPLEMENTED",
	[RPC_INTERNAL] = "INTERNAL",
	[RPC_UNAVAILABLE] = "UNAVAILABLE",
	[RPC_DATA_LOSS] = "DATA_LOSS",
	[RPC_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

const char *
rpc_code_name(rpc_code code)
{
	if ((unsigned)code < sizeof(code_names) / sizeof(code_names[0]))
		return code_names[code];
	return "UNKNOWN_CODE";
}

rpc_code
rpc_status_vset(rpc_status *st, rpc_code code, const char *fmt, va_list ap)
{
	if (st != NULL) {
		/* Formatted aside first: a caller that passes st->message as
		 * an argument would otherwise read it while it is overwritten
		 * (vsnprintf with overlapping buffers is undefined). */
		char msg[RPC_STATUS_MESSAGE_MAX] = "";

		if (fmt != NULL)
			vsnprintf(msg, sizeof(msg), fmt, ap);
		st->code = code;
		st->retry_after_ms = 0;
		memcpy(st->message, msg, sizeof(msg));
	}
	return code;
}

rpc_code
rpc_status_set(rpc_status *st, rpc_code code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rpc_status_vset(st, code, fmt, ap);
	va_end(ap);
	return code;
}

rpc_code
rpc_code_from_nng(int err)
{
	switch (err) {
	case 0:
		return RPC_OK;
	case NNG_ETIMEDOUT:
		return RPC_DEADLINE_EXCEEDED;
	case NNG_ECANCELED:
		return RPC_CANCELLED;
	case NNG_ENOMEM:
		return RPC_RESOURCE_EXHAUSTED;
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
	case NNG_ENOTSUP:
		return RPC_INVALID_ARGUMENT;
	case NNG_ECLOSED:
	case NNG_ECONNREFUSED:
	case NNG_ECONNRESET:
	case NNG_ECONNSHUT:
	case NNG_EUNREACHABLE:
	case NNG_EADDRINUSE:
	case NNG_ESTATE:
	case NNG_EAGAIN:
		return RPC_UNAVAILABLE;
	default:
		return RPC_INTERNAL;
	}
}

int64_t
rpc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
rpc_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
rpc_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &attr);
	pthread_condattr_destroy(&attr);
}

void
rpc_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mtx, int64_t until_ms)
{
	int64_t left = until_ms - rpc_now_ms();
	struct timespec ts;

	if (left <= 0)
		return;
	/* cv was made by rpc_cond_init: it measures CLOCK_MONOTONIC, so a step
	 * of the wall clock neither stretches nor cuts this wait. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += left / 1000;
	ts.tv_nsec += (left % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(cv, mtx, &ts);
}

bool
rpc_utf8_valid(const void *buf, size_t len)
{
	const unsigned char *s = buf;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		uint32_t cp;
		size_t n;

		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i - 1 < n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

size_t
rpc_utf8_length(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

/* Reads a varint at *p (< end); false if it runs off the end or past 64 bits. */
static bool
read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;

	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		v |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*out = v;
			return true;
		}
	}
	return false;
}

#define MAX_DEPTH 32

/*
 * protobuf-c accepts any bytes in a string field and hands out C strings,
 * so an embedded NUL silently shortens a string. This walks the encoded
 * message itself and checks every string field's bytes: valid UTF-8 and no
 * NUL. Nested messages (map entries included) are walked recursively.
 * path[0..used) holds the dotted field path so far, for the message; an
 * element of a repeated field is named with its index ("messages[3].text").
 */
static rpc_code
check_wire(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
	   int depth, char *path, size_t cap, size_t used, rpc_status *st)
{
	uint32_t seen[64] = {0}; /* elements of each repeated field so far */

	if (depth > MAX_DEPTH)
		return rpc_status_set(st, RPC_INVALID_ARGUMENT, "message nested too deeply");
	while (p < end) {
		const ProtobufCFieldDescriptor *f;
		uint64_t tag, len;
		size_t n = used;
		rpc_code rc;

		if (!read_varint(&p, end, &tag))
			return rpc_status_set(st, RPC_INVALID_ARGUMENT, "malformed message");
		switch (tag & 7) {
		case 0:
			if (!read_varint(&p, end, &len))
				return rpc_status_set(st, RPC_INVALID_ARGUMENT, "malformed varint");
			continue;
		case 1:
			if (end - p < 8)
				return rpc_status_set(st, RPC_INVALID_ARGUMENT, "malformed message");
			p += 8;
			continue;
		case 5:
			if (end - p < 4)
				return rpc_status_set(st, RPC_INVALID_ARGUMENT, "malformed message");
			p += 4;
			continue;
		case 2:
			break;
		default:
			return rpc_status_set(st, RPC_INVALID_ARGUMENT, "unsupported wire type");
		}
		if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p))
			return rpc_status_set(st, RPC_INVALID_ARGUMENT, "malformed length");
		f = tag >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3))
					   : NULL;
		if (f != NULL && (f->type == PROTOBUF_C_TYPE_STRING ||
				  f->type == PROTOBUF_C_TYPE_MESSAGE) && n < cap) {
			size_t fi = (size_t)(f - d->fields);
			int w;

			if (f->label == PROTOBUF_C_LABEL_REPEATED && fi < 64)
				w = snprintf(path + n, cap - n, "%s%s[%u]", n ? "." : "", f->name,
					     seen[fi]++);
			else
				w = snprintf(path + n, cap - n, "%s%s", n ? "." : "", f->name);
			n = w < 0 ? n : (size_t)w + n >= cap ? cap - 1 : n + (size_t)w;
		}
		if (f != NULL && f->type == PROTOBUF_C_TYPE_STRING) {
			if (!rpc_utf8_valid(p, len))
				return rpc_status_set(st, RPC_INVALID_ARGUMENT,
						      "field '%s' is not valid UTF-8", path);
			if (memchr(p, '\0', len) != NULL)
				return rpc_status_set(st, RPC_INVALID_ARGUMENT,
						      "field '%s' contains a NUL byte", path);
		} else if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE) {
			rc = check_wire(f->descriptor, p, p + len, depth + 1, path, cap, n, st);
			if (rc != RPC_OK)
				return rc;
		}
		path[used] = '\0';
		p += len;
	}
	return RPC_OK;
}

rpc_code
rpc_check_wire(const ProtobufCMessageDescriptor *d, const void *buf, size_t len,
	       rpc_status *st)
{
	char path[128] = "";
	const uint8_t *p = buf;

	/* An empty body arrives as (NULL, 0): protobuf-c leaves the bytes
	 * field unset. NULL + 0 is undefined behaviour in C, so an empty
	 * message (all fields default, always valid) stops here. */
	if (len == 0)
		return RPC_OK;
	return check_wire(d, p, p + len, 0, path, sizeof(path), 0, st);
}

int
rpc_full_method(char *buf, size_t len, const ProtobufCServiceDescriptor *svc,
		const ProtobufCMethodDescriptor *m)
{
	return snprintf(buf, len, "/%s/%s", svc->name, m->name);
}

/* Set once at start (rpc_set_limits), read when sockets open. */
static pthread_mutex_t limits_mtx = PTHREAD_MUTEX_INITIALIZER;
static rpc_limits limits;

void
rpc_set_limits(const rpc_limits *l)
{
	pthread_mutex_lock(&limits_mtx);
	limits = *l;
	pthread_mutex_unlock(&limits_mtx);
}

void
rpc_get_limits(rpc_limits *l)
{
	pthread_mutex_lock(&limits_mtx);
	*l = limits;
	pthread_mutex_unlock(&limits_mtx);
	if (l->max_conns <= 0)
		l->max_conns = 4096;
	if (l->max_per_peer <= 0)
		l->max_per_peer = 512;
	if (l->max_calls <= 0)
		l->max_calls = 128;
	/* A client may have max_calls replies on their way, all at once (a
	 * fan-out ends every long poll together): only more than that means
	 * a peer sends without reading. */
	if (l->max_replies <= 0)
		l->max_replies = l->max_calls + 32;
	if (l->max_reply_bytes == 0)
		l->max_reply_bytes = 32u << 20;
	if (l->idle_ms < 0)
		l->idle_ms = 0;
	else if (l->idle_ms == 0)
		l->idle_ms = 300000;
	if (l->send_timeout_ms <= 0)
		l->send_timeout_ms = 10000;
}

long
rpc_raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			rl.rlim_cur = was;
	}
	return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)1 << 30 ? 1L << 30
									 : (long)rl.rlim_cur;
}

int
rpc_socket_cap(nng_socket sock, size_t max_frame)
{
	return nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, max_frame);
}

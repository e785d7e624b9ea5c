/*
 * http_sub.c — a minimal Connect server-stream client for Parley's
 * Messaging/Subscribe over HTTP/1.1 (see peers.h): one POST with an
 * enveloped SubscribeRequest (application/connect+proto), then a chunked
 * (or close-delimited) body of envelopes: flags (1 byte), length (4 bytes,
 * big-endian), message. Flag 0x02 marks the end-of-stream JSON.
 *
 * Everything the server sends is checked before use: header and frame
 * sizes are capped, chunk sizes parsed strictly.
 */
#define _GNU_SOURCE
#include "peers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "parley/v1/events.pb-c.h"
#include "parley/v1/messaging.pb-c.h"

#define HS_HEADERS_MAX 8192
#define HS_FRAME_MAX (1u << 20)
#define HS_END_STREAM 0x02

int
hs_open(int port, const char *token, const char *room, char *err, size_t errlen)
{
	Parley__V1__SubscribeRequest req = PARLEY__V1__SUBSCRIBE_REQUEST__INIT;
	Parley__V1__RoomCursor cur = PARLEY__V1__ROOM_CURSOR__INIT, *curp = &cur;
	uint8_t body[512];
	char head[1024], resp[HS_HEADERS_MAX + 1];
	size_t blen, got = 0;
	int fd, n;

	cur.room_id = (char *)room;
	req.rooms = &curp;
	req.n_rooms = 1;
	blen = parley__v1__subscribe_request__get_packed_size(&req);
	if (blen + 5 > sizeof(body)) {
		snprintf(err, errlen, "room name too long");
		return -1;
	}
	body[0] = 0;
	body[1] = (uint8_t)(blen >> 24);
	body[2] = (uint8_t)(blen >> 16);
	body[3] = (uint8_t)(blen >> 8);
	body[4] = (uint8_t)blen;
	parley__v1__subscribe_request__pack(&req, body + 5);
	n = snprintf(head, sizeof(head),
		     "POST /parley.v1.Messaging/Subscribe HTTP/1.1\r\n"
		     "Host: 127.0.0.1:%d\r\n"
		     "Content-Type: application/connect+proto\r\n"
		     "Connect-Protocol-Version: 1\r\n"
		     "Authorization: Bearer %s\r\n"
		     "Content-Length: %zu\r\n\r\n",
		     port, token, blen + 5);
	if ((fd = peer_connect(port)) < 0) {
		snprintf(err, errlen, "cannot connect to 127.0.0.1:%d", port);
		return -1;
	}
	if (!peer_write_all(fd, head, (size_t)n) || !peer_write_all(fd, body, blen + 5)) {
		snprintf(err, errlen, "cannot send the Subscribe request");
		goto fail;
	}
	/* Headers, byte by byte up to the blank line: the body stays in the
	 * socket for hs_run. The status line decides. */
	while (got < HS_HEADERS_MAX) {
		ssize_t r = recv(fd, resp + got, 1, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got++;
		if (got >= 4 && memcmp(resp + got - 4, "\r\n\r\n", 4) == 0)
			break;
	}
	resp[got] = '\0';
	if (got < 4 || memcmp(resp + got - 4, "\r\n\r\n", 4) != 0) {
		snprintf(err, errlen, "Subscribe: no complete response headers");
		goto fail;
	}
	if (strncmp(resp, "HTTP/1.1 200", 12) != 0 && strncmp(resp, "HTTP/1.0 200", 12) != 0) {
		resp[strcspn(resp, "\r")] = '\0';
		snprintf(err, errlen, "Subscribe: %.150s", resp);
		goto fail;
	}
	/* hs_run needs to know how the body is delimited: a leading 'C' byte
	 * in the socket cannot carry that, so chunking is checked here and
	 * required (HTTP/1.1 with no length: libmicrohttpd chunks). */
	if (strcasestr(resp, "\r\nTransfer-Encoding: chunked\r\n") == NULL) {
		snprintf(err, errlen, "Subscribe: the response is not chunked");
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

typedef struct hs_reader {
	int fd;
	uint8_t *buf;		/* raw bytes from the socket */
	size_t len, cap;
	uint8_t *frames;	/* de-chunked body */
	size_t flen, fcap;
} hs_reader;

static bool
fill(hs_reader *h)
{
	ssize_t n;

	if (h->len == h->cap)
		return false;	/* a chunk-size line longer than the buffer */
	do
		n = recv(h->fd, h->buf + h->len, h->cap - h->len, 0);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return false;
	h->len += (size_t)n;
	return true;
}

/* Moves whole chunks' data from buf to frames; false on a malformed chunk
 * or the last (zero) chunk. */
static bool
dechunk(hs_reader *h, bool *last, char *err, size_t errlen)
{
	size_t off = 0;

	*last = false;
	for (;;) {
		uint8_t *crlf = memmem(h->buf + off, h->len - off, "\r\n", 2);
		unsigned long long size;
		char line[32], *end;
		size_t llen;

		if (crlf == NULL)
			break;
		llen = (size_t)(crlf - (h->buf + off));
		if (llen == 0 || llen >= sizeof(line)) {
			snprintf(err, errlen, "Subscribe: bad chunk-size line");
			return false;
		}
		memcpy(line, h->buf + off, llen);
		line[llen] = '\0';
		size = strtoull(line, &end, 16);
		if (end == line || (*end != '\0' && *end != ';') || size > HS_FRAME_MAX) {
			snprintf(err, errlen, "Subscribe: bad chunk size '%s'", line);
			return false;
		}
		if (size == 0) {
			*last = true;
			return true;
		}
		if (h->len - off < llen + 2 + size + 2)
			break;	/* the chunk is not all here yet */
		if (h->flen + size > h->fcap) {
			snprintf(err, errlen, "Subscribe: frame over %u bytes", HS_FRAME_MAX);
			return false;
		}
		memcpy(h->frames + h->flen, crlf + 2, size);
		h->flen += size;
		off += llen + 2 + size + 2;
	}
	memmove(h->buf, h->buf + off, h->len - off);
	h->len -= off;
	return true;
}

/* Handles the complete envelopes in frames. -1 error, 0 more to come,
 * 1 end of stream. */
static int
take_frames(hs_reader *h, pa_event_fn fn, void *arg, char *err, size_t errlen)
{
	size_t off = 0;
	int ret = 0;

	while (h->flen - off >= 5) {
		const uint8_t *f = h->frames + off;
		uint32_t len = (uint32_t)f[1] << 24 | (uint32_t)f[2] << 16 | (uint32_t)f[3] << 8 | f[4];
		Parley__V1__SubscribeResponse *m;

		if (len > HS_FRAME_MAX - 5) {
			snprintf(err, errlen, "Subscribe: envelope of %u bytes", len);
			return -1;
		}
		if (h->flen - off - 5 < len)
			break;
		if (f[0] & HS_END_STREAM) {
			/* {} is a clean end; anything with "error" is not. */
			if (memmem(f + 5, len, "\"error\"", 7) != NULL) {
				snprintf(err, errlen, "Subscribe ended: %.*s", (int)(len < 150 ? len : 150),
					 (const char *)(f + 5));
				return -1;
			}
			ret = 1;
			off += 5 + len;
			break;
		}
		if ((m = parley__v1__subscribe_response__unpack(NULL, len, f + 5)) == NULL) {
			snprintf(err, errlen, "Subscribe: a message that does not unpack");
			return -1;
		}
		for (size_t i = 0; i < m->n_events; i++) {
			const Parley__V1__Event *ev = m->events[i];
			bool chat = ev->body_case == PARLEY__V1__EVENT__BODY_MESSAGE &&
				    ev->message != NULL;

			fn(arg, ev->room_id, ev->seq, chat, chat ? ev->message->text : "");
		}
		parley__v1__subscribe_response__free_unpacked(m, NULL);
		off += 5 + len;
	}
	memmove(h->frames, h->frames + off, h->flen - off);
	h->flen -= off;
	return ret;
}

bool
hs_run(int fd, pa_event_fn fn, void *arg, char *err, size_t errlen)
{
	hs_reader h = {.fd = fd, .cap = 64 * 1024, .fcap = HS_FRAME_MAX + 64 * 1024};
	bool ok = false, last = false;

	err[0] = '\0';
	if ((h.buf = malloc(h.cap)) == NULL || (h.frames = malloc(h.fcap)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	while (fill(&h)) {
		int r;

		if (!dechunk(&h, &last, err, errlen) ||
		    (r = take_frames(&h, fn, arg, err, errlen)) < 0)
			goto out;
		if (r == 1 || last) {
			ok = true;
			goto out;
		}
	}
	snprintf(err, errlen, "Subscribe: the connection ended mid-stream");
out:
	free(h.buf);
	free(h.frames);
	return ok;
}

/* pagetoken.c — see pagetoken.h. */
#include "pagetoken.h"

#include <string.h>

#include <sodium.h>

#include "svc.h"

#define PAGETOKEN_VERSION 1
#define PAGETOKEN_MAC_BYTES 16
#define PAGETOKEN_RAW_MAX (1 + PAGETOKEN_ROOM_ID_MAX + PAGETOKEN_MAC_BYTES)

static void
mac(const unsigned char key[PAGETOKEN_KEY_BYTES], const unsigned char *msg, size_t len,
    unsigned char out[PAGETOKEN_MAC_BYTES])
{
	crypto_generichash(out, PAGETOKEN_MAC_BYTES, msg, len, key, PAGETOKEN_KEY_BYTES);
}

void
pagetoken_encode(const unsigned char key[PAGETOKEN_KEY_BYTES], const char *room_id,
		 char out[PAGETOKEN_TEXT_MAX])
{
	unsigned char raw[PAGETOKEN_RAW_MAX];
	size_t n = strlen(room_id);

	if (n > PAGETOKEN_ROOM_ID_MAX)
		n = PAGETOKEN_ROOM_ID_MAX; /* callers pass valid ids; never overflow */
	raw[0] = PAGETOKEN_VERSION;
	memcpy(raw + 1, room_id, n);
	mac(key, raw, 1 + n, raw + 1 + n);
	sodium_bin2base64(out, PAGETOKEN_TEXT_MAX, raw, 1 + n + PAGETOKEN_MAC_BYTES,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

bool
pagetoken_decode(const unsigned char key[PAGETOKEN_KEY_BYTES], const char *token,
		 char room_id[PAGETOKEN_ROOM_ID_MAX + 1])
{
	unsigned char raw[PAGETOKEN_RAW_MAX], want[PAGETOKEN_MAC_BYTES];
	size_t tlen = strlen(token), len = 0, n;

	/* Bound the text before decoding it. */
	if (tlen == 0 || tlen >= PAGETOKEN_TEXT_MAX)
		return false;
	if (sodium_base642bin(raw, sizeof(raw), token, tlen, NULL, &len, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return false;
	if (len < 1 + 1 + PAGETOKEN_MAC_BYTES || raw[0] != PAGETOKEN_VERSION)
		return false;
	n = len - 1 - PAGETOKEN_MAC_BYTES;
	mac(key, raw, 1 + n, want);
	if (sodium_memcmp(want, raw + 1 + n, PAGETOKEN_MAC_BYTES) != 0)
		return false;
	memcpy(room_id, raw + 1, n);
	room_id[n] = '\0';
	/* Authentic, but check anyway: a NUL inside would cut the id short. */
	return strlen(room_id) == n && svc_valid_room_id(room_id);
}

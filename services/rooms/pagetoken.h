/*
 * pagetoken.h — the opaque page_token of ListRooms: "continue after this
 * room_id", versioned and authenticated so a client can neither forge nor
 * edit one.
 *
 * Wire form: URL-safe base64 (no padding) of
 *     version (1 byte, = 1) || room_id (1-64 bytes) || MAC (16 bytes)
 * where MAC = keyed BLAKE2b-128 of version || room_id under the rooms
 * service's page-token key (32 random bytes kept in its data directory, so
 * tokens stay valid across restarts). Pure functions; no locking needed.
 */
#ifndef PARLEY_ROOMS_PAGETOKEN_H
#define PARLEY_ROOMS_PAGETOKEN_H

#include <stdbool.h>
#include <stddef.h>

#define PAGETOKEN_KEY_BYTES 32
#define PAGETOKEN_ROOM_ID_MAX 64
/* Longest token text: base64 of 1 + 64 + 16 bytes, plus the NUL. */
#define PAGETOKEN_TEXT_MAX 112

/* Writes the token resuming after room_id (a valid room id) into out,
 * which has room for PAGETOKEN_TEXT_MAX bytes. */
void pagetoken_encode(const unsigned char key[PAGETOKEN_KEY_BYTES], const char *room_id,
		      char out[PAGETOKEN_TEXT_MAX]);

/* Checks token and writes the room id it resumes after. False for anything
 * this key did not issue: wrong length or alphabet, unknown version, bad
 * MAC, or an id that is not a valid room id. */
__attribute__((warn_unused_result)) bool
pagetoken_decode(const unsigned char key[PAGETOKEN_KEY_BYTES], const char *token,
		 char room_id[PAGETOKEN_ROOM_ID_MAX + 1]);

#endif

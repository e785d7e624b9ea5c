/*
 * web_assets.h — the files of web/ as compiled into parleyd: the table
 * embed.cmake generates at build time (web_assets.c in the build tree).
 * Read-only data; paths start with '/', etags are quoted hashes of the
 * contents.
 */
#ifndef PARLEY_WEB_ASSETS_H
#define PARLEY_WEB_ASSETS_H

#include <stddef.h>

typedef struct web_asset {
	const char *path;
	const unsigned char *data;
	size_t len;
	const char *etag;
} web_asset;

extern const web_asset web_assets[];
extern const size_t web_nassets;

#endif

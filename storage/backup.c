/*
 * backup.c — consistent copies of a live data directory, and their restore
 * (see the end of store.h).
 *
 * The environment is copied by LMDB itself (mdb_env_copyfd2 with
 * MDB_CP_COMPACT) through a read-only handle of its own: one read
 * transaction is the snapshot, so the copy is the store as of one instant
 * while the daemon goes on writing (LMDB documents copying an environment
 * in use; pages freed meanwhile are reused only after the copy ends). The
 * other regular files of the directory (keys services keep beside the
 * store, such as auth.key) are never rewritten once made, so copying them
 * after the snapshot keeps the pair consistent.
 *
 * Every file is written as NAME.new, synced, renamed into place, created
 * 0600; the directory is synced after. A backup is complete once its
 * manifest exists: it is written last, and restore refuses a directory
 * without one.
 *
 * No locks: each call works on its own handles. Not for concurrent use on
 * the same destination.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#define MANIFEST_FORMAT "parley-backup 1\n"
#define COPY_CHUNK 65536

static store_err __attribute__((format(printf, 4, 5)))
say(store_err err, char *detail, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (detail != NULL && len > 0) {
		va_start(ap, fmt);
		vsnprintf(detail, len, fmt, ap);
		va_end(ap);
	}
	return err;
}

static store_err
from_errno(int e)
{
	switch (e) {
	case ENOENT:
		return STORE_NOTFOUND;
	case EEXIST:
		return STORE_EXISTS;
	case ENOSPC:
		return STORE_FULL;
	case EACCES:
	case EPERM:
	case EROFS:
		return STORE_READONLY;
	default:
		return STORE_IO;
	}
}

static bool
path_join(char *out, size_t len, const char *dir, const char *name)
{
	int n = snprintf(out, len, "%s/%s", dir, name);

	return n > 0 && (size_t)n < len;
}

/* Files the copy leaves out: LMDB's own, and half-written temporaries. */
static bool
skipped(const char *name)
{
	size_t n = strlen(name);

	return name[0] == '.' || strcmp(name, "data.mdb") == 0 ||
	       strcmp(name, "lock.mdb") == 0 || strcmp(name, STORE_BACKUP_MANIFEST) == 0 ||
	       (n > 4 && strcmp(name + n - 4, ".new") == 0);
}

static int
sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return errno;
	if (fsync(fd) != 0)
		rc = errno;
	close(fd);
	return rc;
}

/* Opens dir/name.new for writing, 0600, replacing a stale one. */
static int
open_new(const char *dir, const char *name, char *tmp, size_t tmp_len)
{
	char base[4096];

	if (!path_join(base, sizeof(base), dir, name) ||
	    snprintf(tmp, tmp_len, "%s.new", base) >= (int)tmp_len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
}

/* Syncs and closes fd, then renames its .new file into place. */
static int
commit_new(int fd, const char *tmp)
{
	char final[4200];
	size_t n = strlen(tmp);
	int rc = 0;

	if (fchmod(fd, 0600) != 0 || fsync(fd) != 0)
		rc = errno;
	if (close(fd) != 0 && rc == 0)
		rc = errno;
	if (rc == 0) {
		memcpy(final, tmp, n - 4);
		final[n - 4] = '\0';
		if (rename(tmp, final) != 0)
			rc = errno;
	}
	if (rc != 0)
		unlink(tmp);
	return rc;
}

static int
copy_fd(int in, int out)
{
	char buf[COPY_CHUNK];
	ssize_t n;

	while ((n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));

			if (w < 0) {
				if (errno == EINTR)
					continue;
				return errno;
			}
			off += w;
		}
	}
	return 0;
}

/* Copies every regular file of from that skipped() does not name into to. */
static store_err
copy_side_files(const char *from, const char *to, char *detail, size_t len)
{
	DIR *d = opendir(from);
	struct dirent *de;
	store_err err = STORE_OK;

	if (d == NULL)
		return say(from_errno(errno), detail, len, "%s: %s", from, strerror(errno));
	while (err == STORE_OK && (errno = 0, de = readdir(d)) != NULL) {
		char src[4096], tmp[4200];
		struct stat sb;
		int in, out, rc;

		if (skipped(de->d_name) || !path_join(src, sizeof(src), from, de->d_name))
			continue;
		in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (in < 0) {
			err = say(from_errno(errno), detail, len, "%s: %s", src, strerror(errno));
			break;
		}
		if (fstat(in, &sb) != 0 || !S_ISREG(sb.st_mode)) {
			close(in);
			continue;
		}
		out = open_new(to, de->d_name, tmp, sizeof(tmp));
		if (out < 0) {
			err = say(from_errno(errno), detail, len, "%s/%s.new: %s", to, de->d_name,
				  strerror(errno));
			close(in);
			break;
		}
		rc = copy_fd(in, out);
		close(in);
		if (rc != 0) {
			close(out);
			unlink(tmp);
		} else {
			rc = commit_new(out, tmp);
		}
		if (rc != 0)
			err = say(from_errno(rc), detail, len, "copying %s: %s", src, strerror(rc));
	}
	if (err == STORE_OK && errno != 0)
		err = say(STORE_IO, detail, len, "%s: %s", from, strerror(errno));
	closedir(d);
	return err;
}

/*
 * Compact copy of the environment at from (opened read-only, with flags
 * added) into to/data.mdb.
 */
static store_err
copy_env(const char *from, unsigned flags, const char *to, char *detail, size_t len)
{
	MDB_env *env = NULL;
	char tmp[4200];
	int fd = -1, rc;

	if ((rc = mdb_env_create(&env)) != 0)
		goto fail;
	/* No map size set: LMDB maps what the environment's meta page says,
	 * which is the live size however large the daemon made it. */
	if ((rc = mdb_env_open(env, from, MDB_RDONLY | flags, 0600)) != 0)
		goto fail;
	if (!(flags & MDB_NOLOCK)) {
		int dead;

		mdb_reader_check(env, &dead);
	}
	if ((fd = open_new(to, "data.mdb", tmp, sizeof(tmp))) < 0) {
		rc = errno;
		goto fail;
	}
	rc = mdb_env_copyfd2(env, fd, MDB_CP_COMPACT);
	if (rc == MDB_MAP_RESIZED) {
		/* The writer grew the map since we opened: adopt it, copy again. */
		if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
			rc = errno;
		else if ((rc = mdb_env_set_mapsize(env, 0)) == 0)
			rc = mdb_env_copyfd2(env, fd, MDB_CP_COMPACT);
	}
	if (rc != 0) {
		close(fd);
		unlink(tmp);
		goto fail;
	}
	mdb_env_close(env);
	if ((rc = commit_new(fd, tmp)) != 0)
		return say(from_errno(rc), detail, len, "%s/data.mdb: %s", to, strerror(rc));
	return STORE_OK;

fail:
	if (env != NULL)
		mdb_env_close(env);
	say(STORE_IO, detail, len, "%s: %s", from, mdb_strerror(rc));
	if (rc == ENOENT)
		return STORE_NOTFOUND;
	if (rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
	    rc == MDB_VERSION_MISMATCH || rc == MDB_INCOMPATIBLE)
		return STORE_CORRUPT;
	if (rc == MDB_READERS_FULL)
		return STORE_BUSY;
	return from_errno(rc);
}

/* Creates dir 0700 (and missing parents), or accepts an empty existing one. */
static store_err
make_empty_dir(const char *dir, char *detail, size_t len)
{
	char path[4096];
	size_t n = strlen(dir);
	DIR *d;
	struct dirent *de;

	if (n == 0 || n >= sizeof(path))
		return say(STORE_INVALID, detail, len, "bad directory name");
	memcpy(path, dir, n + 1);
	for (char *p = path + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST)
			return say(from_errno(errno), detail, len, "%s: %s", path, strerror(errno));
		*p = '/';
	}
	if (mkdir(dir, 0700) == 0)
		return STORE_OK;
	if (errno != EEXIST)
		return say(from_errno(errno), detail, len, "%s: %s", dir, strerror(errno));
	if ((d = opendir(dir)) == NULL)
		return say(from_errno(errno), detail, len, "%s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			/* de lives in d: say it before closing. */
			say(STORE_EXISTS, detail, len, "%s is not empty (found %s)", dir,
			    de->d_name);
			closedir(d);
			return STORE_EXISTS;
		}
	}
	closedir(d);
	return STORE_OK;
}

static store_err
write_manifest(const char *dir, const char *source, char *detail, size_t len)
{
	char tmp[4200], text[4600], stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	int fd, n, rc;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	n = snprintf(text, sizeof(text), MANIFEST_FORMAT "created %s\nsource %s\n", stamp,
		     source);
	if (n < 0 || (size_t)n >= sizeof(text))
		return say(STORE_INVALID, detail, len, "source path too long");
	if ((fd = open_new(dir, STORE_BACKUP_MANIFEST, tmp, sizeof(tmp))) < 0)
		return say(from_errno(errno), detail, len, "%s: %s", dir, strerror(errno));
	if (write(fd, text, (size_t)n) != n) {
		rc = errno ? errno : EIO;
		close(fd);
		unlink(tmp);
		return say(from_errno(rc), detail, len, "%s: %s", tmp, strerror(rc));
	}
	if ((rc = commit_new(fd, tmp)) != 0)
		return say(from_errno(rc), detail, len, "%s: %s", tmp, strerror(rc));
	return STORE_OK;
}

static store_err
check_manifest(const char *dir, char *detail, size_t len)
{
	char path[4096], head[sizeof(MANIFEST_FORMAT)] = {0};
	FILE *f;

	if (!path_join(path, sizeof(path), dir, STORE_BACKUP_MANIFEST))
		return say(STORE_INVALID, detail, len, "path too long");
	if ((f = fopen(path, "re")) == NULL)
		return say(errno == ENOENT ? STORE_CORRUPT : from_errno(errno), detail, len,
			   "%s: %s (not a backup, or an unfinished one)", path, strerror(errno));
	if (fread(head, 1, sizeof(head) - 1, f) != sizeof(head) - 1 ||
	    strcmp(head, MANIFEST_FORMAT) != 0) {
		fclose(f);
		return say(STORE_CORRUPT, detail, len, "%s: not a format this build reads", path);
	}
	fclose(f);
	return STORE_OK;
}

store_err
store_backup(const char *data_dir, const char *dest_dir, char *detail, size_t detail_len)
{
	char probe[4096];
	store_err err;

	/* Refuse a directory with no store before creating anything. */
	if (!path_join(probe, sizeof(probe), data_dir, "data.mdb"))
		return say(STORE_INVALID, detail, detail_len, "path too long");
	if (access(probe, R_OK) != 0)
		return say(from_errno(errno), detail, detail_len, "%s: %s", probe,
			   strerror(errno));
	if ((err = make_empty_dir(dest_dir, detail, detail_len)) != STORE_OK)
		return err;
	if ((err = copy_env(data_dir, 0, dest_dir, detail, detail_len)) != STORE_OK ||
	    (err = copy_side_files(data_dir, dest_dir, detail, detail_len)) != STORE_OK ||
	    (err = write_manifest(dest_dir, data_dir, detail, detail_len)) != STORE_OK)
		return err;
	if (sync_dir(dest_dir) != 0)
		return say(from_errno(errno), detail, detail_len, "%s: %s", dest_dir,
			   strerror(errno));
	return STORE_OK;
}

store_err
store_restore(const char *backup_dir, const char *data_dir, char *detail, size_t detail_len)
{
	store_err err;

	if ((err = check_manifest(backup_dir, detail, detail_len)) != STORE_OK ||
	    (err = make_empty_dir(data_dir, detail, detail_len)) != STORE_OK)
		return err;
	/* Copy through LMDB again rather than byte for byte: the walk reads
	 * every page in use, so a damaged backup fails here and not in the
	 * daemon. MDB_NOLOCK: a backup on read-only media needs no lock file,
	 * and nothing writes it. */
	if ((err = copy_env(backup_dir, MDB_NOLOCK, data_dir, detail, detail_len)) != STORE_OK ||
	    (err = copy_side_files(backup_dir, data_dir, detail, detail_len)) != STORE_OK)
		return err;
	if (sync_dir(data_dir) != 0)
		return say(from_errno(errno), detail, detail_len, "%s: %s", data_dir,
			   strerror(errno));
	return STORE_OK;
}

/*
 * names.c — display names for the interactive chat: a bounded cache of
 * user id -> display name filled from Auth.GetUsers; see ui.h.
 *
 * A line shows "Display Name (id)" when the two differ, and the id alone
 * when they are the same: a display name is chosen freely, so the id stays
 * on screen to tell two people apart (nobody can pass for "alice" by
 * calling themselves that). No event says that someone changed their name,
 * so the names of the senders of a batch of messages are asked afresh, in
 * one call per batch (the poller), and so are those of a history shown;
 * other lines (presence, typing) use what is known, asked again after
 * NAMES_TTL_MS.
 * A lookup that fails (server down) is remembered briefly as the id, so a
 * burst of lines does not ask again for each.
 *
 * Locking: mtx guards the table. Lookups from the poller and main may run
 * at once; the GetUsers call is made without the lock.
 */
#include <stdlib.h>
#include <string.h>

#include "ui.h"

#define NAMES_MAX 256		/* entries; the oldest goes when full */
#define NAMES_TTL_MS 60000
#define NAMES_FAIL_TTL_MS 5000
#define NAMES_CALL_MS 2000	/* a name is not worth holding a line longer */
#define DISPLAY_NAME_BYTES 256	/* 64 characters of up to 4 bytes */

typedef struct name_entry {
	char id[RPC_USER_ID_MAX + 1];
	char name[DISPLAY_NAME_BYTES + 1];
	int64_t until;		/* monotonic ms; 0: free slot */
	bool failed;		/* the last ask failed: the id stands in until then */
} name_entry;

struct names {
	pthread_mutex_t mtx;
	parley_conn *conn;
	name_entry e[NAMES_MAX];
};

names *
names_new(parley_conn *conn)
{
	names *n = calloc(1, sizeof(*n));

	if (n == NULL)
		return NULL;
	pthread_mutex_init(&n->mtx, NULL);
	n->conn = conn;
	return n;
}

void
names_free(names *n)
{
	if (n == NULL)
		return;
	pthread_mutex_destroy(&n->mtx);
	free(n);
}

/* The entry of id, or NULL (n->mtx held). */
static name_entry *
find(names *n, const char *id)
{
	for (size_t i = 0; i < NAMES_MAX; i++)
		if (n->e[i].until != 0 && strcmp(n->e[i].id, id) == 0)
			return &n->e[i];
	return NULL;
}

/* Stores id's name (n->mtx held), replacing its entry or the oldest. */
static void
store(names *n, const char *id, const char *name, int64_t ttl, bool failed)
{
	name_entry *e = find(n, id), *oldest = &n->e[0];

	for (size_t i = 0; e == NULL && i < NAMES_MAX; i++) {
		if (n->e[i].until == 0) {
			e = &n->e[i];
			break;
		}
		if (n->e[i].until < oldest->until)
			oldest = &n->e[i];
	}
	if (e == NULL)
		e = oldest;
	snprintf(e->id, sizeof(e->id), "%s", id);
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->until = rpc_now_ms() + ttl;
	e->failed = failed;
}

void
names_set(names *n, const char *id, const char *name)
{
	if (strlen(id) > RPC_USER_ID_MAX)
		return;
	pthread_mutex_lock(&n->mtx);
	store(n, id, name, NAMES_TTL_MS, false);
	pthread_mutex_unlock(&n->mtx);
}

void
names_fetch(names *n, const char *const *ids, size_t count, bool fresh)
{
	const char *want[PARLEY_GET_USERS_MAX];
	Parley__V1__GetUsersResponse *resp;
	int64_t now = rpc_now_ms();
	size_t k = 0;
	rpc_status st;

	pthread_mutex_lock(&n->mtx);
	for (size_t i = 0; i < count && k < PARLEY_GET_USERS_MAX; i++) {
		name_entry *e;
		bool dup = false;

		if (ids[i][0] == '\0' || strlen(ids[i]) > RPC_USER_ID_MAX)
			continue;
		for (size_t j = 0; j < k && !dup; j++)
			dup = strcmp(want[j], ids[i]) == 0;
		e = dup ? NULL : find(n, ids[i]);
		/* Not even fresh ones while the server has just failed us. */
		if (!dup && (e == NULL || e->until < now || (fresh && !e->failed)))
			want[k++] = ids[i];
	}
	pthread_mutex_unlock(&n->mtx);
	if (k == 0)
		return;
	if (parley_get_users(n->conn, want, k, NAMES_CALL_MS, &resp, &st) != RPC_OK) {
		pthread_mutex_lock(&n->mtx);
		for (size_t j = 0; j < k; j++) {
			name_entry *e = find(n, want[j]);

			/* A name known before stays; an unknown one is the id. */
			if (e != NULL) {
				e->until = now + NAMES_FAIL_TTL_MS;
				e->failed = true;
			} else {
				store(n, want[j], want[j], NAMES_FAIL_TTL_MS, true);
			}
		}
		pthread_mutex_unlock(&n->mtx);
		return;
	}
	pthread_mutex_lock(&n->mtx);
	/* Ids left out are unknown or deleted: shown as the id. */
	for (size_t j = 0; j < k; j++)
		store(n, want[j], want[j], NAMES_TTL_MS, false);
	for (size_t i = 0; i < resp->n_users; i++) {
		const Parley__V1__User *u = resp->users[i];

		if (strlen(u->user_id) <= RPC_USER_ID_MAX)
			store(n, u->user_id, u->display_name[0] ? u->display_name : u->user_id,
			      NAMES_TTL_MS, false);
	}
	pthread_mutex_unlock(&n->mtx);
	parley_free(resp);
}

static void
put(names *n, strbuf *sb, const char *id, bool fetch)
{
	char name[DISPLAY_NAME_BYTES + 1] = "";
	name_entry *e;

	if (fetch)
		names_fetch(n, &id, 1, false);
	pthread_mutex_lock(&n->mtx);
	if ((e = find(n, id)) != NULL)
		memcpy(name, e->name, sizeof(name));
	pthread_mutex_unlock(&n->mtx);
	if (name[0] != '\0' && strcmp(name, id) != 0) {
		sb_sanitized(sb, name, 64);
		sb_puts(sb, " (");
		sb_sanitized(sb, id, RPC_USER_ID_MAX);
		sb_putc(sb, ')');
	} else {
		sb_sanitized(sb, id, RPC_USER_ID_MAX);
	}
}

void
names_put(strbuf *sb, const char *id, void *arg)
{
	put(arg, sb, id, true);
}

void
names_peek(strbuf *sb, const char *id, names *n)
{
	put(n, sb, id, false);
}

void
names_of_events(names *n, Parley__V1__Event *const *ev, size_t count)
{
	const char *ids[PARLEY_GET_USERS_MAX];
	size_t k = 0;

	for (size_t i = 0; i < count && k < PARLEY_GET_USERS_MAX; i++)
		ids[k++] = ev[i]->sender;
	names_fetch(n, ids, k, true);
}

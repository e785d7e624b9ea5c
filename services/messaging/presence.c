/*
 * presence.c — who is online where, per user (see messaging_int.h).
 *
 * A user is ONLINE in a room while at least one of their sessions covers
 * it (a Subscribe stream is a session underneath). The table counts, per
 * (room, user), the sessions covering it: ONLINE is published when the
 * count leaves 0 and OFFLINE when it returns to 0, never in between, so a
 * second terminal of the same user neither announces nor ends anything.
 *
 * Locking: p->mtx guards the table. The presence event is published while
 * it is held, so that the order of ONLINE and OFFLINE on the backbone is
 * the order of the count's changes (a close racing an open of the same
 * user cannot leave the room believing the user is gone). Order: p->mtx,
 * then m->pub_mtx. Entries exist only while their count is above 0, so the
 * table is bounded by the sessions (max_sessions x SESSION_MAX_ROOMS).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "members.h"
#include "messaging_int.h"
#include "parley/internal/v1/presence.pb-c.h"

#define PRESENCE_BUCKETS 4096
#define ONLINE_MAX_USERS 1000

struct pres_entry {
	struct pres_entry *next;
	unsigned count;
	char room[TIMELINE_ROOM_MAX + 1];
	char user[RPC_USER_ID_MAX];
};

struct mx_presence {
	messaging_service *m;
	pthread_mutex_t mtx;
	struct pres_entry *buckets[PRESENCE_BUCKETS];
};

static unsigned
bucket_of(const char *room, const char *user)
{
	uint32_t h = 2166136261u;

	for (; *room; room++)
		h = (h ^ (uint8_t)*room) * 16777619u;
	h = (h ^ 0xff) * 16777619u;
	for (; *user; user++)
		h = (h ^ (uint8_t)*user) * 16777619u;
	return h % PRESENCE_BUCKETS;
}

/* The link pointing at (room, user)'s entry, or at NULL. p->mtx held. */
static struct pres_entry **
slot_locked(mx_presence *p, const char *room, const char *user)
{
	struct pres_entry **pp = &p->buckets[bucket_of(room, user)];

	while (*pp != NULL && (strcmp((*pp)->room, room) != 0 || strcmp((*pp)->user, user) != 0))
		pp = &(*pp)->next;
	return pp;
}

bool
mx_presence_enter(mx_presence *p, const char *room, const char *user)
{
	struct pres_entry **pp, *e;
	bool ok = true;

	pthread_mutex_lock(&p->mtx);
	pp = slot_locked(p, room, user);
	if ((e = *pp) != NULL) {
		e->count++;
	} else if ((e = calloc(1, sizeof(*e))) == NULL) {
		ok = false;
	} else {
		snprintf(e->room, sizeof(e->room), "%s", room);
		snprintf(e->user, sizeof(e->user), "%s", user);
		e->count = 1;
		*pp = e;
		mx_publish_presence(p->m, room, user, PARLEY__V1__PRESENCE_CHANGE__STATE__ONLINE);
	}
	pthread_mutex_unlock(&p->mtx);
	return ok;
}

void
mx_presence_leave(mx_presence *p, const char *room, const char *user, bool announce)
{
	struct pres_entry **pp, *e;

	pthread_mutex_lock(&p->mtx);
	pp = slot_locked(p, room, user);
	if ((e = *pp) != NULL && --e->count == 0) {
		*pp = e->next;
		free(e);
		if (announce)
			mx_publish_presence(p->m, room, user,
					    PARLEY__V1__PRESENCE_CHANGE__STATE__OFFLINE);
	}
	pthread_mutex_unlock(&p->mtx);
}

bool
mx_presence_online(mx_presence *p, const char *room, const char *user)
{
	bool online;

	pthread_mutex_lock(&p->mtx);
	online = *slot_locked(p, room, user) != NULL;
	pthread_mutex_unlock(&p->mtx);
	return online;
}

/* ---- parley.internal.v1.Presence/Online ------------------------------------ */

static rpc_code
handle_online(rpc_call *call, const ProtobufCMessage *reqm, ProtobufCMessage *respm, void *ctx)
{
	const Parley__Internal__V1__OnlineRequest *req = (const void *)reqm;
	Parley__Internal__V1__OnlineResponse *resp = (void *)respm;
	messaging_service *m = ctx;
	rpc_code code;

	if (!svc_valid_room_id(req->room_id))
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "room_id must be 1 to 64 characters of a-z 0-9 _ . - "
				     "starting with a letter or digit");
	if (req->n_user_ids > ONLINE_MAX_USERS)
		return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
				     "user_ids names at most %d users (got %zu)", ONLINE_MAX_USERS,
				     req->n_user_ids);
	for (size_t i = 0; i < req->n_user_ids; i++)
		if (!svc_valid_user_id(req->user_ids[i]))
			return rpc_call_fail(call, RPC_INVALID_ARGUMENT,
					     "user_ids[%zu] is not a user id (3 to 32 characters "
					     "of a-z 0-9 _ . - starting with a letter or digit)",
					     i);
	/* Who is online in a room is for its members only. */
	if ((code = members_require(call, m->rooms, req->room_id)) != RPC_OK)
		return code;
	resp->online_user_ids = rpc_call_alloc(call, (req->n_user_ids + 1) * sizeof(char *));
	for (size_t i = 0; i < req->n_user_ids; i++)
		if (mx_presence_online(m->presence, req->room_id, req->user_ids[i]))
			resp->online_user_ids[resp->n_online_user_ids++] =
			    rpc_call_strdup(call, req->user_ids[i]);
	return RPC_OK;
}

static const rpc_method presence_methods[] = {
	{.fn = handle_online, .auth = RPC_AUTH_REQUIRED},
};

int
mx_presence_start(messaging_service *m, mx_presence **out, rpc_status *st)
{
	const ProtobufCServiceDescriptor *d = &parley__internal__v1__presence__descriptor;
	mx_presence *p;

	if (d->n_methods != 1 || strcmp(d->methods[0].name, "Online") != 0)
		return rpc_status_set(st, RPC_INTERNAL, "presence method table out of date");
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	p->m = m;
	pthread_mutex_init(&p->mtx, NULL);
	*out = p;
	return RPC_OK;
}

void
mx_presence_serve(mx_presence *p, rpc_server *srv)
{
	rpc_server_add_service(srv, &parley__internal__v1__presence__descriptor, presence_methods,
			       p->m);
}

void
mx_presence_stop(mx_presence *p)
{
	if (p == NULL)
		return;
	for (unsigned b = 0; b < PRESENCE_BUCKETS; b++)
		while (p->buckets[b] != NULL) {
			struct pres_entry *e = p->buckets[b];

			p->buckets[b] = e->next;
			free(e);
		}
	pthread_mutex_destroy(&p->mtx);
	free(p);
}

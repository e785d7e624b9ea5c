/* check.c — `parleyd check` (see check.h). */
#include "check.h"

#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rpc.h"
#include "store.h"
#include "svc.h"
#include "timeline.h"

#include "parley/store/v1/auth_records.pb-c.h"
#include "parley/store/v1/messaging_records.pb-c.h"
#include "parley/store/v1/rooms_records.pb-c.h"
#include "parley/v1/events.pb-c.h"

#define CHECK_MAX_TABLES 256
#define REPORT_MAX 20	   /* damaged records listed per table; the rest are counted */
#define FEED_CURSOR_KEY "rooms_feed_cursor" /* msg.meta (messaging_int.h) */
#define TEXT_HASH_BYTES 32 /* ClientMsgRecord.text_hash: BLAKE2b-256 */

struct walk {
	const char *table;
	store_txn *txn;
	timeline tl;
	bool tl_open;
	uint64_t records, damaged;
};

/* Writes key as text: printable bytes as they are, others as \xNN. */
static const char *
show_key(store_val k, char *buf, size_t len)
{
	const unsigned char *p = k.data;
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < k.len && o + 5 < len; i++)
		o += (size_t)snprintf(buf + o, len - o, p[i] >= 0x20 && p[i] < 0x7f ? "%c" : "\\x%02x",
				      p[i]);
	return buf;
}

static void __attribute__((format(printf, 3, 4)))
damaged(struct walk *w, store_val k, const char *fmt, ...)
{
	char key[200];
	va_list ap;

	if (w->damaged++ >= REPORT_MAX)
		return;
	printf("  damaged: %s key '%s': ", w->table, show_key(k, key, sizeof(key)));
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* Splits a key "a \0 b" into a NUL-terminated copy of a (at most max bytes)
 * and where b starts; false if it has no NUL or a is too long. */
static bool
split_key(store_val k, char *a, size_t max, const uint8_t **b, size_t *blen)
{
	const uint8_t *p = k.data, *nul = memchr(p, '\0', k.len);

	if (nul == NULL || (size_t)(nul - p) > max)
		return false;
	memcpy(a, p, (size_t)(nul - p));
	a[nul - p] = '\0';
	*b = nul + 1;
	*blen = k.len - (size_t)(nul - p) - 1;
	return true;
}

/* The record decodes as d, every string UTF-8 without NUL; the unpacked
 * message (caller frees) or NULL with the reason reported. */
static ProtobufCMessage *
record(struct walk *w, store_val k, store_val v, const ProtobufCMessageDescriptor *d)
{
	rpc_status st = {0};
	ProtobufCMessage *m;

	if (rpc_check_wire(d, v.data, v.len, &st) != RPC_OK) {
		damaged(w, k, "not a valid %s: %s", d->short_name, st.message);
		return NULL;
	}
	if ((m = protobuf_c_message_unpack(d, NULL, v.len, v.data)) == NULL)
		damaged(w, k, "does not decode as %s", d->short_name);
	return m;
}

static void
check_event(struct walk *w, store_val k, store_val v)
{
	char room[TIMELINE_ROOM_MAX + 1], why[160];
	const uint8_t *rest;
	size_t rlen;
	uint64_t seq;

	if (!split_key(k, room, TIMELINE_ROOM_MAX, &rest, &rlen) || rlen != 8 ||
	    !svc_valid_room_id(room) || (seq = store_be64_get(rest)) == 0) {
		damaged(w, k, "not a key of room and seq");
		return;
	}
	if (!timeline_check_event(room, seq, v.data, v.len, why, sizeof(why)))
		damaged(w, k, "room '%s' seq %llu: %s", room, (unsigned long long)seq, why);
}

static bool
count_event(void *arg, uint64_t seq, store_val ev)
{
	return true;
}

/* A head says events 1..head exist: the timeline must have them all. */
static void
check_head(struct walk *w, store_val k, store_val v)
{
	char room[TIMELINE_ROOM_MAX + 1];
	uint64_t head;
	store_err err;

	if (k.len == 0 || k.len > TIMELINE_ROOM_MAX) {
		damaged(w, k, "not a room id");
		return;
	}
	memcpy(room, k.data, k.len);
	room[k.len] = '\0';
	if (!svc_valid_room_id(room) || v.len != 8) {
		damaged(w, k, "not a room and its head (%zu bytes)", v.len);
		return;
	}
	head = store_be64_get(v.data);
	if (!w->tl_open) {
		damaged(w, k, "room '%s' has head %llu but there is no events table", room,
			(unsigned long long)head);
		return;
	}
	err = timeline_read(w->txn, &w->tl, room, 1, head, count_event, NULL);
	if (err != STORE_OK)
		damaged(w, k, "room '%s': events 1..%llu are not all there (%s)", room,
			(unsigned long long)head, store_strerror(err));
}

static void
check_client_id(struct walk *w, store_val k, store_val v)
{
	char sender[RPC_USER_ID_MAX];
	const uint8_t *cmid;
	size_t clen;
	Parley__Store__V1__ClientMsgRecord *r;

	if (!split_key(k, sender, RPC_USER_ID_MAX - 1, &cmid, &clen) ||
	    !svc_valid_user_id(sender) || clen == 0 || clen > 64) {
		damaged(w, k, "not a key of sender and client_msg_id");
		return;
	}
	r = (void *)record(w, k, v, &parley__store__v1__client_msg_record__descriptor);
	if (r == NULL)
		return;
	if (!svc_valid_room_id(r->room_id) || r->seq == 0 || r->text_hash.len != TEXT_HASH_BYTES)
		damaged(w, k, "ClientMsgRecord with room '%.64s', seq %llu, %zu-byte hash",
			r->room_id, (unsigned long long)r->seq, r->text_hash.len);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* Membership-style tables: key "a \0 b", empty value. */
static void
check_pair(struct walk *w, store_val k, store_val v)
{
	char a[TIMELINE_ROOM_MAX + 1];
	const uint8_t *b;
	size_t blen;

	if (!split_key(k, a, TIMELINE_ROOM_MAX, &b, &blen) || blen == 0 || v.len != 0)
		damaged(w, k, "not a pair key with an empty value (%zu bytes)", v.len);
}

/* rooms.members, rooms.bans, rooms.invites: key "room \0 user", the value
 * a record of desc (a member's may be empty: older data). */
static void
check_room_pair(struct walk *w, store_val k, store_val v,
		const ProtobufCMessageDescriptor *desc)
{
	char a[TIMELINE_ROOM_MAX + 1];
	const uint8_t *b;
	size_t blen;
	ProtobufCMessage *m;

	if (!split_key(k, a, TIMELINE_ROOM_MAX, &b, &blen) || blen == 0) {
		damaged(w, k, "not a key of room and user");
		return;
	}
	if ((m = record(w, k, v, desc)) != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
}

static void
check_member(struct walk *w, store_val k, store_val v)
{
	check_room_pair(w, k, v, &parley__store__v1__member_record__descriptor);
}

static void
check_ban(struct walk *w, store_val k, store_val v)
{
	check_room_pair(w, k, v, &parley__store__v1__ban_record__descriptor);
}

static void
check_invite(struct walk *w, store_val k, store_val v)
{
	check_room_pair(w, k, v, &parley__store__v1__invite_record__descriptor);
}

static void
check_msg_meta(struct walk *w, store_val k, store_val v)
{
	if (k.len == strlen(FEED_CURSOR_KEY) && memcmp(k.data, FEED_CURSOR_KEY, k.len) == 0 &&
	    v.len != 8)
		damaged(w, k, "the feed cursor is %zu bytes, not 8", v.len);
}

#define RECORD_CHECK(fn, desc)                                                         \
	static void fn(struct walk *w, store_val k, store_val v)                       \
	{                                                                              \
		ProtobufCMessage *m = record(w, k, v, &desc);                          \
		if (m != NULL)                                                         \
			protobuf_c_message_free_unpacked(m, NULL);                     \
	}
RECORD_CHECK(check_user, parley__store__v1__user_record__descriptor)
RECORD_CHECK(check_token, parley__store__v1__token_record__descriptor)
RECORD_CHECK(check_room, parley__store__v1__room_record__descriptor)
RECORD_CHECK(check_change, parley__v1__event__descriptor)

/* What each known table holds; any other table is walked only. */
static const struct rule {
	const char *table;
	void (*check)(struct walk *w, store_val k, store_val v);
} rules[] = {
	{TIMELINE_EVENTS_TABLE, check_event},
	{TIMELINE_HEADS_TABLE, check_head},
	{"msg.client_ids", check_client_id},
	{"msg.members", check_pair},
	{"msg.meta", check_msg_meta},
	{"auth.users", check_user},
	{"auth.tokens", check_token},
	{"auth.user_tokens", check_pair},
	{"rooms.rooms", check_room},
	{"rooms.members", check_member},
	{"rooms.bans", check_ban},
	{"rooms.invites", check_invite},
	{"rooms.user_rooms", check_pair},
	{"rooms.changes", check_change},
};

struct visit {
	struct walk *w;
	const struct rule *rule;
};

static bool
visit(void *arg, store_val k, store_val v)
{
	struct visit *vi = arg;

	vi->w->records++;
	if (vi->rule != NULL)
		vi->rule->check(vi->w, k, v);
	return true;
}

/* In the child: walks one table; its exit status is 1 if damaged. */
static int
walk_table(const char *dir, const char *name)
{
	store_opts o = {.read_only = true};
	struct walk w = {.table = name};
	struct visit vi = {.w = &w};
	store_env *env;
	store_table t;
	store_err err;

	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if (strcmp(rules[i].table, name) == 0)
			vi.rule = &rules[i];
	if ((err = store_open(&env, dir, &o, NULL, 0)) != STORE_OK ||
	    (err = store_table_open(env, name, &t)) != STORE_OK) {
		printf("  damaged: %s: cannot open: %s\n", name, store_strerror(err));
		return 1;
	}
	timeline_init(&w.tl, env);
	w.tl_open = timeline_open(&w.tl) == STORE_OK;
	if ((err = store_begin(env, false, &w.txn)) == STORE_OK) {
		err = store_scan(w.txn, t, NULL, 0, false, visit, &vi);
		store_abort(w.txn);
	}
	if (err != STORE_OK) {
		printf("  damaged: %s: walking it failed: %s\n", name, store_strerror(err));
		w.damaged++;
	}
	printf("%s: %llu records, %llu damaged\n", name, (unsigned long long)w.records,
	       (unsigned long long)w.damaged);
	timeline_fini(&w.tl);
	store_close(env);
	return w.damaged > 0;
}

struct names {
	char *v[CHECK_MAX_TABLES];
	unsigned n;
	bool truncated;
};

static bool
add_name(void *arg, const char *name)
{
	struct names *ns = arg;

	if (ns->n == CHECK_MAX_TABLES) {
		ns->truncated = true;
		return false;
	}
	ns->v[ns->n++] = strdup(name);
	return ns->v[ns->n - 1] != NULL;
}

static void
usage(FILE *out)
{
	fprintf(out, "usage: parleyd check [--data-dir DIR]   (default ./data, [PARLEY_DATA_DIR])\n"
		     "  walks every table and reports what is damaged; exits 1 if anything is\n");
}

int
parley_check_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"data-dir", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *dir = getenv("PARLEY_DATA_DIR");
	store_opts o = {.read_only = true};
	struct names ns = {0};
	char detail[512] = "";
	unsigned bad = 0;
	store_env *env;
	store_err err;
	int opt;

	if (dir == NULL || dir[0] == '\0')
		dir = "./data";
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'd': dir = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if ((err = store_open(&env, dir, &o, detail, sizeof(detail))) != STORE_OK) {
		printf("check %s: cannot open: %s (%s)\nDAMAGED or missing\n", dir,
		       store_strerror(err), detail);
		return 1;
	}
	err = store_list_tables(env, add_name, &ns);
	store_close(env); /* a forked child must not use it: each opens its own */
	if (err != STORE_OK) {
		printf("check %s: cannot list the tables: %s\n", dir, store_strerror(err));
		bad++;
	}
	if (ns.truncated)
		printf("check %s: more than %d tables; only the first are checked\n", dir,
		       CHECK_MAX_TABLES);
	for (unsigned i = 0; i < ns.n; i++) {
		int status;
		pid_t pid;

		fflush(stdout);
		if ((pid = fork()) < 0) {
			printf("  %s: cannot fork to walk it\n", ns.v[i]);
			bad++;
			continue;
		}
		if (pid == 0) {
			int rc = walk_table(dir, ns.v[i]);

			fflush(stdout);
			_exit(rc);
		}
		while (waitpid(pid, &status, 0) < 0)
			;
		if (WIFSIGNALED(status)) {
			printf("  damaged: %s: walking it crashed (%s): its pages are damaged\n",
			       ns.v[i], strsignal(WTERMSIG(status)));
			bad++;
		} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			bad++;
		}
		free(ns.v[i]);
	}
	printf("check %s: %u tables, %s\n", dir, ns.n,
	       bad ? "DAMAGED: see the lines above" : "no damage found");
	return bad ? 1 : 0;
}

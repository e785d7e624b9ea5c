/*
 * damaged_data_test.c — damaged data never crashes the daemon or reaches a
 * client as invalid UTF-8: records overwritten through LMDB directly (one
 * that does not decode, one whose text is not UTF-8) answer DATA_LOSS on
 * GetHistory and Poll, naming the seq, while the events before them are
 * still served; a user record whose display name and a session whose
 * user_id are not UTF-8 answer DATA_LOSS on GetUsers and Validate;
 * `parleyd check` reports both events and exits 1 (0 on clean data);
 * a data.mdb truncated to half is refused at start with a clear reason and
 * reported by `parleyd check`.
 */
#include <lmdb.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mx_util.h"
#include "parley/store/v1/auth_records.pb-c.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/rooms.pb-c.h"
#include "store.h"

#define NMSG 6

/* Runs `parleyd check --data-dir dir`; returns its exit status and its
 * output in out. */
static int
run_check(const char *dir, char *out, size_t len)
{
	const char *parleyd = getenv("PARLEYD");
	char cmd[600];
	size_t n = 0, r;
	FILE *p;
	int status;

	TH_CHECK(parleyd != NULL, "PARLEYD names the daemon (set by ctest)");
	snprintf(cmd, sizeof(cmd), "'%s' check --data-dir '%s' 2>&1", parleyd, dir);
	TH_CHECK((p = popen(cmd, "r")) != NULL, "popen");
	while (n + 1 < len && (r = fread(out + n, 1, len - 1 - n, p)) > 0)
		n += r;
	out[n] = '\0';
	status = pclose(p);
	TH_CHECK(WIFEXITED(status), "parleyd check ended by a signal:\n%s", out);
	return WEXITSTATUS(status);
}

/* Overwrites the events of room at seqs a and b through LMDB itself: a
 * with bytes that are no protobuf, b with an Event whose text is not UTF-8. */
static void
damage(const char *dir, const char *room, uint64_t a, uint64_t b)
{
	static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
	Parley__V1__Event ev = PARLEY__V1__EVENT__INIT;
	Parley__V1__ChatMessage cm = PARLEY__V1__CHAT_MESSAGE__INIT;
	uint8_t key[64 + 1 + 8], buf[256];
	size_t rl = strlen(room), blen;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {.mv_size = rl + 1 + 8, .mv_data = key}, v;

	cm.text = "caf\xc3\x28 bad";
	ev.room_id = (char *)room;
	ev.seq = b;
	ev.ts_ms = 1;
	ev.sender = "someone";
	ev.body_case = PARLEY__V1__EVENT__BODY_MESSAGE;
	ev.message = &cm;
	blen = parley__v1__event__pack(&ev, buf);

	TH_CHECK(mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 64) == 0 &&
			 mdb_env_set_mapsize(env, (size_t)1 << 30) == 0 &&
			 mdb_env_open(env, dir, 0, 0600) == 0,
		 "open the daemon's LMDB");
	TH_CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0 &&
			 mdb_dbi_open(txn, "msg.events", 0, &dbi) == 0,
		 "events table");
	memcpy(key, room, rl);
	key[rl] = '\0';
	store_be64_put(key + rl + 1, a);
	v = (MDB_val){.mv_size = sizeof(garbage), .mv_data = (void *)garbage};
	TH_CHECK(mdb_put(txn, dbi, &k, &v, 0) == 0, "overwrite seq %llu", (unsigned long long)a);
	store_be64_put(key + rl + 1, b);
	v = (MDB_val){.mv_size = blen, .mv_data = buf};
	TH_CHECK(mdb_put(txn, dbi, &k, &v, 0) == 0, "overwrite seq %llu", (unsigned long long)b);
	TH_CHECK(mdb_txn_commit(txn) == 0, "commit");
	mdb_env_close(env);
}

/* Overwrites, through LMDB itself, user's record with one whose display
 * name is not UTF-8, and the session of token with one whose user_id is
 * not UTF-8 (its key: the keyed BLAKE2b of the raw token, as auth does). */
static void
damage_auth(const char *dir, const char *user, const char *token)
{
	Parley__Store__V1__UserRecord ur = PARLEY__STORE__V1__USER_RECORD__INIT;
	Parley__Store__V1__TokenRecord tr = PARLEY__STORE__V1__TOKEN_RECORD__INIT;
	unsigned char key[crypto_generichash_KEYBYTES], raw[32], hash[32];
	uint8_t buf[256];
	char path[400];
	size_t rawlen = 0;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi users, tokens;
	MDB_val k, v;
	FILE *f;

	snprintf(path, sizeof(path), "%s/auth.key", dir);
	TH_CHECK((f = fopen(path, "rb")) != NULL && fread(key, 1, sizeof(key), f) == sizeof(key),
		 "read %s", path);
	fclose(f);
	TH_CHECK(sodium_base642bin(raw, sizeof(raw), token, strlen(token), NULL, &rawlen, NULL,
				   sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
			 rawlen == sizeof(raw),
		 "decode the token");
	crypto_generichash(hash, sizeof(hash), raw, sizeof(raw), key, sizeof(key));

	TH_CHECK(mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 64) == 0 &&
			 mdb_env_set_mapsize(env, (size_t)1 << 30) == 0 &&
			 mdb_env_open(env, dir, 0, 0600) == 0,
		 "open the daemon's LMDB");
	TH_CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0 &&
			 mdb_dbi_open(txn, "auth.users", 0, &users) == 0 &&
			 mdb_dbi_open(txn, "auth.tokens", 0, &tokens) == 0,
		 "auth tables");
	ur.user_id = (char *)user;
	ur.display_name = "caf\xc3\x28 bad";
	ur.created_at_ms = 1;
	k = (MDB_val){.mv_size = strlen(user), .mv_data = (void *)user};
	v = (MDB_val){.mv_size = parley__store__v1__user_record__pack(&ur, buf), .mv_data = buf};
	TH_CHECK(mdb_put(txn, users, &k, &v, 0) == 0, "overwrite %s's record", user);
	tr.user_id = "caf\xc3\x28";
	tr.expires_at_ms = UINT64_MAX / 2;
	tr.token_hash.data = hash;
	tr.token_hash.len = sizeof(hash);
	k = (MDB_val){.mv_size = sizeof(hash), .mv_data = hash};
	v = (MDB_val){.mv_size = parley__store__v1__token_record__pack(&tr, buf), .mv_data = buf};
	TH_CHECK(mdb_put(txn, tokens, &k, &v, 0) == 0, "overwrite the session");
	TH_CHECK(mdb_txn_commit(txn) == 0, "commit");
	mdb_env_close(env);
	sodium_memzero(key, sizeof(key));
}

static void
reconnect(void)
{
	mx_auth = th_client(mx_d.auth);
	mx_rooms = th_client(mx_d.rooms);
	mx_msg = th_client(mx_d.messaging);
	mx_hist = th_client(mx_d.history);
}

static void
disconnect(void)
{
	rpc_client_close(mx_auth);
	rpc_client_close(mx_rooms);
	rpc_client_close(mx_msg);
	rpc_client_close(mx_hist);
}

int
main(void)
{
	static char out[16384];
	char room[65], sid[65], want[128];
	const char *rooms[1] = {room};
	uint64_t seqs[NMSG], since = 0, head;
	Parley__V1__GetHistoryResponse *h;
	Parley__V1__PollResponse *p;
	char file[400];
	struct stat fst;
	rpc_status st;
	mx_user a, u[2];

	mx_start(NULL);
	mx_users_new(&a, 1, "dmg");
	mx_users_new(u, 2, "dmgauth");
	snprintf(room, sizeof(room), "%s", th_name("dmg"));
	TH_CODE(mx_create_room(&a, room, &st), RPC_OK, &st);
	for (int i = 0; i < NMSG; i++) {
		char text[32];

		snprintf(text, sizeof(text), "message %d", i);
		TH_CODE(mx_send(&a, room, text, "", &seqs[i], NULL, &st), RPC_OK, &st);
	}
	disconnect();
	TH_CHECK(th_stop(&mx_d) == 0, "parleyd exits 0");

	TH_CHECK(run_check(mx_d.dir, out, sizeof(out)) == 0, "clean data passes:\n%s", out);
	TH_CHECK(strstr(out, "no damage found") != NULL && strstr(out, "msg.events:") != NULL,
		 "the report lists the tables:\n%s", out);
	printf("ok parleyd check on clean data exits 0\n");

	damage(mx_d.dir, room, seqs[2], seqs[4]);
	damage_auth(mx_d.dir, u[0].name, u[1].token);
	TH_CHECK(run_check(mx_d.dir, out, sizeof(out)) == 1, "damage is found:\n%s", out);
	snprintf(want, sizeof(want), "room '%s' seq %llu: ", room, (unsigned long long)seqs[2]);
	TH_CHECK(strstr(out, want) != NULL, "names the record that does not decode:\n%s", out);
	snprintf(want, sizeof(want), "room '%s' seq %llu: field 'message.text' is not valid UTF-8",
		 room, (unsigned long long)seqs[4]);
	TH_CHECK(strstr(out, want) != NULL, "names the record that is not UTF-8:\n%s", out);
	TH_CHECK(strstr(out, "DAMAGED") != NULL, "says so at the end:\n%s", out);
	printf("ok parleyd check reports both damaged records and exits 1\n");

	TH_CHECK(th_restart(&mx_d), "parleyd starts on damaged records");
	reconnect();
	/* The whole timeline: DATA_LOSS at the first damaged seq. */
	TH_CODE(mx_history(&a, room, 0, 0, 0, &h, &st), RPC_DATA_LOSS, &st);
	snprintf(want, sizeof(want), "the event at seq %llu cannot be read",
		 (unsigned long long)seqs[2]);
	TH_CHECK(strstr(st.message, want) != NULL, "names the seq: %s", st.message);
	/* After the first: DATA_LOSS at the one that is not UTF-8. */
	TH_CODE(mx_history(&a, room, 0, seqs[2], 0, &h, &st), RPC_DATA_LOSS, &st);
	snprintf(want, sizeof(want), "seq %llu", (unsigned long long)seqs[4]);
	TH_CHECK(strstr(st.message, want) != NULL, "names the seq: %s", st.message);
	/* Before them: served. */
	TH_CODE(mx_history(&a, room, seqs[2], 0, 0, &h, &st), RPC_OK, &st);
	TH_CHECK(h->n_events == seqs[2] - 1, "%zu events before the damage", h->n_events);
	protobuf_c_message_free_unpacked(&h->base, NULL);
	TH_CHECK(th_log_has(&mx_d, "is damaged"), "the log says what is damaged");
	printf("ok GetHistory answers DATA_LOSS for damaged records: %s\n", st.message);

	/* Auth's records: the damaged text is DATA_LOSS, never served. */
	{
		Parley__V1__GetUsersRequest gu = PARLEY__V1__GET_USERS_REQUEST__INIT;
		Parley__V1__ValidateRequest vr = PARLEY__V1__VALIDATE_REQUEST__INIT;
		Parley__V1__ListMyRoomsRequest lr = PARLEY__V1__LIST_MY_ROOMS_REQUEST__INIT;
		char *ids[1] = {u[0].name};

		gu.n_user_ids = 1;
		gu.user_ids = ids;
		mx_expect(mx_call(mx_auth, &parley__v1__auth__descriptor, "GetUsers", &a, &gu.base,
				  NULL, &st),
			  RPC_DATA_LOSS, &st, "stored data is damaged", "GetUsers of a damaged user");
		vr.token = u[1].token;
		mx_expect(mx_call(mx_auth, &parley__v1__auth__descriptor, "Validate", &a, &vr.base,
				  NULL, &st),
			  RPC_DATA_LOSS, &st, "token record is damaged", "Validate a damaged session");
		TH_CHECK(mx_call(mx_rooms, &parley__v1__rooms__descriptor, "ListMyRooms", &u[1],
				 &lr.base, NULL, &st) != RPC_OK,
			 "a damaged session calls nothing");
		TH_CHECK(th_log_has(&mx_d, "get users: ") &&
				 th_log_has(&mx_d, "a token record is damaged"),
			 "the log says which records are damaged");
		printf("ok damaged auth records answer DATA_LOSS: %s\n", st.message);
	}

	/* A session from the start: the events before the damage, then
	 * DATA_LOSS, and the daemon stays up. */
	TH_CODE(mx_open(&a, 1, rooms, &since, sid, &head, &st), RPC_OK, &st);
	TH_CODE(mx_poll(&a, sid, 5000, 0, &p, &st), RPC_OK, &st);
	TH_CHECK(p->n_events == seqs[2] - 1 && p->events[p->n_events - 1]->seq == seqs[2] - 1,
		 "%zu events before the damage", p->n_events);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	TH_CODE(mx_poll(&a, sid, 5000, 0, &p, &st), RPC_DATA_LOSS, &st);
	snprintf(want, sizeof(want), "the event at seq %llu cannot be read",
		 (unsigned long long)seqs[2]);
	TH_CHECK(strstr(st.message, want) != NULL, "names the seq: %s", st.message);
	TH_CHECK(th_wait_serving(mx_d.messaging, 5000), "messaging still serving");
	printf("ok Poll answers DATA_LOSS at a damaged record: %s\n", st.message);
	disconnect();
	TH_CHECK(th_stop(&mx_d) == 0, "parleyd exits 0");

	/* Cut the file in half: refused at start, reported by check. */
	snprintf(file, sizeof(file), "%s/data.mdb", mx_d.dir);
	TH_CHECK(stat(file, &fst) == 0 && truncate(file, fst.st_size / 2) == 0, "truncate");
	TH_CHECK(!th_restart(&mx_d), "parleyd refuses a truncated file");
	TH_CHECK(th_log_has(&mx_d, "the file was truncated; restore it from a backup"),
		 "the log says why (see %s)", mx_d.log);
	TH_CHECK(run_check(mx_d.dir, out, sizeof(out)) == 1 &&
			 strstr(out, "the file was truncated") != NULL,
		 "check reports the truncation:\n%s", out);
	printf("ok a truncated data.mdb is refused at start and by check\n");
	th_cleanup(&mx_d);
	return 0;
}

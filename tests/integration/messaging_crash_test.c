/*
 * messaging_crash_test.c — an acknowledged Send survives kill -9.
 *
 * Ten clients send with client_msg_ids; parleyd is killed at a random
 * moment (three times). After each restart every acknowledged seq holds its
 * text, and retrying every unacknowledged send stores nothing twice: each
 * text is in the room exactly once.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mx_util.h"

#define SENDERS 10
#define MAX_PER 4000 /* per round: far more than fits before the kill */
#define ROUNDS 3

struct sender {
	mx_user u;
	int round;
	int attempted;		/* sends started */
	int acked;		/* sends answered OK: 0..acked-1 */
	uint64_t seq[MAX_PER];
	rpc_status failure;
};

static struct sender senders[SENDERS];
static char room[65];

static void
text_of(char *buf, size_t len, int round, int i, int k)
{
	snprintf(buf, len, "round %d sender %d message %d", round, i, k);
}

static void
cmid_of(char *buf, size_t len, int round, int k)
{
	snprintf(buf, len, "r%d-m%d", round, k);
}

static void *
send_until_failure(void *arg)
{
	struct sender *s = arg;
	int i = (int)(s - senders);
	char text[96], cmid[32];

	for (int k = 0; k < MAX_PER; k++) {
		text_of(text, sizeof(text), s->round, i, k);
		cmid_of(cmid, sizeof(cmid), s->round, k);
		s->attempted = k + 1;
		if (mx_send(&s->u, room, text, cmid, &s->seq[k], NULL, &s->failure) != RPC_OK)
			return NULL;
		s->acked = k + 1;
	}
	return NULL;
}

/* Each text of the rounds so far appears exactly once; acknowledged seqs
 * hold their texts. */
static void
verify(int rounds)
{
	size_t n;
	Parley__V1__Event **tl = mx_timeline(&senders[0].u, room, &n);
	static unsigned char seen[ROUNDS][SENDERS][MAX_PER];

	memset(seen, 0, sizeof(seen));
	for (size_t k = 0; k < n; k++) {
		int r, i, m;

		TH_CHECK(tl[k]->seq == k + 1, "timeline gap-free at %zu", k);
		if (tl[k]->body_case != PARLEY__V1__EVENT__BODY_MESSAGE)
			continue;
		TH_CHECK(sscanf(tl[k]->message->text, "round %d sender %d message %d", &r, &i, &m) ==
				 3 &&
			     r >= 0 && r < rounds && i >= 0 && i < SENDERS && m >= 0 && m < MAX_PER,
			 "unexpected text '%s'", tl[k]->message->text);
		TH_CHECK(seen[r][i][m] == 0, "'%s' stored twice", tl[k]->message->text);
		TH_CHECK(strcmp(tl[k]->sender, senders[i].u.name) == 0, "sender kept");
		seen[r][i][m] = 1;
	}
	for (int i = 0; i < SENDERS; i++) {
		const struct sender *s = &senders[i];

		for (int k = 0; k < s->acked; k++) {
			char text[96];

			text_of(text, sizeof(text), s->round, i, k);
			TH_CHECK(s->seq[k] >= 1 && s->seq[k] <= n &&
				     tl[s->seq[k] - 1]->body_case == PARLEY__V1__EVENT__BODY_MESSAGE &&
				     strcmp(tl[s->seq[k] - 1]->message->text, text) == 0,
				 "acknowledged seq %llu holds '%s'", (unsigned long long)s->seq[k],
				 text);
		}
	}
	for (int i = 0; i < SENDERS; i++)
		for (int k = 0; k < senders[i].attempted; k++)
			TH_CHECK(seen[rounds - 1][i][k], "round %d sender %d message %d is stored",
				 rounds - 1, i, k);
	for (size_t k = 0; k < n; k++)
		parley__v1__event__free_unpacked(tl[k], NULL);
	free(tl);
}

int
main(void)
{
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	mx_user users[SENDERS];
	rpc_status st;

	printf("seed %u\n", seed);
	srand(seed);
	mx_start(NULL);
	mx_users_new(users, SENDERS, "crash");
	snprintf(room, sizeof(room), "%s", th_name("crash"));
	TH_CODE(mx_create_room(&users[0], room, &st), RPC_OK, &st);
	for (int i = 0; i < SENDERS; i++) {
		senders[i].u = users[i];
		if (i > 0)
			TH_CODE(mx_join(&users[i], room, &st), RPC_OK, &st);
	}

	for (int round = 0; round < ROUNDS; round++) {
		pthread_t t[SENDERS];
		int delay_ms = 200 + rand() % 1300;
		int acked = 0, unacked = 0;

		/* Calls in flight at the kill must fail soon after it. */
		mx_timeout_ms = 3000;
		for (int i = 0; i < SENDERS; i++) {
			senders[i].round = round;
			senders[i].attempted = senders[i].acked = 0;
			TH_CHECK(pthread_create(&t[i], NULL, send_until_failure, &senders[i]) == 0,
				 "thread");
		}
		usleep((useconds_t)delay_ms * 1000);
		th_kill9(&mx_d);
		for (int i = 0; i < SENDERS; i++) {
			pthread_join(t[i], NULL);
			TH_CHECK(senders[i].attempted < MAX_PER, "sender %d was still sending", i);
			acked += senders[i].acked;
			unacked += senders[i].attempted - senders[i].acked;
		}
		mx_timeout_ms = 20000;
		TH_CHECK(th_restart(&mx_d), "restart after kill -9");
		printf("round %d: killed after %d ms; %d acknowledged, %d in flight\n", round,
		       delay_ms, acked, unacked);

		/* Retry what was never answered: stored once, whether or not
		 * it made it in before the kill. */
		for (int i = 0; i < SENDERS; i++) {
			struct sender *s = &senders[i];

			for (int k = s->acked; k < s->attempted; k++) {
				char text[96], cmid[32];

				text_of(text, sizeof(text), round, i, k);
				cmid_of(cmid, sizeof(cmid), round, k);
				TH_CODE(mx_send(&s->u, room, text, cmid, &s->seq[k], NULL, &st),
					RPC_OK, &st);
				s->acked = k + 1;
			}
		}
		/* And retrying an acknowledged one gives its seq back. */
		for (int i = 0; i < SENDERS; i++) {
			struct sender *s = &senders[i];
			char text[96], cmid[32];
			uint64_t again;

			if (s->acked == 0)
				continue;
			text_of(text, sizeof(text), round, i, 0);
			cmid_of(cmid, sizeof(cmid), round, 0);
			TH_CODE(mx_send(&s->u, room, text, cmid, &again, NULL, &st), RPC_OK, &st);
			TH_CHECK(again == s->seq[0], "retry after restart: seq %llu, was %llu",
				 (unsigned long long)again, (unsigned long long)s->seq[0]);
		}
		verify(round + 1);
		printf("ok round %d: every acknowledged send present, retries stored nothing twice\n",
		       round);
	}
	mx_stop();
	return 0;
}

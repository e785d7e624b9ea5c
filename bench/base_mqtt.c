/*
 * base_mqtt.c — the broker baseline: a local mosquitto started here on a
 * free 127.0.0.1 port with a temp config (no persistence, no queue limits,
 * TCP_NODELAY), one libmosquitto client per receiver subscribed at QoS 0
 * (fanout) or QoS 1 (peers) to its room's topic, and one publisher client
 * per room publishing at the same QoS.
 *
 * Threads: every subscriber is driven by one loop thread of ours (poll over
 * all their sockets); each publisher runs libmosquitto's own loop thread.
 * Message callbacks run on our loop thread and call fo_observe.
 */
#define _GNU_SOURCE
#include "fanout.h"

#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>

typedef struct mq_sub {
	struct mosquitto *m;
	fo_recv *recv;
	int qos;
	bool subscribed;
} mq_sub;

typedef struct mqtt_sys {
	pid_t broker;
	int port;
	int qos;
	char tmp[300];
	int nsubs;
	mq_sub *subs;
	struct mosquitto *pub[FO_MAX_ROOMS];
	int npubs;
	pthread_t loop;
	bool loop_started;
	atomic_bool stop;
	pthread_mutex_t room_mtx[FO_MAX_ROOMS];
	uint64_t seq[FO_MAX_ROOMS];
} mqtt_sys;

static const char *
broker_path(void)
{
	static const char *const paths[] = {"/usr/sbin/mosquitto", "/usr/bin/mosquitto",
					    "/usr/local/sbin/mosquitto",
					    "/usr/local/bin/mosquitto"};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

bool
mqtt_available(char *why, size_t len)
{
	if (broker_path() != NULL)
		return true;
	snprintf(why, len, "no mosquitto broker binary (install the Debian package mosquitto)");
	return false;
}

static void
on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
	mq_sub *s = arg;
	uint64_t seq, sent;

	if (fo_parse(msg->payload, (size_t)msg->payloadlen, &seq, &sent))
		fo_observe(s->recv, seq, sent);
}

static void
on_connect(struct mosquitto *m, void *arg, int rc)
{
	mq_sub *s = arg;
	char topic[32];

	snprintf(topic, sizeof(topic), "bench/r%d", s->recv->room);
	if (rc == 0)
		mosquitto_subscribe(m, NULL, topic, s->qos);
}

static void
on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *granted)
{
	__atomic_store_n(&((mq_sub *)arg)->subscribed, true, __ATOMIC_RELEASE);
}

/* Drives every subscriber: one thread, poll over all sockets. */
static void *
sub_loop(void *arg)
{
	mqtt_sys *q = arg;
	struct pollfd *fds = calloc((size_t)q->nsubs, sizeof(*fds));
	uint64_t misc = 0;

	if (fds == NULL)
		return NULL;
	while (!q->stop) {
		uint64_t now;

		for (int i = 0; i < q->nsubs; i++) {
			fds[i].fd = mosquitto_socket(q->subs[i].m);
			fds[i].events = POLLIN | (mosquitto_want_write(q->subs[i].m) ? POLLOUT : 0);
			fds[i].revents = 0;
		}
		if (poll(fds, (nfds_t)q->nsubs, 50) < 0)
			continue;
		for (int i = 0; i < q->nsubs; i++) {
			if (fds[i].revents & (POLLIN | POLLERR | POLLHUP))
				mosquitto_loop_read(q->subs[i].m, 64);
			if (fds[i].revents & POLLOUT)
				mosquitto_loop_write(q->subs[i].m, 64);
		}
		now = bench_now_ns();
		if (now - misc > 200000000u) {
			misc = now;
			for (int i = 0; i < q->nsubs; i++)
				mosquitto_loop_misc(q->subs[i].m);
		}
	}
	free(fds);
	return NULL;
}

static bool
start_broker(mqtt_sys *q, const bench_opts *o, char *err, size_t errlen)
{
	char conf[400], log[400];
	const char *argv[] = {broker_path(), "-c", conf, NULL};
	FILE *f;

	if (!bench_tmpdir(o, "mosquitto", q->tmp, sizeof(q->tmp))) {
		snprintf(err, errlen, "mkdtemp failed");
		return false;
	}
	q->port = bench_free_port();
	snprintf(conf, sizeof(conf), "%s/mosquitto.conf", q->tmp);
	snprintf(log, sizeof(log), "%s/mosquitto.log", q->tmp);
	if ((f = fopen(conf, "w")) == NULL) {
		snprintf(err, errlen, "cannot write %s", conf);
		return false;
	}
	fprintf(f, "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
		   "max_queued_messages 0\nmax_inflight_messages 0\nset_tcp_nodelay true\n"
		   "log_dest stderr\nlog_type error\nlog_type warning\n",
		q->port);
	fclose(f);
	/* Up when it accepts a tcp connection; teardown stops it either way. */
	return bench_spawn_server(argv, log, "mosquitto", q->port, &q->broker, err, errlen);
}

static bool
publish(mqtt_sys *q, int room, uint64_t sent, char *err, size_t errlen)
{
	char topic[32], payload[FO_TEXT_LEN + 1];
	int rc;

	snprintf(topic, sizeof(topic), "bench/r%d", room);
	pthread_mutex_lock(&q->room_mtx[room]);
	fo_payload(payload, ++q->seq[room], sent == 1 ? bench_now_ns() : 0);
	rc = mosquitto_publish(q->pub[room], NULL, topic, FO_TEXT_LEN, payload, q->qos, false);
	pthread_mutex_unlock(&q->room_mtx[room]);
	if (rc != MOSQ_ERR_SUCCESS)
		snprintf(err, errlen, "mosquitto_publish: %s", mosquitto_strerror(rc));
	return rc == MOSQ_ERR_SUCCESS;
}

bool
mqtt_send(void *sys, int thread, int room, char *err, size_t errlen)
{
	return publish(sys, room, 1, err, errlen);
}

void
mqtt_last(void *sys, uint64_t *last)
{
	mqtt_sys *q = sys;

	for (int r = 0; r < FO_MAX_ROOMS; r++) {
		pthread_mutex_lock(&q->room_mtx[r]);
		last[r] = q->seq[r];
		pthread_mutex_unlock(&q->room_mtx[r]);
	}
}

void
mqtt_teardown(void *sys)
{
	mqtt_sys *q = sys;

	if (q == NULL)
		return;
	q->stop = true;
	if (q->loop_started)
		pthread_join(q->loop, NULL);
	for (int i = 0; i < q->npubs; i++) {
		mosquitto_disconnect(q->pub[i]);
		mosquitto_loop_stop(q->pub[i], true);
		mosquitto_destroy(q->pub[i]);
	}
	for (int i = 0; i < q->nsubs; i++)
		mosquitto_destroy(q->subs[i].m);
	if (q->broker > 0)
		bench_child_stop(q->broker, 10000, NULL);
	bench_rmtree(q->tmp);
	for (int r = 0; r < FO_MAX_ROOMS; r++)
		pthread_mutex_destroy(&q->room_mtx[r]);
	free(q->subs);
	free(q);
	mosquitto_lib_cleanup();
}

pid_t
mqtt_broker_pid(void *sys)
{
	return sys != NULL ? ((mqtt_sys *)sys)->broker : 0;
}

void *
mqtt_setup(const bench_opts *o, const fo_case *c, fo_recv *rs, char *err, size_t errlen)
{
	return mqtt_setup_qos(o, c, rs, 0, err, errlen);
}

void *
mqtt_setup_qos(const bench_opts *o, const fo_case *c, fo_recv *rs, int qos, char *err,
	       size_t errlen)
{
	mqtt_sys *q = calloc(1, sizeof(*q));
	int n = c->rooms * c->members, rc;
	uint64_t until, last[FO_MAX_ROOMS];
	bool all;

	if (q == NULL || (q->subs = calloc((size_t)n, sizeof(*q->subs))) == NULL) {
		free(q);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	q->qos = qos;
	mosquitto_lib_init();
	for (int r = 0; r < FO_MAX_ROOMS; r++)
		pthread_mutex_init(&q->room_mtx[r], NULL);
	if (!start_broker(q, o, err, errlen))
		goto fail;
	for (int i = 0; i < n; i++) {
		mq_sub *s = &q->subs[i];

		s->recv = &rs[i];
		s->qos = qos;
		if ((s->m = mosquitto_new(NULL, true, s)) == NULL) {
			snprintf(err, errlen, "mosquitto_new failed");
			goto fail;
		}
		q->nsubs = i + 1;
		mosquitto_int_option(s->m, MOSQ_OPT_TCP_NODELAY, 1);
		mosquitto_connect_callback_set(s->m, on_connect);
		mosquitto_subscribe_callback_set(s->m, on_subscribe);
		mosquitto_message_callback_set(s->m, on_message);
		if ((rc = mosquitto_connect(s->m, "127.0.0.1", q->port, 60)) != MOSQ_ERR_SUCCESS) {
			snprintf(err, errlen, "mosquitto_connect: %s", mosquitto_strerror(rc));
			goto fail;
		}
	}
	if (pthread_create(&q->loop, NULL, sub_loop, q) != 0) {
		snprintf(err, errlen, "cannot start the subscriber loop");
		goto fail;
	}
	q->loop_started = true;
	for (int r = 0; r < c->rooms; r++) {
		if ((q->pub[r] = mosquitto_new(NULL, true, NULL)) == NULL) {
			snprintf(err, errlen, "mosquitto_new failed");
			goto fail;
		}
		q->npubs = r + 1;
		mosquitto_int_option(q->pub[r], MOSQ_OPT_TCP_NODELAY, 1);
		if ((rc = mosquitto_connect(q->pub[r], "127.0.0.1", q->port, 60)) != MOSQ_ERR_SUCCESS ||
		    (rc = mosquitto_loop_start(q->pub[r])) != MOSQ_ERR_SUCCESS) {
			snprintf(err, errlen, "mosquitto publisher: %s", mosquitto_strerror(rc));
			goto fail;
		}
	}
	/* Every subscription acknowledged, then set-up traffic until every
	 * receiver has heard its room. */
	until = bench_now_ns() + 60000000000ull;
	do {
		all = true;
		for (int i = 0; i < n; i++)
			all &= __atomic_load_n(&q->subs[i].subscribed, __ATOMIC_ACQUIRE);
		if (!all)
			bench_sleep_ns(20000000);
	} while (!all && bench_now_ns() < until);
	if (!all) {
		snprintf(err, errlen, "mosquitto subscriptions were not all acknowledged in 60 s");
		goto fail;
	}
	/* QoS 0 may drop too: set-up rounds until every receiver has heard the
	 * latest one. */
	until = bench_now_ns() + 60000000000ull;
	do {
		for (int r = 0; r < c->rooms; r++)
			publish(q, r, 0, err, errlen);
		mqtt_last(q, last);
		all = fo_wait_caught_up(rs, n, last, 3000000000ull);
		if (all)
			fo_resync(rs, n, last);
	} while (!all && bench_now_ns() < until);
	if (!all) {
		snprintf(err, errlen, "mosquitto subscribers did not all hear set-up messages in 60 s");
		goto fail;
	}
	return q;

fail:
	mqtt_teardown(q);
	return NULL;
}

/* fanout_common.c — receivers, driver and harvest shared by the fan-out systems. */
#include "fanout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
fo_recv_init(fo_recv *r, int room, bool synced, size_t cap)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mtx, NULL);
	r->room = room;
	r->synced = synced;
	r->next = 1;
	samples_init(&r->lat, cap);
}

void
fo_recv_free(fo_recv *r)
{
	samples_free(&r->lat);
	pthread_mutex_destroy(&r->mtx);
}

void
fo_observe(fo_recv *r, uint64_t seq, uint64_t sent_ns)
{
	uint64_t now = bench_now_ns();

	pthread_mutex_lock(&r->mtx);
	if (!r->synced) {
		r->synced = true;
		r->next = seq;
	}
	if (seq == r->next) {
		r->next++;
	} else if (seq > r->next) {
		r->lost += seq - r->next;	/* a gap: in-order delivery broke */
		r->next = seq + 1;
	} else {
		r->dup++;			/* seen before (or out of order) */
		pthread_mutex_unlock(&r->mtx);
		return;
	}
	if (sent_ns != 0) {
		r->got++;
		r->last_ns = now;
		samples_add(&r->lat, now > sent_ns ? now - sent_ns : 0);
	}
	pthread_mutex_unlock(&r->mtx);
}

void
fo_observe_tagged(fo_recv *r, unsigned tag, uint64_t k, uint64_t sent_ns)
{
	uint64_t seq;

	pthread_mutex_lock(&r->mtx);
	if (tag >= FO_TAGS || k < r->tag_next[tag]) {
		r->dup++;
		pthread_mutex_unlock(&r->mtx);
		return;
	}
	/* Missing counts are lost; they take their synthetic seqs with them
	 * so that the harvest does not count them a second time. */
	r->pos += k - r->tag_next[tag] + 1;
	r->tag_next[tag] = k + 1;
	seq = r->pos;
	pthread_mutex_unlock(&r->mtx);
	fo_observe(r, seq, sent_ns);
}

uint64_t
fo_next(fo_recv *r)
{
	uint64_t n;

	pthread_mutex_lock(&r->mtx);
	n = r->next;
	pthread_mutex_unlock(&r->mtx);
	return n;
}

void
fo_reset(fo_recv *rs, int n)
{
	for (int i = 0; i < n; i++) {
		pthread_mutex_lock(&rs[i].mtx);
		rs[i].got = rs[i].lost = rs[i].dup = 0;
		rs[i].last_ns = 0;
		samples_reset(&rs[i].lat);
		pthread_mutex_unlock(&rs[i].mtx);
	}
}

void
fo_resync(fo_recv *rs, int n, const uint64_t *last)
{
	for (int i = 0; i < n; i++) {
		pthread_mutex_lock(&rs[i].mtx);
		rs[i].synced = true;
		if (rs[i].next <= last[rs[i].room])
			rs[i].next = last[rs[i].room] + 1;
		pthread_mutex_unlock(&rs[i].mtx);
	}
	fo_reset(rs, n);
}

bool
fo_synced(fo_recv *r)
{
	bool s;

	pthread_mutex_lock(&r->mtx);
	s = r->synced;
	pthread_mutex_unlock(&r->mtx);
	return s;
}

void
fo_payload(char *buf, uint64_t a, uint64_t b)
{
	int n = snprintf(buf, FO_TEXT_LEN + 1, "%llu %llu ", (unsigned long long)a,
			 (unsigned long long)b);

	if (n < FO_TEXT_LEN)
		memset(buf + n, 'x', (size_t)(FO_TEXT_LEN - n));
	buf[FO_TEXT_LEN] = '\0';
}

bool
fo_parse(const char *s, size_t len, uint64_t *a, uint64_t *b)
{
	char tmp[FO_TEXT_LEN + 1], *end;

	if (len == 0 || len > FO_TEXT_LEN)
		return false;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	*a = strtoull(tmp, &end, 10);
	if (*end != ' ')
		return false;
	*b = strtoull(end + 1, &end, 10);
	return *end == ' ' || *end == '\0';
}

/* ---- the driver ------------------------------------------------------------------ */

typedef struct drive_thread {
	fo_drive *d;
	fo_send_fn fn;
	void *sys;
	int index;
	uint64_t t0;
	uint64_t *issued;	/* shared: slots taken (fixed) or messages (flat) */
	pthread_mutex_t *mtx;
	uint64_t sent[FO_MAX_ROOMS];
	int errors;
	char err[200];
} drive_thread;

static bool
send_one(drive_thread *t, int room)
{
	char err[200] = "";

	if (t->fn(t->sys, t->index, room, err, sizeof(err))) {
		t->sent[room]++;
		return true;
	}
	if (t->errors++ == 0)
		snprintf(t->err, sizeof(t->err), "%s", err);
	return false;
}

static void *
drive_main(void *arg)
{
	drive_thread *t = arg;
	fo_drive *d = t->d;
	uint64_t end = t->t0 + d->dur_ns;

	if (d->quota != NULL) {
		/* One thread per room, exactly its quota, as fast as it goes. */
		for (uint64_t i = 0; i < d->quota[t->index] && t->errors < 100; i++)
			send_one(t, t->index);
		return NULL;
	}
	while (t->errors < 100) {
		uint64_t slot;

		pthread_mutex_lock(t->mtx);
		slot = (*t->issued)++;
		pthread_mutex_unlock(t->mtx);
		if (d->flat) {
			if (slot >= d->cap || bench_now_ns() >= end)
				break;
			send_one(t, (int)(slot % (uint64_t)d->rooms));
			continue;
		}
		/* Fixed rate: slot i is due at t0 + i / rate, whoever sends it. */
		uint64_t due = t->t0 + (uint64_t)((double)slot * 1e9 / d->rate);

		if (due >= end)
			break;
		bench_sleep_until_ns(due);
		send_one(t, (int)(slot % (uint64_t)d->rooms));
	}
	return NULL;
}

void
fo_run(fo_drive *d, fo_send_fn fn, void *sys)
{
	int n = d->quota != NULL ? d->rooms : d->threads;
	drive_thread *t = calloc((size_t)n, sizeof(*t));
	pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
	uint64_t issued = 0, t0 = bench_now_ns();

	memset(d->sent, 0, sizeof(d->sent));
	d->errors = 0;
	d->err[0] = '\0';
	if (t == NULL) {
		d->errors = 1;
		snprintf(d->err, sizeof(d->err), "out of memory");
		return;
	}
	for (int i = 0; i < n; i++) {
		t[i] = (drive_thread){.d = d, .fn = fn, .sys = sys, .index = i, .t0 = t0,
				      .issued = &issued, .mtx = &mtx};
	}
	if (!bench_run_threads(n, drive_main, t, sizeof(*t)))
		d->errors++;
	for (int i = 0; i < n; i++) {
		for (int r = 0; r < FO_MAX_ROOMS; r++)
			d->sent[r] += t[i].sent[r];
		if (t[i].errors && d->err[0] == '\0')
			snprintf(d->err, sizeof(d->err), "%s", t[i].err);
		d->errors += t[i].errors;
	}
	free(t);
}

/* ---- harvest ---------------------------------------------------------------------- */

static uint64_t
reached(fo_recv *rs, int n, const uint64_t *last)
{
	uint64_t behind = 0;

	for (int i = 0; i < n; i++) {
		uint64_t next = fo_next(&rs[i]);

		if (!fo_synced(&rs[i]))
			behind += last[rs[i].room] + 1;
		else if (next <= last[rs[i].room])
			behind += last[rs[i].room] + 1 - next;
	}
	return behind;
}

bool
fo_wait_caught_up(fo_recv *rs, int n, const uint64_t *last, uint64_t timeout_ns)
{
	uint64_t until = bench_now_ns() + timeout_ns;

	while (reached(rs, n, last) != 0) {
		if (bench_now_ns() >= until)
			return false;
		bench_sleep_ns(5000000);
	}
	return true;
}

void
fo_harvest(fo_recv *rs, int n, const uint64_t *last, uint64_t t0, uint64_t idle_ns,
	   uint64_t max_ns, fo_result *res)
{
	uint64_t start = bench_now_ns(), progress = start, behind, prev = UINT64_MAX;
	uint64_t last_ns = t0;
	size_t total = 0;
	samples all;

	memset(res, 0, sizeof(*res));
	while ((behind = reached(rs, n, last)) != 0) {
		uint64_t now = bench_now_ns();

		if (behind != prev) {
			prev = behind;
			progress = now;
		}
		if (now - progress >= idle_ns || now - start >= max_ns)
			break;
		bench_sleep_ns(2000000);
	}
	res->complete = behind == 0;
	for (int i = 0; i < n; i++)
		total += rs[i].lat.n;
	samples_init(&all, total + 1);
	for (int i = 0; i < n; i++) {
		fo_recv *r = &rs[i];

		pthread_mutex_lock(&r->mtx);
		if (r->next <= last[r->room]) {
			r->lost += last[r->room] + 1 - r->next;
			r->next = last[r->room] + 1;	/* counted once */
		}
		res->delivered += r->got;
		res->lost += r->lost;
		res->dup += r->dup;
		if (r->last_ns > last_ns)
			last_ns = r->last_ns;
		samples_merge(&all, &r->lat);
		samples_reset(&r->lat);
		r->got = r->lost = r->dup = 0;
		pthread_mutex_unlock(&r->mtx);
	}
	res->per_s = last_ns > t0 ? (double)res->delivered * 1e9 / (double)(last_ns - t0) : 0;
	res->p50_us = samples_pct_us(&all, 50);
	res->p99_us = samples_pct_us(&all, 99);
	samples_free(&all);
}

int
fo_parse_cases(const char *s, fo_case *out, int max, int max_receivers, char *err,
	       size_t errlen)
{
	int n = 0;

	while (*s != '\0') {
		int rooms, members, used;

		if (n == max || sscanf(s, "%dx%d%n", &rooms, &members, &used) != 2 || rooms < 1 ||
		    rooms > FO_MAX_ROOMS || members < 1 || rooms * members > max_receivers) {
			snprintf(err, errlen,
				 "--cases: '%s' is not ROOMSxMEMBERS (rooms 1-%d, at most %d "
				 "receivers, %d cases)",
				 s, FO_MAX_ROOMS, max_receivers, max);
			return -1;
		}
		out[n++] = (fo_case){rooms, members};
		s += used;
		s += *s == ',';
	}
	return n;
}

/* daemon.c — starts and stops the parleyd under test (see bench.h). */
#define _GNU_SOURCE
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool
pd_has_service(const bench_opts *o, const char *name)
{
	char cmd[600], line[1024];
	bool found = false;
	FILE *p;

	/* parleyd --help lists its services: "(default: all: auth,rooms,...)". */
	snprintf(cmd, sizeof(cmd), "'%s' --help 2>&1", o->parleyd);
	if ((p = popen(cmd, "r")) == NULL)
		return false;
	while (fgets(line, sizeof(line), p) != NULL) {
		char *list = strstr(line, "all:");
		size_t n = strlen(name);

		if (strstr(line, "--services") == NULL || list == NULL)
			continue;
		list += 4;
		list[strcspn(list, ")")] = '\0';
		for (char *t = strtok(list, ", "); t != NULL; t = strtok(NULL, ", "))
			found |= strlen(t) == n && strncmp(t, name, n) == 0;
	}
	pclose(p);
	return found;
}

bool
pd_wait_serving(const char *url, int timeout_ms)
{
	uint64_t until = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
	rpc_client *c;
	rpc_status st;
	bool ok = false;

	if (rpc_client_open(&c, url, &st) != RPC_OK)
		return false;
	while (!ok && bench_now_ns() < until) {
		ok = pa_health(c, &st) == RPC_OK;
		if (!ok)
			bench_sleep_ns(20000000);
	}
	rpc_client_close(c);
	return ok;
}

static bool
runs(const pd_daemon *d, const char *name)
{
	return strstr(d->services, name) != NULL;
}

bool
pd_start(pd_daemon *d, const bench_opts *o, const char *services, const char *const *extra)
{
	const char *argv[64];
	int n = 0;
	pid_t pid;

	memset(d, 0, sizeof(*d));
	if (!bench_tmpdir(o, "parleyd", d->tmp, sizeof(d->tmp))) {
		perror("parley-bench: mkdtemp");
		return false;
	}
	snprintf(d->dir, sizeof(d->dir), "%s/data", d->tmp);
	snprintf(d->log, sizeof(d->log), "%s/parleyd.log", d->tmp);
	snprintf(d->services, sizeof(d->services), "%s", services);
	bench_mkdirs(d->dir);
	bench_addr(d->auth, PD_ADDR);
	bench_addr(d->rooms, PD_ADDR);
	bench_addr(d->history, PD_ADDR);
	bench_addr(d->messaging, PD_ADDR);
	bench_addr(d->events, PD_ADDR);
	bench_addr(d->room_events, PD_ADDR);
	bench_addr(d->rooms_internal, PD_ADDR);

	argv[n++] = o->parleyd;
	argv[n++] = "--services";
	argv[n++] = d->services;
	argv[n++] = "--data-dir";
	argv[n++] = d->dir;
	argv[n++] = "--auth-listen";
	argv[n++] = d->auth;
	argv[n++] = "--rooms-listen";
	argv[n++] = d->rooms;
	argv[n++] = "--history-listen";
	argv[n++] = d->history;
	argv[n++] = "--messaging-listen";
	argv[n++] = d->messaging;
	argv[n++] = "--events-listen";
	argv[n++] = d->events;
	argv[n++] = "--room-events-listen";
	argv[n++] = d->room_events;
	argv[n++] = "--rooms-internal-listen";
	argv[n++] = d->rooms_internal;
	/* No HTTP face unless a scenario asks (extra comes later and wins):
	 * the default port may be taken. */
	argv[n++] = "--http-listen";
	argv[n++] = "none";
	for (int i = 0; extra != NULL && extra[i] != NULL && n < 62; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;

	if ((pid = bench_spawn(argv, d->log)) < 0)
		return false;
	d->pid = pid;

	const struct {
		const char *name;
		const char *url;
	} eps[] = {
		{"auth", d->auth},
		{"rooms", d->rooms},
		{"history", d->history},
		{"messaging", d->messaging},
	};
	for (size_t i = 0; i < sizeof(eps) / sizeof(eps[0]); i++) {
		if (!runs(d, eps[i].name))
			continue;
		if (!pd_wait_serving(eps[i].url, 20000)) {
			fprintf(stderr, "parley-bench: parleyd %s did not come up on %s; its log:\n",
				eps[i].name, eps[i].url);
			{
				char cmd[400];
				snprintf(cmd, sizeof(cmd), "tail -n 20 '%s' >&2", d->log);
				if (system(cmd) != 0)
					fprintf(stderr, "(no log)\n");
			}
			pd_stop(d);
			return false;
		}
	}
	return true;
}

void
pd_stop(pd_daemon *d)
{
	if (d->pid > 0) {
		bench_child_stop(d->pid, 30000, "parleyd");
		d->pid = 0;
	}
	bench_rmtree(d->tmp);
}

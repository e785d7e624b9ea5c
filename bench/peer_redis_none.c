/* peer_redis_none.c — parley-bench built without libhiredis: the Redis peer
 * is not measured, and says so (a failure of the peers scenario). */
#include "peers.h"

#include <stdio.h>

bool
redis_available(char *why, size_t len)
{
	snprintf(why, len, "parley-bench was built without libhiredis (install libhiredis-dev "
			   "and redis-server, then re-run cmake)");
	return false;
}

bool
redis_start(peer_server *s, const bench_opts *o, char *err, size_t errlen)
{
	return redis_available(err, errlen);
}

double
redis_xadd_load(const peer_server *s, int senders, int nkeys, int depth, size_t text_len,
		uint64_t dur_ns, samples *lat, int *errors, char *err, size_t errlen)
{
	(*errors)++;
	redis_available(err, errlen);
	return 0;
}

void *
rfo_setup(const peer_server *s, int case_index, const fo_case *c, fo_recv *rs, char *err,
	  size_t errlen)
{
	redis_available(err, errlen);
	return NULL;
}

bool
rfo_send(void *sys, int thread, int room, char *err, size_t errlen)
{
	return false;
}

void
rfo_last(void *sys, uint64_t *last)
{
}

int
rfo_errors(void *sys, char *first, size_t len)
{
	return 0;
}

void
rfo_teardown(void *sys)
{
}

/* base_mqtt_none.c — parley-bench built without libmosquitto: the Mosquitto
 * baseline is skipped, and says so. */
#include "fanout.h"

#include <stdio.h>

bool
mqtt_available(char *why, size_t len)
{
	snprintf(why, len, "parley-bench was built without libmosquitto "
			   "(install libmosquitto-dev and mosquitto, then re-run cmake)");
	return false;
}

void *
mqtt_setup(const bench_opts *o, const fo_case *c, fo_recv *rs, char *err, size_t errlen)
{
	mqtt_available(err, errlen);
	return NULL;
}

void *
mqtt_setup_qos(const bench_opts *o, const fo_case *c, fo_recv *rs, int qos, char *err,
	       size_t errlen)
{
	mqtt_available(err, errlen);
	return NULL;
}

pid_t
mqtt_broker_pid(void *sys)
{
	return 0;
}

bool
mqtt_send(void *sys, int thread, int room, char *err, size_t errlen)
{
	return false;
}

void
mqtt_last(void *sys, uint64_t *last)
{
}

void
mqtt_teardown(void *sys)
{
}

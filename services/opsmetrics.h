/*
 * opsmetrics.h — parleyd's own metrics: the LMDB environment's map size
 * and use (computed when /metrics is read), and --metrics-listen, an HTTP
 * listener that serves GET /metrics and /healthz only, for processes that
 * have no HTTP face (a cluster's auth, rooms and store). Called from
 * parleyd's main thread only.
 */
#ifndef PARLEY_OPSMETRICS_H
#define PARLEY_OPSMETRICS_H

#include "gateway/gateway.h"

/* Registers the LMDB gauges of cfg->env (if any) and, if listen is not
 * NULL, starts the metrics listener there (*gw, else NULL). Errors: those
 * of gateway_start. */
int opsmetrics_start(const parley_config *cfg, const char *listen, gateway **gw,
		     rpc_status *st);

/* Stops the listener and unregisters the gauges: before store_close. */
void opsmetrics_stop(const parley_config *cfg, gateway *gw);

#endif

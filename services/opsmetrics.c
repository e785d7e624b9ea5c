/* opsmetrics.c — see opsmetrics.h. */
#include "opsmetrics.h"

#include "metrics.h"

static double
map_bytes(void *env)
{
	uint64_t map = 0, used = 0;

	return store_space(env, &map, &used) == STORE_OK ? (double)map : 0;
}

static double
used_bytes(void *env)
{
	uint64_t map = 0, used = 0;

	return store_space(env, &map, &used) == STORE_OK ? (double)used : 0;
}

int
opsmetrics_start(const parley_config *cfg, const char *listen, gateway **gw, rpc_status *st)
{
	*gw = NULL;
	if (cfg->env != NULL &&
	    (rpc_metrics_gauge_fn("parley_lmdb_map_size_bytes",
				  "Size of the LMDB map (the most the store may hold).", NULL,
				  map_bytes, cfg->env) != RPC_OK ||
	     rpc_metrics_gauge_fn("parley_lmdb_used_bytes",
				  "Bytes of the LMDB map in use (pages up to the last written).",
				  NULL, used_bytes, cfg->env) != RPC_OK))
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory for metrics");
	if (listen != NULL) {
		parley_config c = *cfg;
		gateway_targets none = {0};

		c.http_listen = listen;
		return gateway_start(&c, &none, gw, st);
	}
	return RPC_OK;
}

void
opsmetrics_stop(const parley_config *cfg, gateway *gw)
{
	if (gw != NULL) {
		gateway_shutdown(gw);
		gateway_stop(gw);
	}
	if (cfg->env != NULL)
		rpc_metrics_gauge_fn_remove(cfg->env);
}

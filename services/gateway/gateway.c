/* gateway.c — see gateway.h. */
#include "gateway.h"

#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "metrics.h"
#include "version.h"
#include "parley/v1/auth.pb-c.h"
#include "parley/v1/history.pb-c.h"
#include "parley/v1/messaging.pb-c.h"
#include "parley/v1/rooms.pb-c.h"
#include "subscribe.h"
#include "web.h"

/* GET /metrics: the process's metrics (rpc/metrics.h). */
static bool
metrics_get(void *ctx, const char *path, rpc_http_reply *out)
{
	size_t len;
	char *text = rpc_metrics_render(&len);

	if (text == NULL) {
		out->status = 503;
		out->content_type = "text/plain; charset=utf-8";
		out->body = (void *)"out of memory\n";
		out->len = strlen("out of memory\n");
		out->static_body = true;
		return true;
	}
	out->content_type = RPC_METRICS_CONTENT_TYPE;
	out->body = text;
	out->len = len;
	return true;
}

struct gateway {
	rpc_http *http;
	rpc_client *messaging; /* Subscribe's Open/Poll/Close */
	web_site *web;	       /* the page at / */
};

bool
gateway_http_disabled(const char *http_listen)
{
	return http_listen == NULL || http_listen[0] == '\0' || strcmp(http_listen, "none") == 0;
}

int
gateway_start(const parley_config *cfg, const gateway_targets *t, gateway **out,
	      rpc_status *st)
{
	const struct {
		const ProtobufCServiceDescriptor *desc;
		const char *url;
	} svcs[] = {
		{&parley__v1__auth__descriptor, t->auth},
		{&parley__v1__rooms__descriptor, t->rooms},
		{&parley__v1__history__descriptor, t->history},
		{&parley__v1__messaging__descriptor, t->messaging},
	};
	rpc_http_opts o = {.url = cfg->http_listen, .tls_cert = cfg->tls_cert,
			   .tls_key = cfg->tls_key, .tls_ca = cfg->tls_ca,
			   .max_connections = cfg->http_max_connections,
			   .max_per_ip = cfg->http_max_per_ip, .name = "http",
			   .version = parley_version};
	gateway *g = calloc(1, sizeof(*g));

	*out = NULL;
	if (g == NULL)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	if (strncmp(cfg->http_listen, "http://", 7) == 0) {
		/* TLS settings serve the nng listeners too: only https uses them here. */
		o.tls_cert = o.tls_key = o.tls_ca = NULL;
	}
	if (rpc_http_open(&g->http, &o, st) != RPC_OK)
		goto fail;
	for (size_t i = 0; i < sizeof(svcs) / sizeof(svcs[0]); i++)
		if (svcs[i].url != NULL &&
		    rpc_http_add_service(g->http, svcs[i].desc, svcs[i].url, st) != RPC_OK)
			goto fail;
	if (t->messaging != NULL) {
		if (rpc_client_open(&g->messaging, t->messaging, st) != RPC_OK ||
		    rpc_http_add_stream(g->http, "/parley.v1.Messaging/Subscribe", gw_subscribe,
					g->messaging, st) != RPC_OK)
			goto fail;
	}
	rpc_http_set_metrics(g->http, metrics_get, NULL);
	if (web_open(&g->web, cfg->web_root, st) != RPC_OK)
		goto fail;
	rpc_http_set_static(g->http, web_get, g->web);
	if (rpc_http_start(g->http, st) != RPC_OK)
		goto fail;
	*out = g;
	return RPC_OK;

fail:
	gateway_stop(g);
	return st->code;
}

void
gateway_shutdown(gateway *g)
{
	if (g != NULL && g->http != NULL)
		rpc_http_shutdown(g->http);
}

void
gateway_stop(gateway *g)
{
	if (g == NULL)
		return;
	rpc_http_close(g->http);
	rpc_client_close(g->messaging);
	web_close(g->web);
	free(g);
}

/*
 * endpoints.c — where the services are: one server given as HOST,
 * HOST:PORT or a URL, per-service URLs, and the environment; see parley.h.
 * Pure functions on a caller's parley_endpoints: no locks.
 */
#include "parley.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int default_ports[PARLEY_NSERVICES] = {
	[PARLEY_AUTH] = PARLEY_PORT_AUTH,
	[PARLEY_ROOMS] = PARLEY_PORT_ROOMS,
	[PARLEY_HISTORY] = PARLEY_PORT_HISTORY,
	[PARLEY_MESSAGING] = PARLEY_PORT_MESSAGING,
};

static const char *const env_names[PARLEY_NSERVICES] = {
	[PARLEY_AUTH] = "PARLEY_AUTH",
	[PARLEY_ROOMS] = "PARLEY_ROOMS",
	[PARLEY_HISTORY] = "PARLEY_HISTORY",
	[PARLEY_MESSAGING] = "PARLEY_MESSAGING",
};

/* Endpoints ---------------------------------------------------------------- */

static bool
host_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '.' || ch == '-' || ch == '_' || ch == ':' || ch == '%';
}

/* Splits "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address
 * into h (unbracketed) and *port (0 when none). */
static bool
split_host_port(const char *s, char *h, size_t hlen, long *port)
{
	const char *end, *colon = NULL;
	size_t len;

	*port = 0;
	if (s[0] == '[') {
		if ((end = strchr(s, ']')) == NULL)
			return false;
		s++;
		len = (size_t)(end - s);
		if (end[1] == ':')
			colon = end + 1;
		else if (end[1] != '\0')
			return false;
	} else {
		colon = strchr(s, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			colon = NULL; /* two colons: a bare IPv6 address */
		len = colon != NULL ? (size_t)(colon - s) : strlen(s);
	}
	if (len == 0 || len >= hlen)
		return false;
	memcpy(h, s, len);
	h[len] = '\0';
	for (size_t i = 0; i < len; i++)
		if (!host_char(h[i]))
			return false;
	if (colon != NULL) {
		char *stop;

		if (colon[1] < '0' || colon[1] > '9')
			return false;
		*port = strtol(colon + 1, &stop, 10);
		if (*stop != '\0' && strcmp(stop, "/") != 0)
			return false;
		if (*port < 1 || *port > 65535 - (PARLEY_NSERVICES - 1))
			return false;
	}
	return true;
}

rpc_code
parley_endpoints_for_host(parley_endpoints *ep, const char *server, rpc_status *st)
{
	const char *rest, *scheme = "tcp";
	char h[200];
	long port;

	if (server == NULL || server[0] == '\0')
		server = "127.0.0.1";
	if ((rest = strstr(server, "://")) != NULL) {
		size_t n = (size_t)(rest - server);

		if (n == 3 && strncmp(server, "tcp", 3) == 0)
			scheme = "tcp";
		else if (n == 7 && strncmp(server, "tls+tcp", 7) == 0)
			scheme = "tls+tcp";
		else
			return rpc_status_set(st, RPC_INVALID_ARGUMENT,
					      "'%.64s': --server takes tcp:// or tls+tcp:// URLs; "
					      "give other transports per service (--auth URL, ...)",
					      server);
		server = rest + 3;
	}
	if (!split_host_port(server, h, sizeof(h), &port))
		return rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "'%.64s' is not HOST or HOST:PORT (PORT the base port, 1-%d: "
				      "auth at PORT, rooms PORT+1, history PORT+2, messaging PORT+3)",
				      server, 65535 - (PARLEY_NSERVICES - 1));
	for (int s = 0; s < PARLEY_NSERVICES; s++)
		snprintf(ep->url[s], PARLEY_URL_MAX, strchr(h, ':') ? "%s://[%s]:%ld" : "%s://%s:%ld",
			 scheme, h, port ? port + s : (long)default_ports[s]);
	return rpc_status_set(st, RPC_OK, NULL);
}

rpc_code
parley_endpoints_set(parley_endpoints *ep, parley_service s, const char *url, rpc_status *st)
{
	const char *sep;

	if ((unsigned)s >= PARLEY_NSERVICES)
		return rpc_status_set(st, RPC_INVALID_ARGUMENT, "no such service");
	if (url == NULL || strlen(url) >= PARLEY_URL_MAX ||
	    (sep = strstr(url, "://")) == NULL || sep == url || sep[3] == '\0')
		return rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "%s address '%.64s' is not a URL like tcp://host:port",
				      parley_service_name(s), url ? url : "");
	for (const char *p = url; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return rpc_status_set(st, RPC_INVALID_ARGUMENT,
					      "%s address contains a space or control character",
					      parley_service_name(s));
	snprintf(ep->url[s], PARLEY_URL_MAX, "%s", url);
	return rpc_status_set(st, RPC_OK, NULL);
}

rpc_code
parley_endpoints_from_env(parley_endpoints *ep, rpc_status *st)
{
	for (int s = 0; s < PARLEY_NSERVICES; s++) {
		const char *v = getenv(env_names[s]);
		rpc_code code;

		if (v == NULL || v[0] == '\0')
			continue;
		if ((code = parley_endpoints_set(ep, s, v, st)) != RPC_OK) {
			char msg[RPC_STATUS_MESSAGE_MAX];

			snprintf(msg, sizeof(msg), "%s", st ? st->message : "");
			return rpc_status_set(st, code, "%s: %s", env_names[s], msg);
		}
	}
	return rpc_status_set(st, RPC_OK, NULL);
}


/*
 * tls.c — the process's TLS setting and the sockets that use it (see tls.h).
 *
 * The setting keeps the PEM text of the files, not nng_tls_config objects:
 * a dialer's configuration carries the server name of its own URL, so each
 * listener and dialer gets a configuration of its own, built from the text
 * under tls_mtx. nng holds a reference to a configuration set on a dialer
 * or listener; ours is dropped at once.
 */
#include "tls.h"
#include "tlskeep.h"
#include "tsan.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nng/supplemental/tls/tls.h>

/* Guards setting and system_ca. */
static pthread_mutex_t tls_mtx = PTHREAD_MUTEX_INITIALIZER;

static struct tls_setting {
	char *cert; /* PEM text, NUL-terminated, or NULL */
	char *key;
	char *ca;
} setting;

/* The system bundle, read on first need and kept (it is public). */
static char *system_ca;

static void
setting_free(struct tls_setting *s)
{
	if (s->key != NULL)
		explicit_bzero(s->key, strlen(s->key));
	free(s->cert);
	free(s->key);
	free(s->ca);
	memset(s, 0, sizeof(*s));
}

/*
 * Reads a whole PEM file into *out (malloc'd, NUL-terminated; the caller
 * frees, wiping it first when it is a key). what is "certificate", "key" or
 * "CA" for the message.
 */
static rpc_code
read_pem(const char *path, const char *what, char **out, rpc_status *st)
{
	struct stat sb;
	char *buf = NULL;
	size_t len = 0;
	int fd, err;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return rpc_status_set(st, RPC_INVALID_ARGUMENT, "TLS %s file '%s': %s", what, path,
				      strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		err = errno;
		close(fd);
		return rpc_status_set(st, RPC_INVALID_ARGUMENT, "TLS %s file '%s': %s", what, path,
				      err != 0 ? strerror(err) : "not a regular file");
	}
	if (sb.st_size <= 0 || sb.st_size > RPC_TLS_FILE_MAX) {
		close(fd);
		return rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "TLS %s file '%s' is %s (%lld bytes, at most %d)", what, path,
				      sb.st_size <= 0 ? "empty" : "too large", (long long)sb.st_size,
				      RPC_TLS_FILE_MAX);
	}
	if ((buf = malloc((size_t)sb.st_size + 1)) == NULL) {
		close(fd);
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	while (len < (size_t)sb.st_size) {
		ssize_t n = read(fd, buf + len, (size_t)sb.st_size - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? errno : 0;
			close(fd);
			explicit_bzero(buf, len);
			free(buf);
			return rpc_status_set(st, RPC_INVALID_ARGUMENT, "TLS %s file '%s': %s", what,
					      path, err != 0 ? strerror(err) : "shrank while read");
		}
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	/* nng takes PEM as C strings: a NUL inside (a DER file) would cut it. */
	if (strlen(buf) != len || strstr(buf, "-----BEGIN ") == NULL) {
		explicit_bzero(buf, len);
		free(buf);
		return rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "TLS %s file '%s' is not PEM (no '-----BEGIN' line)", what,
				      path);
	}
	*out = buf;
	return RPC_OK;
}

/* Checks that mbedTLS accepts the text read: certificates parse, the key
 * parses and goes with the certificate's type. */
static rpc_code
check_setting(const struct tls_setting *s, const rpc_tls_opts *o, rpc_status *st)
{
	nng_tls_config *cfg;
	rpc_code code = RPC_OK;

	if (nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT) != 0)
		return rpc_status_set(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
	if (s->ca != NULL && nng_tls_config_ca_chain(cfg, s->ca, NULL) != 0)
		code = rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "TLS CA file '%s' holds no certificate mbedTLS accepts",
				      o->ca_file);
	else if (s->cert != NULL && nng_tls_config_ca_chain(cfg, s->cert, NULL) != 0)
		code = rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "TLS certificate file '%s' holds no certificate mbedTLS accepts",
				      o->cert_file);
	else if (s->cert != NULL && nng_tls_config_own_cert(cfg, s->cert, s->key, NULL) != 0)
		code = rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "TLS key file '%s' holds no private key mbedTLS accepts "
				      "(encrypted keys are not supported)",
				      o->key_file);
	nng_tls_config_free(cfg);
	return code;
}

rpc_code
rpc_tls_configure(const rpc_tls_opts *opts, rpc_status *st)
{
	static const rpc_tls_opts none = {0};
	struct tls_setting s = {0};
	rpc_code code;

	if (opts == NULL)
		opts = &none;
	if ((opts->cert_file == NULL) != (opts->key_file == NULL))
		return rpc_status_set(st, RPC_INVALID_ARGUMENT,
				      "TLS: a certificate needs its key and a key its certificate "
				      "(give both --tls-cert and --tls-key)");
	if ((opts->cert_file != NULL &&
	     (code = read_pem(opts->cert_file, "certificate", &s.cert, st)) != RPC_OK) ||
	    (opts->key_file != NULL &&
	     (code = read_pem(opts->key_file, "key", &s.key, st)) != RPC_OK) ||
	    (opts->ca_file != NULL && (code = read_pem(opts->ca_file, "CA", &s.ca, st)) != RPC_OK) ||
	    (code = check_setting(&s, opts, st)) != RPC_OK)
		goto fail;

	pthread_mutex_lock(&tls_mtx);
	setting_free(&setting);
	setting = s;
	pthread_mutex_unlock(&tls_mtx);
	return rpc_status_set(st, RPC_OK, NULL);

fail:
	setting_free(&s);
	return code;
}

bool
rpc_tls_has_cert(void)
{
	bool has;

	pthread_mutex_lock(&tls_mtx);
	has = setting.cert != NULL;
	pthread_mutex_unlock(&tls_mtx);
	return has;
}

/* The scheme of url up to "://", e.g. "tls+tcp4"; false if none fits. */
static bool
url_scheme(const char *url, char *buf, size_t len)
{
	const char *sep = url != NULL ? strstr(url, "://") : NULL;

	if (sep == NULL || (size_t)(sep - url) >= len)
		return false;
	memcpy(buf, url, (size_t)(sep - url));
	buf[sep - url] = '\0';
	return true;
}

bool
rpc_tls_url(const char *url)
{
	char s[16];

	return url_scheme(url, s, sizeof(s)) &&
	       (strcmp(s, "tls+tcp") == 0 || strcmp(s, "tls+tcp4") == 0 ||
		strcmp(s, "tls+tcp6") == 0 || strcmp(s, "wss") == 0 || strcmp(s, "wss4") == 0 ||
		strcmp(s, "wss6") == 0);
}

/* How a configuration checks its peer. */
typedef enum check_mode {
	CHECK_FULL,	 /* as configured */
	CHECK_NO_NAME,	 /* trust, but no server name (diagnosis only) */
	CHECK_NOTHING,	 /* no verification at all (diagnosis only) */
} check_mode;

/*
 * A new configuration for a listener (host NULL) or a dialer of host, from
 * the setting; tls_mtx held. Returns 0 or an nng error with st's message.
 * The caller frees *out with nng_tls_config_free.
 */
static int
config_new(const char *host, check_mode mode, nng_tls_config **out, rpc_status *st)
{
	bool server = host == NULL;
	nng_tls_config *cfg = NULL;
	int rv;

	*out = NULL;
	if (server && setting.cert == NULL) {
		rpc_status_set(st, RPC_INVALID_ARGUMENT,
			       "a TLS address needs a certificate and its key "
			       "(--tls-cert FILE --tls-key FILE)");
		return NNG_EINVAL;
	}
	if ((rv = nng_tls_config_alloc(&cfg, server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT)))
		goto fail;
	if (setting.cert != NULL &&
	    (rv = nng_tls_config_own_cert(cfg, setting.cert, setting.key, NULL)) != 0)
		goto fail;
	if (server) {
		/* With a CA, only clients holding a certificate it signed get in. */
		if (setting.ca != NULL &&
		    ((rv = nng_tls_config_ca_chain(cfg, setting.ca, NULL)) != 0 ||
		     (rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) != 0))
			goto fail;
		*out = cfg;
		return 0;
	}
	if (mode == CHECK_NOTHING) {
		if ((rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_NONE)) != 0)
			goto fail;
		*out = cfg;
		return 0;
	}
	if (setting.ca == NULL && system_ca == NULL) {
		rpc_tls_opts sys = {.ca_file = RPC_TLS_SYSTEM_CA};
		rpc_status why;

		if (read_pem(sys.ca_file, "CA", &system_ca, &why) != RPC_OK) {
			rpc_status_set(st, RPC_INVALID_ARGUMENT, "%s (give a CA file: --tls-ca)",
				       why.message);
			rv = NNG_EINVAL;
			goto fail;
		}
	}
	if ((rv = nng_tls_config_ca_chain(cfg, setting.ca != NULL ? setting.ca : system_ca,
					  NULL)) != 0 ||
	    (rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) != 0)
		goto fail;
	if (mode == CHECK_FULL && (rv = nng_tls_config_server_name(cfg, host)) != 0)
		goto fail;
	*out = cfg;
	return 0;

fail:
	if (st != NULL && st->code == RPC_OK)
		rpc_status_set(st, rpc_code_from_nng(rv), "TLS: %s", nng_strerror(rv));
	if (cfg != NULL)
		nng_tls_config_free(cfg);
	return rv;
}

/* The host of url, for the server name; false if url has none. */
static bool
url_host(const char *url, char *buf, size_t len)
{
	nng_url *u;
	bool ok;

	if (nng_url_parse(&u, url) != 0)
		return false;
	ok = u->u_hostname != NULL && u->u_hostname[0] != '\0' && strlen(u->u_hostname) < len;
	if (ok)
		snprintf(buf, len, "%s", u->u_hostname);
	nng_url_free(u);
	return ok;
}

/* A configuration for a dialer of url; tls_mtx taken here. */
static int
dialer_config(const char *url, check_mode mode, nng_tls_config **cfg, rpc_status *st)
{
	char host[256];
	int rv;

	if (!url_host(url, host, sizeof(host))) {
		rpc_status_set(st, RPC_INVALID_ARGUMENT, "a TLS address needs a host name");
		return NNG_EADDRINVAL;
	}
	pthread_mutex_lock(&tls_mtx);
	rv = config_new(host, mode, cfg, st);
	pthread_mutex_unlock(&tls_mtx);
	return rv;
}

/* The failure path of rpc_tls_listen and rpc_tls_dialer: frees cfg (NULL
 * when none was made) and sets st from rv, with why's message where the
 * TLS set-up gave one (it says what is wrong), else nng's. Returns rv. */
static int
endpoint_failed(int rv, nng_tls_config *cfg, const rpc_status *why, rpc_status *st)
{
	if (cfg != NULL)
		nng_tls_config_free(cfg);
	rpc_status_set(st, rpc_code_from_nng(rv), "%s",
		       why->message[0] != '\0' ? why->message : nng_strerror(rv));
	return rv;
}

int
rpc_tls_listener_start(nng_socket s, const char *url, nng_listener *lp, rpc_status *st)
{
	nng_listener l;
	nng_tls_config *cfg = NULL;
	rpc_status why = {0};
	int rv;

	if ((rv = nng_listener_create(&l, s, url)) != 0)
		goto fail;
	if (rpc_tls_url(url)) {
		pthread_mutex_lock(&tls_mtx);
		rv = config_new(NULL, CHECK_FULL, &cfg, &why);
		pthread_mutex_unlock(&tls_mtx);
		if (rv != 0 || (rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg)) != 0) {
			nng_listener_close(l);
			goto fail;
		}
	}
	if ((rv = nng_listener_start(l, 0)) != 0) {
		nng_listener_close(l);
		goto fail;
	}
	if (cfg != NULL)
		nng_tls_config_free(cfg); /* the listener holds its own reference */
	*lp = l;
	return 0;

fail:
	return endpoint_failed(rv, cfg, &why, st);
}

int
rpc_tls_listen(nng_socket s, const char *url, rpc_status *st)
{
	nng_listener l;
	int rv;

	if ((rv = rpc_tls_listener_start(s, url, &l, st)) != 0)
		return rv;
	/* tls+tcp:// only: nng's wss:// survives a client that drops during
	 * the handshake (tlskeep.h). */
	if (strncmp(url, "tls+tcp", 7) == 0)
		rpc_tls_keep(s, l, url);
	return 0;
}

int
rpc_tls_probe_config(const char *url, nng_tls_config **cfg, rpc_status *st)
{
	return dialer_config(url, CHECK_NOTHING, cfg, st);
}

int
rpc_tls_dialer(nng_socket s, const char *url, nng_dialer *dp, rpc_status *st)
{
	nng_dialer d;
	nng_tls_config *cfg = NULL;
	rpc_status why = {0};
	int rv;

	if ((rv = nng_dialer_create(&d, s, url)) != 0)
		goto fail;
	if (rpc_tls_url(url) &&
	    ((rv = dialer_config(url, CHECK_FULL, &cfg, &why)) != 0 ||
	     (rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg)) != 0)) {
		nng_dialer_close(d);
		goto fail;
	}
	if (cfg != NULL)
		nng_tls_config_free(cfg); /* the dialer holds its own reference */
	*dp = d;
	return 0;

fail:
	return endpoint_failed(rv, cfg, &why, st);
}

int
rpc_tls_dial(nng_socket s, const char *url, int flags, rpc_status *st)
{
	nng_dialer d;
	int rv;

	if ((rv = rpc_tls_dialer(s, url, &d, st)) != 0)
		return rv;
	if ((rv = nng_dialer_start(d, flags)) != 0) {
		nng_dialer_close(d);
		rpc_status_set(st, rpc_code_from_nng(rv), "%s", nng_strerror(rv));
	}
	return rv;
}

/* ---- diagnosis ------------------------------------------------------- */

/* One operation on a probe's aio, awaited until a deadline. */
struct probe {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool done;
	nng_aio *aio;
	nng_stream_dialer *dialer;
	nng_stream *stream;
};

static void
probe_cb(void *arg)
{
	struct probe *p = arg;

	rpc_tsan_acquire(p); /* see probe_start */
	pthread_mutex_lock(&p->mtx);
	p->done = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mtx);
	rpc_tsan_release(p);
}

/* Before an operation on p->aio: probe_cb runs on one of nng's threads. */
static void
probe_start(struct probe *p)
{
	rpc_tsan_release(p);
}

/*
 * Waits for the operation started on p->aio. nng 1.5's TLS handshake does
 * not honour aio timeouts (a server that never answers holds it for ever),
 * so at the deadline this closes the stream or dialer under it, which ends
 * every operation on them.
 */
static int
probe_wait(struct probe *p, int64_t deadline)
{
	bool late;

	pthread_mutex_lock(&p->mtx);
	while (!p->done && rpc_now_ms() < deadline)
		rpc_cond_wait_until(&p->cv, &p->mtx, deadline);
	late = !p->done;
	pthread_mutex_unlock(&p->mtx);
	if (late) {
		if (p->stream != NULL)
			nng_stream_close(p->stream);
		else
			nng_stream_dialer_close(p->dialer);
		nng_aio_cancel(p->aio);
	}
	nng_aio_wait(p->aio);
	rpc_tsan_acquire(p); /* probe_cb is over */
	pthread_mutex_lock(&p->mtx);
	p->done = false;
	pthread_mutex_unlock(&p->mtx);
	return late ? NNG_ETIMEDOUT : nng_aio_result(p->aio);
}

/* Sends (or receives) all of buf[0..len) on p->stream by the deadline. */
static int
probe_io(struct probe *p, bool send, uint8_t *buf, size_t len, int64_t deadline)
{
	size_t done = 0;
	int rv;

	while (done < len) {
		nng_iov iov = {.iov_buf = buf + done, .iov_len = len - done};
		int64_t left = deadline - rpc_now_ms();

		if (left <= 0)
			return NNG_ETIMEDOUT;
		nng_aio_set_timeout(p->aio, (nng_duration)left);
		if ((rv = nng_aio_set_iov(p->aio, 1, &iov)) != 0)
			return rv;
		probe_start(p);
		if (send)
			nng_stream_send(p->stream, p->aio);
		else
			nng_stream_recv(p->stream, p->aio);
		if ((rv = probe_wait(p, deadline)) != 0)
			return rv;
		if (nng_aio_count(p->aio) == 0)
			return NNG_ECLOSED;
		done += nng_aio_count(p->aio);
	}
	return 0;
}

/*
 * Connects to url once as an nng REQ socket would: the connection, the TLS
 * handshake with cfg (NULL for plain), and for tcp the SP header exchange
 * (for ws the upgrade carries it). Returns 0 when a REP server answered,
 * NNG_EPROTO when something else did, or the nng error on the way.
 */
static int
probe(const char *url, nng_tls_config *cfg, bool ws, int64_t deadline)
{
	uint8_t hello[8] = {0, 'S', 'P', 0, 0, 0x30 /* REQ */, 0, 0};
	uint8_t answer[8];
	struct probe p = {.done = false};
	int64_t left = deadline - rpc_now_ms();
	int rv;

	if (left <= 0)
		return NNG_ETIMEDOUT;
	pthread_mutex_init(&p.mtx, NULL);
	rpc_cond_init(&p.cv);
	if ((rv = nng_aio_alloc(&p.aio, probe_cb, &p)) != 0 ||
	    (rv = nng_stream_dialer_alloc(&p.dialer, url)) != 0)
		goto done;
	if (ws && (rv = nng_stream_dialer_set_string(p.dialer, NNG_OPT_WS_PROTOCOL,
						     "rep.sp.nanomsg.org")) != 0)
		goto done;
	if (cfg != NULL && (rv = nng_stream_dialer_set_ptr(p.dialer, NNG_OPT_TLS_CONFIG, cfg)))
		goto done;
	nng_aio_set_timeout(p.aio, (nng_duration)left);
	probe_start(&p);
	nng_stream_dialer_dial(p.dialer, p.aio);
	if ((rv = probe_wait(&p, deadline)) != 0)
		goto done;
	p.stream = nng_aio_get_output(p.aio, 0);
	if (ws)
		goto done;
	if ((rv = probe_io(&p, true, hello, sizeof(hello), deadline)) != 0 ||
	    (rv = probe_io(&p, false, answer, sizeof(answer), deadline)) != 0)
		goto done;
	if (memcmp(answer, "\0SP\0", 4) != 0)
		rv = NNG_EPROTO;

done:
	if (p.stream != NULL)
		nng_stream_free(p.stream);
	if (p.dialer != NULL)
		nng_stream_dialer_free(p.dialer);
	if (p.aio != NULL)
		nng_aio_free(p.aio);
	pthread_cond_destroy(&p.cv);
	pthread_mutex_destroy(&p.mtx);
	return rv;
}

/* Probes url (a TLS one when mode says how to check) with the setting. */
static int
probe_as(const char *url, bool tls, check_mode mode, bool ws, int64_t deadline, rpc_status *st)
{
	nng_tls_config *cfg = NULL;
	int rv;

	if (tls && (rv = dialer_config(url, mode, &cfg, st)) != 0)
		return rv;
	rv = probe(url, cfg, ws, deadline);
	if (cfg != NULL)
		nng_tls_config_free(cfg);
	return rv;
}

/* url with its scheme swapped for the TLS one or the plain one. */
static void
url_other(const char *url, bool to_tls, char *buf, size_t len)
{
	if (to_tls)
		snprintf(buf, len, "%s%s", strncmp(url, "ws", 2) == 0 ? "wss" : "tls+",
			 url + (strncmp(url, "ws", 2) == 0 ? 2 : 0));
	else if (strncmp(url, "wss", 3) == 0)
		snprintf(buf, len, "ws%s", url + 3);
	else
		snprintf(buf, len, "%s", url + strlen("tls+"));
}

static bool
closed(int rv)
{
	return rv == NNG_ECLOSED || rv == NNG_ECONNSHUT || rv == NNG_ECONNRESET;
}

/* Why the TLS handshake with url failed the checks (FAILED_PRECONDITION),
 * by trying again with fewer checks. */
static rpc_code
tls_verdict(const char *url, bool ws, int64_t deadline, rpc_status *st)
{
	rpc_status why = {0};
	char host[256] = "";
	int rv;

	url_host(url, host, sizeof(host));
	rv = probe_as(url, true, CHECK_NOTHING, ws, deadline, &why);
	if (rv == NNG_ECRYPTO || rv == NNG_EPEERAUTH || closed(rv))
		return rpc_status_set(st, RPC_FAILED_PRECONDITION,
				      "cannot reach %s: TLS handshake refused: %s", url,
				      rpc_tls_has_cert()
					  ? "the server does not accept this client certificate"
					  : "the server may require a client certificate");
	if (rv != 0)
		return rpc_status_set(st, RPC_UNAVAILABLE, "cannot reach %s: %s", url,
				      nng_strerror(rv));
	rv = probe_as(url, true, CHECK_NO_NAME, ws, deadline, &why);
	if (rv == 0)
		return rpc_status_set(st, RPC_FAILED_PRECONDITION,
				      "cannot reach %s: TLS: the server's certificate does not name "
				      "'%s' (mbedTLS matches DNS names only, IP addresses too)",
				      url, host);
	return rpc_status_set(st, RPC_FAILED_PRECONDITION,
			      "cannot reach %s: TLS: the server's certificate is not trusted "
			      "(check --tls-ca): another CA signed it, or it expired or is not "
			      "yet valid",
			      url);
}

rpc_code
rpc_tls_diagnose(const char *url, int64_t deadline_ms, rpc_status *st)
{
	char scheme[16], other[300];
	rpc_status why = {0};
	bool tls = rpc_tls_url(url), ws;
	int rv;

	if (!url_scheme(url, scheme, sizeof(scheme)))
		return rpc_status_set(st, RPC_UNAVAILABLE, "cannot reach %s", url);
	ws = strncmp(scheme, "ws", 2) == 0;
	if (!tls && !ws && strncmp(scheme, "tcp", 3) != 0)
		return rpc_status_set(st, RPC_UNAVAILABLE, "cannot reach %s", url);

	rv = probe_as(url, tls, CHECK_FULL, ws, deadline_ms, &why);
	if (why.message[0] != '\0') /* no configuration: the CA file is missing */
		return rpc_status_set(st, RPC_FAILED_PRECONDITION, "cannot reach %s: %s", url,
				      why.message);
	if (tls && (rv == NNG_ECRYPTO || rv == NNG_EPEERAUTH || closed(rv))) {
		/* A plain SP server answers a TLS hello with its own header,
		 * which mbedTLS takes for a broken record: try plain first. */
		url_other(url, false, other, sizeof(other));
		if (probe_as(other, false, CHECK_FULL, ws, deadline_ms, &why) == 0)
			return rpc_status_set(st, RPC_FAILED_PRECONDITION,
					      "cannot reach %s: the server does not speak TLS (it is "
					      "a plain %.6s endpoint)",
					      url, ws ? "ws://" : "tcp://");
		return tls_verdict(url, ws, deadline_ms, st);
	}
	if (!tls && closed(rv)) {
		/* Closed during the SP handshake: perhaps a TLS port. */
		url_other(url, true, other, sizeof(other));
		rv = probe_as(other, true, CHECK_NOTHING, ws, deadline_ms, &why);
		if (rv == 0 || rv == NNG_ECRYPTO || rv == NNG_EPEERAUTH)
			return rpc_status_set(st, RPC_FAILED_PRECONDITION,
					      "cannot reach %s: the server speaks TLS (use %.12s)",
					      url, ws ? "wss://" : "tls+tcp://");
		return rpc_status_set(st, RPC_UNAVAILABLE,
				      "cannot reach %s: the server closed the connection during "
				      "the handshake",
				      url);
	}
	switch (rv) {
	case 0:
		return rpc_status_set(st, RPC_UNAVAILABLE,
				      "cannot reach %s: no connection came up in time", url);
	case NNG_EPROTO:
		return rpc_status_set(st, RPC_UNAVAILABLE,
				      "cannot reach %s: the server does not speak nng's protocol",
				      url);
	case NNG_ECONNREFUSED:
		return rpc_status_set(st, RPC_UNAVAILABLE,
				      "cannot reach %s: connection refused (is the service up?)",
				      url);
	case NNG_ETIMEDOUT:
		return rpc_status_set(st, RPC_UNAVAILABLE, "cannot reach %s: no answer in time",
				      url);
	default:
		return rpc_status_set(st, RPC_UNAVAILABLE, "cannot reach %s: %s", url,
				      nng_strerror(rv));
	}
}

/*
 * storage_errors_test.c — what the daemon says when the file system fails
 * it: a full disk (a small tmpfs in a mount namespace of parleyd's own)
 * answers RESOURCE_EXHAUSTED "the server's disk is full" and names ENOSPC
 * in the log, told apart from a full LMDB map; a read-only file system and
 * a directory the daemon may not write are refused at start, each with its
 * own reason.
 *
 * The mounts live in a namespace made for parleyd alone (unshare): nothing
 * outside sees them and they go when it exits. As root that is a mount
 * namespace; otherwise a user namespace maps us to root inside it.
 */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mx_util.h"

#define TEXT_BYTES 4000
#define MAX_SENDS 4000 /* the 2 MiB disk fills long before */

static const char mount_script[] = "mount -t tmpfs -o \"$1\" parley-test \"$2\" && shift 2 && "
				   "exec \"$@\"";

/* Runs parleyd with its data dir a fresh tmpfs mounted with opts. */
static void
wrap_in_tmpfs(th_daemon *d, const char *opts)
{
	int n = 0;

	d->wrap[n++] = "unshare";
	if (getuid() != 0) {
		d->wrap[n++] = "--user";
		d->wrap[n++] = "--map-root-user";
	}
	d->wrap[n++] = "--mount";
	d->wrap[n++] = "sh";
	d->wrap[n++] = "-c";
	d->wrap[n++] = mount_script;
	d->wrap[n++] = "sh";
	d->wrap[n++] = opts;
	d->wrap[n++] = d->dir;
	d->wrap[n] = NULL;
}

static void
make_dir(th_daemon *d)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(d->dir, sizeof(d->dir), "%s/parley-test-XXXXXX", tmp ? tmp : "/tmp");
	TH_CHECK(mkdtemp(d->dir) != NULL, "mkdtemp");
}

static void
test_disk_full(void)
{
	static const char *const extra[] = {"--map-size", "256", NULL};
	static char text[TEXT_BYTES + 1];
	char room[65], cmid[16];
	uint64_t seq, last_seq = 0;
	Parley__V1__GetHistoryResponse *h;
	rpc_code code = RPC_OK;
	rpc_status st;
	int sent;
	mx_user a;

	make_dir(&mx_d);
	wrap_in_tmpfs(&mx_d, "size=2m");
	mx_start(extra);
	mx_users_new(&a, 1, "disk");
	snprintf(room, sizeof(room), "%s", th_name("disk"));
	TH_CODE(mx_create_room(&a, room, &st), RPC_OK, &st);
	mx_wait_membership(&a, room, a.name, PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED);

	memset(text, 'd', TEXT_BYTES);
	for (sent = 0; sent < MAX_SENDS; sent++) {
		snprintf(cmid, sizeof(cmid), "d%d", sent);
		code = mx_send(&a, room, text, cmid, &seq, NULL, &st);
		if (code != RPC_OK)
			break;
		last_seq = seq;
	}
	TH_CODE(code, RPC_RESOURCE_EXHAUSTED, &st);
	TH_CHECK(strstr(st.message, "the server's disk is full") != NULL,
		 "says the disk is full: %s", st.message);
	TH_CHECK(strstr(st.message, "map size") == NULL, "not the map: %s", st.message);
	TH_CHECK(sent > 10, "some messages fit first (%d)", sent);
	TH_CHECK(th_log_has(&mx_d, "ENOSPC"), "the log names ENOSPC (see %s)", mx_d.log);
	printf("ok the disk filled after %d messages: %s\n", sent, st.message);
	{
		mx_batch_msg batch[3] = {{room, "b0", "full-b0"}, {room, "b1", "full-b1"},
				   {room, "b2", "full-b2"}};

		code = mx_send_batch(&a, batch, 3, NULL, NULL, &st);
		TH_CODE(code, RPC_RESOURCE_EXHAUSTED, &st);
		TH_CHECK(strstr(st.message, "the server's disk is full") != NULL &&
				 strstr(st.message, "messages[") == NULL,
			 "a SendBatch fails whole, naming no message: %s", st.message);
	}

	/* Still up, still reading. */
	TH_CHECK(th_wait_serving(mx_d.messaging, 5000), "messaging serving");
	TH_CODE(mx_history(&a, room, 0, 0, 0, &h, &st), RPC_OK, &st);
	TH_CHECK(h->head_seq == last_seq, "history intact up to %llu", (unsigned long long)last_seq);
	protobuf_c_message_free_unpacked(&h->base, NULL);
	mx_stop();
	memset(&mx_d, 0, sizeof(mx_d));
}

/* Starts a daemon that must not come up, and checks its log for why. */
static void
refused_at_start(th_daemon *d, const char *want, const char *what)
{
	TH_CHECK(!th_start(d, NULL), "%s: parleyd must not start", what);
	TH_CHECK(th_log_has(d, "cannot open storage") && th_log_has(d, want),
		 "%s: the log says '%s' (see %s)", what, want, d->log);
	printf("ok %s refused: %s\n", what, want);
}

static void
test_read_only_fs(void)
{
	th_daemon d = {0};

	make_dir(&d);
	wrap_in_tmpfs(&d, "ro,size=1m");
	refused_at_start(&d, "storage is on a read-only file system (EROFS)",
			 "a read-only file system");
	TH_CHECK(!th_log_has(&d, "permission denied"), "not called a permission error");
	th_cleanup(&d);
}

static void
test_permission_denied(void)
{
	th_daemon d = {0};

	make_dir(&d);
	if (getuid() == 0) {
		/* Root writes anywhere: run parleyd as nobody instead. */
		d.wrap[0] = "setpriv";
		d.wrap[1] = "--reuid=65534";
		d.wrap[2] = "--regid=65534";
		d.wrap[3] = "--clear-groups";
		d.wrap[4] = NULL;
	}
	TH_CHECK(chmod(d.dir, 0500) == 0, "chmod");
	refused_at_start(&d, "storage permission denied (EACCES/EPERM)", "a directory not ours");
	TH_CHECK(!th_log_has(&d, "read-only"), "not called read-only");
	TH_CHECK(chmod(d.dir, 0700) == 0, "chmod back");
	th_cleanup(&d);
}

int
main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_read_only_fs();
	test_permission_denied();
	test_disk_full();
	return 0;
}

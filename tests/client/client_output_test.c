/*
 * client_output_test.c — the CLI's output (terminal-safe text, JSON, event
 * and room lines), the saved session file, endpoint resolution and
 * client_msg_id generation. No server needed.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "harness.h"

static const char *
sanitized(const char *in, size_t max)
{
	static strbuf sb;

	sb_reset(&sb);
	sb_sanitized(&sb, in, max);
	return sb_str(&sb);
}

static const char *
json(const char *in)
{
	static strbuf sb;

	sb_reset(&sb);
	sb_json_string(&sb, in);
	return sb_str(&sb);
}

#define EQ(got, want)                                                                      \
	do {                                                                               \
		const char *g_ = (got), *w_ = (want);                                      \
		TH_CHECK(strcmp(g_, w_) == 0, "got \"%s\", want \"%s\"", g_, w_);          \
	} while (0)

static void
test_sanitize(void)
{
	EQ(sanitized("hello", 0), "hello");
	EQ(sanitized("a\x1b[2Jb", 0), "a?[2Jb");			/* ESC */
	EQ(sanitized("a\x07\x08\x7f" "b", 0), "a???b");			/* BEL, BS, DEL */
	EQ(sanitized("a\xc2\x9b" "31mb", 0), "a?31mb");			/* C1 CSI */
	EQ(sanitized("a\tb\nc\rd", 0), "a b c d");			/* one line */
	EQ(sanitized("ab\xe2\x80\xae" "cd", 0), "abcd");		/* RLO dropped */
	EQ(sanitized("x\xe2\x81\xa6y", 0), "xy");			/* LRI dropped */
	EQ(sanitized("bad\xff\xfe", 0), "bad??");			/* not UTF-8 */
	EQ(sanitized("\xc3\xa9t\xc3\xa9", 0), "\xc3\xa9t\xc3\xa9");	/* été kept */
	EQ(sanitized("abcdef", 3), "abc\xe2\x80\xa6");
	EQ(sanitized("abc", 3), "abc");
	EQ(sanitized("", 0), "");
}

static void
test_json(void)
{
	EQ(json("plain"), "\"plain\"");
	EQ(json("q\"b\\"), "\"q\\\"b\\\\\"");
	EQ(json("l1\nl2\tx\r"), "\"l1\\nl2\\tx\\r\"");
	EQ(json("\x1b[0m\x01"), "\"\\u001b[0m\\u0001\"");
	EQ(json("\x7f\xc2\x9b"), "\"\\u007f\\u009b\"");
	EQ(json("\xe2\x80\xa8"), "\"\\u2028\"");
	EQ(json("\xff" "a"), "\"\\ufffda\"");
	EQ(json("\xe6\x97\xa5"), "\"\xe6\x97\xa5\"");
}

static void
test_width(void)
{
	TH_CHECK(cli_display_width("abc") == 3, "ascii");
	TH_CHECK(cli_display_width("\xc3\xa9") == 1, "e acute");
	TH_CHECK(cli_display_width("\xe6\x97\xa5\xe6\x9c\xac") == 4, "CJK is wide");
	TH_CHECK(cli_display_width("e\xcc\x81") == 1, "combining");
}

static void
test_events(void)
{
	Parley__V1__Event ev = PARLEY__V1__EVENT__INIT;
	Parley__V1__ChatMessage msg = PARLEY__V1__CHAT_MESSAGE__INIT;
	Parley__V1__MembershipChange mem = PARLEY__V1__MEMBERSHIP_CHANGE__INIT;
	Parley__V1__PresenceChange pre = PARLEY__V1__PRESENCE_CHANGE__INIT;
	strbuf sb = {0};
	time_t now = time(NULL);
	struct tm tm;
	char want[64];

	ev.room_id = "lobby";
	ev.sender = "alice";
	ev.seq = 7;
	ev.ts_ms = (uint64_t)now * 1000;
	ev.body_case = PARLEY__V1__EVENT__BODY_MESSAGE;
	ev.message = &msg;
	msg.text = "hi \x1b]0;owned\x07 there";
	msg.client_msg_id = "abc";
	localtime_r(&now, &tm);
	strftime(want, sizeof(want), "[%H:%M] alice: hi ?]0;owned? there", &tm);
	cli_event_line(&sb, &ev, false);
	EQ(sb_str(&sb), want);

	sb_reset(&sb);
	cli_event_json(&sb, &ev);
	snprintf(want, sizeof(want), "%llu", (unsigned long long)ev.ts_ms);
	{
		char full[256];
		snprintf(full, sizeof(full),
			 "{\"room_id\":\"lobby\",\"seq\":7,\"ts_ms\":%s,\"sender\":\"alice\","
			 "\"type\":\"message\",\"text\":\"hi \\u001b]0;owned\\u0007 there\","
			 "\"client_msg_id\":\"abc\"}",
			 want);
		EQ(sb_str(&sb), full);
	}

	/* A message of another day shows its date. */
	ev.ts_ms = 86400000ull * 365;
	sb_reset(&sb);
	cli_event_line(&sb, &ev, true);
	TH_CHECK(strncmp(sb_str(&sb), "#lobby [1971-01-0", 17) == 0, "dated: %s", sb_str(&sb));

	ev.body_case = PARLEY__V1__EVENT__BODY_MEMBERSHIP;
	ev.membership = &mem;
	ev.sender = "bob\x1b[1m";
	mem.kind = PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED;
	sb_reset(&sb);
	cli_event_line(&sb, &ev, false);
	EQ(sb_str(&sb), "* bob?[1m joined");
	mem.kind = PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT;
	sb_reset(&sb);
	ev.sender = "bob";
	cli_event_line(&sb, &ev, false);
	EQ(sb_str(&sb), "* bob left");
	sb_reset(&sb);
	cli_event_json(&sb, &ev);
	TH_CHECK(strstr(sb_str(&sb), "\"type\":\"left\"") != NULL, "%s", sb_str(&sb));
	TH_CHECK(strstr(sb_str(&sb), "\"text\"") == NULL, "no text for a membership change");
	mem.kind = PARLEY__V1__MEMBERSHIP_CHANGE__KIND__KIND_UNSPECIFIED;
	sb_reset(&sb);
	cli_event_line(&sb, &ev, true);
	EQ(sb_str(&sb), ""); /* unknown kinds show nothing, not even the room */

	ev.body_case = PARLEY__V1__EVENT__BODY_PRESENCE;
	ev.presence = &pre;
	ev.seq = 0;
	pre.state = PARLEY__V1__PRESENCE_CHANGE__STATE__ONLINE;
	sb_reset(&sb);
	cli_event_line(&sb, &ev, false);
	EQ(sb_str(&sb), "* bob is online");
	pre.state = PARLEY__V1__PRESENCE_CHANGE__STATE__OFFLINE;
	sb_reset(&sb);
	cli_event_line(&sb, &ev, false);
	EQ(sb_str(&sb), "* bob is offline");

	ev.body_case = PARLEY__V1__EVENT__BODY__NOT_SET;
	sb_reset(&sb);
	cli_event_line(&sb, &ev, false);
	EQ(sb_str(&sb), "");
	sb_reset(&sb);
	cli_event_json(&sb, &ev);
	TH_CHECK(strstr(sb_str(&sb), "\"type\":\"unknown\"") != NULL, "%s", sb_str(&sb));
	sb_free(&sb);
}

static void
test_rooms_and_errors(void)
{
	Parley__V1__Room r = PARLEY__V1__ROOM__INIT;
	strbuf sb = {0};

	r.room_id = "lobby";
	r.name = "The \x1b[5mLobby";
	r.member_count = 3;
	cli_room_line(&sb, &r, '*');
	EQ(sb_str(&sb), "* lobby                    3 members  The ?[5mLobby");
	sb_reset(&sb);
	r.member_count = 1;
	r.name = "lobby";
	cli_room_line(&sb, &r, ' ');
	EQ(sb_str(&sb), "  lobby                    1 member");
	sb_reset(&sb);
	cli_room_json(&sb, &r, 1);
	EQ(sb_str(&sb), "{\"room_id\":\"lobby\",\"name\":\"lobby\",\"topic\":\"\",\"created_by\":\"\","
			"\"created_at_ms\":0,\"member_count\":1,\"member\":true}");
	sb_reset(&sb);
	cli_error_line(&sb, RPC_PERMISSION_DENIED, "you are not a member of room 'x\x1b[2J'");
	EQ(sb_str(&sb), "error: PERMISSION_DENIED: you are not a member of room 'x?[2J'");
	sb_free(&sb);
}

static void
test_session(void)
{
	char dir[] = "/tmp/parley-session-test-XXXXXX", path[4096], err[512], cmd[600];
	cli_session s = {0}, back;
	struct stat st;

	TH_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	setenv("XDG_CONFIG_HOME", dir, 1);
	TH_CHECK(cli_session_load(&back, err, sizeof(err)) == CLI_SESSION_NONE, "no file yet");
	snprintf(s.user, sizeof(s.user), "alice");
	snprintf(s.token, sizeof(s.token), "abcDEF-_123");
	s.expires_ms = 1234567890123ull;
	s.has_endpoints = true;
	TH_CHECK(parley_endpoints_for_host(&s.ep, "chat.example.org", NULL) == RPC_OK, "host");
	TH_CHECK(cli_session_save(&s, err, sizeof(err)), "save: %s", err);
	TH_CHECK(cli_session_path(path, sizeof(path), err, sizeof(err)), "path");
	TH_CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "file mode %o",
		 st.st_mode & 0777);
	*strrchr(path, '/') = '\0';
	TH_CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700, "dir mode %o",
		 st.st_mode & 0777);
	TH_CHECK(cli_session_load(&back, err, sizeof(err)) == CLI_SESSION_OK, "load: %s", err);
	EQ(back.user, "alice");
	EQ(back.token, "abcDEF-_123");
	TH_CHECK(back.expires_ms == s.expires_ms, "expiry");
	TH_CHECK(back.has_endpoints, "endpoints");
	EQ(back.ep.url[PARLEY_MESSAGING], "tcp://chat.example.org:5204");

	/* Saving again replaces it. */
	snprintf(s.user, sizeof(s.user), "bob");
	TH_CHECK(cli_session_save(&s, err, sizeof(err)), "save again: %s", err);
	TH_CHECK(cli_session_load(&back, err, sizeof(err)) == CLI_SESSION_OK, "load");
	EQ(back.user, "bob");

	/* Readable by others: refused. */
	TH_CHECK(cli_session_path(path, sizeof(path), err, sizeof(err)), "path");
	chmod(path, 0644);
	TH_CHECK(cli_session_load(&back, err, sizeof(err)) == CLI_SESSION_ERROR, "0644 refused");
	TH_CHECK(strstr(err, "not private") != NULL, "%s", err);
	chmod(path, 0600);

	/* Damaged: refused. */
	{
		FILE *f = fopen(path, "w");
		TH_CHECK(f != NULL, "open");
		fputs("user=alice\ntoken\n", f);
		fclose(f);
	}
	TH_CHECK(cli_session_load(&back, err, sizeof(err)) == CLI_SESSION_ERROR, "damaged");

	TH_CHECK(cli_session_remove(err, sizeof(err)), "remove: %s", err);
	TH_CHECK(cli_session_remove(err, sizeof(err)), "remove twice: %s", err);
	TH_CHECK(cli_session_load(&back, err, sizeof(err)) == CLI_SESSION_NONE, "gone");

	/* A relative XDG_CONFIG_HOME is ignored (XDG spec): HOME is used. */
	setenv("XDG_CONFIG_HOME", "relative/dir", 1);
	setenv("HOME", dir, 1);
	TH_CHECK(cli_session_path(path, sizeof(path), err, sizeof(err)), "path");
	TH_CHECK(strstr(path, "/.config/parley/session") != NULL, "%s", path);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	TH_CHECK(system(cmd) == 0, "cleanup");
}

static void
test_blank(void)
{
	TH_CHECK(cli_text_blank(""), "empty");
	TH_CHECK(cli_text_blank(" \t \r\n"), "ascii");
	TH_CHECK(cli_text_blank("\xc2\xa0\xe3\x80\x80\xe2\x80\x8b \xef\xbb\xbf"), "nbsp, ideographic, zwsp, bom");
	TH_CHECK(!cli_text_blank("  x "), "a letter");
	TH_CHECK(!cli_text_blank(" \xff "), "invalid UTF-8 is not blank");
}

static void
test_endpoints(void)
{
	parley_endpoints ep;
	rpc_status st;

	TH_CHECK(parley_endpoints_for_host(&ep, NULL, &st) == RPC_OK, "default");
	EQ(ep.url[PARLEY_AUTH], "tcp://127.0.0.1:5201");
	EQ(ep.url[PARLEY_ROOMS], "tcp://127.0.0.1:5202");
	EQ(ep.url[PARLEY_HISTORY], "tcp://127.0.0.1:5203");
	EQ(ep.url[PARLEY_MESSAGING], "tcp://127.0.0.1:5204");
	TH_CHECK(parley_endpoints_for_host(&ep, "::1", &st) == RPC_OK, "v6");
	EQ(ep.url[PARLEY_AUTH], "tcp://[::1]:5201");
	TH_CHECK(parley_endpoints_for_host(&ep, "[fe80::1%eth0]", &st) == RPC_OK, "v6 bracketed");
	EQ(ep.url[PARLEY_HISTORY], "tcp://[fe80::1%eth0]:5203");
	/* HOST:PORT is a base port: auth, rooms, history, messaging from it
	 * (issue 11: "127.0.0.1:6201" became tcp://[127.0.0.1:6201]:5201). */
	TH_CHECK(parley_endpoints_for_host(&ep, "127.0.0.1:6201", &st) == RPC_OK, "%s", st.message);
	EQ(ep.url[PARLEY_AUTH], "tcp://127.0.0.1:6201");
	EQ(ep.url[PARLEY_ROOMS], "tcp://127.0.0.1:6202");
	EQ(ep.url[PARLEY_HISTORY], "tcp://127.0.0.1:6203");
	EQ(ep.url[PARLEY_MESSAGING], "tcp://127.0.0.1:6204");
	TH_CHECK(parley_endpoints_for_host(&ep, "[::1]:7000", &st) == RPC_OK, "%s", st.message);
	EQ(ep.url[PARLEY_MESSAGING], "tcp://[::1]:7003");
	TH_CHECK(parley_endpoints_for_host(&ep, "tcp://chat.example.org:6201/", &st) == RPC_OK,
		 "%s", st.message);
	EQ(ep.url[PARLEY_ROOMS], "tcp://chat.example.org:6202");
	TH_CHECK(parley_endpoints_for_host(&ep, "tcp://x", &st) == RPC_OK, "%s", st.message);
	EQ(ep.url[PARLEY_AUTH], "tcp://x:5201");
	TH_CHECK(parley_endpoints_for_host(&ep, "tls+tcp://x:9000", &st) == RPC_OK, "%s", st.message);
	EQ(ep.url[PARLEY_HISTORY], "tls+tcp://x:9002");
	TH_CHECK(parley_endpoints_for_host(&ep, "http://x:8080", &st) == RPC_INVALID_ARGUMENT, "http");
	TH_CHECK(strstr(st.message, "per service") != NULL, "says what to do: %s", st.message);
	TH_CHECK(parley_endpoints_for_host(&ep, "x:0", &st) == RPC_INVALID_ARGUMENT, "port 0");
	TH_CHECK(parley_endpoints_for_host(&ep, "x:65535", &st) == RPC_INVALID_ARGUMENT, "port");
	TH_CHECK(parley_endpoints_for_host(&ep, "x:12ab", &st) == RPC_INVALID_ARGUMENT, "port");
	TH_CHECK(strstr(st.message, "base port") != NULL, "says what is accepted: %s", st.message);
	TH_CHECK(parley_endpoints_for_host(&ep, "[::1", &st) == RPC_INVALID_ARGUMENT, "bracket");
	TH_CHECK(parley_endpoints_for_host(&ep, "[fe80::1%eth0]", &st) == RPC_OK, "again");
	TH_CHECK(parley_endpoints_for_host(&ep, "a b", &st) == RPC_INVALID_ARGUMENT, "space");
	TH_CHECK(parley_endpoints_set(&ep, PARLEY_ROOMS, "ipc:///tmp/rooms.sock", &st) == RPC_OK,
		 "ipc");
	EQ(ep.url[PARLEY_ROOMS], "ipc:///tmp/rooms.sock");
	TH_CHECK(parley_endpoints_set(&ep, PARLEY_ROOMS, "localhost:5202", &st) ==
		     RPC_INVALID_ARGUMENT, "not a URL");
	TH_CHECK(parley_endpoints_set(&ep, PARLEY_ROOMS, "tcp://a\nb:1", &st) ==
		     RPC_INVALID_ARGUMENT, "control character");
	setenv("PARLEY_HISTORY", "tcp://10.1.2.3:9", 1);
	setenv("PARLEY_AUTH", "", 1);
	TH_CHECK(parley_endpoints_from_env(&ep, &st) == RPC_OK, "env");
	EQ(ep.url[PARLEY_HISTORY], "tcp://10.1.2.3:9");
	EQ(ep.url[PARLEY_AUTH], "tcp://[fe80::1%eth0]:5201"); /* empty: not applied */
	setenv("PARLEY_MESSAGING", "garbage", 1);
	TH_CHECK(parley_endpoints_from_env(&ep, &st) == RPC_INVALID_ARGUMENT, "bad env");
	TH_CHECK(strstr(st.message, "PARLEY_MESSAGING") != NULL, "%s", st.message);
	unsetenv("PARLEY_MESSAGING");
	unsetenv("PARLEY_HISTORY");
	unsetenv("PARLEY_AUTH");
}

static void
test_client_msg_id(void)
{
	char a[PARLEY_CLIENT_MSG_ID_LEN + 1], b[PARLEY_CLIENT_MSG_ID_LEN + 1];

	parley_new_client_msg_id(a);
	parley_new_client_msg_id(b);
	TH_CHECK(strlen(a) == PARLEY_CLIENT_MSG_ID_LEN, "length");
	TH_CHECK(strspn(a, "0123456789abcdef") == PARLEY_CLIENT_MSG_ID_LEN, "hex: %s", a);
	TH_CHECK(strcmp(a, b) != 0, "fresh ids differ");
}

int
main(void)
{
	test_sanitize();
	test_json();
	test_width();
	test_events();
	test_rooms_and_errors();
	test_session();
	test_endpoints();
	test_blank();
	test_client_msg_id();
	printf("ok client output test\n");
	return 0;
}

/*
 * output.c — strbuf, terminal-safe and JSON-safe text, and the one-line
 * forms of events, rooms and errors; see cli.h.
 *
 * Everything a server sends is treated as hostile here: strings were checked
 * to be UTF-8 by the library, but nothing stops them from carrying escape
 * sequences, so nothing reaches the terminal without sb_sanitized.
 */
#include "cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NAME_MAX_CHARS 64     /* user and room ids are at most 64 anyway */
#define TEXT_MAX_CHARS 8192   /* messages are at most 4096 bytes anyway */
#define MESSAGE_MAX_CHARS 300 /* status messages */

void
sb_free(strbuf *sb)
{
	free(sb->p);
	sb->p = NULL;
	sb->len = sb->cap = 0;
	sb->oom = false;
}

void
sb_reset(strbuf *sb)
{
	sb->len = 0;
	sb->oom = false;
	if (sb->p != NULL)
		sb->p[0] = '\0';
}

static bool
grow(strbuf *sb, size_t more)
{
	size_t want = sb->len + more + 1;
	size_t cap = sb->cap ? sb->cap : 64;
	char *p;

	if (want <= sb->cap)
		return true;
	if (sb->oom)
		return false;
	while (cap < want)
		cap *= 2;
	if ((p = realloc(sb->p, cap)) == NULL) {
		sb->oom = true;
		return false;
	}
	sb->p = p;
	sb->cap = cap;
	return true;
}

void
sb_put(strbuf *sb, const char *s, size_t n)
{
	if (!grow(sb, n))
		return;
	memcpy(sb->p + sb->len, s, n);
	sb->len += n;
	sb->p[sb->len] = '\0';
}

void
sb_putc(strbuf *sb, char ch)
{
	sb_put(sb, &ch, 1);
}

void
sb_puts(strbuf *sb, const char *s)
{
	sb_put(sb, s, strlen(s));
}

void
sb_printf(strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !grow(sb, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(sb->p + sb->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t)n;
}

const char *
sb_str(const strbuf *sb)
{
	return sb->p != NULL ? sb->p : "";
}

/* Decodes one code point of s (at most n bytes); returns its length, or 0
 * for an invalid sequence. */
static size_t
utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t c;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		c = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		c = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
	    (len == 4 && (c < 0x10000 || c > 0x10ffff)))
		return 0;
	*cp = c;
	return len;
}

/* Characters that reorder or hide text (bidi embeddings, overrides and
 * isolates, the marks): dropped from terminal output. */
static bool
bidi_control(uint32_t cp)
{
	return cp == 0x061c || cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069);
}

void
sb_sanitized(strbuf *sb, const char *s, size_t max_chars)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), chars = 0;

	while (n > 0) {
		uint32_t cp;
		size_t len = utf8_decode(p, n, &cp);

		if (max_chars != 0 && chars == max_chars) {
			sb_puts(sb, "\xe2\x80\xa6"); /* … */
			return;
		}
		if (len == 0) {
			sb_putc(sb, '?');
			len = 1;
		} else if (cp == '\t' || cp == '\n' || cp == '\r') {
			sb_putc(sb, ' ');
		} else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
			sb_putc(sb, '?');
		} else if (bidi_control(cp)) {
			p += len; /* shown as nothing */
			n -= len;
			continue;
		} else {
			sb_put(sb, (const char *)p, len);
		}
		chars++;
		p += len;
		n -= len;
	}
}

void
sb_json_string(strbuf *sb, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);

	sb_putc(sb, '"');
	while (n > 0) {
		uint32_t cp;
		size_t len = utf8_decode(p, n, &cp);

		if (len == 0) {
			sb_puts(sb, "\\ufffd");
			len = 1;
		} else if (cp == '"') {
			sb_puts(sb, "\\\"");
		} else if (cp == '\\') {
			sb_puts(sb, "\\\\");
		} else if (cp == '\n') {
			sb_puts(sb, "\\n");
		} else if (cp == '\r') {
			sb_puts(sb, "\\r");
		} else if (cp == '\t') {
			sb_puts(sb, "\\t");
		} else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 ||
			   cp == 0x2029) {
			sb_printf(sb, "\\u%04x", (unsigned)cp);
		} else {
			sb_put(sb, (const char *)p, len);
		}
		p += len;
		n -= len;
	}
	sb_putc(sb, '"');
}

/* "[14:02] " for today, "[2024-05-01 14:02] " otherwise, in local time. */
static void
put_time(strbuf *sb, uint64_t ts_ms)
{
	time_t t = (time_t)(ts_ms / 1000), now = time(NULL);
	struct tm tm, today;
	char buf[32];

	if (localtime_r(&t, &tm) == NULL || localtime_r(&now, &today) == NULL) {
		sb_puts(sb, "[--:--] ");
		return;
	}
	if (tm.tm_year == today.tm_year && tm.tm_yday == today.tm_yday)
		strftime(buf, sizeof(buf), "[%H:%M] ", &tm);
	else
		strftime(buf, sizeof(buf), "[%Y-%m-%d %H:%M] ", &tm);
	sb_puts(sb, buf);
}

static void
put_name(strbuf *sb, const char *name)
{
	if (name[0] == '\0')
		sb_puts(sb, "(unknown)");
	else
		sb_sanitized(sb, name, NAME_MAX_CHARS);
}

static void
put_who(strbuf *sb, const char *user_id, const cli_names *nm)
{
	if (nm != NULL && nm->put != NULL && user_id[0] != '\0')
		nm->put(sb, user_id, nm->arg);
	else
		put_name(sb, user_id);
}

static void
put_message(strbuf *sb, const Parley__V1__Event *ev, const cli_names *nm)
{
	const Parley__V1__ChatMessage *m = ev->message;

	if (nm != NULL && nm->seqs)
		sb_printf(sb, "#%llu ", (unsigned long long)ev->seq);
	put_time(sb, ev->ts_ms);
	if (m->redacted) {
		put_who(sb, ev->sender, nm);
		sb_puts(sb, ": (deleted)");
		return;
	}
	if (strncmp(m->text, "/me ", 4) == 0 && !cli_text_blank(m->text + 4)) {
		/* An action, the IRC way. */
		sb_puts(sb, "* ");
		put_who(sb, ev->sender, nm);
		sb_putc(sb, ' ');
		sb_sanitized(sb, m->text + 4, TEXT_MAX_CHARS);
	} else {
		put_who(sb, ev->sender, nm);
		sb_puts(sb, ": ");
		sb_sanitized(sb, m->text, TEXT_MAX_CHARS);
	}
	if (m->edited_at_ms != 0)
		sb_puts(sb, " (edited)");
}

/* "was kicked by bob: spam". */
static void
put_membership(strbuf *sb, const Parley__V1__MembershipChange *mc, const cli_names *nm)
{
	static const char *const verbs[] = {
		[PARLEY__V1__MEMBERSHIP_CHANGE__KIND__KICKED] = "was removed by ",
		[PARLEY__V1__MEMBERSHIP_CHANGE__KIND__BANNED] = "was banned by ",
		[PARLEY__V1__MEMBERSHIP_CHANGE__KIND__UNBANNED] = "was unbanned by ",
		[PARLEY__V1__MEMBERSHIP_CHANGE__KIND__INVITED] = "was invited by ",
	};

	sb_puts(sb, verbs[mc->kind]);
	put_who(sb, mc->actor, nm);
	if (mc->reason[0] != '\0') {
		sb_puts(sb, ": ");
		sb_sanitized(sb, mc->reason, 200);
	}
}

void
cli_member_words(strbuf *sb, const char *room_id, bool member, const Parley__V1__Event *ev,
		 const cli_names *nm)
{
	const Parley__V1__MembershipChange *mc = ev != NULL ? ev->membership : NULL;
	const char *by = NULL;

	if (member) {
		sb_puts(sb, "you are a member of ");
		sb_sanitized(sb, room_id, NAME_MAX_CHARS);
		sb_puts(sb, " again");
		return;
	}
	if (mc != NULL && mc->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__KICKED)
		by = "you were removed from ";
	else if (mc != NULL && mc->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__BANNED)
		by = "you were banned from ";
	if (by != NULL) {
		sb_puts(sb, by);
		sb_sanitized(sb, room_id, NAME_MAX_CHARS);
		sb_puts(sb, " by ");
		put_who(sb, mc->actor, nm);
		if (mc->reason[0] != '\0') {
			sb_puts(sb, ": ");
			sb_sanitized(sb, mc->reason, 200);
		}
	} else if (mc != NULL && mc->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT) {
		sb_puts(sb, "you left ");
		sb_sanitized(sb, room_id, NAME_MAX_CHARS);
		sb_puts(sb, " elsewhere");
	} else {
		sb_puts(sb, "you are no longer a member of ");
		sb_sanitized(sb, room_id, NAME_MAX_CHARS);
		sb_puts(sb, " (you left it elsewhere, or were removed)");
	}
}

void
cli_event_line(strbuf *sb, const Parley__V1__Event *ev, bool room)
{
	cli_event_line_as(sb, ev, room, NULL);
}

void
cli_event_line_as(strbuf *sb, const Parley__V1__Event *ev, bool room, const cli_names *nm)
{
	size_t start = sb->len;
	const char *what = NULL;
	const Parley__V1__MembershipChange *mc = NULL;

	if (room) {
		sb_putc(sb, '#');
		put_name(sb, ev->room_id);
		sb_putc(sb, ' ');
	}
	switch (ev->body_case) {
	case PARLEY__V1__EVENT__BODY_MESSAGE:
		if (ev->message == NULL)
			break;
		put_message(sb, ev, nm);
		return;
	case PARLEY__V1__EVENT__BODY_MEMBERSHIP:
		if ((mc = ev->membership) == NULL)
			break;
		if (mc->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED)
			what = "joined";
		else if (mc->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT)
			what = "left";
		else if (mc->kind >= PARLEY__V1__MEMBERSHIP_CHANGE__KIND__KICKED &&
			 mc->kind <= PARLEY__V1__MEMBERSHIP_CHANGE__KIND__INVITED)
			what = "";
		break;
	case PARLEY__V1__EVENT__BODY_PRESENCE:
		if (ev->presence == NULL)
			break;
		if (ev->presence->state == PARLEY__V1__PRESENCE_CHANGE__STATE__ONLINE)
			what = "is online";
		else if (ev->presence->state == PARLEY__V1__PRESENCE_CHANGE__STATE__OFFLINE)
			what = "is offline";
		break;
	case PARLEY__V1__EVENT__BODY_ROOM_UPDATE:
		if (ev->room_update != NULL)
			what = ev->room_update->topic[0] != '\0' ? "set the topic: "
								 : "cleared the topic";
		break;
	case PARLEY__V1__EVENT__BODY_EDIT:
		if (ev->edit != NULL)
			what = "edited a message: ";
		break;
	case PARLEY__V1__EVENT__BODY_REDACTION:
		if (ev->redaction != NULL)
			what = "deleted a message";
		break;
	default:
		break;
	}
	if (what == NULL) {
		/* A kind of event this client does not know, or typing: show
		 * nothing. */
		sb->len = start;
		if (sb->p != NULL)
			sb->p[start] = '\0';
		return;
	}
	sb_puts(sb, "* ");
	put_who(sb, ev->sender, nm);
	sb_putc(sb, ' ');
	sb_puts(sb, what);
	if (what[0] == '\0' && mc != NULL)
		put_membership(sb, mc, nm);
	else if (ev->body_case == PARLEY__V1__EVENT__BODY_ROOM_UPDATE)
		sb_sanitized(sb, ev->room_update->topic, 500);
	else if (ev->body_case == PARLEY__V1__EVENT__BODY_EDIT)
		sb_sanitized(sb, ev->edit->text, TEXT_MAX_CHARS);
}

static const char *
event_type(const Parley__V1__Event *ev)
{
	switch (ev->body_case) {
	case PARLEY__V1__EVENT__BODY_MESSAGE:
		return ev->message ? "message" : "unknown";
	case PARLEY__V1__EVENT__BODY_MEMBERSHIP:
		if (ev->membership && ev->membership->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__JOINED)
			return "joined";
		if (ev->membership && ev->membership->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__LEFT)
			return "left";
		if (ev->membership && ev->membership->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__KICKED)
			return "kicked";
		if (ev->membership && ev->membership->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__BANNED)
			return "banned";
		if (ev->membership && ev->membership->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__UNBANNED)
			return "unbanned";
		if (ev->membership && ev->membership->kind == PARLEY__V1__MEMBERSHIP_CHANGE__KIND__INVITED)
			return "invited";
		return "unknown";
	case PARLEY__V1__EVENT__BODY_PRESENCE:
		if (ev->presence && ev->presence->state == PARLEY__V1__PRESENCE_CHANGE__STATE__ONLINE)
			return "online";
		if (ev->presence && ev->presence->state == PARLEY__V1__PRESENCE_CHANGE__STATE__OFFLINE)
			return "offline";
		return "unknown";
	case PARLEY__V1__EVENT__BODY_ROOM_UPDATE:
		return ev->room_update ? "room_update" : "unknown";
	case PARLEY__V1__EVENT__BODY_EDIT:
		return ev->edit ? "edit" : "unknown";
	case PARLEY__V1__EVENT__BODY_REDACTION:
		return ev->redaction ? "delete" : "unknown";
	case PARLEY__V1__EVENT__BODY_TYPING:
		return ev->typing ? "typing" : "unknown";
	default:
		return "unknown";
	}
}

void
cli_event_json(strbuf *sb, const Parley__V1__Event *ev)
{
	sb_puts(sb, "{\"room_id\":");
	sb_json_string(sb, ev->room_id);
	sb_printf(sb, ",\"seq\":%llu,\"ts_ms\":%llu,\"sender\":", (unsigned long long)ev->seq,
		  (unsigned long long)ev->ts_ms);
	sb_json_string(sb, ev->sender);
	sb_puts(sb, ",\"type\":");
	sb_json_string(sb, event_type(ev));
	if (ev->body_case == PARLEY__V1__EVENT__BODY_MESSAGE && ev->message != NULL) {
		sb_puts(sb, ",\"text\":");
		sb_json_string(sb, ev->message->text);
		sb_puts(sb, ",\"client_msg_id\":");
		sb_json_string(sb, ev->message->client_msg_id);
	}
	sb_putc(sb, '}');
}

void
cli_room_line(strbuf *sb, const Parley__V1__Room *r, char mark)
{
	size_t start;

	sb_putc(sb, mark);
	sb_putc(sb, ' ');
	start = sb->len;
	put_name(sb, r->room_id);
	for (size_t w = cli_display_width(sb_str(sb) + start); w < 20; w++)
		sb_putc(sb, ' ');
	start = sb->len;
	sb_printf(sb, " %5u member%s", r->member_count, r->member_count == 1 ? "" : "s");
	if (r->name[0] != '\0' && strcmp(r->name, r->room_id) != 0) {
		while (sb->len - start < 16)
			sb_putc(sb, ' ');
		sb_sanitized(sb, r->name, 100);
	}
	if (r->topic[0] != '\0') {
		sb_puts(sb, "  - ");
		sb_sanitized(sb, r->topic, 120);
	}
}

void
cli_room_json(strbuf *sb, const Parley__V1__Room *r, int member)
{
	sb_puts(sb, "{\"room_id\":");
	sb_json_string(sb, r->room_id);
	sb_puts(sb, ",\"name\":");
	sb_json_string(sb, r->name);
	sb_puts(sb, ",\"topic\":");
	sb_json_string(sb, r->topic);
	sb_puts(sb, ",\"created_by\":");
	sb_json_string(sb, r->created_by);
	sb_printf(sb, ",\"created_at_ms\":%llu,\"member_count\":%u",
		  (unsigned long long)r->created_at_ms, r->member_count);
	if (member >= 0)
		sb_printf(sb, ",\"member\":%s", member ? "true" : "false");
	sb_putc(sb, '}');
}

/* Protocol field names a server message may carry, and how a person says
 * them. */
static const char *const field_words[][2] = {
	{"user_id", "user id"},		 {"room_id", "room id"},
	{"display_name", "display name"}, {"client_msg_id", "message id"},
	{"session_id", "session"},	 {"page_token", "page"},
	{"before_seq", "before"},	 {"after_seq", "after"},
	{"since_seq", "since"},		 {"old_password", "old password"},
	{"new_password", "new password"}, {"max_events", "max events"},
	{"wait_ms", "wait time"},	 {"page_size", "page size"},
	/* Role names (Role in rooms.proto) as a person says them. */
	{"MODERATOR", "moderator"},	 {"ADMIN", "admin"},
	{"MEMBER", "member"},
};

static bool
word_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_';
}

void
sb_humanized(strbuf *sb, const char *message, size_t max_chars)
{
	strbuf safe = {0};
	const char *p;

	sb_sanitized(&safe, message, max_chars);
	p = sb_str(&safe);
	while (*p != '\0') {
		bool done = false;

		if (p == sb_str(&safe) || !word_char(p[-1])) {
			for (size_t i = 0; i < sizeof(field_words) / sizeof(field_words[0]); i++) {
				size_t n = strlen(field_words[i][0]);

				if (strncmp(p, field_words[i][0], n) == 0 && !word_char(p[n])) {
					sb_puts(sb, field_words[i][1]);
					p += n;
					done = true;
					break;
				}
			}
		}
		if (!done)
			sb_putc(sb, *p++);
	}
	sb_free(&safe);
}

void
cli_error_line(strbuf *sb, rpc_code code, const char *message)
{
	sb_puts(sb, "error: ");
	sb_puts(sb, rpc_code_name(code));
	if (message != NULL && message[0] != '\0') {
		sb_puts(sb, ": ");
		sb_humanized(sb, message, MESSAGE_MAX_CHARS);
	}
}

static const char *
code_words(rpc_code code)
{
	switch (code) {
	case RPC_UNAUTHENTICATED: return "not logged in";
	case RPC_PERMISSION_DENIED: return "not allowed";
	case RPC_NOT_FOUND: return "not found";
	case RPC_ALREADY_EXISTS: return "already exists";
	case RPC_INVALID_ARGUMENT: return "not valid";
	case RPC_UNAVAILABLE: return "the server cannot be reached";
	case RPC_DEADLINE_EXCEEDED: return "the server did not answer in time";
	case RPC_RESOURCE_EXHAUSTED: return "too many requests; try again shortly";
	case RPC_FAILED_PRECONDITION: return "not possible now";
	case RPC_CANCELLED: return "cancelled";
	default: return "the server failed";
	}
}

void
cli_error_words(strbuf *sb, rpc_code code, const char *message)
{
	sb_puts(sb, "error: ");
	if (message != NULL && message[0] != '\0')
		sb_humanized(sb, message, MESSAGE_MAX_CHARS);
	else
		sb_puts(sb, code_words(code));
}

bool
cli_write_line(FILE *out, const strbuf *sb)
{
	if (sb->len > 0 && fwrite(sb->p, 1, sb->len, out) != sb->len)
		return false;
	if (putc('\n', out) == EOF)
		return false;
	return fflush(out) == 0 && !ferror(out);
}

bool
cli_text_blank(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);

	while (n > 0) {
		uint32_t cp;
		size_t len = utf8_decode(p, n, &cp);

		if (len == 0)
			return false;
		if (!(cp == ' ' || (cp >= '\t' && cp <= '\r') || cp == 0x85 || cp == 0xa0 ||
		      cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200b) || cp == 0x2028 ||
		      cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000 || cp == 0xfeff))
			return false;
		p += len;
		n -= len;
	}
	return true;
}

/* East Asian wide and fullwidth ranges, emoji: two columns. */
static bool
wide(uint32_t cp)
{
	return (cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) ||
	       (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
	       (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
	       (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x1f300 && cp <= 0x1f64f) ||
	       (cp >= 0x1f900 && cp <= 0x1f9ff) || (cp >= 0x20000 && cp <= 0x3fffd);
}

size_t
cli_display_width(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), w = 0;

	while (n > 0) {
		uint32_t cp = '?';
		size_t len = utf8_decode(p, n, &cp);

		if (len == 0)
			len = 1;
		if ((cp >= 0x0300 && cp <= 0x036f) || cp == 0x200b || cp == 0x200d)
			; /* combining or zero width */
		else
			w += wide(cp) ? 2 : 1;
		p += len;
		n -= len;
	}
	return w;
}

/*
 * screen.c — what the interactive chat's terminal shows; see ui.h.
 *
 * The bottom of the screen is the live area: one line per message still
 * on its way (and per command waiting for them), then the prompt with what
 * is being typed, which libedit draws. Everything else is printed above
 * it: clear the live area, print the line, draw the live area again.
 *
 * The first live row, when others are typing in the room, says who
 * (notify.c); it changes only with the live area, never the prompt.
 *
 * Clearing needs to know how many rows the live area takes above the
 * cursor. The pending lines are drawn one row each (cut to the width). The
 * prompt's rows come from the text before the cursor: libedit's
 * rl_line_buffer and rl_point are only brought up to date when it reads a
 * key, and still hold the previous line right after a new prompt is
 * installed (which made each incoming line overwrite the one before after
 * a wrapped line was sent): so ui.edit_w holds the width while it is known
 * (0 for a fresh prompt), and after a key the text comes from
 * rl_copy_text (only for a line that is not empty: for an empty one it
 * hands back an unterminated byte). rl_line_buffer itself is never read: libedit leaves it
 * pointing at a buffer it has reallocated once a line grows long
 * (interactive.c points it at a buffer of ours). Main thread only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>

#include "ui.h"

int
screen_editor_rows(const ui *u)
{
	int cols = cli_term_columns(STDOUT_FILENO);
	size_t w;

	if (!u->rl_active || cols <= 0)
		return 0;
	w = cli_display_width(u->prompt);
	if (u->edit_w >= 0) {
		w += (size_t)u->edit_w;
	} else if (rl_point > 0 && rl_end > 0 && rl_point <= rl_end) {
		/* libedit's rl_copy_text copies one byte less than asked, and
		 * never past the end: ask one past the cursor. At the end of the
		 * line the last byte is missing: its character counts 1. */
		char *before = rl_copy_text(0, rl_point + 1);
		size_t got = before != NULL ? strlen(before) : 0;

		if (before != NULL && got < (size_t)rl_point) {
			while (got > 0 && ((unsigned char)before[got - 1] & 0xc0) == 0x80)
				got--; /* a character cut short */
			if (got > 0 && (unsigned char)before[got - 1] >= 0xc0)
				got--;
			before[got] = '\0';
			w += 1;
		}
		if (before != NULL)
			w += cli_display_width(before);
		free(before);
	}
	return (int)(w / (size_t)cols);
}

void
screen_clear_live(ui *u)
{
	int up;

	if (!u->tty)
		return;
	up = u->live_rows + screen_editor_rows(u);
	if (up > 0)
		printf("\033[%dA", up);
	fputs("\r\033[J", stdout);
	u->live_rows = 0;
}

void
screen_draw_live(ui *u)
{
	int cols = cli_term_columns(STDOUT_FILENO);
	strbuf sb = {0};
	int n;

	if (!u->tty)
		return;
	if (cols <= 0)
		cols = 80;
	n = 0;
	if (u->logged_in && u->room[0] != '\0') {
		/* Who else is typing: one row above the pending lines. */
		typing_line(u, &sb, cols);
		if (sb.len > 0) {
			sb_putc(&sb, '\n');
			n++;
		}
	}
	n += outbox_lines(u, &sb, cols);
	for (typed_line *t = u->inq; t != NULL; t = t->next) {
		strbuf one = {0};

		sb_puts(&one, "(waiting) ");
		sb_sanitized(&one, t->text, (size_t)(cols > 12 ? cols - 12 : 1));
		sb_puts(&sb, sb_str(&one));
		sb_putc(&sb, '\n');
		sb_free(&one);
		n++;
	}
	fputs(sb_str(&sb), stdout);
	sb_free(&sb);
	u->live_rows = n;
	if (u->rl_active)
		rl_forced_update_display();
	fflush(stdout);
}

void
screen_erase_typed(ui *u, const char *line)
{
	int cols = cli_term_columns(STDOUT_FILENO);
	size_t w = cli_display_width(u->prompt) + cli_display_width(line);

	if (!u->tty || cols <= 0)
		return;
	/* libedit ended the line with a line break: the cursor is on the row
	 * after the last one the prompt and the line took. */
	printf("\033[%zuA\r\033[J", w / (size_t)cols + 1);
	fflush(stdout);
}

/* Prints one line above the live area, which is drawn again below it. */
void
ui_show(ui *u, const char *line)
{
	if (u->tty) {
		screen_clear_live(u);
		fputs(line, stdout);
		fputc('\n', stdout);
		screen_draw_live(u);
	} else {
		fputs(line, stdout);
		fputc('\n', stdout);
		fflush(stdout);
	}
}

void
ui_show_sb(ui *u, strbuf *sb)
{
	ui_show(u, sb->oom ? "error: out of memory" : sb_str(sb));
}

void
ui_error(ui *u, rpc_code code, const char *message)
{
	strbuf sb = {0};

	if (code == RPC_UNAUTHENTICATED && u->logged_in)
		u->session_lost = true;
	cli_error_words(&sb, code, message);
	ui_show_sb(u, &sb);
	sb_free(&sb);
	u->errors++;
}

/* "* text" + a terminal-safe arg + rest. */
void
ui_note(ui *u, const char *text, const char *arg, const char *rest)
{
	strbuf sb = {0};

	sb_puts(&sb, "* ");
	sb_puts(&sb, text);
	if (arg != NULL)
		sb_sanitized(&sb, arg, 100);
	if (rest != NULL)
		sb_puts(&sb, rest);
	ui_show_sb(u, &sb);
	sb_free(&sb);
}

void
ui_event(ui *u, const Parley__V1__Event *ev)
{
	cli_names nm = {.put = names_put, .arg = u->names};
	strbuf sb = {0};

	cli_event_line_as(&sb, ev, false, &nm);
	if (sb.len > 0)
		ui_show_sb(u, &sb);
	sb_free(&sb);
}

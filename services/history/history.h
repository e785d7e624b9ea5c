/*
 * history.h — the History service: a room's timeline page by page
 * (parley.v1.History/GetHistory) for its members. Reads the tables the
 * messaging service writes (see timeline.h), through cfg->env: shared with
 * messaging in one process, or opened read-only by a daemon that runs
 * history alone. Serves on cfg->history_listen.
 *
 * Behaviour where the contract leaves room:
 *   - Set before_seq or after_seq, not both (INVALID_ARGUMENT). Both 0: the
 *     latest events, unless direction is FORWARD: then the first ones (from
 *     seq 1). before_seq past the head counts from the head. BACKWARD with
 *     after_seq, or FORWARD with before_seq, is INVALID_ARGUMENT, as is a
 *     direction the contract does not name.
 *   - Edited messages read with their latest text and edited_at_ms, deleted
 *     ones with empty text and redacted set: the writer keeps the original
 *     record up to date (timeline.h), so a page costs no more reads.
 *   - limit 0 means 50; above 500 is INVALID_ARGUMENT.
 *   - Only members read (IsMember with the caller's token, asked on every
 *     call): PERMISSION_DENIED, or NOT_FOUND for a room that does not exist.
 *   - A read-only store whose tables the writer has not created yet is an
 *     empty timeline (head_seq 0); the tables are looked for again on every
 *     call until they appear.
 */
#ifndef PARLEY_HISTORY_H
#define PARLEY_HISTORY_H

#include "svc.h"

typedef struct history_service history_service;

int history_service_start(const parley_config *cfg, history_service **out, rpc_status *st);

/* Stops taking calls and answers those in flight. */
void history_service_shutdown(history_service *h);

/* Frees everything; call after history_service_shutdown. */
void history_service_stop(history_service *h);

#endif

/*
 * messaging.h — the Messaging service: durable, group-committed, idempotent
 * Send into gap-free room sequences; sessions with a worker thread each that
 * long-poll live events; the PUB/SUB backbone that carries every new event
 * to session workers (inproc) and to other subscribers (cfg->events_listen).
 * Serves parley.v1.Messaging on cfg->messaging_listen; membership is asked
 * of the rooms service, whose membership log it copies into the timelines.
 */
#ifndef PARLEY_MESSAGING_H
#define PARLEY_MESSAGING_H

#include "svc.h"

typedef struct messaging_service messaging_service;

/* Starts the service on cfg->messaging_listen and cfg->events_listen with
 * its tables in cfg->env (which must be writable). */
int messaging_service_start(const parley_config *cfg, messaging_service **out, rpc_status *st);

/* Stops taking calls, answers every call in flight (waiting Polls empty,
 * queued Sends after their commit) and ends every session. */
void messaging_service_shutdown(messaging_service *m);

/* Frees everything; call after messaging_service_shutdown. */
void messaging_service_stop(messaging_service *m);

#endif

/*
 * mx_util.h — what the messaging and history tests share: a parleyd with
 * every service, users, rooms, and one-line wrappers over the calls, each
 * returning the status code and filling st.
 *
 * The clients are thread-safe; TH_CHECK exits the whole test on failure.
 */
#ifndef PARLEY_TEST_MX_UTIL_H
#define PARLEY_TEST_MX_UTIL_H

#include <stdint.h>

#include "harness.h"
#include "parley/v1/events.pb-c.h"
#include "parley/v1/history.pb-c.h"
#include "parley/v1/messaging.pb-c.h"

typedef struct mx_user {
	char name[40];
	char token[80];
} mx_user;

extern th_daemon mx_d;
extern rpc_client *mx_auth, *mx_rooms, *mx_msg, *mx_hist;
/* Timeout of every call (default 20 s). */
extern uint32_t mx_timeout_ms;

/* Starts parleyd (all services) with extra arguments (NULL-terminated list
 * or NULL) and opens the clients. */
void mx_start(const char *const *extra);
/* Closes the clients, stops parleyd (it must exit 0) and removes its data. */
void mx_stop(void);

/* Registers and logs in a user named prefix + a unique suffix. */
void mx_user_new(mx_user *u, const char *prefix);
/* The same for n users at once (password hashing dominates; the auth
 * service runs one hash per core). */
void mx_users_new(mx_user *u, int n, const char *prefix);

/* Any call as user u (NULL = no token); *resp (if resp) is freed by the
 * caller with protobuf_c_message_free_unpacked. */
rpc_code mx_call(rpc_client *c, const ProtobufCServiceDescriptor *svc, const char *method,
		 const mx_user *u, const ProtobufCMessage *req, ProtobufCMessage **resp,
		 rpc_status *st);
/* The same with a raw token (NULL = none), for tokens no mx_user holds. */
rpc_code mx_call_token(rpc_client *c, const ProtobufCServiceDescriptor *svc, const char *method,
		       const char *token, const ProtobufCMessage *req, ProtobufCMessage **resp,
		       rpc_status *st);

/* Checks that a call gave want and, when want is an error and msg is not
 * NULL, that its message holds msg; what names the step in the failure. */
void mx_expect(rpc_code got, rpc_code want, const rpc_status *st, const char *msg,
	       const char *what);

rpc_code mx_create_room(const mx_user *u, const char *room, rpc_status *st);
rpc_code mx_join(const mx_user *u, const char *room, rpc_status *st);
rpc_code mx_leave(const mx_user *u, const char *room, rpc_status *st);

rpc_code mx_send(const mx_user *u, const char *room, const char *text, const char *cmid,
		 uint64_t *seq, uint64_t *ts, rpc_status *st);

typedef struct mx_batch_msg {
	const char *room, *text, *cmid; /* cmid NULL: none */
} mx_batch_msg;

/* SendBatch of n messages as u (NULL: no token); seqs[i] (if seqs) and *ts
 * (if ts; the test fails unless all messages share it) filled on success. */
rpc_code mx_send_batch(const mx_user *u, const mx_batch_msg *m, size_t n, uint64_t *seqs, uint64_t *ts,
		       rpc_status *st);

/* Opens a session over n rooms, since[i] each (NULL = all 0); writes the
 * session id (at least 65 bytes) and, if heads is given, each head. */
rpc_code mx_open(const mx_user *u, size_t n, const char *const *rooms, const uint64_t *since,
		 char *sid, uint64_t *heads, rpc_status *st);
/* *out is freed by the caller with protobuf_c_message_free_unpacked. */
rpc_code mx_poll(const mx_user *u, const char *sid, uint32_t wait_ms, uint32_t max,
		 Parley__V1__PollResponse **out, rpc_status *st);
/* The same, telling the session the client has room up to seq acked. */
rpc_code mx_poll_acked(const mx_user *u, const char *sid, uint32_t wait_ms, const char *room,
		       uint64_t acked, Parley__V1__PollResponse **out, rpc_status *st);
rpc_code mx_close(const mx_user *u, const char *sid, rpc_status *st);

/* *out is freed by the caller with protobuf_c_message_free_unpacked. */
rpc_code mx_history(const mx_user *u, const char *room, uint64_t before, uint64_t after,
		    uint32_t limit, Parley__V1__GetHistoryResponse **out, rpc_status *st);

/* Polls GetHistory until the room holds a membership event of kind for
 * user (bounded; fails the test if it never comes). Returns its seq. */
uint64_t mx_wait_membership(const mx_user *reader, const char *room, const char *user,
			    Parley__V1__MembershipChange__Kind kind);

/* The room's whole timeline through GetHistory pages; *n events, caller
 * frees each with parley__v1__event__free_unpacked and the array. */
Parley__V1__Event **mx_timeline(const mx_user *u, const char *room, size_t *n);

/* VmRSS of pid in KiB (0 if unknown). */
long mx_rss_kib(pid_t pid);

#endif

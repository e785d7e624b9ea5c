/*
 * tsan.h — tells ThreadSanitizer about hand-offs it cannot see.
 *
 * nng is not built with -fsanitize=thread, and .ci/tsan.supp makes TSan
 * ignore what it does (its own locks and atomics included). So when one of
 * our threads gives an object to nng and another of our threads gets it
 * back (a message over inproc://, a frame the PUB socket hands to our SUB
 * socket, the argument of a callback nng runs on its own thread), TSan sees
 * the second thread touch what the first wrote with nothing in between, and
 * reports a race that nng's queues prevent.
 *
 * The rule, on the object itself (the nng_msg, or the callback's arg):
 * - the thread that hands it to nng (nng_ctx_send, nng_sendmsg, starting an
 *   aio operation, nng_pipe_notify) calls rpc_tsan_release right before;
 * - the thread that gets it from nng (after nng_aio_get_msg/nng_recvmsg, at
 *   the top of a callback) calls rpc_tsan_acquire right after;
 * - a callback calls rpc_tsan_release after its last touch of arg, and
 *   whoever frees arg calls rpc_tsan_acquire once nng_aio_stop, nng_aio_wait
 *   or nng_close has returned (nng runs no callback after those).
 * That is the ordering nng guarantees and no more: two threads that touch
 * one object without passing it through nng are still reported.
 *
 * Compiled to nothing unless the build is PARLEY_TSAN. No locks.
 */
#ifndef PARLEY_RPC_TSAN_H
#define PARLEY_RPC_TSAN_H

#include <stddef.h>

#ifdef PARLEY_TSAN
/* ThreadSanitizer's annotation interface (compiler-rt, tsan_interface.h). */
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);

/* What this thread did before handing obj to nng happens before ... */
static inline void
rpc_tsan_release(const void *obj)
{
	if (obj != NULL)
		__tsan_release((void *)obj);
}

/* ... what the thread that takes obj out of nng does with it after this. */
static inline void
rpc_tsan_acquire(const void *obj)
{
	if (obj != NULL)
		__tsan_acquire((void *)obj);
}
#else
static inline void
rpc_tsan_release(const void *obj)
{
	(void)obj;
}

static inline void
rpc_tsan_acquire(const void *obj)
{
	(void)obj;
}
#endif

#endif /* PARLEY_RPC_TSAN_H */

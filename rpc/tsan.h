/*
 * tsan.h — tells ThreadSanitizer about hand-offs it cannot see.
 *
 * nng is not built with -fsanitize=thread, and .ci/tsan.supp makes TSan
 * ignore what it does (its own locks and atomics included): so when one of
 * our threads gives an object to nng and another of our threads gets it
 * back out (a message over inproc://, a frame a PUB socket hands to our
 * SUB socket), TSan sees the second thread read what the first wrote with
 * nothing in between, and reports a race that nng's queue prevents.
 *
 * The rule: the thread that hands an object to nng calls rpc_tsan_release
 * on it right before (while it still owns it), and the thread that takes it
 * out calls rpc_tsan_acquire on it right after. That is exactly the
 * ordering nng guarantees, and no more: two threads that touch one message
 * without passing it through nng are still reported.
 *
 * Compiled to nothing unless the build is PARLEY_TSAN. No locks.
 */
#ifndef PARLEY_RPC_TSAN_H
#define PARLEY_RPC_TSAN_H

#ifdef PARLEY_TSAN
/* ThreadSanitizer's annotation interface (compiler-rt, tsan_interface.h). */
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);

/* Before obj goes to nng: what this thread did to it happens before ... */
static inline void
rpc_tsan_release(const void *obj)
{
	if (obj != 0)
		__tsan_release((void *)obj);
}

/* ... what the thread that takes obj out of nng does with it after this. */
static inline void
rpc_tsan_acquire(const void *obj)
{
	if (obj != 0)
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

/*
 * sig.h - process signals for daemons.
 *
 * ut_sig_block() must run in main() before any thread starts so that every
 * thread inherits the blocked mask; the main thread then sits in
 * ut_sig_wait() and is the only one that ever sees SIGTERM/SIGINT/SIGHUP.
 * SIGPIPE is ignored process-wide (peers closing sockets must not kill us).
 */
#ifndef UT_SIG_H
#define UT_SIG_H

enum ut_sig { UT_SIG_STOP = 1, UT_SIG_RELOAD = 2 };

int ut_sig_block(void);
/* Blocks until SIGTERM/SIGINT (returns UT_SIG_STOP) or SIGHUP (UT_SIG_RELOAD). */
enum ut_sig ut_sig_wait(void);

#endif

#include "util/sig.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>

static sigset_t g_set;

int ut_sig_block(void)
{
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&g_set);
    sigaddset(&g_set, SIGTERM);
    sigaddset(&g_set, SIGINT);
    sigaddset(&g_set, SIGHUP);
    return -pthread_sigmask(SIG_BLOCK, &g_set, NULL);
}

enum ut_sig ut_sig_wait(void)
{
    for (;;) {
        int sig = 0;
        if (sigwait(&g_set, &sig) != 0)
            continue;
        if (sig == SIGHUP)
            return UT_SIG_RELOAD;
        return UT_SIG_STOP;
    }
}

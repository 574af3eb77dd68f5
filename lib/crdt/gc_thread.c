/*
 * gc_thread.c - periodic GC for a replica without a gossip driver
 * (single-node daemons): one thread running crdt_gc_run every
 * crdt_gc_interval_ms. With gossip, the driver's loop runs GC instead (and
 * counts it in the gossip status).
 */
#include "crdt/crdt_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

struct crdt_gc_thread {
    struct crdt_replica *r;
    char module[32];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

static void *gc_loop(void *arg)
{
    struct crdt_gc_thread *t = arg;
    uint64_t every = crdt_gc_interval_ms(t->r);

    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        struct ut_err err = {{0}};
        struct timespec ts;
        uint64_t purged = 0;
        int rc;

        pthread_mutex_unlock(&t->mu);
        rc = crdt_gc_run(t->r, &purged, &err);
        if (rc < 0)
            ut_log(UT_LOG_ERROR, t->module, "gc failed", UT_LF_S("error", err.msg));
        else
            ut_log(purged > 0 ? UT_LOG_INFO : UT_LOG_DEBUG, t->module, "gc",
                   UT_LF_I("purged", (long long)purged));
        pthread_mutex_lock(&t->mu);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(every / 1000);
        ts.tv_nsec += (long)(every % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!t->stop && pthread_cond_timedwait(&t->cv, &t->mu, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

int crdt_gc_autorun(struct crdt_replica *r, const char *log_module, struct ut_err *err)
{
    struct crdt_gc_thread *t;
    pthread_condattr_t ca;
    int rc;

    if (r == NULL) {
        ut_err_set(err, "crdt_gc_autorun: replica is NULL");
        return -EINVAL;
    }
    if (r->gc_thread != NULL) {
        ut_err_set(err, "crdt_gc_autorun: the GC thread is already running");
        return -EALREADY;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        ut_err_set(err, "crdt_gc_autorun: out of memory");
        return -ENOMEM;
    }
    t->r = r;
    snprintf(t->module, sizeof(t->module), "%s", log_module ? log_module : "crdt");
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    rc = pthread_create(&t->thread, NULL, gc_loop, t);
    if (rc != 0) {
        ut_err_set(err, "crdt_gc_autorun: cannot start the GC thread: %s", strerror(rc));
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
        free(t);
        return -rc;
    }
    r->gc_thread = t;
    return 0;
}

void crdt_gc_thread_stop_(struct crdt_replica *r)
{
    struct crdt_gc_thread *t = r->gc_thread;

    if (t == NULL)
        return;
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
    r->gc_thread = NULL;
}

// Allocation counter for `make bench` (scripts/bench.sh): an LD_PRELOAD library that counts every
// call into the allocator (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) and the
// bytes asked for, and writes "ALLOCATIONS BYTES FREES" to $MALLOC_COUNT_FILE every 50 ms. The bench
// reads it before and after a wrk run and divides by wrk's request count. Counting costs two relaxed
// atomic increments per call, so the counted instance is a separate one, never the timed one.
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static atomic_ulong allocations, bytes, frees;

static inline void counted(size_t size) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&bytes, size, memory_order_relaxed);
}

void *malloc(size_t size) {
    counted(size);
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    counted(count * size);
    return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
    counted(size);
    return __libc_realloc(pointer, size);
}

void free(void *pointer) {
    if (pointer) atomic_fetch_add_explicit(&frees, 1, memory_order_relaxed);
    __libc_free(pointer);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    counted(size);
    void *pointer = __libc_memalign(alignment, size);
    if (!pointer) return 12;  // ENOMEM
    *out = pointer;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
    counted(size);
    return __libc_memalign(alignment, size);
}

void *memalign(size_t alignment, size_t size) {
    counted(size);
    return __libc_memalign(alignment, size);
}

static void *report(void *argument) {
    const char *path = argument;
    char line[96], temporary[4096];
    // Written aside and renamed over the file, so a reader never sees it empty or half written.
    snprintf(temporary, sizeof temporary, "%s.tmp", path);
    for (;;) {
        int length = snprintf(line, sizeof line, "%lu %lu %lu\n", atomic_load(&allocations), atomic_load(&bytes), atomic_load(&frees));
        int descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (descriptor >= 0) {
            if (write(descriptor, line, (size_t)length) < 0) {}
            close(descriptor);
            rename(temporary, path);
        }
        usleep(50000);
    }
    return NULL;
}

__attribute__((constructor)) static void start(void) {
    const char *path = getenv("MALLOC_COUNT_FILE");
    if (!path || !*path) return;
    pthread_t thread;
    if (pthread_create(&thread, NULL, report, (void *)path) == 0) pthread_detach(thread);
}

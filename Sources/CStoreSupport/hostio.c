#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/uio.h>
#include "hostio.h"

int snap_punch_hole(int fd, int64_t off, int64_t len) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
}

int snap_preallocate(int fd, int64_t off, int64_t len) {
    return fallocate(fd, 0, (off_t)off, (off_t)len);
}

int snap_drop_cache(int fd, int64_t off, int64_t len) {
    return posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
}

int snap_open_direct_dsync(const char *path) {
    return open(path, O_RDWR | O_CLOEXEC | O_DIRECT | O_DSYNC);
}

ssize_t snap_pread_nowait(int fd, void *buf, size_t len, int64_t off) {
    struct iovec v = { .iov_base = buf, .iov_len = len };
    return preadv2(fd, &v, 1, (off_t)off, RWF_NOWAIT);
}

int snap_prefetch(int fd, int64_t off, int64_t len) {
    return posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_WILLNEED);
}

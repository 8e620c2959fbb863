#ifndef SNAPFS_HOSTIO_H
#define SNAPFS_HOSTIO_H
#include <stdint.h>
#include <sys/types.h>

/// fallocate(fd, FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE, off, len); Glibc's Swift
/// module does not export fallocate. Returns 0 or -1 with errno set.
int snap_punch_hole(int fd, int64_t off, int64_t len);

/// fallocate(fd, 0, off, len): allocates host blocks (unwritten extents), growing the
/// file's size to off + len if it was smaller. Returns 0 or -1 with errno set.
int snap_preallocate(int fd, int64_t off, int64_t len);

/// posix_fadvise(fd, off, len, POSIX_FADV_DONTNEED): drops the range's clean pages
/// from the page cache. Returns 0 or an errno value.
int snap_drop_cache(int fd, int64_t off, int64_t len);

/// preadv2(fd, {buf, len}, off, RWF_NOWAIT): reads only what the page cache holds;
/// -1 with errno EAGAIN where the read would wait for the device.
ssize_t snap_pread_nowait(int fd, void *buf, size_t len, int64_t off);

/// posix_fadvise(fd, off, len, POSIX_FADV_WILLNEED): starts reading the range into the
/// page cache without waiting for it. Returns 0 or an errno value.
int snap_prefetch(int fd, int64_t off, int64_t len);

/// open(path, O_RDWR|O_CLOEXEC|O_DIRECT|O_DSYNC): O_DIRECT needs _GNU_SOURCE, which
/// the Swift Glibc module does not define. Returns the fd or -1 with errno set.
int snap_open_direct_dsync(const char *path);

#endif

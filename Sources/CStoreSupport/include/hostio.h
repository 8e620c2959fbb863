#ifndef SNAPFS_HOSTIO_H
#define SNAPFS_HOSTIO_H
#include <stdint.h>

/// fallocate(fd, FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE, off, len); Glibc's Swift
/// module does not export fallocate. Returns 0 or -1 with errno set.
int snap_punch_hole(int fd, int64_t off, int64_t len);

#endif

#define _GNU_SOURCE
#include <fcntl.h>
#include "hostio.h"

int snap_punch_hole(int fd, int64_t off, int64_t len) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
}

int snap_open_direct_dsync(const char *path) {
    return open(path, O_RDWR | O_CLOEXEC | O_DIRECT | O_DSYNC);
}

int snap_start_writeback(int fd, int64_t off, int64_t len) {
    return sync_file_range(fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
}

int snap_wait_writeback(int fd, int64_t off, int64_t len) {
    return sync_file_range(fd, (off_t)off, (off_t)len,
                           SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
}

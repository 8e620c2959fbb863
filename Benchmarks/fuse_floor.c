// fuse_floor: the least a FUSE daemon can do per request, for Scripts/bench.
//
// Serves one file, MNT/image, with snapfs's connection settings (libfuse low-level API,
// multithreaded loop, 1 MiB max_write, no writeback cache, async direct I/O):
//
//   fuse_floor --backing FILE MNT   passes every request through to FILE, opened
//                                   O_DIRECT: a write is one pwrite, an fsync one
//                                   fdatasync, a read one pread. The device work is
//                                   exactly the limit's (the plain file's fio jobs); what
//                                   it adds is FUSE. No daemon that keeps the data
//                                   durable on this machine can do less.
//   fuse_floor --discard SIZE MNT   answers writes at once and drops them, reads with
//                                   zeros: the ceiling of any FUSE daemon's throughput.
//
// Not part of snapfs; built by Scripts/bench with the C compiler of the Swift toolchain.
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <fuse_lowlevel.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int backing = -1;      // O_DIRECT descriptor of FILE (passthrough mode)
static off_t size;
static const size_t max_io = 1 << 20;

// O_DIRECT needs aligned memory; the request's bytes sit behind its header.
static char *io_buffer(void) {
    static __thread char *buf;
    if (buf) return buf;
    if (posix_memalign((void **)&buf, 4096, max_io) != 0) return buf = NULL;
    memset(buf, 0, max_io);   // the zeros the discard mode reads
    return buf;
}

static void attrs(fuse_ino_t ino, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    if (ino == FUSE_ROOT_ID) { st->st_mode = S_IFDIR | 0755; st->st_nlink = 2; }
    else { st->st_mode = S_IFREG | 0644; st->st_nlink = 1; st->st_size = size; }
}

static void floor_init(void *u, struct fuse_conn_info *c) {
    (void)u;
    c->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    if (c->capable & FUSE_CAP_ASYNC_DIO) c->want |= FUSE_CAP_ASYNC_DIO;
    c->max_write = max_io;
    c->max_background = 64;
    c->congestion_threshold = 48;
}

static void floor_lookup(fuse_req_t r, fuse_ino_t parent, const char *name) {
    if (parent != FUSE_ROOT_ID || strcmp(name, "image") != 0) { fuse_reply_err(r, ENOENT); return; }
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.ino = 2;
    attrs(2, &e.attr);
    fuse_reply_entry(r, &e);
}

static void floor_getattr(fuse_req_t r, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)fi;
    struct stat st;
    attrs(ino, &st);
    fuse_reply_attr(r, &st, 0);
}

static void floor_open(fuse_req_t r, fuse_ino_t ino, struct fuse_file_info *fi) {
    if (ino != 2) { fuse_reply_err(r, EISDIR); return; }
    fuse_reply_open(r, fi);
}

static void floor_read(fuse_req_t r, fuse_ino_t ino, size_t n, off_t off, struct fuse_file_info *fi) {
    (void)ino; (void)fi;
    char *buf = io_buffer();
    if (!buf || n > max_io) { fuse_reply_err(r, ENOMEM); return; }
    if (off >= size) { fuse_reply_buf(r, NULL, 0); return; }
    if ((off_t)n > size - off) n = (size_t)(size - off);
    if (backing < 0) { fuse_reply_buf(r, buf, n); return; }
    ssize_t got = pread(backing, buf, n, off);
    if (got < 0) fuse_reply_err(r, errno); else fuse_reply_buf(r, buf, (size_t)got);
}

static void floor_write(fuse_req_t r, fuse_ino_t ino, const char *data, size_t n, off_t off, struct fuse_file_info *fi) {
    (void)ino; (void)fi;
    if (backing < 0) { fuse_reply_write(r, n); return; }
    char *buf = io_buffer();
    if (!buf || n > max_io) { fuse_reply_err(r, ENOMEM); return; }
    if (n % 4096 != 0 || off % 4096 != 0) { fuse_reply_err(r, EINVAL); return; }   // O_DIRECT only
    memcpy(buf, data, n);
    ssize_t put = pwrite(backing, buf, n, off);
    if (put < 0) fuse_reply_err(r, errno); else fuse_reply_write(r, (size_t)put);
}

static void floor_fsync(fuse_req_t r, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
    (void)ino; (void)datasync; (void)fi;
    fuse_reply_err(r, backing >= 0 && fdatasync(backing) != 0 ? errno : 0);
}

static const struct fuse_lowlevel_ops ops = {
    .init = floor_init, .lookup = floor_lookup, .getattr = floor_getattr, .open = floor_open,
    .read = floor_read, .write = floor_write, .fsync = floor_fsync,
};

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "--backing") != 0 && strcmp(argv[1], "--discard") != 0)) {
        fprintf(stderr, "usage: fuse_floor --backing FILE MNT | --discard SIZE MNT\n");
        return 2;
    }
    if (strcmp(argv[1], "--backing") == 0) {
        backing = open(argv[2], O_RDWR | O_DIRECT);
        if (backing < 0) { fprintf(stderr, "fuse_floor: %s: %s\n", argv[2], strerror(errno)); return 1; }
        size = lseek(backing, 0, SEEK_END);
    } else {
        size = strtoll(argv[2], NULL, 10);
    }
    char *fargs[] = {argv[0], "-o", "fsname=fuse_floor"};
    struct fuse_args args = FUSE_ARGS_INIT(3, fargs);
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (!se || fuse_session_mount(se, argv[3]) != 0) return 1;
    fuse_set_signal_handlers(se);
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads = (unsigned)(cpus < 1 ? 2 : cpus > 8 ? 16 : 2 * cpus);   // snapfs's default
    fuse_loop_cfg_set_max_threads(cfg, threads);
    fuse_loop_cfg_set_idle_threads(cfg, threads);
    int rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    fuse_remove_signal_handlers(se);
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    return rc < 0 ? 1 : 0;
}

#ifndef SNAPFS_CFUSE3_SHIM_H
#define SNAPFS_CFUSE3_SHIM_H

// The libfuse 3.12+ API: the multithreaded loop takes a fuse_loop_config built with
// fuse_loop_cfg_create()/_set_max_threads(). (3.14 is what Debian 12 ships.)
// _FILE_OFFSET_BITS is deliberately NOT defined here: on x86_64 off_t is already 64-bit,
// and defining it makes this module's statvfs/flock clash with Glibc's.
#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <linux/falloc.h>
#include <linux/magic.h>

// Swift cannot call function-like macros; these wrap the ones snapfs needs.

/// FUSE_ARGS_INIT(0, NULL): an empty argument vector fuse_opt_add_arg can grow.
static inline struct fuse_args snapfs_args_init(void) {
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    return args;
}

/// fuse_session_loop_mt is a macro that picks the versioned symbol (_312 on 3.14).
static inline int snapfs_session_loop_mt(struct fuse_session *se, struct fuse_loop_config *config) {
    return fuse_session_loop_mt(se, config);
}

/// Bitfields of fuse_file_info are not settable from Swift; these set the ones open() needs.
static inline void snapfs_fi_set_keep_cache(struct fuse_file_info *fi, int on) { fi->keep_cache = on ? 1 : 0; }
static inline void snapfs_fi_set_direct_io(struct fuse_file_info *fi, int on) { fi->direct_io = on ? 1 : 0; }
static inline void snapfs_fi_set_noflush(struct fuse_file_info *fi, int on) { fi->noflush = on ? 1 : 0; }
static inline void snapfs_fi_set_cache_readdir(struct fuse_file_info *fi, int on) { fi->cache_readdir = on ? 1 : 0; }

/// The bdi name of a mount's device, "MAJOR:MINOR", as sysfs spells it (major/minor are macros).
static inline unsigned snapfs_dev_major(dev_t d) { return major(d); }
static inline unsigned snapfs_dev_minor(dev_t d) { return minor(d); }

/// 1 if `path` is on a FUSE filesystem, 0 if not, -1 with errno set (statfs's f_type).
static inline int snapfs_is_fuse(const char *path) {
    struct statfs s;
    if (statfs(path, &s) != 0) return -1;
    return s.f_type == FUSE_SUPER_MAGIC ? 1 : 0;
}

#endif

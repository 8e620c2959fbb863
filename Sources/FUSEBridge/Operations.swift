import CFuse3
import Glibc
import SnapFS

// The fuse_lowlevel_ops table, built in one place from non-capturing closures. Each closure
// finds the bridge through the request's userdata and ends in exactly one fuse_reply_*.
// Operations left nil (flush, forget, xattrs, locks, ...) get ENOSYS from libfuse, which the
// kernel remembers: no flush round trip per close(), and no getxattr("security.capability")
// round trip per write.

extension FuseBridge {
    static func operations() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            if let conn { FuseBridge.negotiate(&conn.pointee) }
            if let userdata { Unmanaged<FuseBridge>.fromOpaque(userdata).takeUnretainedValue().initialized() }
        }

        // MARK: names and attributes
        ops.lookup = { req, parent, name in
            let fs = FuseBridge.bridge(req).fs
            do throws(FSError) {
                var e = fuse_entry_param(try fs.lookup(as: Caller(req), parent: parent, name: String(cString: name!)))
                fuse_reply_entry(req, &e)
            } catch { fuse_reply_err(req, error.errno) }
        }
        ops.getattr = { req, ino, _ in
            let fs = FuseBridge.bridge(req).fs
            do throws(FSError) {
                let e = try fs.getattr(ino)
                var st = stat(e.attributes)
                fuse_reply_attr(req, &st, e.attributeTimeout)
            } catch { fuse_reply_err(req, error.errno) }
        }
        ops.setattr = { req, ino, attr, toSet, _ in
            let fs = FuseBridge.bridge(req).fs
            do throws(FSError) {
                let e = try fs.setattr(as: Caller(req), ino, AttributeChanges(attr!.pointee, toSet: toSet))
                var st = stat(e.attributes)
                fuse_reply_attr(req, &st, e.attributeTimeout)
            } catch { fuse_reply_err(req, error.errno) }
        }
        ops.access = { req, ino, mask in
            let fs = FuseBridge.bridge(req).fs
            do throws(FSError) {
                try fs.access(as: Caller(req), ino, mask: mask)
                fuse_reply_err(req, 0)
            } catch { fuse_reply_err(req, error.errno) }
        }

        // MARK: namespace: only mkdir/rmdir do anything (SPEC §1)
        ops.mkdir = { req, parent, name, _ in
            let fs = FuseBridge.bridge(req).fs
            do throws(FSError) {
                var e = fuse_entry_param(try fs.mkdir(as: Caller(req), parent: parent, name: String(cString: name!)))
                fuse_reply_entry(req, &e)
            } catch { fuse_reply_err(req, error.errno) }
        }
        ops.rmdir = { req, parent, name in
            let fs = FuseBridge.bridge(req).fs
            do throws(FSError) {
                try fs.rmdir(as: Caller(req), parent: parent, name: String(cString: name!))
                fuse_reply_err(req, 0)
            } catch { fuse_reply_err(req, error.errno) }
        }
        ops.mknod = { req, parent, _, _, _ in
            fuse_reply_err(req, FuseBridge.bridge(req).fs.refuseNewEntry(parent: parent).errno)
        }
        ops.create = { req, parent, _, _, _ in
            fuse_reply_err(req, FuseBridge.bridge(req).fs.refuseNewEntry(parent: parent).errno)
        }
        ops.symlink = { req, _, parent, _ in
            fuse_reply_err(req, FuseBridge.bridge(req).fs.refuseNewEntry(parent: parent).errno)
        }
        ops.link = { req, _, newParent, _ in
            fuse_reply_err(req, FuseBridge.bridge(req).fs.refuseNewEntry(parent: newParent).errno)
        }
        ops.unlink = { req, parent, name in
            fuse_reply_err(req, FuseBridge.bridge(req).fs.unlink(parent: parent, name: String(cString: name!)).errno)
        }
        ops.rename = { req, parent, _, newParent, _, _ in
            fuse_reply_err(req, FuseBridge.bridge(req).fs.rename(parent: parent, newParent: newParent).errno)
        }

        // MARK: folders
        ops.opendir = { req, ino, fi in
            let fs = FuseBridge.bridge(req).fs
            do throws(FSError) {
                let handle = try fs.openDirectory(as: Caller(req), ino)
                fi!.pointee.fh = handle
                // Interrupted: no RELEASEDIR will come for this handle.
                if fuse_reply_open(req, fi) != 0 { fs.releaseDirectory(handle) }
            } catch { fuse_reply_err(req, error.errno) }
        }
        ops.readdir = { req, _, size, offset, fi in
            let fs = FuseBridge.bridge(req).fs
            let entries = fs.readDirectory(fi!.pointee.fh, from: Int(offset))
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: max(size, 1))
            defer { buffer.deallocate() }
            var used = 0
            var next = Int(offset)
            for entry in entries {
                next += 1
                var st = stat(entry)
                let need = entry.name.withCString {
                    fuse_add_direntry(req, buffer + used, size - used, $0, &st, off_t(next))
                }
                if need > size - used { break }  // did not fit: the kernel asks again from here
                used += need
            }
            fuse_reply_buf(req, buffer, used)
        }
        ops.releasedir = { req, _, fi in
            FuseBridge.bridge(req).fs.releaseDirectory(fi!.pointee.fh)
            fuse_reply_err(req, 0)
        }
        ops.fsyncdir = { req, _, _, _ in
            do throws(FSError) {
                try FuseBridge.bridge(req).fs.fsync()
                fuse_reply_err(req, 0)
            } catch { fuse_reply_err(req, error.errno) }
        }

        // MARK: images
        ops.open = { req, ino, fi in
            let fs = FuseBridge.bridge(req).fs
            do throws(FSError) {
                let file = try fs.open(as: Caller(req), ino, flags: fi!.pointee.flags)
                fi!.pointee.fh = file.handle
                snapfs_fi_set_keep_cache(fi, file.keepCache ? 1 : 0)
                snapfs_fi_set_direct_io(fi, file.directIO ? 1 : 0)
                // Interrupted: no RELEASE will come, so uncount the open now.
                if fuse_reply_open(req, fi) != 0 { fs.release(file.handle) }
            } catch { fuse_reply_err(req, error.errno) }
        }
        ops.release = { req, _, fi in
            FuseBridge.bridge(req).fs.release(fi!.pointee.fh)
            fuse_reply_err(req, 0)
        }
        ops.read = { req, _, size, offset, fi in
            let b = FuseBridge.bridge(req)
            let handle = fi!.pointee.fh
            b.readBuffers.withBuffer(size: size) { buffer in
                do throws(FSError) {
                    let n = try b.fs.read(handle, offset: UInt64(offset), into: buffer)
                    fuse_reply_buf(req, buffer.baseAddress, n)
                } catch { fuse_reply_err(req, error.errno) }
            }
        }
        ops.write = { req, _, data, size, offset, fi in
            let fs = FuseBridge.bridge(req).fs
            do throws(FSError) {
                let n = try fs.write(fi!.pointee.fh, offset: UInt64(offset),
                                     data: UnsafeRawBufferPointer(start: data, count: size))
                fuse_reply_write(req, n)
            } catch { fuse_reply_err(req, error.errno) }
        }
        ops.fallocate = { req, _, mode, offset, length, fi in
            let fs = FuseBridge.bridge(req).fs
            do throws(FSError) {
                guard offset >= 0, length >= 0 else { throw FSError(EINVAL) }
                try fs.fallocate(fi!.pointee.fh, mode: mode, offset: UInt64(offset), length: UInt64(length))
                fuse_reply_err(req, 0)
            } catch { fuse_reply_err(req, error.errno) }
        }
        ops.fsync = { req, _, _, _ in
            do throws(FSError) {
                try FuseBridge.bridge(req).fs.fsync()
                fuse_reply_err(req, 0)
            } catch { fuse_reply_err(req, error.errno) }
        }
        ops.statfs = { req, _ in
            var st = statvfs(FuseBridge.bridge(req).fs.statfs())
            fuse_reply_statfs(req, &st)
        }
        return ops
    }

    /// Capabilities, each with its reason. libfuse pre-fills `want` with defaults; we set
    /// or clear every one that matters so the behaviour does not depend on those defaults.
    static func negotiate(_ conn: inout fuse_conn_info) {
        func want(_ cap: Int32, _ on: Bool) {
            let bit = UInt32(cap)
            if on && conn.capable & bit != 0 { conn.want |= bit } else { conn.want &= ~bit }
        }
        // SPEC §2: a write must reach the daemon before write() returns, or a capture could miss it.
        want(FUSE_CAP_WRITEBACK_CACHE, false)
        // Readahead and concurrent reads of one file are fine: reads never block on anything.
        want(FUSE_CAP_ASYNC_READ, true)
        // O_DIRECT/aio (losetup --direct-io, databases, fio) may split one request into
        // several concurrent ones.
        want(FUSE_CAP_ASYNC_DIO, true)
        // We are the only writer; CLI changes invalidate explicitly. Without this off, every
        // cached read of a disk image (attr timeout 0) would first cost a GETATTR.
        want(FUSE_CAP_AUTO_INVAL_DATA, false)
        // Splice measured slower than fuse_reply_buf from a per-thread buffer (GUIDE).
        want(FUSE_CAP_SPLICE_READ, false)
        want(FUSE_CAP_SPLICE_WRITE, false)
        want(FUSE_CAP_SPLICE_MOVE, false)
        // Plain readdir is enough for folders of names; readdirplus is not implemented.
        want(FUSE_CAP_READDIRPLUS, false)
        want(FUSE_CAP_READDIRPLUS_AUTO, false)
        // Folder operations are rare and quick; no need for parallel lookups in one folder.
        want(FUSE_CAP_PARALLEL_DIROPS, false)
        // Without it O_TRUNC arrives as a SETATTR(size 0), which already gives EROFS on snapshots.
        want(FUSE_CAP_ATOMIC_O_TRUNC, false)
        // One host: the kernel's local POSIX/flock locking is all a disk image needs.
        want(FUSE_CAP_POSIX_LOCKS, false)
        want(FUSE_CAP_FLOCK_LOCKS, false)
        // Not exported over NFS.
        want(FUSE_CAP_EXPORT_SUPPORT, false)
        // Images are never setuid: nothing for the daemon to kill.
        want(FUSE_CAP_HANDLE_KILLPRIV, false)

        // 1 MiB requests (libfuse raises max_pages to match); the kernel may lower it.
        conn.max_write = 1 << 20
        // Async direct I/O and readahead are "background" requests; the kernel default of 12
        // starves a multithreaded loop under losetup --direct-io / fio iodepth > 12.
        conn.max_background = 64
        conn.congestion_threshold = 48
    }
}

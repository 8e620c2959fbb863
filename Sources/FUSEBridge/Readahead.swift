import CFuse3
import Foundation
import Glibc

/// The kernel's readahead for the mount. A FUSE mount starts at the kernel default of
/// 128 KiB, and INIT can only lower it, so buffered sequential reads of an image (cp, a
/// loop device without --direct-io, qemu-img convert) reach the pool 128 KiB at a time.
/// From a cold host cache that read a snapshot at 0.8-1.2 GB/s here against 1.4-1.7 GB/s
/// at 1 MiB (BENCHMARKS.md, session 11). The setting lives in the mount's bdi in sysfs,
/// which only root may write.
enum Readahead {
    /// What snapfs asks for: one request of max_read, the largest read a request carries.
    static let wantedKiB = 1024

    /// The sysfs file of the mount's bdi: /sys/class/bdi/MAJOR:MINOR/read_ahead_kb.
    static func sysfsPath(device: dev_t) -> String {
        "/sys/class/bdi/\(snapfs_dev_major(device)):\(snapfs_dev_minor(device))/read_ahead_kb"
    }

    /// The value of a read_ahead_kb file, or nil if it cannot be read.
    static func kiB(at path: String) -> Int? {
        (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Raises the readahead of the filesystem mounted at `mountpoint` to `wantedKiB`, unless
    /// it is already at least that (an administrator's larger value stays). Call it once
    /// INIT may have been answered: the stat() waits for INIT, whose reply would otherwise
    /// lower the value again. Returns why it did not, or nil.
    @discardableResult
    static func raise(mountpoint: String) -> String? {
        var st = stat()
        guard stat(mountpoint, &st) == 0 else { return "stat \(mountpoint): \(String(cString: strerror(errno)))" }
        // Unmounted meanwhile, the path would name the filesystem below: never touch its bdi.
        guard snapfs_is_fuse(mountpoint) == 1, snapfs_dev_major(st.st_dev) == 0 else {
            return "\(mountpoint) is no longer a FUSE mount"
        }
        let path = sysfsPath(device: st.st_dev)
        guard let current = kiB(at: path) else { return "cannot read \(path)" }
        guard current < wantedKiB else { return nil }
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { return "\(path): \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        let value = "\(wantedKiB)\n"
        guard value.withCString({ write(fd, $0, strlen($0)) }) >= 0 else {
            return "\(path): \(String(cString: strerror(errno)))"
        }
        return nil
    }
}

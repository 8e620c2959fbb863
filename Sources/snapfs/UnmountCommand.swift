import ArgumentParser
import Foundation
import Glibc

struct UnmountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unmount",
        abstract: "Unmount a running snapfs; its daemon then makes everything durable and exits.")

    @Argument(help: "The mountpoint of a running snapfs.")
    var mountpoint: String

    func run() throws {
        let path = Self.absolute(mountpoint)
        guard let fsType = Self.mountedType(at: path) else { throw fail("\(mountpoint) is not mounted") }
        guard fsType == "fuse.snapfs" else { throw fail("\(mountpoint) is not a snapfs mount (it is \(fsType))") }

        // A plain unmount makes the daemon's loop return. Busy (a shell cd'd into it, an open
        // image) may clear in a moment; after that, detach so it goes once the last user leaves.
        let deadline = Date(timeIntervalSinceNow: 2)
        while true {
            if umount2(path, 0) == 0 { return }
            let e = errno
            if e == EBUSY && Date() < deadline { usleep(100_000); continue }
            if e == EBUSY, umount2(path, Int32(MNT_DETACH)) == 0 { return }
            if e == EPERM { return try fusermount(path) }  // not root: the setuid helper may do it
            throw fail("cannot unmount \(mountpoint): \(String(cString: strerror(e)))")
        }
    }

    private func fusermount(_ path: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/fusermount3")
        p.arguments = ["-u", path]
        do { try p.run() } catch { throw fail("cannot unmount \(mountpoint): permission denied") }
        p.waitUntilExit()
        if p.terminationStatus != 0 { throw fail("cannot unmount \(mountpoint): fusermount3 failed") }
    }

    /// An absolute path without resolving the last component: resolving it would stat the
    /// mount itself, which hangs or fails if the daemon is stuck or gone.
    static func absolute(_ path: String) -> String {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let parent = url.deletingLastPathComponent().path
        guard let real = realpath(parent, nil) else { return url.path }
        defer { free(real) }
        let base = String(cString: real)
        return (base == "/" ? "" : base) + "/" + url.lastPathComponent
    }

    /// The filesystem type of the mount whose mount point is exactly `path` (the topmost one),
    /// from /proc/self/mountinfo.
    static func mountedType(at path: String) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        var found: String?
        for line in text.split(separator: "\n") {
            // id parent dev root MOUNTPOINT options [optional...] - FSTYPE source superoptions
            let fields = line.split(separator: " ")
            guard fields.count > 4, let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count else { continue }
            if unescape(fields[4]) == path { found = String(fields[dash + 1]) }
        }
        return found
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        var i = field.utf8.startIndex
        let u = field.utf8
        while i < u.endIndex {
            if u[i] == UInt8(ascii: "\\"), u.distance(from: i, to: u.endIndex) >= 4,
               let v = UInt8(String(decoding: u[u.index(after: i)..<u.index(i, offsetBy: 4)], as: UTF8.self), radix: 8) {
                bytes.append(v)
                i = u.index(i, offsetBy: 4)
            } else {
                bytes.append(u[i])
                i = u.index(after: i)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

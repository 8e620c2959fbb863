import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A loop device over a file (`losetup --find --show`). `detach()` is idempotent; call it in
/// teardown before unmounting the filesystem that holds the file.
public final class LoopDevice: @unchecked Sendable {
    public let path: String
    public let file: String
    private var attached = true

    public init(file: String, directIO: Bool = false, readOnly: Bool = false) throws {
        var args = ["losetup", "--find", "--show"]
        if directIO { args.append("--direct-io=on") }
        if readOnly { args.append("-r") }
        args.append(file)
        let r = try Shell.check(args, timeout: 60)
        path = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        self.file = file
        guard path.hasPrefix("/dev/loop") else { throw ShellError(result: r) }
    }

    /// Detaches the device (retrying while the kernel still holds it briefly).
    public func detach() {
        guard attached else { return }
        for _ in 0..<50 {
            if Shell.run(["losetup", "-d", path], timeout: 30).ok { break }
            usleep(100_000)
        }
        attached = false
    }

    deinit { detach() }
}

/// A filesystem mounted on a fresh directory under /tmp; `unmount()` is idempotent and falls
/// back to a lazy unmount.
public final class FilesystemMount: @unchecked Sendable {
    public let device: String
    public let directory: String
    private var mounted = true

    /// Mounts `device` on `directory` (created), or on a new /tmp/snapfs-fs-XXXXXX.
    public init(device: String, options: [String] = [], type: String? = nil, at directory: String? = nil) throws {
        if let directory {
            try Sys.mkdir(directory)
            self.directory = directory
        } else {
            var template = Array("/tmp/snapfs-fs-XXXXXX".utf8CString)
            guard let made = mkdtemp(&template) else { throw MountError("mkdtemp: \(errnoName(errno))") }
            self.directory = String(cString: made)
        }
        self.device = device
        var args = ["mount"]
        if let type { args += ["-t", type] }
        if !options.isEmpty { args += ["-o", options.joined(separator: ",")] }
        do { try Shell.check(args + [device, self.directory], timeout: 60) } catch {
            Glibc.rmdir(self.directory)
            throw error
        }
    }

    public func unmount() {
        guard mounted else { return }
        if !Shell.run(["umount", directory], timeout: 60).ok {
            _ = Shell.run(["umount", "-l", directory], timeout: 60)
        }
        Glibc.rmdir(directory)
        mounted = false
    }

    deinit { unmount() }
}

import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct MountError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A real `snapfs mount` daemon over a fresh pool under /tmp, for integration tests.
///
/// `init` creates the pool path and mountpoint and mounts; `teardown()` always unmounts (lazily
/// as a fallback), never leaves a daemon behind, and removes the temp folder. Call it from the
/// test's tearDown (or `addTeardownBlock`).
public final class MountedPool: @unchecked Sendable {
    public let binary: String
    public let root: String        // /tmp/snapfs-test-XXXXXX
    public let pool: String        // root/pool or root/poolfs/pool (missing before the first mount)
    public let mountpoint: String  // root/mnt
    public let logPath: String     // root/daemon.log: stdout+stderr of every daemon run
    public private(set) var process: Process? {
        didSet { pidLock.withLock { currentPid = process?.processIdentifier } }
    }
    private let pidLock = NSLock()
    private var currentPid: Int32?
    /// The running daemon's pid; safe to read from any thread (e.g. a watchdog).
    public var daemonPid: Int32? { pidLock.withLock { currentPid } }
    public var disks: String { mountpoint + "/disks" }
    public var snapshots: String { mountpoint + "/snapshots" }
    public func image(disk: String) -> String { "\(disks)/\(disk)/image" }
    public func image(snapshot: String) -> String { "\(snapshots)/\(snapshot)/image" }

    /// Extra arguments for `snapfs mount` (before the pool and mountpoint).
    public let mountOptions: [String]
    public var mountTimeout: Double = 20
    public var unmountTimeout: Double = 30

    /// The small host filesystem under the pool, when `poolFilesystemBytes` was given.
    private var poolLoop: LoopDevice?
    private var poolFS: FilesystemMount?
    /// The tmpfs that holds the pool filesystem's image, when `backingBytes` was given.
    private var backing: FilesystemMount?

    /// - Parameter poolFilesystemBytes: put the pool on its own ext4 of this size (a loop device
    ///   over a sparse file), so tests can fill it up; nil puts the pool on /tmp.
    /// - Parameter backingBytes: keep that sparse file on a tmpfs of this size, smaller than
    ///   the ext4: once it is full the device fails writes, so the pool's flushes fail with
    ///   real EIO from the kernel (a failing disk).
    public init(mountOptions: [String] = [], poolFilesystemBytes: Int? = nil, backingBytes: Int? = nil,
                mount: Bool = true) throws {
        try MountedPool.requireFuse()
        binary = try MountedPool.findBinary()
        var template = Array("/tmp/snapfs-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw MountError("mkdtemp: \(errnoName(errno))") }
        root = String(cString: made)
        mountpoint = root + "/mnt"
        logPath = root + "/daemon.log"
        self.mountOptions = mountOptions
        pool = root + (poolFilesystemBytes == nil ? "/pool" : "/poolfs/pool")
        do {
            try Sys.mkdir(mountpoint)
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
            if let bytes = poolFilesystemBytes {
                var image = root + "/poolfs.img"
                if let limit = backingBytes {
                    backing = try FilesystemMount(device: "tmpfs", options: ["size=\(limit)"], type: "tmpfs", at: root + "/backing")
                    image = root + "/backing/poolfs.img"
                }
                _ = FileManager.default.createFile(atPath: image, contents: nil)
                try Sys.truncate(image, bytes)
                let loop = try LoopDevice(file: image)
                poolLoop = loop
                try Shell.check(["mkfs.ext4", "-q", "-m", "0", loop.path], timeout: 120)
                poolFS = try FilesystemMount(device: loop.path, at: root + "/poolfs")
            }
        } catch { teardown(); throw error }
        if mount {
            do { try self.mount() } catch { teardown(); throw error }
        }
    }

    // MARK: Finding things

    /// Throws unless /dev/fuse exists: integration tests must fail, not skip, without FUSE.
    public static func requireFuse() throws {
        var st = Glibc.stat()
        guard stat("/dev/fuse", &st) == 0, (st.st_mode & S_IFMT) == S_IFCHR else {
            throw MountError("/dev/fuse is missing: load the fuse module (modprobe fuse) or run where FUSE works")
        }
    }

    /// `$SNAPFS_BIN`, else `snapfs` beside the running test binary (same build), else the newest
    /// `.build*/debug/snapfs` (or release) found walking up from this source file.
    public static func findBinary(sourceFile: String = #filePath) throws -> String {
        let fm = FileManager.default
        if let env = ProcessInfo.processInfo.environment["SNAPFS_BIN"], !env.isEmpty {
            guard fm.isExecutableFile(atPath: env) else { throw MountError("SNAPFS_BIN=\(env) is not an executable") }
            return env
        }
        var starts: [String] = []
        if let exe = try? fm.destinationOfSymbolicLink(atPath: "/proc/self/exe") { starts.append(exe) }
        if let exe = Bundle.main.executablePath { starts.append(exe) }
        // The test binary lives in .build*/<triple>/debug/; on macOS inside an .xctest bundle.
        for exe in starts {
            var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
            for _ in 0..<4 where dir.path.contains("/.build") {
                let candidate = dir.appendingPathComponent("snapfs").path
                if fm.isExecutableFile(atPath: candidate), !isDirectory(candidate) { return candidate }
                dir = dir.deletingLastPathComponent()
            }
        }
        var dir = URL(fileURLWithPath: sourceFile).deletingLastPathComponent()
        var found: [(String, Date)] = []
        while dir.path != "/" {
            for entry in (try? fm.contentsOfDirectory(atPath: dir.path)) ?? [] where entry.hasPrefix(".build") {
                for config in ["debug", "release"] {
                    let c = "\(dir.path)/\(entry)/\(config)/snapfs"
                    if fm.isExecutableFile(atPath: c), !isDirectory(c),
                       let m = try? fm.attributesOfItem(atPath: c)[.modificationDate] as? Date {
                        found.append((c, m))
                    }
                }
            }
            if !found.isEmpty { break }
            dir = dir.deletingLastPathComponent()
        }
        if let newest = found.max(by: { $0.1 < $1.1 }) { return newest.0 }
        throw MountError("the snapfs binary was not found beside \(starts) nor in .build*/debug above \(sourceFile); build it (swift build) or set SNAPFS_BIN")
    }

    private static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    /// The fstype of the mount at `path` in /proc/self/mountinfo (e.g. "fuse.snapfs"), or nil.
    public static func mountType(at path: String) -> String? {
        guard let info = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        var type: String?
        for line in info.split(separator: "\n") {
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { continue }
            let fields = halves[0].split(separator: " ")
            guard fields.count >= 5 else { continue }
            let mp = fields[4].replacingOccurrences(of: "\\040", with: " ")
            if mp == path { type = halves[1].split(separator: " ").first.map(String.init) }  // last one wins
        }
        return type
    }

    public var isMounted: Bool { MountedPool.mountType(at: mountpoint) != nil }
    public var isRunning: Bool { process?.isRunning ?? false }
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    private var logTail: String { String(log.suffix(4000)) }

    // MARK: Lifecycle

    /// Spawns `snapfs mount --pool POOL MNT` and waits until the mount appears (fstype fuse*),
    /// failing fast with the daemon's log if it exits first.
    public func mount() throws {
        if isRunning { throw MountError("already running (pid \(process!.processIdentifier))") }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        defer { try? log.close() }
        log.seekToEndOfFile()
        log.write("=== \(Date()) snapfs mount \(mountOptions.joined(separator: " ")) --pool \(pool) \(mountpoint)\n".data(using: .utf8)!)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["mount"] + mountOptions + ["--pool", pool, mountpoint]
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = log
        p.standardError = log
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(mountTimeout)
        while Date() < deadline {
            if let type = MountedPool.mountType(at: mountpoint), type.hasPrefix("fuse") { return }
            if !p.isRunning {
                p.waitUntilExit()
                process = nil
                throw MountError("snapfs mount exited with status \(p.terminationStatus) before mounting; log:\n\(logTail)")
            }
            usleep(10_000)
        }
        let pid = p.processIdentifier
        killAndReap()
        lazyUnmount()
        throw MountError("snapfs mount (pid \(pid)) did not mount \(mountpoint) within \(mountTimeout) s; log:\n\(logTail)")
    }

    /// Clean unmount: `snapfs unmount MNT` (falling back to `fusermount3 -u MNT`), then waits for
    /// the daemon to exit and requires status 0.
    public func unmount() throws {
        guard process != nil else { throw MountError("not mounted") }
        var r = Shell.run([binary, "unmount", mountpoint], timeout: unmountTimeout)
        if !r.ok {
            let first = r
            r = Shell.run(["fusermount3", "-u", mountpoint], timeout: unmountTimeout)
            if !r.ok { throw MountError("unmount failed:\n\(first)\n\(r)\nlog:\n\(logTail)") }
        }
        try waitForCleanExit()
    }

    /// Sends `sig` (SIGTERM, SIGINT) to the daemon, which must unmount and exit with status 0.
    public func stop(signal sig: Int32) throws {
        guard let pid = daemonPid else { throw MountError("not running") }
        kill(pid, sig)
        try waitForCleanExit()
    }

    private func waitForCleanExit() throws {
        guard let p = process else { throw MountError("not running") }
        let deadline = Date().addingTimeInterval(unmountTimeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning {
            killAndReap()
            lazyUnmount()
            throw MountError("daemon still running \(unmountTimeout) s after unmount; killed. log:\n\(logTail)")
        }
        p.waitUntilExit()
        process = nil
        if isMounted { lazyUnmount(); throw MountError("mount still listed after the daemon exited") }
        guard p.terminationReason == .exit, p.terminationStatus == 0 else {
            throw MountError("daemon exited with status \(p.terminationStatus) (\(p.terminationReason == .exit ? "exit" : "signal")) after unmount; log:\n\(logTail)")
        }
    }

    /// SIGKILL the daemon (a crash), reap it, and detach the dead mount (`umount -l`).
    public func kill9() throws {
        guard process != nil else { throw MountError("not running") }
        killAndReap()
        lazyUnmount()
        if isMounted { throw MountError("mount still listed after kill -9 and umount -l") }
    }

    /// Starts a new daemon on the same pool and mountpoint (after `unmount()` or `kill9()`).
    public func remount() throws {
        if isRunning { try unmount() }
        try mount()
    }

    /// The failing disk mended: the tmpfs under the pool filesystem grows to `bytes`, and
    /// the filesystem (not in use: the daemon is stopped) is checked and mounted again.
    public func mendBacking(growingTo bytes: Int) throws {
        guard let backing, let poolLoop, let poolFS else { throw MountError("no backing tmpfs") }
        try Shell.check(["mount", "-o", "remount,size=\(bytes)", backing.directory], timeout: 60)
        poolFS.unmount()
        // e2fsck exits 1 when it fixed something: both are a usable filesystem.
        let r = Shell.run(["e2fsck", "-fy", poolLoop.path], timeout: 120)
        guard r.status == 0 || r.status == 1 else { throw MountError("e2fsck failed: \(r)") }
        self.poolFS = try FilesystemMount(device: poolLoop.path, at: root + "/poolfs")
    }

    /// Always safe: unmounts (clean, else kill -9 and lazy), never leaves a daemon, removes temp files.
    public func teardown() {
        if isRunning {
            let r = Shell.run([binary, "unmount", mountpoint], timeout: 10)
            if !r.ok { _ = Shell.run(["fusermount3", "-u", mountpoint], timeout: 10) }
            let deadline = Date().addingTimeInterval(10)
            while isRunning && Date() < deadline { usleep(10_000) }
            killAndReap()
        }
        process = nil
        if isMounted { lazyUnmount() }
        if !isMounted {
            Glibc.rmdir(mountpoint)
            try? FileManager.default.removeItem(atPath: pool)
            poolFS?.unmount()
            poolLoop?.detach()
            unlink(root + "/poolfs.img")
            backing?.unmount()
            if ProcessInfo.processInfo.environment["SNAPFS_KEEP_LOGS"] == nil {
                unlink(logPath)
                Glibc.rmdir(root)
            }
        }
    }

    private func killAndReap() {
        guard let p = process else { return }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        process = nil
    }

    private func lazyUnmount() {
        for _ in 0..<3 where isMounted {
            if !Shell.run(["umount", "-l", mountpoint], timeout: 10).ok {
                _ = Shell.run(["fusermount3", "-uz", mountpoint], timeout: 10)
            }
        }
    }

    deinit { if isRunning || isMounted { teardown() } }

    /// Starts a watchdog: if `disarm()` is not called within `seconds`, the daemon gets SIGKILL so
    /// that syscalls stuck on the mount return (ENOTCONN) and the test can fail instead of hanging.
    public func watchdog(seconds: Double) -> Watchdog {
        let w = Watchdog()
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [weak self] in
            guard w.fire(), let pid = self?.daemonPid else { return }
            kill(pid, SIGKILL)
        }
        return w
    }

    // MARK: CLI

    /// Runs `snapfs ARGS --pool POOL` (the control commands of SPEC §4).
    public func cli(_ args: [String], timeout: Double = 60) -> ShellResult {
        Shell.run([binary] + args + ["--pool", pool], timeout: timeout)
    }
}

/// See `MountedPool.watchdog(seconds:)`.
public final class Watchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var armed = true, fired = false
    /// Stops the watchdog; returns true if it had already fired (the test hung).
    @discardableResult
    public func disarm() -> Bool { lock.withLock { armed = false; return fired } }
    func fire() -> Bool { lock.withLock { if armed { fired = true }; return armed } }
}

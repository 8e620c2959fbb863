import CFuse3
import Foundation
import Glibc
import SnapFS

/// Serves a `FileSystem` through the libfuse3 low-level API. The only importer of CFuse3.
/// One instance is the userdata of the session (passed unretained: `run` keeps it alive).
public final class FuseBridge: KernelCacheInvalidator, @unchecked Sendable {
    public struct Options: Sendable {
        /// Worker threads of the multithreaded loop (parallel I/O; QD1 latency is best single-threaded).
        public var threads: Int = Options.defaultThreads
        /// Two per CPU, 2...16. Writes to one disk are serialised by the store, and more
        /// threads than that only add wakeups: on 2 CPUs, 4 threads gave ~15 % more 4 KiB
        /// QD16 write IOPS than 8 at equal read IOPS (BENCHMARKS.md).
        public static var defaultThreads: Int {
            min(16, max(2, 2 * ProcessInfo.processInfo.activeProcessorCount))
        }
        /// Run the single-threaded loop instead.
        public var singleThreaded = false
        /// libfuse's request trace (-d).
        public var debug = false
        /// Called once the mount exists, before requests are served. It must not touch the
        /// mountpoint: nothing answers until the loop runs (the kernel would wait for INIT).
        public var onMounted: (@Sendable () -> Void)?
        public init() {}
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    let fs: FileSystem
    let options: Options
    let readBuffers = ReadBuffers()
    private let sessionLock = NSLock()
    private var session: OpaquePointer?
    private var mountpoint = ""

    public init(fileSystem: FileSystem, options: Options = Options()) {
        fs = fileSystem
        self.options = options
        fileSystem.kernelCache = self
    }

    static func bridge(_ req: fuse_req_t?) -> FuseBridge {
        Unmanaged<FuseBridge>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }

    /// Mounts at `mountpoint`, serves requests on the calling thread (plus libfuse's workers)
    /// until unmounted or SIGINT/SIGTERM/SIGHUP, then unmounts. Call it from a plain thread
    /// (the main thread is best: the kernel prefers it for process signals), never a Task.
    public func run(mountpoint: String) throws {
        self.mountpoint = mountpoint
        var args = snapfs_args_init()
        defer { fuse_opt_free_args(&args) }
        // No default_permissions: the core checks every access with the caller's credentials
        // (SnapFS/Access.swift), so the snapshot file view can show guest owners and modes
        // without the kernel applying them to host users. allow_other lets other users in
        // at all (root mounts only). nosuid and nodev are libfuse's defaults for root too.
        var mountOptions = "fsname=snapfs,subtype=snapfs"
        if geteuid() == 0 { mountOptions += ",allow_other" }
        var argv = ["snapfs", "-o", mountOptions]
        if options.debug { argv.append("-d") }
        for a in argv { fuse_opt_add_arg(&args, a) }

        var ops = Self.operations()
        let userdata = Unmanaged.passUnretained(self).toOpaque()
        guard let se = fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, userdata) else {
            throw Failure(description: "cannot create a FUSE session")
        }
        setSession(se)
        defer {
            setSession(nil)  // no invalidation may touch a destroyed session
            fuse_session_destroy(se)
        }
        guard fuse_set_signal_handlers(se) == 0 else { throw Failure(description: "cannot install signal handlers") }
        defer { fuse_remove_signal_handlers(se) }
        guard fuse_session_mount(se, mountpoint) == 0 else {
            throw Failure(description: "cannot mount at \(mountpoint)")
        }
        options.onMounted?()
        // After the loop only: unmounting from another thread while it runs hangs (GUIDE).
        defer { fuse_session_unmount(se) }

        let rc: Int32
        if options.singleThreaded {
            rc = fuse_session_loop(se)
        } else {
            guard let config = fuse_loop_cfg_create() else { throw Failure(description: "out of memory") }
            defer { fuse_loop_cfg_destroy(config) }
            let n = UInt32(max(1, options.threads))
            fuse_loop_cfg_set_max_threads(config, n)
            // Keep every worker (and its read buffer) alive between bursts.
            fuse_loop_cfg_set_idle_threads(config, n)
            rc = snapfs_session_loop_mt(se, config)
        }
        // rc > 0 is the signal that ended the loop: a normal stop.
        if rc < 0 { throw Failure(description: "FUSE session failed: \(String(cString: strerror(-rc)))") }
    }

    /// INIT arrived (on a loop thread, before its reply). Settings that INIT would undo
    /// are made from another thread, which waits for the reply.
    func initialized() {
        guard geteuid() == 0 else { return }   // sysfs is root's
        let mountpoint = self.mountpoint
        Thread.detachNewThread {
            if let why = Readahead.raise(mountpoint: mountpoint) {
                FileHandle.standardError.write(Data("snapfs: readahead stays at the kernel's default: \(why)\n".utf8))
            }
        }
    }

    private func setSession(_ se: OpaquePointer?) {
        sessionLock.lock()
        session = se
        sessionLock.unlock()
    }

    // MARK: - Kernel cache invalidation (for the control path, after CLI changes)
    // Never call these from inside a request handler for the same folder: the kernel holds
    // the folder's lock during mkdir/rmdir and the notification would wait for it forever.

    /// fuse_lowlevel_notify_inval_inode(ino, 0, 0): drops attributes and all cached data.
    public func invalidate(inode: UInt64) {
        sessionLock.lock()
        defer { sessionLock.unlock() }
        guard let se = session else { return }
        // -ENOENT only means the kernel has nothing cached for it.
        _ = fuse_lowlevel_notify_inval_inode(se, inode, 0, 0)
    }

    /// fuse_lowlevel_notify_inval_entry: forgets the name, so the next access looks it up.
    public func invalidateEntry(parent: UInt64, name: String) {
        sessionLock.lock()
        defer { sessionLock.unlock() }
        guard let se = session else { return }
        _ = name.withCString { fuse_lowlevel_notify_inval_entry(se, parent, $0, strlen($0)) }
    }
}

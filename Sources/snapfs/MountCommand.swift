import ArgumentParser
import FUSEBridge
import Foundation
import Glibc
import SnapFS
import SnapStore

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Serve a pool in the foreground until unmounted or SIGINT/SIGTERM.")

    @Option(help: "The pool directory; a missing or empty one becomes a new pool.")
    var pool = SnapfsCommand.defaultPool

    @Argument(help: "Where to mount the tree (created if missing).")
    var mountpoint = SnapfsCommand.defaultMountpoint

    @Option(help: "Chunk size of a new pool: a power of two from 4K to 1M (default 16K). Ignored for an existing pool.")
    var chunkSize: String?

    @Option(help: "FUSE worker threads (parallel I/O; default: two per CPU, 2 to 16).")
    var threads: Int?

    @Flag(help: "Serve requests on one thread (lowest latency for one request at a time).")
    var singleThreaded = false

    @Flag(help: "Trace every FUSE request on stderr (libfuse -d).")
    var debug = false

    func validate() throws {
        if let chunkSize {
            let n = try SizeParser.parse(chunkSize)
            guard n >= 4096, n <= 1 << 20, n & (n - 1) == 0 else {
                throw ValidationError("chunk size must be a power of two from 4K to 1M, not '\(chunkSize)'")
            }
        }
        if let threads, !(1...1024).contains(threads) { throw ValidationError("--threads must be 1...1024") }
    }

    func run() throws {
        // Check the mountpoint before opening (maybe creating) the pool, create it after:
        // a command that fails should change as little as possible.
        let missing = try mountpointIsMissing()
        var options = PoolOptions()
        if let chunkSize { options.chunkSize = Int(try SizeParser.parse(chunkSize)) }
        let store: Pool
        do {
            store = try Pool.open(directory: pool, options: options)
        } catch {
            throw fail("\(error)")
        }
        let replay = store.recoveredFromJournal
        if replay.batches > 0 {
            let skipped = replay.skipped > 0 ? " (\(replay.skipped) for objects the commit lacks, skipped)" : ""
            FileHandle.standardError.write(Data("snapfs: recovered \(replay.records) fsync'd changes from the intent log (\(replay.batches) batches)\(skipped)\n".utf8))
        }
        if store.formatVersion == 3 {
            FileHandle.standardError.write(Data("snapfs: pool \(pool) is format 3 (all data in one file, whose growth can stall writes; owners and modes cannot be changed); unmount it and run snapfs pool upgrade to move it to format \(Pool.currentFormatVersion)\n".utf8))
        }
        if missing {
            do {
                try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
            } catch {
                try? store.close()
                throw fail("cannot create mountpoint \(mountpoint): \(error.localizedDescription)")
            }
        }

        var bridgeOptions = FuseBridge.Options()
        if let threads { bridgeOptions.threads = threads }
        bridgeOptions.singleThreaded = singleThreaded
        bridgeOptions.debug = debug
        let message = "snapfs: pool \(pool) mounted at \(mountpoint)\n"
        bridgeOptions.onMounted = {
            // Unbuffered, so a script reading our stdout through a pipe sees it now.
            FileHandle.standardOutput.write(Data(message.utf8))
        }
        let fileSystem = FileSystem(pool: store)
        let bridge = FuseBridge(fileSystem: fileSystem, options: bridgeOptions)

        // The CLI's way in (POOL/control.sock), bound before mounting so a daemon that could
        // not serve it fails without mounting; and the retention of expiring snapshots.
        let env = ProcessInfo.processInfo.environment
        let retention = Retention(fileSystem: fileSystem, clock: RetentionClock.fromEnvironment(env))
        let control: ControlServer
        do {
            control = try ControlServer(fileSystem: fileSystem, retention: retention,
                                        testHooks: env["SNAPFS_TEST_HOOKS"] == "1")
        } catch {
            try? store.close()
            throw fail("cannot create the control socket in \(pool): \(error)")
        }
        control.start()
        retention.start()

        var served: Error?
        do { try bridge.run(mountpoint: mountpoint) } catch { served = error }
        control.stop()     // no request may reach the pool once it closes
        retention.stop()
        // Everything durable before we exit (SPEC §4), even if the session failed.
        do { try store.close() } catch {
            throw fail("closing pool \(pool): \(error)")
        }
        if let served { throw fail("\(served)") }
    }

    /// Whether the mountpoint must be created; throws if it cannot be used. Runs before the
    /// mount exists, so touching the path cannot wait on our own (not yet running) loop.
    private func mountpointIsMissing() throws -> Bool {
        var st = stat()
        if stat(mountpoint, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFDIR else { throw fail("mountpoint \(mountpoint) is not a directory") }
            return false
        }
        let e = errno
        switch e {
        case ENOENT:
            return true
        case ENOTCONN:
            throw fail("\(mountpoint) is a stale FUSE mount (its daemon is gone); run: fusermount3 -u \(mountpoint)")
        default:
            throw fail("mountpoint \(mountpoint): \(String(cString: strerror(e)))")
        }
    }
}

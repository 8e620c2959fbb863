import Foundation
import Glibc
import SnapStore

/// The daemon's end of the control API: listens on `POOL/control.sock` (mode 0600) and
/// serves each connection on its own thread: one request line, one response line.
///
/// Plain threads, not Swift concurrency: handlers block (waiting for releases, commits), and
/// the FUSE loop already owns the process's threads in the same blocking style.
public final class ControlServer: @unchecked Sendable {
    public let path: String
    private let fs: FileSystem
    private let retention: Retention
    private let testHooks: Bool
    private let listenFd: Int32
    private let condition = NSCondition()
    private var stopping = false
    private var connections = 0
    private var pinFds = Set<Int32>()
    private var acceptThread: Thread?

    /// Binds the socket now, so a daemon that cannot serve the CLI fails before mounting.
    /// `testHooks` enables `debug.expire` (SNAPFS_TEST_HOOKS=1).
    public init(fileSystem: FileSystem, retention: Retention, testHooks: Bool) throws {
        fs = fileSystem
        self.retention = retention
        self.testHooks = testHooks
        path = ControlSocket.path(pool: fileSystem.pool.directory)
        listenFd = try ControlSocket.listen(at: path)
    }

    public func start() {
        let t = Thread { [self] in acceptLoop() }
        t.name = "snapfs-control"
        acceptThread = t
        t.start()
    }

    /// Stops accepting, ends pins, waits (up to 10 s) for requests in flight, removes the socket.
    public func stop() {
        condition.lock()
        stopping = true
        for fd in pinFds { shutdown(fd, Int32(SHUT_RDWR)) }
        let deadline = Date(timeIntervalSinceNow: 10)
        while connections > 0 && condition.wait(until: deadline) {}
        condition.unlock()
        unlink(path)
    }

    private var isStopping: Bool { condition.withLock { stopping } }

    private func acceptLoop() {
        defer { Glibc.close(listenFd) }
        while !isStopping {
            // poll with a timeout instead of a blocking accept: closing a socket does not wake
            // a thread blocked in accept() on Linux.
            var p = pollfd(fd: listenFd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 200) > 0 else { continue }
            let fd = accept(listenFd, nil, nil)
            guard fd >= 0 else { continue }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)   // not inherited by anything we might spawn
            let admitted = condition.withLock { () -> Bool in
                if stopping { return false }
                connections += 1
                return true
            }
            guard admitted else { Glibc.close(fd); continue }
            let t = Thread { [self] in
                serve(fd)
                Glibc.close(fd)
                condition.withLock {
                    connections -= 1
                    condition.broadcast()
                }
            }
            t.name = "snapfs-control-conn"
            t.start()
        }
    }

    private func serve(_ fd: Int32) {
        let request: ControlRequest
        do {
            guard let line = try ControlSocket.readLine(fd) else { return }
            request = try ControlJSON.decode(ControlRequest.self, line)
        } catch {
            reply(fd, .failure("bad control request: \(error)"))
            return
        }
        switch request.op {
        case .pin:
            pin(fd)
        case .debugExpire:
            guard testHooks else { return reply(fd, .failure("debug.expire needs SNAPFS_TEST_HOOKS=1 in the daemon's environment")) }
            if let offset = request.clockOffsetSeconds { retention.clock.offset = offset }
            var r = ControlResponse()
            r.message = "deleted: " + retention.expireNow().joined(separator: " ")
            reply(fd, r)
        default:
            reply(fd, fs.control(request))
        }
    }

    /// Commits, then keeps the blocks of that commit from being reused until the client hangs
    /// up, so it can read the commit from the pool files (`snapfs check` while mounted).
    private func pin(_ fd: Int32) {
        do { try fs.pool.sync() } catch {
            return reply(fd, .failure("cannot commit the pool before checking: \(error)"))
        }
        fs.pool.pinReuse()
        defer { fs.pool.unpinReuse() }
        condition.withLock { _ = pinFds.insert(fd) }
        defer { condition.withLock { _ = pinFds.remove(fd) } }
        var r = ControlResponse()
        r.message = "pinned"
        reply(fd, r)
        ControlSocket.waitForClose(fd)
    }

    private func reply(_ fd: Int32, _ response: ControlResponse) {
        guard let data = try? ControlJSON.encode(response) else { return }
        try? ControlSocket.sendLine(fd, data)
    }
}

import Foundation
import Glibc
import SnapStore
import Synchronization

/// The daemon's end of the control API: listens on `POOL/control.sock` (mode 0600) and
/// serves each connection on its own thread: one request line, one response line.
///
/// Only root is served, checked on each connection with the kernel's record of the peer
/// (SO_PEERCRED), not only by the file's mode. No client can hold the daemon: the request
/// line must arrive within `requestSeconds` of the connect and is refused once over
/// `ControlSocket.maxRequestLine`; answers that the client does not read within
/// `sendSeconds` are dropped; at most `maxConnections` are served at once (the accept
/// loop answers the rest "busy" without waiting on them); pins lapse (`PinLease`).
///
/// Plain threads, not Swift concurrency: handlers block (waiting for releases, commits), and
/// the FUSE loop already owns the process's threads in the same blocking style.
public final class ControlServer: Sendable {
    public let path: String
    let fs: FileSystem
    private let retention: Retention
    private let testHooks: Bool
    private let listenFd: Int32

    static let requestSeconds: Double = 5
    static let sendSeconds: Double = 10
    static let maxConnections = 32
    /// Each pin keeps every block freed meanwhile; a few checks at once are plenty.
    static let maxPins = 4
    static let stoppingMessage = "the daemon is stopping (the pool is being unmounted); no request is served"

    struct State {
        var stopping = false
        var acceptStarted = false
        /// Admitted connections, each served by its thread; stop() shuts their reads down.
        var open: Set<Int32> = []
        /// Requests dispatched (pins included) and not done: each may use the pool, so the
        /// pool must not close before this is 0.
        var inFlight = 0
        var pins = 0
        /// Signalled when `inFlight` drops to 0 while stop() waits for it.
        var drained: DispatchSemaphore?
    }
    let state = Mutex(State())
    private let acceptDone = DispatchSemaphore(value: 0)

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
        state.withLock { $0.acceptStarted = true }
        let t = Thread { [self] in acceptLoop() }
        t.name = "snapfs-control"
        t.start()
    }

    /// From now on no request is dispatched (each gets `stoppingMessage`); connections
    /// waiting for a request or holding a pin are woken and closed; then waits for every
    /// request in flight to finish, so none runs against a closed pool; removes the socket.
    public func stop() {
        let (drained, started, first) = state.withLock { s -> (DispatchSemaphore?, Bool, Bool) in
            guard !s.stopping else { return (nil, false, false) }
            s.stopping = true
            for fd in s.open { shutdown(fd, Int32(SHUT_RD)) }
            guard s.inFlight > 0 else { return (nil, s.acceptStarted, true) }
            let d = DispatchSemaphore(value: 0)
            s.drained = d
            return (d, s.acceptStarted, true)
        }
        guard first else { return }
        if let drained {
            // No time limit: giving up would let the request run on against the closed pool.
            while drained.wait(timeout: .now() + 10) == .timedOut {
                let n = state.withLock { $0.inFlight }
                FileHandle.standardError.write(Data("snapfs: waiting for \(n) control requests to finish before closing the pool\n".utf8))
            }
        }
        if started { acceptDone.wait() } else { Glibc.close(listenFd) }
        unlink(path)
    }

    var isStopping: Bool { state.withLock { $0.stopping } }

    private func acceptLoop() {
        defer {
            Glibc.close(listenFd)
            acceptDone.signal()
        }
        while !isStopping {
            // poll with a timeout instead of a blocking accept: closing a socket does not wake
            // a thread blocked in accept() on Linux.
            var p = pollfd(fd: listenFd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 200) > 0 else { continue }
            let fd = accept(listenFd, nil, nil)
            guard fd >= 0 else {
                // Out of descriptors, say: the pending connection stays readable, so pause
                // rather than spin on it.
                if errno != EINTR && errno != EAGAIN && errno != ECONNABORTED { usleep(100_000) }
                continue
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)   // not inherited by anything we might spawn
            if let refusal = admit(fd) {
                if let line = try? ControlJSON.encode(ControlResponse.failure(refusal)) { ControlSocket.sendNow(fd, line) }
                Glibc.close(fd)
                continue
            }
            let t = Thread { [self] in
                serve(fd)
                state.withLock { _ = $0.open.remove(fd) }
                Glibc.close(fd)
            }
            t.name = "snapfs-control-conn"
            t.start()
        }
    }

    /// Why this connection is not served, or nil once it is admitted. Never waits.
    private func admit(_ fd: Int32) -> String? {
        guard let uid = ControlSocket.peerUID(fd) else {
            return "control.sock cannot tell who connected (SO_PEERCRED: \(String(cString: strerror(errno)))); refused"
        }
        guard uid == 0 else { return "control.sock serves root only (peer uid \(uid))" }
        return state.withLock { s in
            if s.stopping { return Self.stoppingMessage }
            guard s.open.count < Self.maxConnections else {
                return "the daemon is busy: \(Self.maxConnections) control connections are being served; retry"
            }
            s.open.insert(fd)
            return nil
        }
    }

    private func serve(_ fd: Int32) {
        let line: Data
        do {
            let deadline = ControlDeadline(seconds: Self.requestSeconds)
            guard let l = try ControlSocket.readLine(fd, limit: ControlSocket.maxRequestLine, deadline: deadline) else {
                if isStopping { reply(fd, .failure(Self.stoppingMessage)) }
                return   // the client hung up before a whole line
            }
            line = l
        } catch {
            if isStopping { return reply(fd, .failure(Self.stoppingMessage)) }
            switch error {
            case .timedOut:
                reply(fd, .failure("no complete control request within \(Int(Self.requestSeconds)) s of connecting; closed"))
            case .tooLong(let limit):
                reply(fd, .failure("control request too long (over \(limit) bytes); refused"))
            case .io:
                break   // the client is gone
            }
            return
        }
        let request: ControlRequest
        do { request = try ControlJSON.decode(ControlRequest.self, line) } catch {
            return reply(fd, .failure("bad control request: \(error)"))
        }
        guard beginRequest() else { return reply(fd, .failure(Self.stoppingMessage)) }
        defer { endRequest() }
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

    /// Counts a request in flight unless stop() has begun: the check and the count are one
    /// step, so stop() either waits for the request or the request never starts.
    private func beginRequest() -> Bool {
        state.withLock { s in
            guard !s.stopping else { return false }
            s.inFlight += 1
            return true
        }
    }

    private func endRequest() {
        state.withLock { s in
            s.inFlight -= 1
            if s.inFlight == 0, let d = s.drained {
                d.signal()
                s.drained = nil
            }
        }
    }

    func reply(_ fd: Int32, _ response: ControlResponse) {
        guard let data = try? ControlJSON.encode(response) else { return }
        try? ControlSocket.sendLine(fd, data, deadline: ControlDeadline(seconds: Self.sendSeconds))
    }
}

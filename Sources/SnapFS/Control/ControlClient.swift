import Foundation
import Glibc

/// The CLI's end of the control API.
public enum ControlClient {
    /// The message every command but `check` and `pool stats` gives when no daemon serves
    /// the pool.
    public static func notMounted(_ pool: String) -> String {
        "pool \(pool) is not mounted (no daemon on \(ControlSocket.path(pool: pool))); start it with snapfs mount"
    }

    /// Whether a daemon answers on `POOL/control.sock`.
    public static func isServed(pool: String) -> Bool {
        guard let fd = try? ControlSocket.connect(to: ControlSocket.path(pool: pool)) else { return false }
        Glibc.close(fd)
        return true
    }

    /// Sends one request and returns the response; nil when no daemon serves the pool.
    /// A response carrying an error is thrown as `ControlFailure`.
    public static func send(_ request: ControlRequest, pool: String) throws -> ControlResponse? {
        guard let fd = try ControlSocket.connect(to: ControlSocket.path(pool: pool)) else { return nil }
        defer { Glibc.close(fd) }
        return try exchange(fd, request)
    }

    /// Like `send`, but a missing daemon is an error with the standard message.
    public static func require(_ request: ControlRequest, pool: String) throws -> ControlResponse {
        guard let r = try send(request, pool: pool) else { throw ControlFailure(notMounted(pool)) }
        return r
    }

    /// Asks the daemon to commit and keep that commit's blocks in place; they stay pinned
    /// until `Pin.release()` (or this process's exit) closes the connection. nil: no daemon.
    public static func pin(pool: String) throws -> Pin? {
        guard let fd = try ControlSocket.connect(to: ControlSocket.path(pool: pool)) else { return nil }
        do {
            _ = try exchange(fd, ControlRequest(op: .pin))
        } catch {
            Glibc.close(fd)
            throw error
        }
        return Pin(fd: fd)
    }

    public final class Pin {
        private var fd: Int32
        init(fd: Int32) { self.fd = fd }
        public func release() {
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
        deinit { release() }
    }

    private static func exchange(_ fd: Int32, _ request: ControlRequest) throws -> ControlResponse {
        try ControlSocket.sendLine(fd, try ControlJSON.encode(request))
        guard let line = try ControlSocket.readLine(fd, limit: ControlSocket.maxResponseLine) else {
            throw ControlFailure("the daemon closed the control connection without answering (did it exit?)")
        }
        let response = try ControlJSON.decode(ControlResponse.self, line)
        if let e = response.error { throw ControlFailure(e) }
        return response
    }
}

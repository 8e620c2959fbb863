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
    /// while the returned `Pin` renews its lease, until `finish()`. nil: no daemon.
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

    private static func exchange(_ fd: Int32, _ request: ControlRequest) throws -> ControlResponse {
        let data = try ControlJSON.encode(request)
        guard data.count <= ControlSocket.maxRequestLine else {
            throw ControlFailure("request too large for the daemon (\(data.count) bytes; the limit is \(ControlSocket.maxRequestLine))")
        }
        do { try ControlSocket.sendLine(fd, data) } catch {
            // A daemon that refuses a connection (busy, not root, stopping) answers and closes
            // at once, perhaps before the request is sent: its answer says more than EPIPE.
            if let line = try? ControlSocket.readLine(fd, limit: 1 << 16, deadline: ControlDeadline(seconds: 1)),
               let answer = try? ControlJSON.decode(ControlResponse.self, line), let e = answer.error {
                throw ControlFailure(e)
            }
            throw error
        }
        let line: Data?
        do { line = try ControlSocket.readLine(fd, limit: ControlSocket.maxResponseLine) } catch {
            throw ControlFailure("reading the daemon's answer: \(error)")
        }
        guard let line else {
            throw ControlFailure("the daemon closed the control connection without answering (did it exit?)")
        }
        let response = try ControlJSON.decode(ControlResponse.self, line)
        if let e = response.error { throw ControlFailure(e) }
        return response
    }
}

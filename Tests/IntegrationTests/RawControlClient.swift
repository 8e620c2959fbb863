import Foundation
import Glibc

/// A control.sock client that does exactly what a test tells it (sends nothing, trickles,
/// floods), to see how the daemon copes. Not the CLI's client: that one behaves.
final class RawControlClient {
    let fd: Int32
    let connected = Date()

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RawError("socket: \(String(cString: strerror(errno)))") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < 108 else { throw RawError("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw RawError("connect \(path): \(String(cString: strerror(e)))")
        }
    }

    deinit { Glibc.close(fd) }

    /// Sends what it can; false once the daemon has closed its end (EPIPE, ECONNRESET).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 { if errno == EINTR { continue }; return false }
            done += n
        }
        return true
    }

    @discardableResult
    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// What the daemon sent until it closed the connection, and when it closed; nil if it
    /// was still open after `seconds`.
    func readUntilClosed(within seconds: Double) -> (text: String, closedAfter: Double)? {
        var got: [UInt8] = []
        let deadline = Date().addingTimeInterval(seconds)
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return nil }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(left * 1000) + 1) > 0 else { continue }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { got += buf[..<n]; continue }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            return (String(decoding: got, as: UTF8.self), Date().timeIntervalSince(connected))
        }
    }

    /// One line from the daemon (without the newline), or nil if none came within `seconds`
    /// or it closed first.
    func readLine(within seconds: Double) -> String? {
        var got: [UInt8] = []
        let deadline = Date().addingTimeInterval(seconds)
        var byte: UInt8 = 0
        while deadline.timeIntervalSinceNow > 0 {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(deadline.timeIntervalSinceNow * 1000) + 1) > 0 else { continue }
            let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
            if n == 1 {
                if byte == 0x0A { return String(decoding: got, as: UTF8.self) }
                got.append(byte)
                continue
            }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            return nil
        }
        return nil
    }
}

struct RawError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

import Foundation
import Glibc

/// A point on the monotonic clock by which a socket operation must be done.
struct ControlDeadline {
    let nanos: UInt64

    init(seconds: Double) {
        nanos = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
    }

    /// What is left, in whole milliseconds for poll(2) (0 once passed).
    var remainingMillis: Int32 {
        let now = DispatchTime.now().uptimeNanoseconds
        guard now < nanos else { return 0 }
        return Int32(min((nanos - now + 999_999) / 1_000_000, UInt64(Int32.max)))
    }
}

/// Why a line could not be read: the server answers each differently.
enum ControlReadError: Error, CustomStringConvertible {
    case timedOut
    case tooLong(limit: Int)
    case io(ControlFailure)

    var description: String {
        switch self {
        case .timedOut: "timed out"
        case .tooLong(let limit): "control message too long (over \(limit) bytes)"
        case .io(let f): f.description
        }
    }
}

/// Reads and writes on control connections. Sends use MSG_NOSIGNAL: a client that went
/// away must not kill the daemon with SIGPIPE. With a deadline, every call is bounded by
/// it (poll, then a non-blocking call), so a peer that sends or reads nothing cannot hold
/// the calling thread past it.
extension ControlSocket {
    /// The uid of the process at the other end, from the kernel (SO_PEERCRED), as it was
    /// when that process connected; nil if the kernel cannot say.
    static func peerUID(_ fd: Int32) -> uid_t? {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }: Glibc hides it without _GNU_SOURCE.
        var cred: (pid: Int32, uid: UInt32, gid: UInt32) = (0, 0, 0)
        var len = socklen_t(MemoryLayout.size(ofValue: cred))
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0,
              len == socklen_t(MemoryLayout.size(ofValue: cred)) else { return nil }
        return cred.uid
    }

    /// Waits until `fd` is readable (data, end of stream or error); false when the deadline
    /// passes first.
    static func waitReadable(_ fd: Int32, by deadline: ControlDeadline) -> Bool {
        wait(fd, Int16(POLLIN), deadline)
    }

    private static func wait(_ fd: Int32, _ events: Int16, _ deadline: ControlDeadline) -> Bool {
        while true {
            var p = pollfd(fd: fd, events: events, revents: 0)
            let rc = poll(&p, 1, deadline.remainingMillis)
            if rc > 0 { return true }
            if rc == 0 { return false }
            if errno != EINTR { return true }   // let the following call report the error
        }
    }

    static func sendLine(_ fd: Int32, _ data: Data, deadline: ControlDeadline? = nil) throws {
        var bytes = [UInt8](data)
        bytes.append(0x0A)
        try send(fd, bytes, deadline: deadline)
    }

    static func send(_ fd: Int32, _ bytes: [UInt8], deadline: ControlDeadline? = nil) throws {
        var done = 0
        let flags = Int32(MSG_NOSIGNAL) | (deadline == nil ? 0 : Int32(MSG_DONTWAIT))
        while done < bytes.count {
            if let deadline, !wait(fd, Int16(POLLOUT), deadline) {
                throw ControlFailure("send: the peer read nothing for too long")
            }
            let n = bytes[done...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, flags) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw failure("send")
            }
            done += n
        }
    }

    /// One short message on a fresh connection, never waiting: its send buffer is empty, so
    /// it fits; if not, the peer gets nothing but the close.
    static func sendNow(_ fd: Int32, _ data: Data) {
        let bytes = [UInt8](data) + [0x0A]
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
    }

    /// Reads up to the first newline; nil at end of stream before any newline. A line longer
    /// than `limit` fails as soon as that many bytes came without one; with a deadline, so
    /// does a line not complete by then.
    static func readLine(_ fd: Int32, limit: Int, deadline: ControlDeadline? = nil) throws(ControlReadError) -> Data? {
        var line = Data()
        var buf = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            if let deadline, !waitReadable(fd, by: deadline) { throw .timedOut }
            let flags = deadline == nil ? Int32(0) : Int32(MSG_DONTWAIT)
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, flags) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw .io(failure("recv"))
            }
            if n == 0 { return nil }
            let newline = buf[..<n].firstIndex(of: 0x0A)
            line.append(contentsOf: buf[..<(newline ?? n)])
            guard line.count <= limit else { throw .tooLong(limit: limit) }
            if newline != nil { return line }
        }
    }
}

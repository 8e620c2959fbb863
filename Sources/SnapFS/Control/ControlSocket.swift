import Foundation
import Glibc

/// The few Unix-socket calls the control API needs, each reporting the failing call
/// (reads and writes, with their deadlines, are in ControlSocket+IO.swift).
enum ControlSocket {
    static let fileName = "control.sock"
    /// A request line larger than this is refused as soon as it is passed: requests are
    /// small (a group capture of a few thousand disk names fits).
    static let maxRequestLine = 256 << 10
    /// A response line (read by the CLI from its own daemon) may be far longer: a listing of
    /// 10,000 snapshots is ~5 MB of JSON. This only bounds a runaway daemon.
    static let maxResponseLine = 1 << 30

    static func path(pool: String) -> String {
        URL(fileURLWithPath: pool).standardizedFileURL.path + "/" + fileName
    }

    /// Runs `body` with a sockaddr_un for `path`. sun_path holds 107 bytes; a longer path is
    /// reached through the pool folder's /proc/self/fd link instead.
    static func withAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> T) throws -> T {
        var direct = path
        var dirFd: Int32 = -1
        defer { if dirFd >= 0 { Glibc.close(dirFd) } }
        if path.utf8.count >= 108 {
            let dir = (path as NSString).deletingLastPathComponent
            dirFd = Glibc.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard dirFd >= 0 else { throw failure("open \(dir)") }
            direct = "/proc/self/fd/\(dirFd)/\(fileName)"
        }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(direct.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return try withUnsafePointer(to: &addr) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                try body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }

    static func newSocket() throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure("socket") }
        return fd
    }

    /// Binds and listens at `path` with mode 0600, replacing a socket left by a killed daemon
    /// (the pool's lock guarantees no live daemon owns it).
    static func listen(at path: String) throws -> Int32 {
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else { throw ControlFailure("\(path) exists and is not a socket") }
            unlink(path)
        }
        let fd = try newSocket()
        do {
            try withAddress(path) { addr, len in
                guard bind(fd, addr, len) == 0 else { throw failure("bind \(path)") }
            }
            // Before listen(): nobody can connect until only root may.
            guard chmod(path, 0o600) == 0 else { throw failure("chmod \(path)") }
            guard Glibc.listen(fd, 64) == 0 else { throw failure("listen \(path)") }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    /// Connects to the daemon; nil when no daemon listens there (no socket, or a stale one).
    static func connect(to path: String) throws -> Int32? {
        let fd = try newSocket()
        let rc = try withAddress(path) { addr, len in
            while true {
                if Glibc.connect(fd, addr, len) == 0 { return Int32(0) }
                if errno != EINTR { return errno }
            }
        }
        if rc == 0 { return fd }
        Glibc.close(fd)
        if rc == ENOENT || rc == ECONNREFUSED { return nil }
        throw ControlFailure("cannot connect to \(path): \(String(cString: strerror(rc)))")
    }

    static func failure(_ what: String) -> ControlFailure {
        ControlFailure("\(what): \(String(cString: strerror(errno)))")
    }
}

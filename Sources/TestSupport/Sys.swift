#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A raw errno value thrown by the `Sys` wrappers, so tests can assert the exact code.
public struct Errno: Error, Equatable, CustomStringConvertible, Sendable {
    public let code: Int32
    public init(_ code: Int32) { self.code = code }
    public var description: String { errnoName(code) }
}

/// "ENOENT (No such file or directory)" for messages; "0 (success)" for 0.
public func errnoName(_ code: Int32) -> String {
    let names: [Int32: String] = [
        0: "0", EPERM: "EPERM", ENOENT: "ENOENT", EIO: "EIO", EBADF: "EBADF", EACCES: "EACCES",
        EBUSY: "EBUSY", EEXIST: "EEXIST", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", EINVAL: "EINVAL",
        EFBIG: "EFBIG", ENOSPC: "ENOSPC", EROFS: "EROFS", ENOSYS: "ENOSYS", ENOTEMPTY: "ENOTEMPTY",
        EOPNOTSUPP: "EOPNOTSUPP", ENOTCONN: "ENOTCONN", ENAMETOOLONG: "ENAMETOOLONG", EXDEV: "EXDEV",
    ]
    let text = code == 0 ? "success" : String(cString: strerror(code))
    return "\(names[code] ?? "errno \(code)") (\(text))"
}

/// Runs `body`; returns 0 if it succeeded, the errno if it threw `Errno`, -1 for any other error.
public func errnoOf(_ body: () throws -> Void) -> Int32 {
    do { try body(); return 0 } catch let e as Errno { return e.code } catch { return -1 }
}

/// Thin wrappers over Glibc: each retries EINTR and throws the exact errno of the C call it names.
public enum Sys {
    public static let FALLOC_FL_KEEP_SIZE: Int32 = 0x01   // linux/falloc.h
    public static let FALLOC_FL_PUNCH_HOLE: Int32 = 0x02

    @discardableResult
    static func check(_ body: () -> Int) throws(Errno) -> Int {
        while true {
            let r = body()
            if r >= 0 { return r }
            let e = errno
            if e != EINTR { throw Errno(e) }
        }
    }

    /// mkdir(2)
    public static func mkdir(_ path: String, _ mode: mode_t = 0o755) throws(Errno) {
        try check { Int(Glibc.mkdir(path, mode)) }
    }
    /// rmdir(2)
    public static func rmdir(_ path: String) throws(Errno) { try check { Int(Glibc.rmdir(path)) } }
    /// open(2); returns the descriptor.
    public static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o644) throws(Errno) -> Int32 {
        Int32(try check { Int(Glibc.open(path, flags, mode)) })
    }
    /// close(2)
    public static func close(_ fd: Int32) throws(Errno) { try check { Int(Glibc.close(fd)) } }
    /// pwrite(2) until every byte is written.
    public static func pwrite(_ fd: Int32, _ bytes: [UInt8], _ offset: Int) throws(Errno) {
        var done = 0
        while done < bytes.count {
            let n = try check {
                bytes.withUnsafeBytes { Glibc.pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(offset + done)) }
            }
            if n == 0 { throw Errno(EIO) }
            done += n
        }
    }
    /// pread(2) until `count` bytes or EOF; returns what was read (short at EOF).
    public static func pread(_ fd: Int32, _ count: Int, _ offset: Int) throws(Errno) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = try check {
                buf.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            }
            if n == 0 { break }
            done += n
        }
        return Array(buf[0..<done])
    }
    /// ftruncate(2)
    public static func ftruncate(_ fd: Int32, _ size: Int) throws(Errno) { try check { Int(Glibc.ftruncate(fd, off_t(size))) } }
    /// truncate(2)
    public static func truncate(_ path: String, _ size: Int) throws(Errno) { try check { Int(Glibc.truncate(path, off_t(size))) } }
    /// fallocate(2)
    public static func fallocate(_ fd: Int32, _ mode: Int32, _ offset: Int, _ length: Int) throws(Errno) {
        try check { Int(cFallocate(fd, mode, off_t(offset), off_t(length))) }
    }
    /// Punches a hole (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE), as `fallocate --punch-hole` does.
    public static func punchHole(_ fd: Int32, _ offset: Int, _ length: Int) throws(Errno) {
        try fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)
    }
    /// fsync(2)
    public static func fsync(_ fd: Int32) throws(Errno) { try check { Int(Glibc.fsync(fd)) } }
    /// fdatasync(2)
    public static func fdatasync(_ fd: Int32) throws(Errno) { try check { Int(Glibc.fdatasync(fd)) } }
    /// unlink(2)
    public static func unlink(_ path: String) throws(Errno) { try check { Int(Glibc.unlink(path)) } }
    /// symlink(2)
    public static func symlink(_ target: String, _ path: String) throws(Errno) { try check { Int(Glibc.symlink(target, path)) } }
    /// link(2)
    public static func link(_ existing: String, _ path: String) throws(Errno) { try check { Int(Glibc.link(existing, path)) } }
    /// mknod(2); `mkfifo` is mknod with S_IFIFO.
    public static func mknod(_ path: String, _ mode: mode_t, _ dev: dev_t = 0) throws(Errno) {
        try check { Int(Glibc.mknod(path, mode, dev)) }
    }
    /// mkfifo(3)
    public static func mkfifo(_ path: String, _ mode: mode_t = 0o644) throws(Errno) { try mknod(path, S_IFIFO | mode) }
    /// open(O_CREAT|O_EXCL|O_WRONLY), closing the result: creating a regular file.
    public static func create(_ path: String, _ mode: mode_t = 0o644) throws(Errno) {
        let fd = try open(path, O_CREAT | O_EXCL | O_WRONLY, mode)
        try close(fd)
    }
    /// rename(2)
    public static func rename(_ from: String, _ to: String) throws(Errno) { try check { Int(Glibc.rename(from, to)) } }
    /// chmod(2)
    public static func chmod(_ path: String, _ mode: mode_t) throws(Errno) { try check { Int(Glibc.chmod(path, mode)) } }
    /// utimensat(AT_FDCWD, path, times, 0); nil sets both times to now.
    public static func utimens(_ path: String, _ seconds: Int? = nil) throws(Errno) {
        if let s = seconds {
            var ts = [timespec(tv_sec: s, tv_nsec: 0), timespec(tv_sec: s, tv_nsec: 0)]
            try check { Int(utimensat(AT_FDCWD, path, &ts, 0)) }
        } else {
            try check { Int(utimensat(AT_FDCWD, path, nil, 0)) }
        }
    }
    /// stat(2)
    public static func stat(_ path: String) throws(Errno) -> Glibc.stat {
        var st = Glibc.stat()
        try check { Int(cStat(path, &st)) }
        return st
    }
    /// fstat(2)
    public static func fstat(_ fd: Int32) throws(Errno) -> Glibc.stat {
        var st = Glibc.stat()
        try check { Int(cFstat(fd, &st)) }
        return st
    }
    /// statvfs(3)
    public static func statvfs(_ path: String) throws(Errno) -> Glibc.statvfs {
        var sv = Glibc.statvfs()
        try check { Int(cStatvfs(path, &sv)) }
        return sv
    }
    /// Names in a directory, without "." and "..", sorted.
    public static func listdir(_ path: String) throws(Errno) -> [String] {
        guard let dir = opendir(path) else { throw Errno(errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: ent.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }
    /// Whole file contents via pread, for files that fit in memory.
    public static func readFile(_ path: String) throws(Errno) -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { Glibc.close(fd) }
        let size = Int(try fstat(fd).st_size)
        return try pread(fd, size + 1, 0)
    }
}

// File-scope shims: inside `Sys` the names stat/statvfs refer to the wrappers.
private func cStat(_ path: String, _ st: inout Glibc.stat) -> Int32 { stat(path, &st) }
private func cFstat(_ fd: Int32, _ st: inout Glibc.stat) -> Int32 { fstat(fd, &st) }
private func cStatvfs(_ path: String, _ sv: inout Glibc.statvfs) -> Int32 { statvfs(path, &sv) }

/// fallocate(2) is declared only under _GNU_SOURCE, which Glibc's module map does not set.
private typealias FallocateFn = @convention(c) (Int32, Int32, off_t, off_t) -> Int32
private let fallocatePtr: FallocateFn? = {
    guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "fallocate") else { return nil }  // RTLD_DEFAULT
    return unsafeBitCast(sym, to: FallocateFn.self)
}()
private func cFallocate(_ fd: Int32, _ mode: Int32, _ off: off_t, _ len: off_t) -> Int32 {
    guard let f = fallocatePtr else { errno = ENOSYS; return -1 }
    return f(fd, mode, off, len)
}

/// Used and total bytes of a filesystem, as `df` computes them.
public struct SpaceUse: Sendable {
    public let capacity: UInt64
    public let used: UInt64
    public let available: UInt64
    public init(_ sv: Glibc.statvfs) {
        let unit = UInt64(sv.f_frsize == 0 ? sv.f_bsize : sv.f_frsize)
        capacity = UInt64(sv.f_blocks) * unit
        used = (UInt64(sv.f_blocks) - UInt64(sv.f_bfree)) * unit
        available = UInt64(sv.f_bavail) * unit
    }
    public static func of(_ path: String) throws(Errno) -> SpaceUse { SpaceUse(try Sys.statvfs(path)) }
}

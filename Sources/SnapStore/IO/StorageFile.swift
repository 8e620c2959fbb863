import Glibc
import CStoreSupport

/// One file of a pool, seen as a byte array on the host. Every host I/O of the store
/// passes through this protocol so tests can inject faults (failed or torn writes,
/// ENOSPC, failed flushes) below the store.
public protocol StorageFile: AnyObject, Sendable {
    /// Reads up to buffer.count bytes at offset; fewer only at end of file.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int
    /// Writes all bytes at offset.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws
    /// fdatasync(2): everything written before is durable.
    func sync() throws
    /// Deallocates the range (reads as zeros afterwards).
    func punchHole(at offset: UInt64, length: UInt64) throws
    func truncate(to size: UInt64) throws
    func size() throws -> UInt64
    /// Bytes the host has allocated for this file.
    func allocatedBytes() -> UInt64
}

/// Opens the files of a pool directory.
public protocol StorageProvider: Sendable {
    func open(_ name: String, create: Bool, readOnly: Bool) throws -> StorageFile
    func exists(_ name: String) -> Bool
    /// fsync of the directory itself, so created files survive a crash.
    func syncDirectory() throws
}

/// Real files on the host (pread/pwrite/fdatasync/fallocate).
public final class PosixFile: StorageFile {
    let fd: Int32
    let path: String

    init(path: String, create: Bool, readOnly: Bool) throws {
        let flags = (readOnly ? O_RDONLY : O_RDWR) | (create ? O_CREAT : 0) | O_CLOEXEC
        let fd = Glibc.open(path, flags, 0o600)
        guard fd >= 0 else { throw StoreError.io(errno: errno, "open \(path)") }
        self.fd = fd
        self.path = path
    }
    deinit { Glibc.close(fd) }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.io(errno: errno, "read \(path) at \(offset)")
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.io(errno: errno, "write \(path) at \(offset)")
            }
            done += n
        }
    }

    public func sync() throws {
        while fdatasync(fd) != 0 {
            if errno == EINTR { continue }
            throw StoreError.io(errno: errno, "fdatasync \(path)")
        }
    }

    public func punchHole(at offset: UInt64, length: UInt64) throws {
        if snap_punch_hole(fd, Int64(offset), Int64(length)) != 0 {
            throw StoreError.io(errno: errno, "punch hole in \(path)")
        }
    }

    public func truncate(to size: UInt64) throws {
        if ftruncate(fd, off_t(size)) != 0 { throw StoreError.io(errno: errno, "truncate \(path)") }
    }

    public func size() throws -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StoreError.io(errno: errno, "stat \(path)") }
        return UInt64(st.st_size)
    }

    public func allocatedBytes() -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return 0 }
        return UInt64(st.st_blocks) * 512
    }
}

public struct PosixDirectory: StorageProvider {
    public let path: String
    public init(path: String) { self.path = path }
    public func open(_ name: String, create: Bool, readOnly: Bool) throws -> StorageFile {
        try PosixFile(path: path + "/" + name, create: create, readOnly: readOnly)
    }
    public func exists(_ name: String) -> Bool { access(path + "/" + name, F_OK) == 0 }
    public func syncDirectory() throws {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.io(errno: errno, "open \(path)") }
        defer { Glibc.close(fd) }
        if fsync(fd) != 0 { throw StoreError.io(errno: errno, "fsync \(path)") }
    }
}

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
    /// Writes bytes and makes them durable (write + sync unless the file can do both in
    /// one device write). Offset and length are multiples of 4096.
    func writeDurably(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws
    /// Drops the range's clean pages from the host's page cache (a hint; never changes
    /// what reads return).
    func dropCache(at offset: UInt64, length: UInt64)
    /// Fills the whole buffer from the host's page cache and returns true, or returns false
    /// without waiting for the device (then `read` must be used; so too at end of file).
    func readIfCached(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) -> Bool
    /// Starts reading the range into the host's page cache without waiting (a hint).
    func prefetch(at offset: UInt64, length: UInt64)
    /// Deallocates the range (reads as zeros afterwards).
    func punchHole(at offset: UInt64, length: UInt64) throws
    /// Allocates host blocks for the range, growing the file to its end if shorter; the
    /// bytes read as zeros (writes into allocated blocks skip the host filesystem's block
    /// allocation, and writes within the file's size skip updating it).
    func preallocate(at offset: UInt64, length: UInt64) throws
    func truncate(to size: UInt64) throws
    func size() throws -> UInt64
    /// Bytes the host has allocated for this file.
    func allocatedBytes() -> UInt64
}

extension StorageFile {
    public func dropCache(at offset: UInt64, length: UInt64) {}
    public func readIfCached(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) -> Bool { false }
    public func prefetch(at offset: UInt64, length: UInt64) {}
    public func preallocate(at offset: UInt64, length: UInt64) throws {}

    public func writeDurably(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try write(bytes, at: offset)
        try sync()
    }
}

/// Opens the files of a pool directory.
public protocol StorageProvider: Sendable {
    func open(_ name: String, create: Bool, readOnly: Bool) throws -> StorageFile
    /// A file appended to in small durable writes (the intent log).
    func openLog(_ name: String, create: Bool) throws -> StorageFile
    func exists(_ name: String) -> Bool
    /// Names of the files in the pool directory.
    func fileNames() throws -> [String]
    /// Deletes a file (the directory's flush makes it durable).
    func remove(_ name: String) throws
    /// fsync of the directory itself, so created files survive a crash.
    func syncDirectory() throws
}

extension StorageProvider {
    public func openLog(_ name: String, create: Bool) throws -> StorageFile {
        try open(name, create: create, readOnly: false)
    }
}

/// Real files on the host (pread/pwrite/fdatasync/fallocate).
public final class PosixFile: StorageFile {
    let fd: Int32
    let path: String
    /// O_DIRECT|O_DSYNC descriptor for `writeDurably`: one FUA write instead of a
    /// page-cache write, its writeback and a flush (-1 where the host refuses O_DIRECT).
    private let durableFd: Int32

    init(path: String, create: Bool, readOnly: Bool, durableWrites: Bool = false) throws {
        let flags = (readOnly ? O_RDONLY : O_RDWR) | (create ? O_CREAT : 0) | O_CLOEXEC
        let fd = Glibc.open(path, flags, 0o600)
        guard fd >= 0 else { throw StoreError.io(errno: errno, "open \(path)") }
        self.fd = fd
        self.path = path
        durableFd = durableWrites ? snap_open_direct_dsync(path) : -1
    }
    deinit {
        Glibc.close(fd)
        if durableFd >= 0 { Glibc.close(durableFd) }
    }

    public func writeDurably(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        guard durableFd >= 0 else {
            try write(bytes, at: offset)
            try sync()
            return
        }
        // O_DIRECT wants an aligned buffer.
        let aligned = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 4096)
        defer { aligned.deallocate() }
        aligned.copyMemory(from: bytes)
        try writeAll(durableFd, UnsafeRawBufferPointer(aligned), at: offset)
    }

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

    public func readIfCached(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) -> Bool {
        var done = 0
        while done < buffer.count {
            let n = snap_pread_nowait(fd, buffer.baseAddress! + done, buffer.count - done, Int64(offset) + Int64(done))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }   // EAGAIN: not cached; 0: end of file; errors: `read` reports them
            done += n
        }
        return true
    }

    public func prefetch(at offset: UInt64, length: UInt64) {
        _ = snap_prefetch(fd, Int64(offset), Int64(length))
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try writeAll(fd, bytes, at: offset)
    }

    private func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
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

    public func dropCache(at offset: UInt64, length: UInt64) {
        _ = snap_drop_cache(fd, Int64(offset), Int64(length))
    }

    public func punchHole(at offset: UInt64, length: UInt64) throws {
        if snap_punch_hole(fd, Int64(offset), Int64(length)) != 0 {
            throw StoreError.io(errno: errno, "punch hole in \(path)")
        }
    }

    public func preallocate(at offset: UInt64, length: UInt64) throws {
        if snap_preallocate(fd, Int64(offset), Int64(length)) != 0 {
            throw StoreError.io(errno: errno, "preallocate in \(path)")
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
    public func openLog(_ name: String, create: Bool) throws -> StorageFile {
        try PosixFile(path: path + "/" + name, create: create, readOnly: false, durableWrites: true)
    }
    public func exists(_ name: String) -> Bool { access(path + "/" + name, F_OK) == 0 }
    public func fileNames() throws -> [String] {
        guard let d = opendir(path) else { throw StoreError.io(errno: errno, "list \(path)") }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
    public func remove(_ name: String) throws {
        if unlink(path + "/" + name) != 0 && errno != ENOENT { throw StoreError.io(errno: errno, "remove \(path)/\(name)") }
    }
    public func syncDirectory() throws {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.io(errno: errno, "open \(path)") }
        defer { Glibc.close(fd) }
        if fsync(fd) != 0 { throw StoreError.io(errno: errno, "fsync \(path)") }
    }
}

import Foundation
import Glibc
import SnapStore

/// Faults below the store: the test decides, per file and operation, whether the next
/// call fails with an errno (and, for writes, how many bytes land first). A failed flush
/// loses the writes since the file's last good flush, as Linux does (it marks the pages
/// that failed to write back clean): they read back as they were before those writes.
public final class FaultPlan: @unchecked Sendable {
    public enum Op: Sendable { case write, sync, punch, truncate }
    public struct Fault: Sendable {
        public var errno: Int32
        public var landedBytes: Int
        public init(errno: Int32, landedBytes: Int = 0) { self.errno = errno; self.landedBytes = landedBytes }
    }
    private let lock = NSLock()
    private var planned: [(file: String, op: Op, fault: Fault)] = []
    public private(set) var fired = 0

    public init() {}

    /// The next `op` on `file` fails once with `fault`.
    public func failNext(_ file: String, _ op: Op, _ fault: Fault) {
        lock.withLock { planned.append((file, op, fault)) }
    }

    /// Forgets the faults planned and the count fired.
    public func reset() { lock.withLock { planned = []; fired = 0 } }

    func take(_ file: String, _ op: Op) -> Fault? {
        lock.withLock {
            guard let i = planned.firstIndex(where: { $0.file == file && $0.op == op }) else { return nil }
            fired += 1
            return planned.remove(at: i).fault
        }
    }
}

public struct FaultyStorage: StorageProvider {
    let inner: PosixDirectory
    let plan: FaultPlan
    public init(directory: String, plan: FaultPlan) { inner = PosixDirectory(path: directory); self.plan = plan }
    public func open(_ name: String, create: Bool, readOnly: Bool) throws -> StorageFile {
        FaultyFile(name: name, inner: try inner.open(name, create: create, readOnly: readOnly), plan: plan)
    }
    public func exists(_ name: String) -> Bool { inner.exists(name) }
    public func fileNames() throws -> [String] { try inner.fileNames() }
    public func remove(_ name: String) throws { try inner.remove(name) }
    public func syncDirectory() throws { try inner.syncDirectory() }
}

final class FaultyFile: StorageFile, @unchecked Sendable {
    let name: String
    let inner: StorageFile
    let plan: FaultPlan
    /// Writes since the last good flush, with the bytes they replaced (oldest first).
    private let lock = NSLock()
    private var unsynced: [(offset: UInt64, old: [UInt8])] = []
    init(name: String, inner: StorageFile, plan: FaultPlan) { self.name = name; self.inner = inner; self.plan = plan }

    private func remember(_ count: Int, at offset: UInt64) throws {
        var old = [UInt8](repeating: 0, count: count)
        let n = try old.withUnsafeMutableBytes { try inner.read(into: $0, at: offset) }
        for i in n..<count { old[i] = 0 }
        lock.withLock { unsynced.append((offset, old)) }
    }

    /// The failed flush: the unflushed writes are gone (newest undone first).
    private func dropUnsynced() {
        let lost = lock.withLock { defer { unsynced = [] }; return unsynced }
        for w in lost.reversed() { try? w.old.withUnsafeBytes { try inner.write($0, at: w.offset) } }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        try inner.read(into: buffer, at: offset)
    }
    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        if let f = plan.take(name, .write) {
            let n = min(f.landedBytes, bytes.count)
            if n > 0 {
                try remember(n, at: offset)
                try inner.write(UnsafeRawBufferPointer(rebasing: bytes[0..<n]), at: offset)
            }
            throw StoreError.io(errno: f.errno, "injected fault writing \(name)")
        }
        try remember(bytes.count, at: offset)
        try inner.write(bytes, at: offset)
    }
    func sync() throws {
        let covered = lock.withLock { unsynced.count }
        if let f = plan.take(name, .sync) {
            dropUnsynced()
            throw StoreError.io(errno: f.errno, "injected fault syncing \(name)")
        }
        try inner.sync()
        lock.withLock { unsynced.removeFirst(min(covered, unsynced.count)) }
    }
    func punchHole(at offset: UInt64, length: UInt64) throws {
        if let f = plan.take(name, .punch) { throw StoreError.io(errno: f.errno, "injected fault punching \(name)") }
        try inner.punchHole(at: offset, length: length)
    }
    func truncate(to size: UInt64) throws {
        if let f = plan.take(name, .truncate) { throw StoreError.io(errno: f.errno, "injected fault truncating \(name)") }
        try inner.truncate(to: size)
    }
    func preallocate(at offset: UInt64, length: UInt64) throws { try inner.preallocate(at: offset, length: length) }
    func dropCache(at offset: UInt64, length: UInt64) { inner.dropCache(at: offset, length: length) }
    func size() throws -> UInt64 { try inner.size() }
    func allocatedBytes() -> UInt64 { inner.allocatedBytes() }
}

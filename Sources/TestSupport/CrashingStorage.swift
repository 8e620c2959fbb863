import Foundation
import Glibc
import SnapStore

/// Decides when the simulated machine dies: after `budget` more mutating I/Os
/// (write, sync, punch, truncate). The I/O that hits zero is torn — a random
/// 512-byte-aligned prefix of a write lands — and every later mutating I/O fails,
/// as if the process had been killed at that instant. `powerLoss()` then also drops a
/// random subset of the writes no successful flush covered, as a power cut would.
public final class CrashSwitch: @unchecked Sendable {
    private let lock = NSLock()
    private var budget = -1
    public private(set) var crashed = false
    private var rng: UInt64

    public init(seed: UInt64) { rng = seed | 1 }

    public func arm(afterOperations n: Int) { lock.withLock { budget = n } }

    /// Dies at the n-th flush from now (0 = the next), whatever else happens first.
    public func arm(atFlush n: Int) { lock.withLock { syncBudget = n } }
    private var syncBudget = -1

    private var files: [CrashingFile] = []
    func register(_ f: CrashingFile) { lock.withLock { files.append(f) } }

    /// Reverts each unflushed write with probability 1/2 (newest first).
    public func powerLoss() {
        let all = lock.withLock { files }
        for f in all {
            for w in f.takeUnsynced().reversed() {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
                if rng & 1 == 0 { f.revert(w) }
            }
        }
    }

    /// nil: go ahead. Otherwise the number of bytes of this write that land before death.
    func consume(bytes: Int, isSync: Bool = false) -> Int? {
        lock.withLock {
            if crashed { return 0 }
            if isSync && syncBudget >= 0 {
                if syncBudget == 0 { crashed = true; return 0 }
                syncBudget -= 1
            }
            if budget < 0 { return nil }
            if budget > 0 { budget -= 1; return nil }
            crashed = true
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
            return bytes == 0 ? 0 : Int(rng % UInt64(bytes / 512 + 1)) * 512
        }
    }
}

public struct CrashingStorage: StorageProvider {
    let inner: PosixDirectory
    let crash: CrashSwitch

    public init(directory: String, crash: CrashSwitch) {
        inner = PosixDirectory(path: directory)
        self.crash = crash
    }

    public func open(_ name: String, create: Bool, readOnly: Bool) throws -> StorageFile {
        let f = CrashingFile(inner: try inner.open(name, create: create, readOnly: readOnly), crash: crash)
        crash.register(f)
        return f
    }
    public func exists(_ name: String) -> Bool { inner.exists(name) }
    public func fileNames() throws -> [String] { try inner.fileNames() }
    public func remove(_ name: String) throws {
        if crash.consume(bytes: 0) != nil { throw dead }
        try inner.remove(name)
    }
    public func syncDirectory() throws {
        if crash.consume(bytes: 0) != nil { throw dead }
        try inner.syncDirectory()
    }
}

private let dead = StoreError.io(errno: EIO, "simulated crash")

final class CrashingFile: StorageFile, @unchecked Sendable {
    let inner: StorageFile
    let crash: CrashSwitch
    /// Writes since the last successful flush, with the bytes they replaced.
    struct Unsynced { let offset: UInt64; let old: [UInt8] }
    private let lock = NSLock()
    private var unsynced: [Unsynced] = []
    init(inner: StorageFile, crash: CrashSwitch) { self.inner = inner; self.crash = crash }

    private func remember(_ count: Int, at offset: UInt64) {
        var old = [UInt8](repeating: 0, count: count)
        let n = (try? old.withUnsafeMutableBytes { try inner.read(into: $0, at: offset) }) ?? 0
        for i in n..<count { old[i] = 0 }
        lock.withLock { unsynced.append(Unsynced(offset: offset, old: old)) }
    }
    func takeUnsynced() -> [Unsynced] { lock.withLock { defer { unsynced = [] }; return unsynced } }
    func revert(_ w: Unsynced) { try? w.old.withUnsafeBytes { try inner.write($0, at: w.offset) } }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        try inner.read(into: buffer, at: offset)
    }
    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        if let landed = crash.consume(bytes: bytes.count) {
            if landed > 0 {
                remember(min(landed, bytes.count), at: offset)
                try inner.write(UnsafeRawBufferPointer(rebasing: bytes[0..<min(landed, bytes.count)]), at: offset)
            }
            throw dead
        }
        remember(bytes.count, at: offset)
        try inner.write(bytes, at: offset)
    }
    func sync() throws {
        // Only what was written before the flush started is covered by it.
        let covered = lock.withLock { unsynced.count }
        if crash.consume(bytes: 0, isSync: true) != nil { throw dead }
        try inner.sync()
        lock.withLock { unsynced.removeFirst(min(covered, unsynced.count)) }
    }
    func punchHole(at offset: UInt64, length: UInt64) throws {
        if crash.consume(bytes: 0) != nil { throw dead }
        try inner.punchHole(at: offset, length: length)
    }
    func truncate(to size: UInt64) throws {
        if crash.consume(bytes: 0) != nil { throw dead }
        try inner.truncate(to: size)
    }
    func size() throws -> UInt64 { try inner.size() }
    func allocatedBytes() -> UInt64 { inner.allocatedBytes() }
}

import Foundation
import Glibc
import SnapStore

/// Decides when the simulated machine dies: after `budget` more mutating I/Os
/// (write, sync, punch, truncate). The I/O that hits zero is torn — a random
/// 512-byte-aligned prefix of a write lands — and every later mutating I/O fails,
/// as if the process had been killed at that instant.
public final class CrashSwitch: @unchecked Sendable {
    private let lock = NSLock()
    private var budget = -1
    public private(set) var crashed = false
    private var rng: UInt64

    public init(seed: UInt64) { rng = seed | 1 }

    public func arm(afterOperations n: Int) { lock.withLock { budget = n } }

    /// nil: go ahead. Otherwise the number of bytes of this write that land before death.
    func consume(bytes: Int) -> Int? {
        lock.withLock {
            if crashed { return 0 }
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
        CrashingFile(inner: try inner.open(name, create: create, readOnly: readOnly), crash: crash)
    }
    public func exists(_ name: String) -> Bool { inner.exists(name) }
    public func syncDirectory() throws {
        if crash.consume(bytes: 0) != nil { throw dead }
        try inner.syncDirectory()
    }
}

private let dead = StoreError.io(errno: EIO, "simulated crash")

final class CrashingFile: StorageFile, @unchecked Sendable {
    let inner: StorageFile
    let crash: CrashSwitch
    init(inner: StorageFile, crash: CrashSwitch) { self.inner = inner; self.crash = crash }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        try inner.read(into: buffer, at: offset)
    }
    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        if let landed = crash.consume(bytes: bytes.count) {
            if landed > 0 { try inner.write(UnsafeRawBufferPointer(rebasing: bytes[0..<min(landed, bytes.count)]), at: offset) }
            throw dead
        }
        try inner.write(bytes, at: offset)
    }
    func sync() throws {
        if crash.consume(bytes: 0) != nil { throw dead }
        try inner.sync()
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

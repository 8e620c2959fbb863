import Foundation

/// The intent log: what was written to disks since the last commit, so `fsync` costs one
/// small sequential write and one flush instead of a whole commit (docs/FORMAT.md,
/// "Intent log").
///
/// Writes, hole punches and size changes of disks are appended here (bytes included) as
/// they happen. `fsync` writes the records not yet in the `journal` file as one batch and
/// flushes that file alone. A batch names the commit it builds on (generation and commit
/// time); after a crash, recovery replays the batches built on the commit it recovered,
/// in order, through the normal write path, and commits. A full commit makes every
/// record obsolete, so the log starts again at offset 0.
///
/// Anything the log cannot express (creating or deleting disks and snapshots, times, a
/// log or buffer that would overflow) turns it off until the next commit; `fsync` then
/// commits instead. So does a commit after a transaction without any fsync: then no
/// records are kept (no copy, no memory) until the next fsync, which commits. Thread-safe; callers append while holding the object's io lock and
/// `txnLock` (read), so records of one disk are in the order the writes happened.
final class IntentLog: @unchecked Sendable {
    /// What a batch builds on: the commit it must be replayed on top of.
    struct Base: Equatable {
        var generation: UInt64
        var commitMicros: Int64
    }

    enum Record: Equatable {
        case write(object: ObjectID, offset: UInt64, bytes: [UInt8])
        case punch(object: ObjectID, offset: UInt64, length: UInt64)
        case size(object: ObjectID, size: UInt64)
    }

    static let magic: UInt64 = 0x4C4E_524A_5041_4E53   // "SNAPJRNL" as LE bytes
    static let batchHeaderSize = 64
    static let recordHeaderSize = 32
    /// Batches start and end on 4 KiB boundaries: a batch never shares a block with
    /// another, and is written with O_DIRECT (docs/FORMAT.md).
    static let alignment = 4096

    let capacity: UInt64
    /// Most bytes held in memory for the next batch; beyond this `fsync` commits instead.
    let pendingLimit: Int
    private let lock = PthreadMutex()
    private var base: Base
    private var nextSeq: UInt64 = 0
    private var fileEnd: UInt64 = 0
    private var pending: [UInt8] = []
    private var pendingRecords = 0
    private var usable = true
    /// An fsync asked for a batch since the last commit. A transaction after one without
    /// any fsync keeps no records (no copy, no memory); its first fsync commits instead.
    private var fsyncSeen = false
    /// A change since the last commit is missing from the records.
    private var dropped = false

    init(capacity: UInt64, base: Base) {
        self.capacity = capacity
        self.pendingLimit = Int(min(capacity / 4, 8 << 20))
        self.base = base
    }

    /// The fraction of the log's file taken by batches since the last commit.
    var filled: Double {
        lock.withLock { Double(fileEnd) / Double(max(capacity, 1)) }
    }

    /// A commit closed the transaction: every record so far is in it.
    func reset(base: Base) {
        lock.withLock {
            self.base = base
            nextSeq = 0
            fileEnd = 0
            pending.removeAll(keepingCapacity: true)
            pendingRecords = 0
            usable = fsyncSeen
            fsyncSeen = false
            dropped = false
        }
    }

    /// A change the log does not express: `fsync` must commit until the next commit.
    func invalidate() {
        lock.withLock { stopRecordingLocked() }
    }

    /// Drops the records and records nothing until the next commit. Caller holds `lock`.
    private func stopRecordingLocked() {
        usable = false
        dropped = true
        pending.removeAll(keepingCapacity: true)
        pendingRecords = 0
    }

    /// `n` rounded up to the batch alignment.
    static func aligned(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    func append(write object: ObjectID, offset: UInt64, bytes: UnsafeRawBufferPointer) {
        append(kind: 0, object: object, a: offset, b: UInt64(bytes.count), payload: bytes)
    }

    func append(punch object: ObjectID, offset: UInt64, length: UInt64) {
        append(kind: 1, object: object, a: offset, b: length, payload: nil)
    }

    func append(size object: ObjectID, size: UInt64) {
        append(kind: 2, object: object, a: size, b: 0, payload: nil)
    }

    private func append(kind: UInt32, object: ObjectID, a: UInt64, b: UInt64, payload: UnsafeRawBufferPointer?) {
        let size = Self.recordHeaderSize + ((payload?.count ?? 0) + 7) / 8 * 8
        lock.withLock {
            guard usable else { dropped = true; return }
            guard pending.count + size <= pendingLimit,
                  fileEnd + UInt64(Self.aligned(Self.batchHeaderSize + pending.count + size)) <= capacity else {
                stopRecordingLocked()
                return
            }
            // One buffer for the pool's life: regrowing it from several threads leaves
            // freed copies in glibc's per-thread arenas (seen as +60 MiB of peak RSS).
            if pending.capacity < pendingLimit { pending.reserveCapacity(pendingLimit) }
            let start = pending.count
            pending.append(contentsOf: repeatElement(0, count: size))
            pending.withUnsafeMutableBytes { buf in
                let r = UnsafeMutableRawBufferPointer(rebasing: buf[start...])
                r.put(kind, at: 0)
                r.put(object, at: 8)
                r.put(a, at: 16)
                r.put(b, at: 24)
                if let payload, payload.count > 0 {
                    UnsafeMutableRawBufferPointer(rebasing: r[Self.recordHeaderSize..<(Self.recordHeaderSize + payload.count)])
                        .copyMemory(from: payload)
                }
            }
            pendingRecords += 1
        }
    }

    enum Plan {
        /// Every record is already durable in the log.
        case nothingToWrite
        /// Write these bytes at this offset of the `journal` file and flush it.
        case write(bytes: [UInt8], at: UInt64)
        /// The log cannot make the changes durable: commit.
        case commit
    }

    /// The next batch, if the log can carry it. The caller holds `commitLock` and passes
    /// the generation that is durable: batches are written only on top of a durable commit.
    func takeBatch(durable: Base?) -> Plan {
        lock.withLock {
            fsyncSeen = true
            // Not recording, but nothing happened since the commit: record from now on.
            if !usable && !dropped { usable = true }
            guard usable, let durable, durable == base else { return .commit }
            guard pendingRecords > 0 else { return .nothingToWrite }
            // Encoded straight from `pending`: no second reference to its buffer, so
            // emptying it below does not copy 8 MiB.
            let bodyCount = pending.count
            var out = [UInt8](repeating: 0, count: Self.aligned(Self.batchHeaderSize + bodyCount))
            out.withUnsafeMutableBytes { b in
                pending.withUnsafeBytes { body in
                    b.put(Self.magic, at: 0)
                    b.put(base.generation, at: 8)
                    b.put(base.commitMicros, at: 16)
                    b.put(nextSeq, at: 24)
                    b.put(UInt32(pendingRecords), at: 32)
                    b.put(UInt32(bodyCount), at: 36)
                    b.put(crc32c(body), at: 40)
                    UnsafeMutableRawBufferPointer(rebasing: b[Self.batchHeaderSize..<(Self.batchHeaderSize + bodyCount)]).copyMemory(from: body)
                    b.put(crc32c(UnsafeRawBufferPointer(rebasing: b[0..<60])), at: 60)
                }
            }
            // `append` kept every record within the capacity.
            let at = fileEnd
            fileEnd += UInt64(out.count)
            nextSeq += 1
            pending.removeAll(keepingCapacity: true)
            pendingRecords = 0
            return .write(bytes: out, at: at)
        }
    }

    /// The batches built on `base`, in order, up to the first torn or foreign one.
    static func readBatches(from file: StorageFile, capacity: UInt64, base: Base) throws -> [[Record]] {
        var batches: [[Record]] = []
        var pos: UInt64 = 0
        var header = [UInt8](repeating: 0, count: batchHeaderSize)
        while pos + UInt64(batchHeaderSize) <= capacity {
            let got = try header.withUnsafeMutableBytes { try file.read(into: $0, at: pos) }
            guard got == batchHeaderSize else { break }
            let h = header.withUnsafeBytes { b -> (ok: Bool, count: Int, length: Int, crc: UInt32)? in
                guard b.get(UInt64.self, at: 0) == magic,
                      b.get(UInt32.self, at: 60) == crc32c(UnsafeRawBufferPointer(rebasing: b[0..<60])),
                      b.get(UInt64.self, at: 8) == base.generation,
                      b.get(Int64.self, at: 16) == base.commitMicros,
                      b.get(UInt64.self, at: 24) == UInt64(batches.count) else { return nil }
                return (true, Int(b.get(UInt32.self, at: 32)), Int(b.get(UInt32.self, at: 36)), b.get(UInt32.self, at: 40))
            }
            guard let h, pos + UInt64(batchHeaderSize + h.length) <= capacity else { break }
            var body = [UInt8](repeating: 0, count: h.length)
            let n = try body.withUnsafeMutableBytes { try file.read(into: $0, at: pos + UInt64(batchHeaderSize)) }
            guard n == h.length, crc32c(body) == h.crc, let records = decode(body, count: h.count) else { break }
            batches.append(records)
            pos += UInt64(aligned(batchHeaderSize + h.length))
        }
        return batches
    }

    private static func decode(_ body: [UInt8], count: Int) -> [Record]? {
        body.withUnsafeBytes { b -> [Record]? in
            var out: [Record] = []
            var at = 0
            for _ in 0..<count {
                guard at + recordHeaderSize <= b.count else { return nil }
                let kind = b.get(UInt32.self, at: at)
                let object = b.get(UInt64.self, at: at + 8)
                let x = b.get(UInt64.self, at: at + 16)
                let y = b.get(UInt64.self, at: at + 24)
                at += recordHeaderSize
                switch kind {
                case 0:
                    guard y <= UInt64(b.count - at) else { return nil }
                    out.append(.write(object: object, offset: x, bytes: Array(b[at..<(at + Int(y))])))
                    at += (Int(y) + 7) / 8 * 8
                case 1: out.append(.punch(object: object, offset: x, length: y))
                case 2: out.append(.size(object: object, size: x))
                default: return nil
                }
            }
            return out
        }
    }
}

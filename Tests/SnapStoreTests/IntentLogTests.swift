import Foundation
import XCTest
import TestSupport
@testable import SnapStore

/// `syncWrites` (fsync) through the intent log: what it acknowledged survives the death
/// of the process without any commit, stale batches are never replayed, and whatever the
/// log cannot carry falls back to a commit.
final class IntentLogTests: XCTestCase {
    typealias Image = PoolModelTests.Image
    var dirs: [String] = []

    override func tearDown() {
        for d in dirs { try? FileManager.default.removeItem(atPath: d) }
    }

    func newDir() -> String {
        let d = NSTemporaryDirectory() + "snapfs-journal-\(UUID().uuidString)"
        dirs.append(d)
        return d
    }

    func options(chunk: Int = 4096, journal: UInt64 = 1 << 20, storage: (any StorageProvider)? = nil) -> PoolOptions {
        var o = PoolOptions()
        o.chunkSize = chunk
        o.backgroundCommits = false
        o.journalBytes = journal
        o.storage = storage
        return o
    }

    func contents(_ pool: Pool, _ name: String) throws -> [UInt8] {
        let d = try XCTUnwrap(pool.disk(named: name))
        var buf = [UInt8](repeating: 0, count: Int(d.size))
        let n = try buf.withUnsafeMutableBytes { try pool.read(object: d.id, offset: 0, into: $0) }
        return Array(buf[0..<n])
    }

    func image(_ img: Image) -> [UInt8] { img.bytes(0, Int(img.size)) }

    func testFsyncedWritesPunchesAndSizesSurviveDeathWithoutACommit() throws {
        let dir = newDir()
        let pool = try Pool.open(directory: dir, options: options())
        let d = try pool.createDisk(name: "d", size: 256 << 10)
        try pool.sync()
        try pool.syncWrites()   // nothing since the commit: the log records from here on
        let generation = pool.lastCommitted
        var model = Image()
        model.size = 256 << 10
        var rng = PoolModelTests.RNG(state: 11)
        for step in 0..<60 {
            switch step % 10 {
            case 7:
                let off = UInt64.random(in: 0..<(200 << 10), using: &rng)
                try pool.punchHole(disk: d.id, offset: off, length: 9000)
                model.zero(off, min(model.size, off + 9000))
            case 9:
                let size = UInt64.random(in: (100 << 10)..<(300 << 10), using: &rng)
                try pool.setDiskSize(id: d.id, size: size)
                model.truncate(size)
            default:
                let off = UInt64.random(in: 0..<(280 << 10), using: &rng)
                let bytes = (0..<Int.random(in: 1...7000, using: &rng)).map { _ in UInt8.random(in: 1...255, using: &rng) }
                try bytes.withUnsafeBytes { try pool.write(disk: d.id, offset: off, data: $0) }
                model.write(off, bytes)
            }
            if step % 3 == 2 { try pool.syncWrites() }
        }
        try pool.syncWrites()
        XCTAssertEqual(pool.lastCommitted, generation, "fsync went through the log, not a commit")
        // Not acknowledged: may be lost (and is: nothing wrote it anywhere durable).
        try [UInt8](repeating: 0xEE, count: 5000).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        pool.abandon()

        let reopened = try Pool.open(directory: dir, options: options())
        XCTAssertEqual(reopened.recoveredFromJournal.batches, 20)
        XCTAssertEqual(reopened.recoveredFromJournal.skipped, 0)
        XCTAssertTrue(try contents(reopened, "d") == image(model), "disk after replay equals every fsync'd change")
        XCTAssertTrue(reopened.check().isClean)
        try reopened.close()
        // The replay was committed: a second open has nothing to replay and the same bytes.
        let again = try Pool.open(directory: dir, options: options())
        XCTAssertEqual(again.recoveredFromJournal.batches, 0)
        XCTAssertTrue(try contents(again, "d") == image(model))
        try again.close()
    }

    func testBatchesOfAnOlderCommitAreNeverReplayed() throws {
        let dir = newDir()
        let pool = try Pool.open(directory: dir, options: options())
        let d = try pool.createDisk(name: "d")
        try pool.sync()
        try pool.syncWrites()
        func put(_ byte: UInt8, at off: UInt64) throws {
            try [UInt8](repeating: byte, count: 4096).withUnsafeBytes { try pool.write(disk: d.id, offset: off, data: $0) }
        }
        // Three batches built on commit G, one block each.
        try put(1, at: 0); try pool.syncWrites()
        try put(2, at: 4096); try pool.syncWrites()
        try put(3, at: 12288); try pool.syncWrites()
        try put(6, at: 4096)
        try put(7, at: 12288)
        try pool.sync()                                // commit G+1: blocks 1, 6, 7
        try put(9, at: 8192); try pool.syncWrites()    // one batch on G+1, at the log's start
        pool.abandon()

        let reopened = try Pool.open(directory: dir, options: options())
        XCTAssertEqual(reopened.recoveredFromJournal.batches, 1, "only the batch built on the recovered commit")
        let got = try contents(reopened, "d")
        XCTAssertEqual([got[0], got[4096], got[8192], got[12288]], [1, 6, 9, 7],
                       "the batches of commit G behind the new one are not applied again")
        try reopened.close()
    }

    func testWhatTheLogCannotCarryIsCommitted() throws {
        let dir = newDir()
        let pool = try Pool.open(directory: dir, options: options(journal: 64 << 10))
        let d = try pool.createDisk(name: "d")
        try pool.sync()
        var generation = pool.lastCommitted
        // Larger than the log: fsync commits instead.
        let big = [UInt8](repeating: 7, count: 100 << 10)
        try big.withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        try pool.syncWrites()
        XCTAssertGreaterThan(pool.lastCommitted, generation, "an overflowing log falls back to a commit")
        generation = pool.lastCommitted
        // A snapshot is not a record: the next fsync commits it.
        try [UInt8](repeating: 8, count: 10).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        _ = try pool.createSnapshots([SnapshotRequest(disk: "d", label: "s")])
        try pool.syncWrites()
        XCTAssertGreaterThan(pool.lastCommitted, generation, "a change the log cannot express is committed")
        generation = pool.lastCommitted
        // Plain writes again use the log.
        try [UInt8](repeating: 9, count: 10).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        try pool.syncWrites()
        XCTAssertEqual(pool.lastCommitted, generation)
        pool.abandon()
        let reopened = try Pool.open(directory: dir, options: options(journal: 64 << 10))
        let got = try contents(reopened, "d")
        XCTAssertEqual(Array(got[0..<11]), [UInt8](repeating: 9, count: 10) + [7])
        XCTAssertEqual(got.count, 100 << 10)
        let snap = try XCTUnwrap(reopened.snapshot(named: "d@s"))
        var b = [UInt8](repeating: 0, count: 11)
        _ = try b.withUnsafeMutableBytes { try reopened.read(object: snap.id, offset: 0, into: $0) }
        XCTAssertEqual(b, [UInt8](repeating: 8, count: 10) + [7])
        XCTAssertTrue(reopened.check().isClean)
        try reopened.close()
    }

    /// Without an fsync in a transaction, the next one keeps no records; its first fsync
    /// commits and arms the log again.
    func testTheLogRecordsOnlyWhileFsyncsAreComing() throws {
        let pool = try Pool.open(directory: newDir(), options: options())
        let d = try pool.createDisk(name: "d")
        try pool.sync()
        let write = { (b: UInt8) in try [UInt8](repeating: b, count: 100).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) } }
        try write(1)
        var generation = pool.lastCommitted
        try pool.syncWrites()
        XCTAssertGreaterThan(pool.lastCommitted, generation, "not recording: the first fsync commits")
        generation = pool.lastCommitted
        try write(2)
        try pool.syncWrites()
        XCTAssertEqual(pool.lastCommitted, generation, "armed: the next fsync is a log batch")
        try pool.commitNow()                        // a commit of a transaction with an fsync: stays armed
        generation = pool.lastCommitted
        try write(3)
        try pool.syncWrites()
        XCTAssertEqual(pool.lastCommitted, generation)
        try pool.commitNow()
        try pool.commitNow()                        // a transaction without an fsync: disarmed
        generation = pool.lastCommitted
        try write(4)
        try pool.syncWrites()
        XCTAssertGreaterThan(pool.lastCommitted, generation)
        try pool.close()
    }

    /// With fsyncs coming steadily, the committer commits once the log is half full, so
    /// no fsync finds it full and has to commit (flushing every chunk written since the
    /// last commit) itself; what the fsyncs acknowledged is all there afterwards.
    func testTheCommitterCommitsBeforeTheLogFills() throws {
        let dir = newDir()
        var o = options(journal: 256 << 10)
        o.backgroundCommits = true
        let pool = try Pool.open(directory: dir, options: o)
        let d = try pool.createDisk(name: "d", size: 1 << 20)
        try pool.sync()
        try pool.syncWrites()
        let generation = pool.lastCommitted
        var model = Image()
        model.size = 1 << 20
        // 8 KiB batches: 20 of them fill 160 of the log's 256 KiB, so no fsync overflows it.
        for i in 0..<20 {
            let bytes = [UInt8](repeating: UInt8(i + 1), count: 4096)
            let off = UInt64(i * 3 % 64) * 16384
            try bytes.withUnsafeBytes { try pool.write(disk: d.id, offset: off, data: $0) }
            model.write(off, bytes)
            try pool.syncWrites()
        }
        XCTAssertGreaterThanOrEqual(pool.journal.filled, Pool.logCommitThreshold)
        // The time-based commit is 5 s away; the log's fill is what brings this one.
        let deadline = Date().addingTimeInterval(2)
        while pool.lastCommitted == generation && Date() < deadline { usleep(10_000) }
        XCTAssertGreaterThan(pool.lastCommitted, generation, "the committer committed the half-full log")
        XCTAssertLessThan(pool.journal.filled, Pool.logCommitThreshold, "the commit started the log again")
        pool.abandon()
        let reopened = try Pool.open(directory: dir, options: options(journal: 256 << 10))
        XCTAssertTrue(try contents(reopened, "d") == image(model))
        XCTAssertTrue(reopened.check().isClean)
        try reopened.close()
    }

    /// The process dies at every I/O of a journal flush in turn (torn write, then
    /// nothing; even points also lose unflushed writes as in a power cut). The reopened
    /// pool holds everything the earlier fsyncs acknowledged, and the interrupted fsync's
    /// writes either wholly or not at all.
    func testDeathDuringAJournalFlush() throws {
        var fellBack = 0, landed = 0
        for point in 0..<24 {
            let dir = newDir()
            let crash = CrashSwitch(seed: UInt64(point) + 3)
            let pool = try Pool.open(directory: dir, options: options(storage: CrashingStorage(directory: dir, crash: crash)))
            let d = try pool.createDisk(name: "d")
            try pool.sync()
            try pool.syncWrites()
            var acked = Image()
            var rng = PoolModelTests.RNG(state: UInt64(point) + 100)
            for _ in 0..<5 {
                let off = UInt64.random(in: 0..<(64 << 10), using: &rng)
                let bytes = (0..<Int.random(in: 1...6000, using: &rng)).map { _ in UInt8.random(in: 1...255, using: &rng) }
                try bytes.withUnsafeBytes { try pool.write(disk: d.id, offset: off, data: $0) }
                acked.write(off, bytes)
                try pool.syncWrites()
            }
            var next = acked
            let tail = [UInt8](repeating: UInt8(point + 1), count: 5000)
            try tail.withUnsafeBytes { try pool.write(disk: d.id, offset: 3000, data: $0) }
            next.write(3000, tail)
            crash.arm(afterOperations: point / 2)
            do { try pool.syncWrites() } catch {}
            pool.abandon()
            if point % 2 == 0 { crash.powerLoss() }
            let reopened = try Pool.open(directory: dir, options: options())
            let got = try contents(reopened, "d")
            if got == image(acked) { fellBack += 1 } else if got == image(next) { landed += 1 } else {
                XCTFail("point \(point): recovered disk is neither the acknowledged state nor the one being synced")
            }
            XCTAssertTrue(reopened.check().isClean, "point \(point)")
            try reopened.close()
        }
        XCTAssertGreaterThan(fellBack, 0)
        XCTAssertGreaterThan(landed, 0)
    }

    func testRecordsRoundTrip() throws {
        let dir = newDir()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let file = try PosixDirectory(path: dir).open("j", create: true, readOnly: false)
        let base = IntentLog.Base(generation: 5, commitMicros: 123)
        let log = IntentLog(capacity: 1 << 20, base: base)
        let payload: [UInt8] = (0..<1001).map { UInt8($0 % 251) }
        payload.withUnsafeBytes { log.append(write: 3, offset: 77, bytes: $0) }
        log.append(punch: 3, offset: 4096, length: 8192)
        guard case .write(let first, let at0) = log.takeBatch(durable: base) else { return XCTFail("no batch") }
        try first.withUnsafeBytes { try file.write($0, at: at0) }
        log.append(size: 4, size: 1 << 30)
        guard case .write(let second, let at1) = log.takeBatch(durable: base) else { return XCTFail("no batch") }
        XCTAssertEqual(at1 % UInt64(IntentLog.alignment), 0)
        XCTAssertEqual(log.takeBatch(durable: base).isNothing, true)
        XCTAssertEqual(log.takeBatch(durable: IntentLog.Base(generation: 6, commitMicros: 1)).isCommit, true,
                       "no batch on top of a commit that is not the log's base")
        try second.withUnsafeBytes { try file.write($0, at: at1) }
        let read = try IntentLog.readBatches(from: file, capacity: 1 << 20, base: base)
        XCTAssertEqual(read, [[.write(object: 3, offset: 77, bytes: payload), .punch(object: 3, offset: 4096, length: 8192)],
                              [.size(object: 4, size: 1 << 30)]])
        XCTAssertEqual(try IntentLog.readBatches(from: file, capacity: 1 << 20, base: IntentLog.Base(generation: 5, commitMicros: 124)).count, 0,
                       "a batch of another commit with the same generation is foreign")
        // A flipped byte in the second batch's body ends the log after the first.
        var corrupt = second
        corrupt[IntentLog.batchHeaderSize + 3] ^= 1
        try corrupt.withUnsafeBytes { try file.write($0, at: at1) }
        XCTAssertEqual(try IntentLog.readBatches(from: file, capacity: 1 << 20, base: base).count, 1)
    }
}

extension IntentLog.Plan {
    var isNothing: Bool { if case .nothingToWrite = self { return true } else { return false } }
    var isCommit: Bool { if case .commit = self { return true } else { return false } }
}

import Foundation
import XCTest
import TestSupport
@testable import SnapStore

/// Faults below the store surface as errnos, and nothing acknowledged is lost.
final class FaultInjectionTests: XCTestCase {
    var dir = ""
    let plan = FaultPlan()
    override func setUp() { dir = NSTemporaryDirectory() + "snapfs-fault-\(UUID().uuidString)" }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func open() throws -> Pool {
        var o = PoolOptions()
        o.backgroundCommits = false
        o.storage = FaultyStorage(directory: dir, plan: plan)
        return try Pool.open(directory: dir, options: o)
    }

    func bytes(_ v: UInt8, _ n: Int = 65536) -> [UInt8] { [UInt8](repeating: v, count: n) }

    func read(_ pool: Pool, _ id: ObjectID, _ off: UInt64, _ n: Int = 65536) throws -> [UInt8] {
        var b = [UInt8](repeating: 0xEE, count: n)
        let got = try b.withUnsafeMutableBytes { try pool.read(object: id, offset: off, into: $0) }
        return Array(b[0..<got])
    }

    /// A plain reopen after the failure: the next mount (or the daemon's restart).
    func reopenPlain() throws -> Pool {
        var o = PoolOptions()
        o.backgroundCommits = false
        return try Pool.open(directory: dir, options: o)
    }

    func testAFullHostRefusesTheWriteAndThePoolGoesOn() throws {
        let pool = try open()
        let d = try pool.createDisk(name: "d")
        try bytes(1).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        try pool.sync()
        plan.failNext("data.000000", .write, .init(errno: ENOSPC))
        XCTAssertThrowsError(try bytes(2).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }) { e in
            XCTAssertEqual((e as? StoreError)?.errno, ENOSPC)
        }
        XCTAssertNil(pool.stoppedReason, "ENOSPC is a full pool, not a lost write")
        XCTAssertTrue(try read(pool, d.id, 0) == bytes(1))
        try bytes(4).withUnsafeBytes { try pool.write(disk: d.id, offset: 65536, data: $0) }
        try pool.sync()
        XCTAssertTrue(pool.check().isClean)
        try pool.close()
        let again = try open()
        XCTAssertTrue(try read(again, d.id, 0) == bytes(1))
        XCTAssertTrue(try read(again, d.id, 65536) == bytes(4))
        try again.close()
    }

    func testATornDataWriteStopsThePoolAndAcknowledgesNothingMore() throws {
        let pool = try open()
        let d = try pool.createDisk(name: "d")
        try bytes(1).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        try pool.sync()
        plan.failNext("data.000000", .write, .init(errno: EIO, landedBytes: 4096))
        XCTAssertThrowsError(try bytes(3, 4096).withUnsafeBytes { try pool.write(disk: d.id, offset: 100, data: $0) }) { e in
            XCTAssertEqual((e as? StoreError)?.errno, EIO)
        }
        XCTAssertNotNil(pool.stoppedReason)
        try assertStopped(pool, disk: d.id)
        XCTAssertTrue(try read(pool, d.id, 0) == bytes(1), "reads go on, and the acknowledged bytes are there")
        XCTAssertThrowsError(try pool.close())
        let again = try reopenPlain()
        XCTAssertTrue(try read(again, d.id, 0) == bytes(1))
        XCTAssertTrue(again.check().isClean)
        try again.close()
    }

    /// Every write or flush that can fail during a commit or an fsync: the call fails with
    /// EIO, the pool acknowledges nothing after it (the retry that "succeeded" without the
    /// lost pages is what fsyncgate was), and the next open has everything acknowledged.
    func testAFailedWriteOrFlushStopsThePoolAndReopenHasEverythingAcknowledged() throws {
        let faults: [(String, FaultPlan.Op)] = [("meta", .sync), ("meta", .write), ("superblock", .write),
            ("superblock", .sync), ("data.refs", .write), ("meta.refs", .sync), ("data.000000", .sync),
            ("journal", .write), ("journal", .sync)]
        for (file, op) in faults {
            try? FileManager.default.removeItem(atPath: dir)
            let pool = try open()
            let d = try pool.createDisk(name: "d")
            try bytes(5).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
            _ = try pool.createSnapshots([SnapshotRequest(disk: "d", label: "s")])
            try pool.sync()
            // Acknowledged through the intent log only: its chunk is not flushed yet.
            try bytes(6).withUnsafeBytes { try pool.write(disk: d.id, offset: 65536, data: $0) }
            try pool.syncWrites()
            // Written, never acknowledged by a flush: may or may not survive.
            try bytes(7).withUnsafeBytes { try pool.write(disk: d.id, offset: 131072, data: $0) }
            plan.failNext(file, op, .init(errno: EIO))
            let failing = file == "journal" ? { try pool.syncWrites() } : { try pool.sync() }
            XCTAssertThrowsError(try failing(), "a failed \(op) of \(file)") { e in
                XCTAssertEqual((e as? StoreError)?.errno, EIO, "\(file) \(op)")
            }
            XCTAssertEqual(plan.fired, 1, "\(file) \(op) was reached")
            plan.reset()
            try assertStopped(pool, disk: d.id, "\(file) \(op)")
            XCTAssertTrue(try read(pool, d.id, 0) == bytes(5), "\(file) \(op): reads go on")
            XCTAssertThrowsError(try pool.close(), "a stopped pool does not close cleanly")
            let again = try reopenPlain()
            let disk = try XCTUnwrap(again.disk(named: "d"))
            XCTAssertTrue(try read(again, disk.id, 0) == bytes(5), "\(file) \(op)")
            XCTAssertTrue(try read(again, disk.id, 65536) == bytes(6), "\(file) \(op): the fsync'd write")
            XCTAssertTrue(try read(again, try XCTUnwrap(again.snapshot(named: "d@s")).id, 0) == bytes(5))
            XCTAssertEqual(again.snapshots().count, 1, "\(file) \(op): no snapshot from after the failure")
            let report = again.check()
            XCTAssertTrue(report.isClean, "\(file) \(op): " + report.problems.joined(separator: "\n"))
            try again.close()
        }
    }

    /// The committer's own flush of the data segments fails: the pool stops by itself, and
    /// the next fsync says so instead of committing a map over lost chunks.
    func testAFailedBackgroundFlushStopsThePool() throws {
        var o = PoolOptions()
        o.storage = FaultyStorage(directory: dir, plan: plan)
        let pool = try Pool.open(directory: dir, options: o)
        let d = try pool.createDisk(name: "d")
        try pool.sync()
        try bytes(8).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        try pool.syncWrites()
        plan.failNext("data.000000", .sync, .init(errno: EIO))
        try bytes(9).withUnsafeBytes { try pool.write(disk: d.id, offset: 65536, data: $0) }
        let deadline = Date(timeIntervalSinceNow: Pool.commitInterval + 5)
        while pool.stoppedReason == nil && Date() < deadline { usleep(50_000) }
        XCTAssertNotNil(pool.stoppedReason, "the background commit's failed flush stops the pool")
        try assertStopped(pool, disk: d.id)
        XCTAssertThrowsError(try pool.close())
        let again = try reopenPlain()
        XCTAssertTrue(try read(again, d.id, 0) == bytes(8), "the fsync'd write is recovered from the log")
        XCTAssertTrue(again.check().isClean)
        try again.close()
    }

    /// Nothing that would acknowledge a change works on a stopped pool; reads do.
    func assertStopped(_ pool: Pool, disk: ObjectID, _ what: String = "", file: StaticString = #filePath, line: UInt = #line) throws {
        func eio(_ name: String, _ body: () throws -> Void) {
            XCTAssertThrowsError(try body(), "\(what): \(name) after the failure", file: file, line: line) { e in
                XCTAssertEqual((e as? StoreError)?.errno, EIO, "\(what): \(name): \(e)", file: file, line: line)
            }
        }
        eio("write") { try bytes(9).withUnsafeBytes { try pool.write(disk: disk, offset: 0, data: $0) } }
        eio("fsync") { try pool.syncWrites() }
        eio("commit") { try pool.sync() }
        eio("snapshot") { _ = try pool.createSnapshots([SnapshotRequest(disk: "d", label: "after")]) }
        eio("create disk") { _ = try pool.createDisk(name: "e") }
        eio("delete") { try pool.deleteSnapshot(name: "d@s") }
        eio("resize") { try pool.setDiskSize(id: disk, size: 1 << 30) }
        eio("grow") { try pool.growDisk(id: disk, to: 1 << 30) }
        eio("punch") { try pool.punchHole(disk: disk, offset: 0, length: 4096) }
        XCTAssertNil(pool.snapshot(named: "d@after"), file: file, line: line)
        XCTAssertNil(pool.disk(named: "e"), file: file, line: line)
    }
}

/// Commits run while other threads write and read: a node of a commit in flight must
/// stay readable (a small cache used to evict it before the commit had written it).
final class ConcurrentCommitTests: XCTestCase {
    func testWritesAndReadsDuringCommitsWithATinyCache() throws {
        let dir = NSTemporaryDirectory() + "snapfs-conc-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o = PoolOptions()
        o.backgroundCommits = false
        o.chunkSize = 4096
        o.cacheBlocks = 64
        let pool = try Pool.open(directory: dir, options: o)
        let d = try pool.createDisk(name: "d")
        let stop = NSLock()
        nonisolated(unsafe) var done = false
        nonisolated(unsafe) var failures: [String] = []
        let committer = Thread {
            while !stop.withLock({ done }) {
                do { try pool.sync() } catch { stop.withLock { failures.append("sync: \(error)") } }
            }
        }
        committer.start()
        // Scattered writes over 4 GiB of address space: many leaves, far more than 64 cached.
        var rng = PoolModelTests.RNG(state: 99)
        var written: [UInt64: UInt8] = [:]
        for i in 0..<6000 {
            let block = UInt64.random(in: 0..<(1 << 20), using: &rng)
            let v = UInt8(i % 251 + 1)
            do {
                try [UInt8](repeating: v, count: 4096).withUnsafeBytes { try pool.write(disk: d.id, offset: block * 4096, data: $0) }
                written[block] = v
                if let (b, want) = written.randomElement(using: &rng) {
                    var buf = [UInt8](repeating: 0, count: 4096)
                    _ = try buf.withUnsafeMutableBytes { try pool.read(object: d.id, offset: b * 4096, into: $0) }
                    if buf[0] != want || buf[4095] != want { failures.append("block \(b): read \(buf[0]), wrote \(want)") }
                }
            } catch { failures.append("op \(i): \(error)"); break }
        }
        stop.withLock { done = true }
        while committer.isExecuting { usleep(1000) }
        XCTAssertEqual(failures.prefix(5), [])
        try pool.sync()
        XCTAssertTrue(pool.check().isClean)
        try pool.close()
    }
}

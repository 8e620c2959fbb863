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

    func testFailedAndTornDataWritesAreNotAcknowledgedAndChangeNothing() throws {
        let pool = try open()
        let d = try pool.createDisk(name: "d")
        try bytes(1).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        try pool.sync()
        // ENOSPC from the host on the data file: the write reports ENOSPC.
        plan.failNext("data.000000", .write, .init(errno: ENOSPC))
        XCTAssertThrowsError(try bytes(2).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }) { e in
            XCTAssertEqual((e as? StoreError)?.errno, ENOSPC)
        }
        // A torn EIO write: the disk still reads the acknowledged bytes (copy-on-write).
        plan.failNext("data.000000", .write, .init(errno: EIO, landedBytes: 4096))
        XCTAssertThrowsError(try bytes(3, 4096).withUnsafeBytes { try pool.write(disk: d.id, offset: 100, data: $0) }) { e in
            XCTAssertEqual((e as? StoreError)?.errno, EIO)
        }
        XCTAssertTrue(try read(pool, d.id, 0) == bytes(1))
        // The next write works and everything survives a reopen.
        try bytes(4).withUnsafeBytes { try pool.write(disk: d.id, offset: 65536, data: $0) }
        try pool.sync()
        XCTAssertTrue(pool.check().isClean)
        try pool.close()
        let again = try open()
        XCTAssertTrue(try read(again, d.id, 0) == bytes(1))
        XCTAssertTrue(try read(again, d.id, 65536) == bytes(4))
        XCTAssertTrue(again.check().isClean)
        try again.close()
    }

    func testFailedFlushFailsSyncAndTheRetryCommitsEverything() throws {
        let pool = try open()
        let d = try pool.createDisk(name: "d")
        try bytes(5).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        _ = try pool.createSnapshots([SnapshotRequest(disk: "d", label: "s")])
        for (file, op) in [("meta", FaultPlan.Op.sync), ("superblock", .write), ("data.refs", .write), ("data.000000", .sync)] {
            plan.failNext(file, op, .init(errno: EIO))
            XCTAssertThrowsError(try pool.sync(), "a failed \(op) of \(file) fails the sync") { e in
                XCTAssertEqual((e as? StoreError)?.errno, EIO)
            }
            // Work continues after the failure and is part of the next commit.
            try bytes(UInt8(6 + file.count)).withUnsafeBytes { try pool.write(disk: d.id, offset: 131072, data: $0) }
        }
        try pool.sync()
        XCTAssertEqual(plan.fired, 4)
        XCTAssertTrue(pool.check().isClean, pool.check().problems.joined(separator: "\n"))
        try pool.close()
        let again = try open()
        XCTAssertTrue(try read(again, again.disk(named: "d")!.id, 0) == bytes(5))
        XCTAssertTrue(try read(again, again.snapshot(named: "d@s")!.id, 0) == bytes(5))
        XCTAssertTrue(try read(again, again.disk(named: "d")!.id, 131072) == bytes(UInt8(6 + "data.000000".count)))
        XCTAssertTrue(again.check().isClean)
        try again.close()
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

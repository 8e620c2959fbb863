import Foundation
import XCTest
import TestSupport
@testable import SnapStore

/// Deletion releases a map a piece at a time, under a record marked deleting, so it never
/// holds the pool's lock for long and a crash in the middle resumes instead of exposing a
/// partly released map.
final class DeletionTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = NSTemporaryDirectory() + "snapfs-del-\(UUID().uuidString)" }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func open() throws -> Pool {
        var o = PoolOptions()
        o.backgroundCommits = false
        o.chunkSize = 4096
        return try Pool.open(directory: dir, options: o)
    }

    func fill(_ pool: Pool, _ disk: ObjectID, chunks: Int, value: UInt8) throws {
        let block = [UInt8](repeating: value, count: 64 << 10)
        for i in 0..<(chunks * 4096 / block.count) {
            try block.withUnsafeBytes { try pool.write(disk: disk, offset: UInt64(i * block.count), data: $0) }
        }
    }

    func read(_ pool: Pool, _ id: ObjectID, _ off: UInt64, _ n: Int = 4096) throws -> [UInt8] {
        var b = [UInt8](repeating: 0xEE, count: n)
        let got = try b.withUnsafeMutableBytes { try pool.read(object: id, offset: off, into: $0) }
        return Array(b[0..<got])
    }

    /// A snapshot holding 20,000 chunks of its own (80 leaves) goes in pieces: its chunks
    /// come back, its neighbours are untouched, and `check` agrees with every count.
    func testDeletingAnExclusiveSnapshotFreesItsChunksInPieces() throws {
        let pool = try open()
        let d = try pool.createDisk(name: "d")
        try fill(pool, d.id, chunks: 20_480, value: 1)
        _ = try pool.createSnapshots([SnapshotRequest(disk: "d", label: "old")])
        try fill(pool, d.id, chunks: 20_480, value: 2)       // the snapshot now holds its own
        _ = try pool.createSnapshots([SnapshotRequest(disk: "d", label: "keep")])
        try pool.sync()
        let before = pool.stats().dataChunksInUse
        var pieces = 0
        pool.releasePieceHook = { pieces = $0 }
        try pool.deleteSnapshot(name: "d@old")
        XCTAssertGreaterThanOrEqual(pieces, 80, "one leaf a piece at most")
        try pool.sync()
        XCTAssertEqual(before - pool.stats().dataChunksInUse, 20_480)
        XCTAssertNil(pool.snapshot(named: "d@old"))
        XCTAssertEqual(try read(pool, pool.snapshot(named: "d@keep")!.id, 12345 * 4096), [UInt8](repeating: 2, count: 4096))
        let report = pool.check()
        XCTAssertTrue(report.isClean, report.problems.joined(separator: "\n"))
        try pool.close()
    }

    /// A snapshot sharing all its map with its disk costs one count, not a walk.
    func testDeletingASharedSnapshotIsOnePiece() throws {
        let pool = try open()
        let d = try pool.createDisk(name: "d")
        try fill(pool, d.id, chunks: 8192, value: 3)
        _ = try pool.createSnapshots([SnapshotRequest(disk: "d", label: "s")])
        try pool.sync()
        var pieces = 0
        pool.releasePieceHook = { pieces = $0 }
        try pool.deleteSnapshot(name: "d@s")
        XCTAssertEqual(pieces, 1)
        XCTAssertEqual(try read(pool, d.id, 8000 * 4096), [UInt8](repeating: 3, count: 4096))
        XCTAssertTrue(pool.check().isClean)
        try pool.close()
    }

    /// A commit lands halfway through a deletion, then the daemon dies: the next open finds
    /// the record marked deleting and finishes the release; nothing else changed.
    func testACrashHalfwayThroughADeletionResumesItAtOpen() throws {
        for stopAt in [1, 7, 40] {
            try? FileManager.default.removeItem(atPath: dir)
            let pool = try open()
            let d = try pool.createDisk(name: "d")
            try fill(pool, d.id, chunks: 20_480, value: 4)
            _ = try pool.createSnapshots([SnapshotRequest(disk: "d", label: "old")])
            try fill(pool, d.id, chunks: 20_480, value: 5)
            try pool.sync()
            let inUseWithout = pool.stats().dataChunksInUse - 20_480
            struct Died: Error {}
            pool.releasePieceHook = { n in
                guard n == stopAt else { return }
                try? pool.commitNow()
                pool.abandon()
                pool.releasePieceHook = nil
            }
            // The deletion goes on in memory after the "death"; only the commit above counts.
            try? pool.deleteSnapshot(name: "d@old")
            let again = try open()
            XCTAssertNil(again.snapshot(named: "d@old"), "stopped after piece \(stopAt)")
            XCTAssertEqual(again.snapshots().count, 0)
            XCTAssertEqual(again.stats().dataChunksInUse, inUseWithout, "stopped after piece \(stopAt)")
            XCTAssertEqual(try read(again, d.id, 777 * 4096), [UInt8](repeating: 5, count: 4096))
            let report = again.check()
            XCTAssertTrue(report.isClean, "stopped after piece \(stopAt): " + report.problems.joined(separator: "\n"))
            try again.close()
        }
    }

    /// A reader holds its snapshot: a deletion waits for it, and what it reads is the
    /// snapshot's bytes throughout.
    func testADeletionWaitsForTheSnapshotsReaders() throws {
        let pool = try open()
        let d = try pool.createDisk(name: "d")
        try fill(pool, d.id, chunks: 4096, value: 6)
        let s = try pool.createSnapshots([SnapshotRequest(disk: "d", label: "s")])[0]
        try fill(pool, d.id, chunks: 4096, value: 7)
        var reader: MapReader? = try pool.openReader(snapshot: s.id)
        let deleted = NSLock()
        nonisolated(unsafe) var done = false
        let t = Thread {
            try? pool.deleteSnapshot(name: "d@s")
            deleted.withLock { done = true }
        }
        t.start()
        usleep(200_000)
        XCTAssertFalse(deleted.withLock { done }, "the deletion waits for the reader")
        var b = [UInt8](repeating: 0, count: 4096)
        XCTAssertEqual(try b.withUnsafeMutableBytes { try reader!.read(at: 4000 * 4096, into: $0) }, 4096)
        XCTAssertEqual(b, [UInt8](repeating: 6, count: 4096))
        reader = nil
        let deadline = Date(timeIntervalSinceNow: 10)
        while !deleted.withLock({ done }) && Date() < deadline { usleep(10_000) }
        XCTAssertTrue(deleted.withLock { done })
        XCTAssertTrue(pool.check().isClean)
        try pool.close()
    }
}

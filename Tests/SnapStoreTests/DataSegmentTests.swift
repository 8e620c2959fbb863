import Foundation
import XCTest
import TestSupport
@testable import SnapStore

/// The data chunks live in segment files (docs/FORMAT.md, "Data segments"): the layout's
/// arithmetic, the segmented file's cutting of each request, and a pool across segments.
final class DataSegmentTests: XCTestCase {
    var dir = ""
    let plan = FaultPlan()
    override func setUp() {
        dir = NSTemporaryDirectory() + "snapfs-segments-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testLayoutDoublesThenStaysAtTheLargestSize() {
        let l = SegmentLayout.standard
        let MiB: UInt64 = 1 << 20
        let starts = (0...8).map { l.start(of: $0) / MiB }
        XCTAssertEqual(starts, [0, 32, 64, 128, 256, 512, 1024, 2048, 3072])
        for k in 0...8 as ClosedRange<UInt64> {
            XCTAssertEqual(l.segment(of: l.start(of: k)), k, "first byte of segment \(k)")
            XCTAssertEqual(l.segment(of: l.end(of: k) - 1), k, "last byte of segment \(k)")
        }
        XCTAssertEqual(l.segment(of: 1 << 40), 1024 + 5, "a TiB in: 1 GiB segments after the five doubling ones")
        let flat = SegmentLayout(first: 4096, largest: 4096)
        XCTAssertEqual((0...3).map { flat.start(of: $0) }, [0, 4096, 8192, 12288])
        XCTAssertEqual(flat.segment(of: 12287), 2)
        XCTAssertEqual(SegmentLayout.fileName(7), "data.000007")
        XCTAssertEqual(SegmentLayout.fileName(1234567), "data.1234567")
        XCTAssertEqual(SegmentLayout.index(ofFileName: "data.000007"), 7)
        XCTAssertEqual(SegmentLayout.index(ofFileName: "data.1234567"), 1234567)
        XCTAssertNil(SegmentLayout.index(ofFileName: "data.refs"))
        XCTAssertNil(SegmentLayout.index(ofFileName: "data"))
        XCTAssertNotNil(SegmentLayout(first: 8192, largest: 4096).problem(chunkSize: 4096), "largest below first")
        XCTAssertNotNil(SegmentLayout(first: 4096, largest: 1 << 20).problem(chunkSize: 16384), "first below the chunk size")
        XCTAssertNotNil(SegmentLayout(first: 12288, largest: 1 << 20).problem(chunkSize: 4096), "not a power of two")
        XCTAssertNil(l.problem(chunkSize: 1 << 20))
    }

    /// Segments of 4, 4, 8, 16, 16... KiB, over faulty storage (which also counts flushes).
    func segmentedFile() throws -> SegmentedFile {
        try SegmentedFile(provider: FaultyStorage(directory: dir, plan: plan),
                          layout: SegmentLayout(first: 4096, largest: 16384), readOnly: false)
    }

    func files() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("data.") }.sorted()
    }

    func testRequestsAreCutAtSegmentBoundaries() throws {
        let f = try segmentedFile()
        let bytes = (0..<30_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 / 251) }
        try bytes.withUnsafeBytes { try f.write($0, at: 1000) }
        // 1000..<31000 spans segments 0 (0..<4K), 1 (4K..<8K), 2 (8K..<16K), 3 (16K..<32K).
        XCTAssertEqual(try files(), ["data.000000", "data.000001", "data.000002", "data.000003"])
        XCTAssertEqual(try f.size(), 31_000)
        let st = try FileManager.default.attributesOfItem(atPath: dir + "/data.000003")
        XCTAssertEqual(st[.size] as? UInt64, 31_000 - 16_384, "segment 3 holds the bytes from 16 KiB on, from its own offset 0")
        var back = [UInt8](repeating: 0xEE, count: 40_000)
        let n = try back.withUnsafeMutableBytes { try f.read(into: $0, at: 0) }
        XCTAssertEqual(n, 31_000, "a read stops at the end of the data")
        XCTAssertEqual(Array(back[0..<1000]), [UInt8](repeating: 0, count: 1000))
        XCTAssertEqual(Array(back[1000..<31_000]), bytes)

        // A write far out leaves the segments between missing: they read as zeros.
        try [UInt8](repeating: 9, count: 100).withUnsafeBytes { try f.write($0, at: 100_000) }
        XCTAssertFalse(try files().contains("data.000004"))
        var mid = [UInt8](repeating: 0xEE, count: 70_000)
        XCTAssertEqual(try mid.withUnsafeMutableBytes { try f.read(into: $0, at: 30_100) }, 70_000)
        XCTAssertEqual(Array(mid[0..<900]), Array(bytes[(30_100 - 1000)...]))
        XCTAssertTrue(mid[900..<69_900].allSatisfy { $0 == 0 }, "holes and missing segments read as zeros")
        XCTAssertTrue(mid[69_900...].allSatisfy { $0 == 9 })

        // Truncating removes whole segments past the cut and shortens the one holding it.
        try f.truncate(to: 10_000)
        XCTAssertEqual(try files(), ["data.000000", "data.000001", "data.000002"])
        XCTAssertEqual(try f.size(), 10_000)
        try f.truncate(to: 8192)   // exactly the start of segment 2: nothing of it is kept
        XCTAssertEqual(try files(), ["data.000000", "data.000001"])
        XCTAssertEqual(try f.size(), 8192)
        var tail = [UInt8](repeating: 0xEE, count: 8192)
        XCTAssertEqual(try tail.withUnsafeMutableBytes { try f.read(into: $0, at: 4096) }, 4096)
        XCTAssertEqual(Array(tail[0..<4096]), Array(bytes[3096..<7192]))

        // A reopened file finds its segments again.
        let again = try segmentedFile()
        var b = [UInt8](repeating: 0, count: 7192)
        XCTAssertEqual(try b.withUnsafeMutableBytes { try again.read(into: $0, at: 1000) }, 7192)
        XCTAssertEqual(b, Array(bytes[0..<7192]))
    }

    func testSyncFlushesOnlyWrittenSegmentsAndNeverRetriesAFailedFlush() throws {
        let f = try segmentedFile()
        try [UInt8](repeating: 1, count: 20_000).withUnsafeBytes { try f.write($0, at: 0) }
        try f.sync()
        // Segment 0 would fail its next flush; a write to segment 3 alone does not flush it.
        plan.failNext("data.000000", .sync, .init(errno: EIO))
        try [UInt8](repeating: 2, count: 100).withUnsafeBytes { try f.write($0, at: 17_000) }
        try f.sync()
        XCTAssertEqual(plan.fired, 0, "segment 0 was not written, so not flushed")
        // Now it is written: its failed flush fails the sync, and loses the write (as Linux
        // may). The segment is not marked for another flush: a second one would "succeed"
        // without the lost bytes, so the pool above stops instead (Pool+FailStop).
        try [UInt8](repeating: 3, count: 100).withUnsafeBytes { try f.write($0, at: 0) }
        XCTAssertThrowsError(try f.sync()) { XCTAssertEqual(($0 as? StoreError)?.errno, EIO) }
        XCTAssertEqual(plan.fired, 1)
        plan.failNext("data.000000", .sync, .init(errno: EIO))
        try f.sync()
        XCTAssertEqual(plan.fired, 1, "the failed segment is not flushed again as if its bytes were there")
        var b = [UInt8](repeating: 0, count: 100)
        _ = try b.withUnsafeMutableBytes { try f.read(into: $0, at: 0) }
        XCTAssertEqual(b, [UInt8](repeating: 1, count: 100), "the test double dropped the unflushed write")
    }

    func testPreallocationCreatesAndAllocatesTheNextSegment() throws {
        let f = try segmentedFile()
        try f.preallocate(at: 0, length: 16_384)   // segments 0, 1, 2
        XCTAssertEqual(try files(), ["data.000000", "data.000001", "data.000002"])
        XCTAssertEqual(try f.size(), 16_384)
        XCTAssertGreaterThanOrEqual(f.allocatedBytes(), 16_384)
        var b = [UInt8](repeating: 0xEE, count: 16_384)
        XCTAssertEqual(try b.withUnsafeMutableBytes { try f.read(into: $0, at: 0) }, 16_384)
        XCTAssertTrue(b.allSatisfy { $0 == 0 })
    }

    /// A pool whose chunks spread over many segments: snapshots, rewrites, punches, a
    /// shrink and reopenings keep every byte, and the next segment is allocated ahead.
    func testPoolAcrossManySegments() throws {
        var o = PoolOptions()
        o.chunkSize = 4096
        o.backgroundCommits = false
        o.dataSegments = SegmentLayout(first: 64 << 10, largest: 256 << 10)
        let pool = try Pool.open(directory: dir + "/pool", options: o)
        let d = try pool.createDisk(name: "d", size: 4 << 20)
        var model = [UInt8](repeating: 0, count: 4 << 20)
        var rng = SystemRandomNumberGenerator()
        func write(_ off: Int, _ n: Int) throws {
            let bytes = (0..<n).map { _ in UInt8.random(in: 1...255, using: &rng) }
            try bytes.withUnsafeBytes { try pool.write(disk: d.id, offset: UInt64(off), data: $0) }
            model.replaceSubrange(off..<off + n, with: bytes)
        }
        func readAll(_ p: Pool, _ id: ObjectID, _ n: Int) throws -> [UInt8] {
            var b = [UInt8](repeating: 0xEE, count: n)
            let got = try b.withUnsafeMutableBytes { try p.read(object: id, offset: 0, into: $0) }
            return Array(b[0..<got])
        }
        try write(0, 3 << 20)
        _ = try pool.createSnapshots([SnapshotRequest(disk: "d", label: "a")])
        let atA = model
        for _ in 0..<200 { try write(Int.random(in: 0..<(4 << 20) - 70_000), Int.random(in: 1...70_000)) }
        try pool.punchHole(disk: d.id, offset: 1 << 20, length: 300_000)
        model.replaceSubrange((1 << 20)..<(1 << 20) + 300_000, with: [UInt8](repeating: 0, count: 300_000))
        XCTAssertTrue(try readAll(pool, d.id, 4 << 20) == model)
        try pool.sync()
        let high = pool.lock.withLock { pool.dataHighWater }
        let segments = try FileManager.default.contentsOfDirectory(atPath: dir + "/pool").compactMap(SegmentLayout.index(ofFileName:))
        XCTAssertGreaterThan(segments.count, 20, "the data spans many segments")
        // Allocated ahead: through the end of the segment after the one new chunks go to.
        pool.preallocationQueue.sync {}
        let layout = o.dataSegments
        XCTAssertEqual(pool.lock.withLock { pool.preallocation.end }, layout.end(of: layout.segment(of: high) + 1))
        XCTAssertTrue(pool.check().isClean, pool.check().problems.joined(separator: "\n"))
        try pool.close()
        let after = try FileManager.default.contentsOfDirectory(atPath: dir + "/pool").compactMap(SegmentLayout.index(ofFileName:))
        XCTAssertEqual(after.max(), layout.segment(of: high - 1), "close removes the allocated segments past the data")

        let again = try Pool.open(directory: dir + "/pool", options: o)
        XCTAssertTrue(try readAll(again, again.disk(named: "d")!.id, 4 << 20) == model)
        XCTAssertTrue(try readAll(again, again.snapshot(named: "d@a")!.id, 4 << 20) == atA)
        try again.setDiskSize(id: d.id, size: 1 << 20)
        try again.deleteSnapshot(name: "d@a")
        try again.sync()
        again.punchIdleChunks(olderThan: 0, keepReserve: false)
        XCTAssertTrue(try readAll(again, d.id, 1 << 20) == Array(model[0..<(1 << 20)]))
        XCTAssertTrue(again.check().isClean, again.check().problems.joined(separator: "\n"))
        try again.close()
    }

    func testABadSegmentLayoutIsRefused() throws {
        var o = PoolOptions()
        o.dataSegments = SegmentLayout(first: 4096, largest: 1 << 20)   // below the 16 KiB chunk
        XCTAssertThrowsError(try Pool.open(directory: dir + "/bad", options: o)) { e in
            XCTAssertEqual((e as? StoreError)?.errno, EINVAL)
            XCTAssertTrue("\(e)".contains("segment"), "\(e)")
        }
    }
}

/// Format 3 pools (all chunks in one `data` file) are still opened, and stay format 3.
final class FormatThreeTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = NSTemporaryDirectory() + "snapfs-format3-\(UUID().uuidString)" }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// The format version of each written superblock slot.
    func superblockVersions() throws -> Set<UInt32> {
        Set(try PoolFiles.superblockVersions(dir).filter { $0 != 0 })
    }

    func testAFormatThreePoolKeepsItsSingleDataFile() throws {
        var o = PoolOptions()
        o.backgroundCommits = false
        o.dataSegments = .singleFile
        let pool = try Pool.open(directory: dir, options: o)
        XCTAssertEqual(try superblockVersions(), [3], "created as format 3")
        let d = try pool.createDisk(name: "d", size: 8 << 20)
        let a = (0..<(6 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 13) }
        try a.withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        _ = try pool.createSnapshots([SnapshotRequest(disk: "d", label: "s")])
        let b = [UInt8](repeating: 0x5C, count: 3 << 20)
        try b.withUnsafeBytes { try pool.write(disk: d.id, offset: 1 << 20, data: $0) }
        try pool.sync()
        pool.preallocationQueue.sync {}
        let high = pool.lock.withLock { pool.dataHighWater }
        XCTAssertGreaterThanOrEqual(pool.lock.withLock { pool.preallocation.end }, high + (32 << 20), "the single file is allocated ahead")
        try pool.close()
        let files = try FileManager.default.contentsOfDirectory(atPath: dir)
        XCTAssertTrue(files.contains("data"))
        XCTAssertFalse(files.contains { $0.hasPrefix("data.0") }, "no segment files: \(files)")
        XCTAssertEqual(try superblockVersions(), [3], "commits keep format 3")

        var plain = PoolOptions()   // the default layout is ignored for an existing pool
        plain.backgroundCommits = false
        let again = try Pool.open(directory: dir, options: plain)
        var disk = [UInt8](repeating: 0, count: 6 << 20), snap = disk
        _ = try disk.withUnsafeMutableBytes { try again.read(object: again.disk(named: "d")!.id, offset: 0, into: $0) }
        _ = try snap.withUnsafeMutableBytes { try again.read(object: again.snapshot(named: "d@s")!.id, offset: 0, into: $0) }
        var expected = a
        expected.replaceSubrange((1 << 20)..<(4 << 20), with: b)
        XCTAssertTrue(disk == expected)
        XCTAssertTrue(snap == a)
        XCTAssertTrue(again.check().isClean, again.check().problems.joined(separator: "\n"))
        try again.close()
        XCTAssertEqual(try superblockVersions(), [3])
    }
}

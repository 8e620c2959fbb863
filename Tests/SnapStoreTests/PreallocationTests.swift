import Foundation
import XCTest
import TestSupport
@testable import SnapStore

/// The data file is allocated on the host ahead of its high-water mark (fast writes into
/// new chunks after a snapshot); that tail never holds data, is counted as free space,
/// and is given back at close and dropped by recovery after a death.
final class PreallocationTests: XCTestCase {
    var dir = ""

    override func setUp() { dir = NSTemporaryDirectory() + "snapfs-prealloc-\(UUID().uuidString)" }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func options() -> PoolOptions {
        var o = PoolOptions()
        o.chunkSize = 16 << 10
        o.backgroundCommits = false
        return o
    }

    func pattern(_ n: Int, _ seed: UInt8) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 / 3) &+ seed } }

    func read(_ pool: Pool, _ name: String, _ n: Int) throws -> [UInt8] {
        let d = try XCTUnwrap(pool.disk(named: name))
        var buf = [UInt8](repeating: 0xEE, count: n)
        let got = try buf.withUnsafeMutableBytes { try pool.read(object: d.id, offset: 0, into: $0) }
        return Array(buf[0..<got])
    }

    /// Length of the data as the segment files on disk hold it.
    func dataBytes() throws -> UInt64 {
        let segments = try FileManager.default.contentsOfDirectory(atPath: dir).compactMap(SegmentLayout.index(ofFileName:))
        guard let last = segments.max() else { return 0 }
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: dir + "/" + SegmentLayout.fileName(last))[.size] as? UInt64)
        return SegmentLayout.standard.start(of: last) + size
    }

    /// Waits for the background extension (it runs on its own queue).
    func preallocatedEnd(_ pool: Pool) -> UInt64 {
        pool.preallocationQueue.sync {}
        return pool.lock.withLock { pool.preallocation.end }
    }

    func testDataFileIsAllocatedAheadAndGivenBackAtClose() throws {
        let pool = try Pool.open(directory: dir, options: options())
        let d = try pool.createDisk(name: "d", size: 8 << 20)
        let bytes = pattern(4 << 20, 1)
        try bytes.withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        let end = preallocatedEnd(pool)
        let high = pool.lock.withLock { pool.dataRefs.count } * UInt64(16 << 10)
        XCTAssertGreaterThanOrEqual(end, high + (32 << 20), "at least half of the 64 MiB margin is allocated ahead")
        XCTAssertEqual(try pool.dataFile.size(), end, "the file grows to the allocated end")
        XCTAssertGreaterThanOrEqual(pool.dataFile.allocatedBytes(), end - (1 << 20), "the tail is allocated, not sparse")
        // The tail counts as free space the pool holds, not as space used up.
        XCTAssertEqual(pool.lock.withLock { pool.preallocatedSpare }, end - high)
        // More writes land in the allocated tail and read back right, before and after a commit.
        let more = pattern(2 << 20, 7)
        try more.withUnsafeBytes { try pool.write(disk: d.id, offset: 5 << 20, data: $0) }
        XCTAssertEqual(try read(pool, "d", 8 << 20), bytes + [UInt8](repeating: 0, count: 1 << 20) + more + [UInt8](repeating: 0, count: 1 << 20))
        try pool.sync()
        let committedHigh = pool.lock.withLock { pool.dataRefs.count } * UInt64(16 << 10)
        try pool.close()
        let size = try dataBytes()
        XCTAssertEqual(size, committedHigh, "close gives the tail back")
        let again = try Pool.open(directory: dir, options: options())
        XCTAssertEqual(try read(again, "d", 8 << 20), bytes + [UInt8](repeating: 0, count: 1 << 20) + more + [UInt8](repeating: 0, count: 1 << 20))
        XCTAssertTrue(again.check().isClean)
        try again.close()
    }

    func testDeathWithAnAllocatedTailRecoversTheCommittedState() throws {
        let pool = try Pool.open(directory: dir, options: options())
        let d = try pool.createDisk(name: "d", size: 8 << 20)
        let committed = pattern(3 << 20, 3)
        try committed.withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        try pool.sync()
        let high = pool.lock.withLock { pool.dataRefs.count } * UInt64(16 << 10)
        // Unacknowledged writes into the allocated tail, then the process dies.
        try pattern(4 << 20, 9).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        XCTAssertGreaterThan(preallocatedEnd(pool), high)
        pool.abandon()
        let again = try Pool.open(directory: dir, options: options())
        let size = try dataBytes()
        XCTAssertEqual(size, high, "recovery truncates to the committed high-water mark")
        XCTAssertEqual(try read(again, "d", 3 << 20), committed)
        XCTAssertTrue(again.check().isClean)
        // New chunks after recovery start from the committed end and are allocated ahead again.
        try pattern(1 << 20, 5).withUnsafeBytes { try again.write(disk: d.id, offset: 6 << 20, data: $0) }
        XCTAssertGreaterThan(preallocatedEnd(again), high)
        try again.close()
    }
}

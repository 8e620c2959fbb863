import Foundation
import Glibc
import XCTest
@testable import SnapStore

/// Reads of chunks that lie apart in the data file take what the host's page cache holds
/// and prefetch the rest together (Pool+Read.swift). Whatever the cache holds, the bytes
/// are right and a bad chunk is refused.
final class ScatteredReadTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = NSTemporaryDirectory() + "snapfs-scatter-\(UUID().uuidString)" }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    private func readAll(_ pool: Pool, _ id: ObjectID, _ n: Int) throws -> [UInt8] {
        var b = [UInt8](repeating: 0xEE, count: n)
        let got = try b.withUnsafeMutableBytes { try pool.read(object: id, offset: 0, into: $0) }
        return Array(b[0..<got])
    }

    /// Every data segment file of the pool, so the test can drop or corrupt their pages.
    private func segmentFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).filter { SegmentLayout.index(ofFileName: $0) != nil }.sorted()
    }

    private func dropCache(of file: String, chunks: [UInt64]? = nil, chunkSize: Int, layout: SegmentLayout) throws {
        let fd = open(dir + "/" + file, O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        guard let chunks else {
            XCTAssertEqual(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0)
            return
        }
        let k = SegmentLayout.index(ofFileName: file)!
        for c in chunks {
            let at = c * UInt64(chunkSize)
            guard layout.segment(of: at) == k else { continue }
            XCTAssertEqual(posix_fadvise(fd, off_t(at - layout.start(of: k)), off_t(chunkSize), POSIX_FADV_DONTNEED), 0)
        }
    }

    func testScatteredChunksReadRightCachedColdAndHalfCachedAndBadOnesAreRefused() throws {
        var o = PoolOptions()
        o.chunkSize = 4096
        o.backgroundCommits = false
        o.dataSegments = SegmentLayout(first: 64 << 10, largest: 256 << 10)   // runs cross segment files
        let cs = o.chunkSize, size = 2 << 20, n = size / cs
        let pool = try Pool.open(directory: dir, options: o)
        let d = try pool.createDisk(name: "d", size: UInt64(size))
        var model = [UInt8](repeating: 0, count: size)
        var rng = SystemRandomNumberGenerator()
        func write(chunk i: Int) throws {
            let bytes = (0..<cs).map { _ in UInt8.random(in: 0...255, using: &rng) }
            try bytes.withUnsafeBytes { try pool.write(disk: d.id, offset: UInt64(i * cs), data: $0) }
            model.replaceSubrange(i * cs..<(i + 1) * cs, with: bytes)
        }
        for i in 0..<n { try write(chunk: i) }
        try pool.sync()
        _ = try pool.createSnapshots([SnapshotRequest(disk: "d", label: "s")])
        // Rewritten last chunk first: each lands behind the next one's new place, so no two
        // neighbours in the disk are neighbours in the data file.
        for i in stride(from: n - 1, through: 0, by: -1) where i % 4 != 3 { try write(chunk: i) }
        try pool.sync()
        let ptrs = try pool.lock.withLock { try (0..<UInt64(n)).map { try pool.maps.lookup(pool.object(d.id)!.map, $0)!.ptr } }
        let adjacent = zip(ptrs, ptrs.dropFirst()).filter { $1 == $0 + 1 }.count
        XCTAssertEqual(adjacent, 0, "the disk's chunks are scattered in the data file")

        let layout = o.dataSegments
        XCTAssertEqual(try readAll(pool, d.id, size), model, "all in the page cache")
        for f in try segmentFiles() { try dropCache(of: f, chunkSize: cs, layout: layout) }
        XCTAssertEqual(try readAll(pool, d.id, size), model, "none in the page cache")
        let everyOther = ptrs.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
        for f in try segmentFiles() { try dropCache(of: f, chunks: everyOther, chunkSize: cs, layout: layout) }
        XCTAssertEqual(try readAll(pool, d.id, size), model, "every other chunk in the page cache")
        var buf = [UInt8](repeating: 0, count: 64 << 10)
        for off in stride(from: 3 * cs / 2, to: size - buf.count, by: 200 << 10) {
            _ = try buf.withUnsafeMutableBytes { try pool.read(object: d.id, offset: UInt64(off), into: $0) }
            XCTAssertEqual(buf, Array(model[off..<(off + buf.count)]), "a request starting and ending inside chunks, at \(off)")
        }

        // A chunk in the middle of a scattered request, changed behind the pool's back:
        // refused from the page cache and from the device.
        let victim = ptrs[n / 2] * UInt64(cs)
        let k = layout.segment(of: victim)
        let fd = open(dir + "/" + SegmentLayout.fileName(k), O_RDWR)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var junk = [UInt8](repeating: 0x5A, count: 512)
        XCTAssertEqual(pwrite(fd, &junk, junk.count, off_t(victim - layout.start(of: k)) + 100), junk.count)
        XCTAssertEqual(fdatasync(fd), 0)
        close(fd)
        XCTAssertThrowsError(try readAll(pool, d.id, size), "corrupt chunk served from the page cache") {
            guard case StoreError.corrupt = $0 else { return XCTFail("\($0)") }
        }
        for f in try segmentFiles() { try dropCache(of: f, chunkSize: cs, layout: layout) }
        XCTAssertThrowsError(try readAll(pool, d.id, size), "corrupt chunk read from the device") {
            guard case StoreError.corrupt = $0 else { return XCTFail("\($0)") }
        }
        try pool.close()
    }
}

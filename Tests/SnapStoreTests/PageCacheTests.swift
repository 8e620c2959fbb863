import Foundation
import Glibc
import XCTest
@testable import SnapStore

/// Old chunk versions, held only by snapshots once the disk is rewritten, leave the host's
/// page cache; the disk's current chunks stay, and both still read right.
final class PageCacheTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = NSTemporaryDirectory() + "snapfs-cache-\(UUID().uuidString)" }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Pages of these chunks of the pool's data file that are in the host's page cache.
    func residentPages(_ chunks: [UInt64], chunkSize: Int) throws -> Int {
        let fd = open(dir + "/data.000000", O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var st = stat()
        XCTAssertEqual(fstat(fd, &st), 0)
        let length = Int(st.st_size)
        guard let map = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else {
            XCTFail("mmap: \(errno)"); return -1
        }
        defer { munmap(map, length) }
        var vec = [UInt8](repeating: 0, count: (length + 4095) / 4096)
        XCTAssertEqual(mincore(map, length, &vec), 0)
        let perChunk = chunkSize / 4096
        return chunks.reduce(0) { n, c in n + vec[(Int(c) * perChunk)..<((Int(c) + 1) * perChunk)].filter { $0 & 1 != 0 }.count }
    }

    func testOldVersionsHeldBySnapshotsLeaveThePageCache() throws {
        var options = PoolOptions()
        options.backgroundCommits = false
        let cs = options.chunkSize
        let size = 8 << 20
        let pool = try Pool.open(directory: dir, options: options)
        let d = try pool.createDisk(name: "d")
        try [UInt8](repeating: 1, count: size).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        try pool.sync()
        let snap = try pool.createSnapshots([SnapshotRequest(disk: "d", label: "s")])[0]
        func chunks(_ id: ObjectID) throws -> [UInt64] {
            try pool.lock.withLock { try (0..<UInt64(size / cs)).map { try pool.maps.lookup(pool.object(id)!.map, $0)!.ptr } }
        }
        let old = try chunks(snap.id)
        XCTAssertEqual(try residentPages(old, chunkSize: cs), size / 4096, "written through the page cache")

        try [UInt8](repeating: 2, count: size).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        let new = try chunks(d.id)
        XCTAssertTrue(Set(old).isDisjoint(with: new), "rewritten under a snapshot, every chunk moved")
        pool.dropColdChunkCache()
        XCTAssertEqual(try residentPages(old, chunkSize: cs), 0, "the snapshot's old versions left the cache")
        XCTAssertEqual(try residentPages(new, chunkSize: cs), size / 4096, "the disk's current chunks stayed")

        var buf = [UInt8](repeating: 0, count: size)
        _ = try buf.withUnsafeMutableBytes { try pool.read(object: snap.id, offset: 0, into: $0) }
        XCTAssertTrue(buf.allSatisfy { $0 == 1 }, "the snapshot reads its bytes from the device")
        _ = try buf.withUnsafeMutableBytes { try pool.read(object: d.id, offset: 0, into: $0) }
        XCTAssertTrue(buf.allSatisfy { $0 == 2 })
        XCTAssertTrue(pool.check().isClean)
        try pool.close()
    }
}

import Foundation
import XCTest
@testable import SnapStore

final class FormatAndIntegrityTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = NSTemporaryDirectory() + "snapfs-fmt-\(UUID().uuidString)" }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func options() -> PoolOptions {
        var o = PoolOptions()
        o.backgroundCommits = false
        return o
    }

    func flipByte(_ file: String, at offset: UInt64) throws {
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: dir + "/" + file))
        try h.seek(toOffset: offset)
        let b = try h.read(upToCount: 1)!
        try h.seek(toOffset: offset)
        h.write(Data([b[0] ^ 0x5A]))
        try h.close()
    }

    func fileBytes(_ name: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name)) }

    func testStructSizes() {
        XCTAssertEqual(Layout.fanout * Layout.entrySize, Layout.blockSize, "a node fills one block")
        XCTAssertEqual(RefcountTable.headerSize + RefcountTable.perPage * 4, Layout.blockSize, "a refcount page fills one block")
        let sb = Superblock(chunkSize: 65536, generation: 7, createdMicros: 1)
        XCTAssertEqual(sb.encode().count, 4096)
        guard case .valid(let back) = Superblock.decode(sb.encode()) else { return XCTFail("round trip") }
        XCTAssertEqual(back, sb)
    }

    func testSuperblockDamageAndNewerFormatAreRefusedAndNeverRewritten() throws {
        try Pool.open(directory: dir, options: options()).close()
        // Newer format in the newest slot: refused, file untouched.
        var sbBytes = try fileBytes("superblock")
        let sb = try Superblock.load(from: PosixDirectory(path: dir).open("superblock", create: false, readOnly: true), path: dir)
        var newer = sb
        newer.formatVersion = Layout.formatVersion + 1
        newer.generation += 1
        sbBytes.replaceSubrange(Int(newer.generation % 2) * 4096..<(Int(newer.generation % 2) + 1) * 4096, with: newer.encode())
        try sbBytes.write(to: URL(fileURLWithPath: dir + "/superblock"))
        XCTAssertThrowsError(try Pool.open(directory: dir, options: options())) { e in
            XCTAssertTrue("\(e)".contains("newer"), "\(e)")
        }
        XCTAssertEqual(try fileBytes("superblock"), sbBytes, "a refused pool is not rewritten")

        // Both slots damaged: refused with a clear message.
        try flipByte("superblock", at: 60)
        try flipByte("superblock", at: 4096 + 60)
        let before = try fileBytes("superblock")
        XCTAssertThrowsError(try Pool.open(directory: dir, options: options())) { e in
            XCTAssertTrue("\(e)".contains("both superblocks are damaged"), "\(e)")
        }
        XCTAssertEqual(try fileBytes("superblock"), before)
    }

    func testOneDamagedSlotFallsBackToTheOther() throws {
        let pool = try Pool.open(directory: dir, options: options())
        _ = try pool.createDisk(name: "a")
        try pool.sync()      // generation 2
        _ = try pool.createDisk(name: "b")
        try pool.sync()      // generation 3, slot 1
        pool.abandon()       // a crash: no confirming commit on top
        try flipByte("superblock", at: 4096 + 100)
        let reopened = try Pool.open(directory: dir, options: options())
        XCTAssertEqual(reopened.disks().map(\.name), ["a"], "the previous commit wins when the newest slot is torn")
        XCTAssertTrue(reopened.check().isClean)
        try reopened.close()
    }

    /// A closed pool is freed with its open files, also with its committer thread running
    /// (whose closure holds the pool): a process that reopens pools must not run out of
    /// descriptors.
    func testAClosedPoolIsFreed() throws {
        weak var closed: Pool?
        do {
            var o = PoolOptions()
            o.backgroundCommits = true
            let pool = try Pool.open(directory: dir, options: o)
            _ = try pool.createDisk(name: "d", size: 1 << 20)
            try pool.close()
            closed = pool
        }
        let deadline = Date().addingTimeInterval(5)
        while closed != nil && Date() < deadline { usleep(10_000) }   // the thread wakes every 100 ms
        XCTAssertNil(closed, "the pool outlived its close")
    }

    func testSecondOpenIsRefused() throws {
        let pool = try Pool.open(directory: dir, options: options())
        XCTAssertThrowsError(try Pool.open(directory: dir, options: options())) { e in
            XCTAssertTrue("\(e)".contains("already in use"), "\(e)")
        }
        try pool.close()
        try Pool.open(directory: dir, options: options()).close()
    }

    func testNonEmptyForeignDirectoryIsRefused() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir + "/precious.txt", contents: Data("x".utf8))
        XCTAssertThrowsError(try Pool.open(directory: dir, options: options())) { e in
            XCTAssertTrue("\(e)".contains("not a snapfs pool"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/superblock"))
    }

    func testFlippedDataByteGivesEIOAndCheckNamesTheRange() throws {
        var o = options()
        o.chunkSize = 65536
        let pool = try Pool.open(directory: dir, options: o)
        let d = try pool.createDisk(name: "vm")
        let bytes = [UInt8](repeating: 7, count: 3 * 65536)
        try bytes.withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        _ = try pool.createSnapshots([SnapshotRequest(disk: "vm", label: "s")])
        try pool.close()
        // Chunk of disk offset 65536: find it through the map, then damage it on disk.
        let ro = try Pool.open(directory: dir, options: { var x = o; x.readOnly = true; return x }())
        let chunk = try ro.lock.withLock { try ro.maps.lookup(ro.object(d.id)!.map, 1)!.ptr }
        try flipByte("data.000000", at: chunk * 65536 + 1234)
        let pool2 = try Pool.open(directory: dir, options: o)
        var buf = [UInt8](repeating: 0, count: 4096)
        XCTAssertThrowsError(try buf.withUnsafeMutableBytes { try pool2.read(object: d.id, offset: 65536 + 4096, into: $0) }) { e in
            XCTAssertEqual((e as? StoreError)?.errno, EIO)
        }
        // Undamaged chunks still read.
        XCTAssertEqual(try buf.withUnsafeMutableBytes { try pool2.read(object: d.id, offset: 0, into: $0) }, 4096)
        XCTAssertTrue(buf == [UInt8](repeating: 7, count: 4096))
        let report = pool2.check()
        XCTAssertFalse(report.isClean)
        XCTAssertEqual(report.damaged["vm"], [65536...131071])
        XCTAssertEqual(report.damaged["vm@s"], [65536...131071], "the snapshot shares the damaged chunk")
        try pool2.close()
    }

    func testFlippedMetadataByteIsDetected() throws {
        var o = options()
        o.chunkSize = 4096
        let pool = try Pool.open(directory: dir, options: o)
        let d = try pool.createDisk(name: "vm")
        for i in 0..<600 {   // several leaves
            let b = [UInt8](repeating: UInt8(i % 250 + 1), count: 4096)
            try b.withUnsafeBytes { try pool.write(disk: d.id, offset: UInt64(i) * 4096, data: $0) }
        }
        try pool.close()
        let ro = try Pool.open(directory: dir, options: { var x = o; x.readOnly = true; return x }())
        let root = ro.lock.withLock { ro.object(d.id)!.map }
        XCTAssertEqual(root.height, 2)
        let leaf = try ro.lock.withLock { try ro.meta.node(root.ptr, crc: root.crc).ptr[1] }   // entries 256..511
        try flipByte("meta", at: leaf * 4096 + 40)
        let pool2 = try Pool.open(directory: dir, options: o)
        var buf = [UInt8](repeating: 0, count: 4096)
        XCTAssertThrowsError(try buf.withUnsafeMutableBytes { try pool2.read(object: d.id, offset: 300 * 4096, into: $0) })
        XCTAssertEqual(try buf.withUnsafeMutableBytes { try pool2.read(object: d.id, offset: 10 * 4096, into: $0) }, 4096)
        let report = pool2.check()
        XCTAssertEqual(report.damaged["vm"], [(256 * 4096)...(512 * 4096 - 1)], report.problems.joined(separator: "\n"))
        try pool2.close()
    }
}

final class PunchHoleTests: XCTestCase {
    func testPunchAcrossTwoPartialChunksWhoseFirstIsAHole() throws {
        let dir = NSTemporaryDirectory() + "snapfs-punch-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o = PoolOptions()
        o.backgroundCommits = false
        let pool = try Pool.open(directory: dir, options: o)
        let d = try pool.createDisk(name: "d", size: 4 << 20)
        // Chunk 1 (64 KiB..128 KiB) mapped, chunk 0 a hole.
        let ones = [UInt8](repeating: 1, count: 65536)
        try ones.withUnsafeBytes { try pool.write(disk: d.id, offset: 65536, data: $0) }
        // Punch from inside chunk 0 to inside chunk 1: no whole chunk in between.
        try pool.punchHole(disk: d.id, offset: 60_000, length: 20_000)
        var buf = [UInt8](repeating: 9, count: 65536)
        _ = try buf.withUnsafeMutableBytes { try pool.read(object: d.id, offset: 65536, into: $0) }
        XCTAssertTrue(buf[0..<(80_000 - 65536)].allSatisfy { $0 == 0 })
        XCTAssertTrue(buf[(80_000 - 65536)...].allSatisfy { $0 == 1 })
        XCTAssertTrue(pool.check().isClean)
        try pool.close()
    }
}

final class SpaceReturnTests: XCTestCase {
    var dir = ""
    let options: PoolOptions = { var o = PoolOptions(); o.backgroundCommits = false; return o }()

    override func setUp() { dir = NSTemporaryDirectory() + "snapfs-space-\(UUID().uuidString)" }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// A pool with disk "d" holding 8 MiB of `byte`, committed.
    func poolWithEightMiB(of byte: UInt8) throws -> (Pool, DiskInfo) {
        let pool = try Pool.open(directory: dir, options: options)
        let d = try pool.createDisk(name: "d")
        try [UInt8](repeating: byte, count: 8 << 20).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        try pool.sync()
        return (pool, d)
    }

    /// After a death, free chunks may or may not still be allocated on the host: none is
    /// handed out or counted as held space until the background pass has punched it.
    func testFreeChunksAfterADeathArePunchedBeforeReuse() throws {
        let (pool, d) = try poolWithEightMiB(of: 5)
        try pool.punchHole(disk: d.id, offset: 0, length: 4 << 20)
        try pool.sync()   // the 4 MiB of chunks are free but still allocated on the host
        let freed = pool.lock.withLock { pool.dataRefs.recycledCount }
        XCTAssertEqual(freed, (4 << 20) / options.chunkSize)
        pool.abandon()

        let again = try Pool.open(directory: dir, options: options)
        let allocated = again.dataFile.allocatedBytes()
        XCTAssertEqual(again.lock.withLock { again.dataRefs.unsure.count }, freed)
        XCTAssertEqual(again.lock.withLock { again.dataRefs.recycledCount }, 0, "none counted as allocated")
        again.punchIdleChunks()
        XCTAssertEqual(again.lock.withLock { again.dataRefs.unsure.count }, 0)
        XCTAssertEqual(again.lock.withLock { again.dataRefs.holeCount }, freed, "punched, then plain free")
        XCTAssertLessThanOrEqual(again.dataFile.allocatedBytes(), allocated - (4 << 20) + 65536)
        var buf = [UInt8](repeating: 0, count: 8 << 20)
        _ = try buf.withUnsafeMutableBytes { try again.read(object: d.id, offset: 0, into: $0) }
        XCTAssertTrue(buf[0..<(4 << 20)].allSatisfy { $0 == 0 } && buf[(4 << 20)...].allSatisfy { $0 == 5 })
        XCTAssertTrue(again.check().isClean)
        try again.close()
    }

    /// Chunks freed in random order (random rewrites) come back to a later multi-chunk
    /// write as one ascending run: one `pwrite` and sequential writeback, instead of a
    /// layout that stays scattered for every later sequential rewrite.
    func testChunksFreedInRandomOrderComeBackAsRuns() throws {
        let (pool, d) = try poolWithEightMiB(of: 1)
        let cs = options.chunkSize
        var rng = SystemRandomNumberGenerator()
        for chunk in (0..<((8 << 20) / cs)).shuffled(using: &rng) {   // each moves to a new chunk
            try [UInt8](repeating: 2, count: 4096).withUnsafeBytes { try pool.write(disk: d.id, offset: UInt64(chunk * cs), data: $0) }
        }
        try pool.sync()   // the first 8 MiB of chunks are free now, freed in random order
        XCTAssertEqual(pool.lock.withLock { pool.dataRefs.recycledCount }, (8 << 20) / cs)
        try [UInt8](repeating: 3, count: 1 << 20).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        let targets = try pool.lock.withLock {
            try (0..<UInt64((1 << 20) / cs)).map { try pool.maps.lookup(pool.object(d.id)!.map, $0)!.ptr }
        }
        XCTAssertEqual(targets, Array(targets[0]..<(targets[0] + UInt64(targets.count))), "one ascending run")
        var buf = [UInt8](repeating: 0, count: 8 << 20)
        _ = try buf.withUnsafeMutableBytes { try pool.read(object: d.id, offset: 0, into: $0) }
        XCTAssertTrue(buf[0..<(1 << 20)].allSatisfy { $0 == 3 })
        for chunk in ((1 << 20) / cs)..<((8 << 20) / cs) {
            XCTAssertTrue(buf[(chunk * cs)..<(chunk * cs + 4096)].allSatisfy { $0 == 2 })
            XCTAssertTrue(buf[(chunk * cs + 4096)..<((chunk + 1) * cs)].allSatisfy { $0 == 1 })
        }
        XCTAssertTrue(pool.check().isClean)
        try pool.close()
    }

    /// The committer punches within a budget of `fallocate` calls per tick (each holds
    /// off writes): scattered freed chunks go back a budget at a time, and all of them
    /// in the end.
    func testIdlePunchesKeepToTheirBudget() throws {
        let (pool, d) = try poolWithEightMiB(of: 4)
        let cs = options.chunkSize
        let chunks = (8 << 20) / cs
        for chunk in stride(from: 0, to: chunks, by: 2) {   // every other chunk: no two adjacent
            try pool.punchHole(disk: d.id, offset: UInt64(chunk * cs), length: UInt64(cs))
        }
        try pool.sync()
        XCTAssertEqual(pool.lock.withLock { pool.dataRefs.recycledCount }, chunks / 2)
        let before = pool.dataFile.allocatedBytes()
        pool.punchIdleChunks(olderThan: 0, keepReserve: false, maxCalls: 10)
        XCTAssertEqual(pool.lock.withLock { pool.dataRefs.holeCount }, 10, "ten calls, one chunk each")
        XCTAssertEqual(pool.lock.withLock { pool.dataRefs.recycledCount }, chunks / 2 - 10)
        let returned = Int(before) - Int(pool.dataFile.allocatedBytes())
        XCTAssertTrue(abs(returned - 10 * cs) <= 4096, "ten chunks returned to the host, not \(returned) bytes")
        var rounds = 1
        while pool.lock.withLock({ pool.dataRefs.recycledCount }) > 0 {
            pool.punchIdleChunks(olderThan: 0, keepReserve: false, maxCalls: 10)
            rounds += 1
        }
        XCTAssertEqual(rounds, (chunks / 2 + 9) / 10)
        XCTAssertEqual(pool.lock.withLock { pool.dataRefs.holeCount }, chunks / 2)
        var buf = [UInt8](repeating: 0, count: 8 << 20)
        _ = try buf.withUnsafeMutableBytes { try pool.read(object: d.id, offset: 0, into: $0) }
        for chunk in 0..<chunks {
            XCTAssertTrue(buf[(chunk * cs)..<((chunk + 1) * cs)].allSatisfy { $0 == (chunk % 2 == 0 ? 0 : 4) })
        }
        XCTAssertTrue(pool.check().isClean)
        try pool.close()
    }

    /// Deleting the only holder of chunks gives their space back to the host at the next commit.
    func testDeleteAndPunchGiveSpaceBack() throws {
        let (pool, d) = try poolWithEightMiB(of: 3)
        let full = pool.dataFile.allocatedBytes()
        XCTAssertGreaterThanOrEqual(full, 8 << 20)
        try pool.punchHole(disk: d.id, offset: 0, length: 4 << 20)
        try pool.sync()
        XCTAssertGreaterThanOrEqual(pool.dataFile.allocatedBytes(), full, "freed chunks are kept a while for cheap reuse")
        let before = pool.stats()
        pool.punchIdleChunks(olderThan: 0)
        XCTAssertGreaterThanOrEqual(pool.dataFile.allocatedBytes(), full, "a reserve within the allocation margin stays allocated")
        let kept = pool.stats()
        XCTAssertEqual(kept.usedBytes, before.usedBytes, "kept chunks are not counted as used")
        XCTAssertLessThanOrEqual(kept.usedBytes + (4 << 20), full + (1 << 20), "the 4 MiB freed counts as available")
        pool.punchIdleChunks(olderThan: 0, keepReserve: false)
        XCTAssertLessThanOrEqual(pool.dataFile.allocatedBytes(), full - (4 << 20) + 65536, "punched chunks are returned")
        try pool.deleteDisk(name: "d")
        try pool.sync()
        pool.punchIdleChunks(olderThan: 0, keepReserve: false)
        // Past the high-water mark the file stays allocated ahead (PreallocationTests) while mounted.
        pool.preallocationQueue.sync {}   // an extension under way finishes first
        let tail = pool.lock.withLock { pool.preallocatedSpare }
        XCTAssertLessThan(pool.dataFile.allocatedBytes() - tail, 1 << 20, "a deleted disk's chunks are returned")
        XCTAssertTrue(pool.check().isClean)
        try pool.close()
        var st = stat()
        XCTAssertEqual(stat(dir + "/data.000000", &st), 0)
        XCTAssertLessThan(Int(st.st_blocks) * 512, 1 << 20, "closing gives the allocated tail back too")
    }
}

final class ChecksumTests: XCTestCase {
    /// The format says CRC-32C: the standard check value, and every length/alignment
    /// through the hardware path agrees with a bitwise reference.
    func testCRC32CKnownAnswerAndReference() {
        XCTAssertEqual(crc32c(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(crc32c([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        func reference(_ bytes: ArraySlice<UInt8>) -> UInt32 {
            var c: UInt32 = 0xFFFF_FFFF
            for b in bytes {
                c ^= UInt32(b)
                for _ in 0..<8 { c = c & 1 == 1 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            }
            return ~c
        }
        var rng = PoolModelTests.RNG(state: 3)
        let data = (0..<5000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for (start, len) in [(0, 0), (1, 7), (3, 64), (5, 4096), (0, 5000), (7, 1001)] {
            let slice = data[start..<(start + len)]
            XCTAssertEqual(Array(slice).withUnsafeBytes { crc32c($0) }, reference(slice), "offset \(start) length \(len)")
        }
    }
}

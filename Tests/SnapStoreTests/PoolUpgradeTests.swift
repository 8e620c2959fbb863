import Foundation
import XCTest
import TestSupport
@testable import SnapStore

/// `Pool.upgrade`: a format 3 pool (one `data` file) moved to the current format (segment
/// files, format 4; owners and modes in records, format 5),
/// with nothing lost however it is cut short.
final class PoolUpgradeTests: XCTestCase {
    var dir = ""
    let small = SegmentLayout(first: 64 << 10, largest: 256 << 10)
    override func setUp() { dir = NSTemporaryDirectory() + "snapfs-upgrade-\(UUID().uuidString)" }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Options for every open here: a small intent log, so that the many trials below do
    /// not each write and copy the default 32 MiB of it.
    var options: PoolOptions {
        var o = PoolOptions()
        o.backgroundCommits = false
        o.journalBytes = 1 << 20
        return o
    }

    /// A format 3 pool with disks, snapshots, a clone, punched ranges, and fsync'd writes
    /// left in the intent log only (the pool dies without committing them). Returns every
    /// disk's and snapshot's bytes.
    func makeFormatThreePool(at path: String) throws -> [String: [UInt8]] {
        var o = options
        o.chunkSize = 4096
        o.dataSegments = .singleFile
        let pool = try Pool.open(directory: path, options: o)
        let a = try pool.createDisk(name: "a", size: 3 << 20)
        try Bytes.random(3 << 20).withUnsafeBytes { try pool.write(disk: a.id, offset: 0, data: $0) }
        _ = try pool.createSnapshots([SnapshotRequest(disk: "a", label: "s1")])
        try Bytes.random(1 << 20).withUnsafeBytes { try pool.write(disk: a.id, offset: 1 << 20, data: $0) }
        try pool.punchHole(disk: a.id, offset: 2 << 20, length: 512 << 10)
        let b = try pool.createDisk(name: "b", size: 6 << 20)
        for off in [0, 1 << 20, 3 << 20, 5 << 20] {
            try Bytes.random(200_000).withUnsafeBytes { try pool.write(disk: b.id, offset: UInt64(off), data: $0) }
        }
        _ = try pool.createSnapshots([SnapshotRequest(disk: "b", label: "s2")])
        _ = try pool.createDisk(name: "c", fromSnapshot: "a@s1")
        try pool.sync()
        // Not committed, only fsync'd through the intent log.
        try Bytes.random(100_000).withUnsafeBytes { try pool.write(disk: b.id, offset: 4 << 20, data: $0) }
        try pool.syncWrites()
        let expected = try contents(of: pool)
        pool.abandon()
        return expected
    }

    func contents(of pool: Pool) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        let objects = pool.disks().map { ($0.name, $0.id, $0.size) } + pool.snapshots().map { ($0.name, $0.id, $0.size) }
        for (name, id, size) in objects {
            var bytes = [UInt8](repeating: 0, count: Int(size))
            _ = try bytes.withUnsafeMutableBytes { try pool.read(object: id, offset: 0, into: $0) }
            out[name] = bytes
        }
        return out
    }

    func segmentFiles(_ path: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: path).filter { SegmentLayout.index(ofFileName: $0) != nil }.sorted()
    }

    /// Opens the pool (recovery included) and checks: the bytes, a clean check, and the
    /// files of exactly one format. Returns that format.
    @discardableResult
    func verify(_ path: String, _ expected: [String: [UInt8]], _ context: String) throws -> UInt32 {
        let pool = try Pool.open(directory: path, options: options)
        let version = pool.lock.withLock { pool.superblock.formatVersion }
        let got = try contents(of: pool)
        XCTAssertEqual(Set(got.keys), Set(expected.keys), context)
        for (name, bytes) in expected where got[name] != bytes { XCTFail("\(context): \(name) differs") }
        let report = pool.check()
        XCTAssertTrue(report.isClean, "\(context): \(report.problems.prefix(3))")
        try pool.close()
        let files = try FileManager.default.contentsOfDirectory(atPath: path)
        if version == 3 {
            XCTAssertTrue(files.contains("data"), context)
            XCTAssertEqual(try segmentFiles(path), [], "\(context): a copy never switched to is removed")
        } else {
            XCTAssertEqual(version, Pool.currentFormatVersion, context)
            XCTAssertFalse(files.contains("data"), "\(context): the old data file is removed")
            XCTAssertFalse(try segmentFiles(path).isEmpty, context)
        }
        return version
    }

    func testUpgradeMovesTheDataIntoSegmentFiles() throws {
        let expected = try makeFormatThreePool(at: dir)
        XCTAssertEqual(try PoolFiles.superblockVersions(dir), [3, 3])
        let report = try Pool.upgrade(directory: dir, to: small, options: options)
        XCTAssertEqual(report.fromVersion, 3)
        XCTAssertEqual(report.toVersion, 5)
        let segments = try segmentFiles(dir)
        XCTAssertEqual(report.segmentFiles, segments.count)
        XCTAssertGreaterThan(segments.count, 8, "the data spans many 64-256 KiB segments: \(segments)")
        XCTAssertGreaterThan(report.copiedBytes, 4 << 20)
        XCTAssertEqual(try PoolFiles.superblockVersions(dir), [5, 5], "both superblock slots describe the new layout")
        XCTAssertEqual(try verify(dir, expected, "after the upgrade"), 5)

        // The upgraded pool works: writes, a snapshot, a reopen.
        let pool = try Pool.open(directory: dir, options: options)
        let a = try XCTUnwrap(pool.disk(named: "a"))
        try Bytes.random(3 << 20).withUnsafeBytes { try pool.write(disk: a.id, offset: 2 << 20, data: $0) }
        _ = try pool.createSnapshots([SnapshotRequest(disk: "a", label: "after")])
        let now = try contents(of: pool)
        try pool.close()
        XCTAssertEqual(try verify(dir, now, "written after the upgrade"), 5)

        let again = try Pool.upgrade(directory: dir, to: small, options: options)
        XCTAssertEqual(again.fromVersion, 5, "a current pool is left as it is")
        XCTAssertEqual(again.toVersion, 5)
        XCTAssertEqual(again.copiedBytes, 0)
    }

    func testUpgradeRefusesWhatIsNotAPool() throws {
        XCTAssertThrowsError(try Pool.upgrade(directory: dir)) { e in
            XCTAssertTrue("\(e)".contains("no snapfs pool"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/superblock"), "no pool is made")
    }

    /// The upgrade (its open and recovery included) dies at every mutating I/O in turn,
    /// half the time with a power cut that drops unflushed writes. Each time the pool
    /// opens in one format with every byte, checks clean, and a second run finishes.
    func testUpgradeCutShortAtEveryIOPointLosesNothing() throws {
        let original = dir + "-original"
        defer { try? FileManager.default.removeItem(atPath: original) }
        let expected = try makeFormatThreePool(at: original)
        var sawFormats = Set<UInt32>()
        var point = 0
        while true {
            try? FileManager.default.removeItem(atPath: dir)
            // Sparse: the superblock file spans two 128 MiB commit-log regions.
            XCTAssertEqual(Shell.run(["cp", "-a", "--sparse=always", original, dir]).status, 0)
            let crash = CrashSwitch(seed: UInt64(point) + 7)
            crash.arm(afterOperations: point)
            var o = options
            o.storage = CrashingStorage(directory: dir, crash: crash)
            let finished = (try? Pool.upgrade(directory: dir, to: small, options: o)) != nil && !crash.crashed
            if finished { break }
            if point % 2 == 1 { crash.powerLoss() }
            let context = "killed at I/O \(point)\(point % 2 == 1 ? " with a power cut" : "")"
            sawFormats.insert(try verify(dir, expected, context))
            _ = try Pool.upgrade(directory: dir, to: small, options: options)
            XCTAssertEqual(try verify(dir, expected, context + ", then upgraded again"), 5)
            point += 1
            XCTAssertLessThan(point, 2000, "the upgrade never finished")
            if point >= 2000 { break }
        }
        XCTAssertGreaterThan(point, 20, "kill points covered")
        print("upgrade: killed at each of \(point) I/O points")
        XCTAssertEqual(sawFormats, [3, 5], "deaths before and after the switch")
    }
}

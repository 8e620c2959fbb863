import Foundation
import XCTest
import TestSupport
@testable import SnapStore

/// Owner, group and mode in object records (format 5), and pools of formats 3 and 4.
final class OwnershipFormatTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = NSTemporaryDirectory() + "snapfs-owner-\(UUID().uuidString)" }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    var options: PoolOptions {
        var o = PoolOptions()
        o.backgroundCommits = false
        o.journalBytes = 1 << 20
        return o
    }

    func testOwnershipPersistsAndSnapshotsTakeItWithoutWriteBits() throws {
        let pool = try Pool.open(directory: dir, options: options)
        let d = try pool.createDisk(name: "vm", size: 1 << 20)
        XCTAssertEqual(d.owner, Ownership(uid: 0, gid: Ownership.diskGroup, mode: 0o660), "a new disk is root:disk 0660")
        _ = try pool.createSnapshots([SnapshotRequest(disk: "vm", label: "before")])
        try pool.setOwnership(disk: d.id, Ownership(uid: 1000, gid: 100, mode: 0o664))
        _ = try pool.createSnapshots([SnapshotRequest(disk: "vm", label: "after")])
        try pool.close()

        let again = try Pool.open(directory: dir, options: options)
        defer { try? again.close() }
        XCTAssertEqual(again.disk(named: "vm")?.owner, Ownership(uid: 1000, gid: 100, mode: 0o664))
        XCTAssertEqual(again.snapshot(named: "vm@before")?.owner, Ownership(uid: 0, gid: Ownership.diskGroup, mode: 0o440),
                       "a snapshot keeps what its disk had at capture")
        XCTAssertEqual(again.snapshot(named: "vm@after")?.owner, Ownership(uid: 1000, gid: 100, mode: 0o444))
        XCTAssertEqual(try PoolFiles.superblockVersions(dir).max(), 5)
    }

    /// Records written before format 5 have no uid, gid or mode.
    func testRecordsWithoutOwnershipReadAsTheDefaults() throws {
        for kind in [PoolObject.Kind.disk, .snapshot] {
            let o = PoolObject(id: 9, kind: kind, name: kind == .disk ? "d" : "d@l", size: 4096, map: MapRoot(), mappedChunks: 0, created: Date())
            o.owner = Ownership(uid: 5, gid: 5, mode: 0o600)
            let block = try ObjectRecord(o).encodeBlock()
            let length = Int(block[0]) | Int(block[1]) << 8 | Int(block[2]) << 16
            var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(block[4..<(4 + length)])) as? [String: Any])
            XCTAssertEqual(json["uid"] as? Int, 5, "format 5 records carry the owner")
            for key in ["uid", "gid", "mode"] { json[key] = nil }
            let old = try JSONSerialization.data(withJSONObject: json)
            var oldBlock = [UInt8](repeating: 0, count: Layout.blockSize)
            oldBlock[0] = UInt8(old.count & 0xFF); oldBlock[1] = UInt8(old.count >> 8)
            oldBlock.replaceSubrange(4..<(4 + old.count), with: old)
            let back = try ObjectRecord.decodeBlock(oldBlock, at: 1).makeObject()
            XCTAssertEqual(back.owner, Ownership(uid: 0, gid: Ownership.diskGroup, mode: kind == .disk ? 0o660 : 0o440), "\(kind)")
        }
    }

    /// Rewrites the format version of both superblock slots (as a format 4 build wrote them).
    func setSuperblockVersions(_ version: UInt32, in path: String) throws {
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path + "/superblock"))
        for slot in 0..<2 {
            guard case .valid(var sb) = Superblock.decode([UInt8](bytes[slot * 4096..<(slot + 1) * 4096])) else { continue }
            sb.formatVersion = version
            bytes.replaceSubrange(slot * 4096..<(slot + 1) * 4096, with: sb.encode())
        }
        try bytes.write(to: URL(fileURLWithPath: path + "/superblock"))
    }

    func testFormatFourPoolOpensAndBecomesFiveAtItsFirstCommit() throws {
        let pool = try Pool.open(directory: dir, options: options)
        let d = try pool.createDisk(name: "vm", size: 1 << 20)
        try Bytes.random(4096).withUnsafeBytes { try pool.write(disk: d.id, offset: 0, data: $0) }
        try pool.sync()
        try pool.close()
        try setSuperblockVersions(4, in: dir)
        let copy = dir + "-copy"
        defer { try? FileManager.default.removeItem(atPath: copy) }
        XCTAssertEqual(Shell.run(["cp", "-a", "--sparse=always", dir, copy]).status, 0)

        var readOnly = options
        readOnly.readOnly = true
        let viewer = try Pool.open(directory: dir, options: readOnly)
        XCTAssertEqual(viewer.formatVersion, 4)
        try viewer.close()
        XCTAssertEqual(try PoolFiles.superblockVersions(dir), [4, 4], "a read-only open writes nothing")

        let writer = try Pool.open(directory: dir, options: options)
        XCTAssertTrue(writer.canStoreOwnership)
        try writer.setOwnership(disk: d.id, Ownership(uid: 1000, gid: 1000, mode: 0o600))
        try writer.sync()
        XCTAssertEqual(writer.formatVersion, 5)
        try writer.close()
        XCTAssertEqual(try PoolFiles.superblockVersions(dir), [5, 5], "the commits (sync, close) wrote format 5 into both slots")
        let reopened = try Pool.open(directory: dir, options: options)
        XCTAssertEqual(reopened.disk(named: "vm")?.owner, Ownership(uid: 1000, gid: 1000, mode: 0o600))
        XCTAssertTrue(reopened.check().isClean)
        try reopened.close()

        // `pool upgrade` of a format 4 pool: both slots, no data copied.
        let report = try Pool.upgrade(directory: copy, options: options)
        XCTAssertEqual([report.fromVersion, report.toVersion], [4, 5])
        XCTAssertEqual(report.copiedBytes, 0)
        XCTAssertEqual(try PoolFiles.superblockVersions(copy), [5, 5])
    }

    /// Builds that read format 3 would ignore the fields, so a format 3 pool keeps the
    /// defaults until it is upgraded.
    func testFormatThreePoolRefusesOwnershipChanges() throws {
        var o = options
        o.dataSegments = .singleFile
        let pool = try Pool.open(directory: dir, options: o)
        defer { try? pool.close() }
        let d = try pool.createDisk(name: "vm")
        XCTAssertFalse(pool.canStoreOwnership)
        XCTAssertThrowsError(try pool.setOwnership(disk: d.id, Ownership(uid: 1, gid: 1, mode: 0o600))) { e in
            XCTAssertTrue("\(e)".contains("snapfs pool upgrade"), "\(e)")
        }
        XCTAssertEqual(pool.disk(named: "vm")?.owner, .newDisk)
        try pool.sync()
        XCTAssertEqual(try PoolFiles.superblockVersions(dir).max(), 3)
    }
}

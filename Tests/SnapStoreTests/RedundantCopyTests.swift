import Foundation
import TestSupport
import XCTest
@testable import SnapStore

/// `check` names each damaged redundant copy (superblock slot, refcount page shadow slot)
/// and `repairRedundantCopies` mends it from the good copy, offline and in a running pool.
final class RedundantCopyTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = NSTemporaryDirectory() + "snapfs-copies-\(UUID().uuidString)" }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func options(readOnly: Bool = false) -> PoolOptions {
        var o = PoolOptions()
        o.backgroundCommits = false
        o.chunkSize = 4096
        o.readOnly = readOnly
        return o
    }

    let diskBytes = 256 * 1024
    var content: [UInt8] = []

    /// A pool with a disk and a snapshot of it, written over several commits (so the
    /// refcount pages have both slots written), closed cleanly.
    func makePool() throws {
        content = (0..<diskBytes).map { _ in UInt8.random(in: 0...255) }
        let p = try Pool.open(directory: dir, options: options())
        let d = try p.createDisk(name: "vm1", size: UInt64(diskBytes))
        try content.withUnsafeBytes { try p.write(disk: d.id, offset: 0, data: $0) }
        try p.sync()
        _ = try p.createSnapshots([SnapshotRequest(disk: "vm1", label: "s1")])
        try p.sync()
        for k in 0..<4 {
            let patch = [UInt8](repeating: UInt8(k + 1), count: 8192)
            try patch.withUnsafeBytes { try p.write(disk: d.id, offset: UInt64(k * 16384), data: $0) }
            content.replaceSubrange(k * 16384..<(k * 16384 + 8192), with: patch)
            try p.sync()
        }
        try p.close()
    }

    func read(_ p: Pool, _ name: String) throws -> [UInt8] {
        let id = try XCTUnwrap(p.disk(named: name)?.id ?? p.snapshot(named: name)?.id)
        var out = [UInt8](repeating: 0, count: diskBytes)
        _ = try out.withUnsafeMutableBytes { try p.read(object: id, offset: 0, into: $0) }
        return out
    }

    var snapshotContent: [UInt8] = []

    func overwrite(_ file: String, at offset: Int, with bytes: [UInt8]) throws {
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: dir + "/" + file))
        try h.seek(toOffset: UInt64(offset))
        h.write(Data(bytes))
        try h.close()
    }

    func flip(_ file: String, at offset: Int) throws {
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: dir + "/" + file))
        try h.seek(toOffset: UInt64(offset))
        let b = try XCTUnwrap(h.read(upToCount: 1))
        try h.seek(toOffset: UInt64(offset))
        h.write(Data([b[0] ^ 0x5A]))
        try h.close()
    }

    /// Offline: check names the problems, repair mends them, then all is clean and every
    /// disk and snapshot reads back as before.
    func assertNamedThenRepaired(_ expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let ro = try Pool.open(directory: dir, options: options(readOnly: true))
        let problems = ro.redundantCopyProblems()
        XCTAssertTrue(problems.contains { $0.contains(expected) && $0.contains("run snapfs check --repair") }, "\(problems)", file: file, line: line)
        let snapBefore = try read(ro, "vm1@s1")
        let rw = try Pool.open(directory: dir, options: options())
        let fix = rw.repairRedundantCopies()
        XCTAssertEqual(fix.failures, [], file: file, line: line)
        XCTAssertEqual(fix.remaining, [], file: file, line: line)
        XCTAssertFalse(fix.repaired.isEmpty, file: file, line: line)
        try rw.close()
        let after = try Pool.open(directory: dir, options: options(readOnly: true))
        XCTAssertEqual(after.redundantCopyProblems(), [], file: file, line: line)
        XCTAssertTrue(after.check().isClean, "\(after.check().problems)", file: file, line: line)
        XCTAssertEqual(try read(after, "vm1"), content, file: file, line: line)
        XCTAssertEqual(try read(after, "vm1@s1"), snapBefore, file: file, line: line)
    }

    func inUseSuperblockSlot() throws -> Int {
        let ro = try Pool.open(directory: dir, options: options(readOnly: true))
        return Int(ro.superblock.generation % 2)
    }

    func testYoungPoolWithOneSlotNeverWrittenIsClean() throws {
        let p = try Pool.open(directory: dir, options: options())
        XCTAssertEqual(p.superblock.generation, 1, "format's superblock, slot 0 never written")
        XCTAssertEqual(p.redundantCopyProblems(), [])
        p.abandon()
        let ro = try Pool.open(directory: dir, options: options(readOnly: true))
        XCTAssertEqual(ro.redundantCopyProblems(), [])
    }

    func testZeroedSuperblockSlotOfACommittedPoolIsNamed() throws {
        try makePool()
        let other = 1 - (try inUseSuperblockSlot())
        try overwrite("superblock", at: other * 4096, with: [UInt8](repeating: 0, count: 4096))
        try assertNamedThenRepaired("superblock slot \(other): all zeros")
    }

    func testSuperblockSlotWithRandomBytesIsNamedAndRepaired() throws {
        try makePool()
        // Slot 0, whichever commit it held (the finding): the pool still opens.
        try overwrite("superblock", at: 0, with: (0..<4096).map { _ in UInt8.random(in: 0...255) })
        try assertNamedThenRepaired("superblock slot 0: bad magic")
    }

    func testSuperblockSlotWithBadChecksumIsNamedAndRepaired() throws {
        try makePool()
        let other = 1 - (try inUseSuperblockSlot())
        try flip("superblock", at: other * 4096 + 2000)
        try assertNamedThenRepaired("superblock slot \(other): checksum mismatch")
    }

    /// The shadow slot of meta.refs page 0 not in use, damaged both ways.
    func testRefcountShadowSlotDamageIsNamedAndRepaired() throws {
        for (table, damage) in [("meta", "random"), ("meta", "checksum"), ("data", "random"), ("data", "checksum")] {
            try? FileManager.default.removeItem(atPath: dir)
            try makePool()
            let ro = try Pool.open(directory: dir, options: options(readOnly: true))
            let refs = table == "meta" ? ro.metaRefs : ro.dataRefs
            let other = 1 - Int(refs.committedSlot(ofPage: 0))
            let bytes = try ro.readRefcountSlot(refs, page: 0, slot: other)
            guard case .valid = RefcountTable.content(of: bytes, page: 0) else {
                return XCTFail("\(table).refs page 0 slot \(other) should hold an older copy")
            }
            if damage == "random" {
                try overwrite("\(table).refs", at: other * 4096, with: (0..<4096).map { _ in UInt8.random(in: 0...255) })
                try assertNamedThenRepaired("\(table).refs page 0 slot \(other): bad magic")
            } else {
                try flip("\(table).refs", at: other * 4096 + 100)
                try assertNamedThenRepaired("\(table).refs page 0 slot \(other): checksum mismatch")
            }
        }
    }

    /// Damage under a running pool (the daemon's case): the copy in use is rewritten in
    /// place, and the other slot of the superblock by a commit.
    func testCopiesDamagedWhileOpenAreRepairedByTheWriter() throws {
        try makePool()
        let p = try Pool.open(directory: dir, options: options())
        try p.commitNow()
        let inUse = Int(p.superblock.generation % 2)
        let page = Int(p.dataRefs.committedSlot(ofPage: 0))
        try flip("superblock", at: inUse * 4096 + 3000)
        try flip("data.refs", at: page * 4096 + 200)
        let problems = p.redundantCopyProblems()
        XCTAssertTrue(problems.contains { $0.hasPrefix("superblock slot \(inUse) (generation \(p.superblock.generation), in use): checksum mismatch") }, "\(problems)")
        XCTAssertTrue(problems.contains { $0.hasPrefix("data.refs page 0 slot \(page) (in use): checksum mismatch") }, "\(problems)")
        let fix = p.repairRedundantCopies()
        XCTAssertEqual(fix.failures, [])
        XCTAssertEqual(fix.remaining, [])
        XCTAssertEqual(fix.repaired.count, 2, "\(fix.repaired)")
        XCTAssertEqual(p.redundantCopyProblems(), [])

        // Then the other superblock slot: a commit rewrites it, the slot in use stays.
        let inUseBytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/superblock"))[(inUse * 4096)..<(inUse * 4096 + 4096)]
        try flip("superblock", at: (1 - inUse) * 4096 + 3000)
        XCTAssertEqual(p.redundantCopyProblems().count, 1)
        let generation = p.superblock.generation
        XCTAssertEqual(p.repairRedundantCopies().remaining, [])
        XCTAssertEqual(p.superblock.generation, generation + 1)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/superblock"))[(inUse * 4096)..<(inUse * 4096 + 4096)], inUseBytes)
        p.abandon()   // no final commit: the repaired copies alone must carry the pool
        let after = try Pool.open(directory: dir, options: options(readOnly: true))
        XCTAssertEqual(after.superblock.generation, generation + 1)
        XCTAssertEqual(after.redundantCopyProblems(), [])
        XCTAssertTrue(after.check().isClean, "\(after.check().problems)")
        XCTAssertEqual(try read(after, "vm1"), content)
    }

    /// An older copy is not copied over a damaged newer one: that would hide that the pool
    /// runs on out-of-date counts.
    func testDamagedNewerRefcountCopyIsNotOverwritten() throws {
        try makePool()
        let ro = try Pool.open(directory: dir, options: options(readOnly: true))
        let newer = Int(ro.metaRefs.committedSlot(ofPage: 0))
        try flip("meta.refs", at: newer * 4096 + 100)   // the counts, not the header
        let problems = try Pool.open(directory: dir, options: options(readOnly: true)).redundantCopyProblems()
        XCTAssertTrue(problems.contains { $0.contains("meta.refs page 0 slot \(newer): checksum mismatch in a newer copy") }, "\(problems)")
        let damaged = try Data(contentsOf: URL(fileURLWithPath: dir + "/meta.refs"))[(newer * 4096)..<(newer * 4096 + 4096)]
        let rw = try Pool.open(directory: dir, options: options())
        let fix = rw.repairRedundantCopies()
        XCTAssertFalse(fix.remaining.isEmpty, "still reported")
        rw.abandon()
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/meta.refs"))[(newer * 4096)..<(newer * 4096 + 4096)], damaged)
    }

    /// What a crash leaves is not damage: a kill or power cut while a commit flushes (whole
    /// writes lost, none torn) leaves stale refcount copies, a newer superblock whose commit
    /// is cut short or an older one; check names none of them, before recovery or after.
    func testCrashDuringACommitLeavesNoDamagedCopy() throws {
        var rng = PoolModelTests.RNG(state: 11)
        var cutShort = 0
        for trial in 0..<24 {
            try? FileManager.default.removeItem(atPath: dir)
            let crash = CrashSwitch(seed: UInt64(trial) &* 131 + 3)
            var o = options()
            o.storage = CrashingStorage(directory: dir, crash: crash)
            let pool = try Pool.open(directory: dir, options: o)
            let d = try pool.createDisk(name: "vm1", size: 1 << 20)
            for step in 0..<Int.random(in: 3...12, using: &rng) {
                let bytes = [UInt8](repeating: UInt8(step + 1), count: Int.random(in: 1...20_000, using: &rng))
                try bytes.withUnsafeBytes { try pool.write(disk: d.id, offset: UInt64.random(in: 0..<(1 << 20) - 20_000, using: &rng), data: $0) }
                if step % 3 == 0 { _ = try pool.createSnapshots([SnapshotRequest(disk: "vm1", label: "s\(step)")]) }
                try pool.sync()
            }
            try [UInt8](repeating: 0xEE, count: 9000).withUnsafeBytes { try pool.write(disk: d.id, offset: 4096, data: $0) }
            crash.arm(atFlush: Int.random(in: 0..<5, using: &rng))
            XCTAssertThrowsError(try pool.sync())
            pool.abandon()
            if trial % 2 == 0 { crash.powerLoss() }
            let before = try Pool.open(directory: dir, options: options(readOnly: true))
            XCTAssertEqual(before.redundantCopyProblems(), [], "trial \(trial), before recovery")
            if try PoolFiles.superblockGenerations(dir).max()! > before.superblock.generation { cutShort += 1 }
            let recovered = try Pool.open(directory: dir, options: options())
            XCTAssertEqual(recovered.redundantCopyProblems(), [], "trial \(trial), recovered")
            try recovered.close()
            let after = try Pool.open(directory: dir, options: options(readOnly: true))
            XCTAssertEqual(after.redundantCopyProblems(), [], "trial \(trial), after a clean close")
        }
        XCTAssertGreaterThan(cutShort, 0, "some trials must leave a newer superblock whose commit was cut short")
    }
}

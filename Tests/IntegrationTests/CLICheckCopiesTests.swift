import Foundation
import Glibc
import TestSupport
import XCTest

/// `snapfs check` names a damaged redundant copy (superblock slot, shadow slot of a
/// reference-count page) mounted and offline, and `check --repair` mends it (SPEC §3).
final class CLICheckCopiesTests: CLITestCase {
    var diskContent: [UInt8] = []
    var snapshotContent: [UInt8] = []

    /// A disk and a snapshot with different contents, everything committed (the check's
    /// pin commits what is pending, so the generation stays put from here on).
    func populate() throws {
        let image = try makeDisk("vm1", size: 2 << 20)
        snapshotContent = Bytes.random(2 << 20)
        try write(image, snapshotContent, at: 0)
        ok(["snapshot", "create", "vm1", "--label", "s1"])
        let patch = Bytes.random(256 << 10)
        try write(image, patch, at: 512 << 10)
        diskContent = snapshotContent
        diskContent.replaceSubrange((512 << 10)..<(768 << 10), with: patch)
        ok(["check"])
    }

    func assertContents(file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try read(m.image(disk: "vm1")), diskContent, "disk", file: file, line: line)
        XCTAssertEqual(try read(m.image(snapshot: "vm1@s1")), snapshotContent, "snapshot", file: file, line: line)
    }

    func damage(_ file: String, at offset: Int, _ how: String) throws {
        let fd = try Sys.open(m.pool + "/" + file, O_RDWR)
        defer { try? Sys.close(fd) }
        if how == "random" {
            try Sys.pwrite(fd, Bytes.random(4096), offset)
        } else {   // one byte inside the checksummed range: a checksum mismatch
            let b = try Sys.pread(fd, 1, offset + 1000)
            try Sys.pwrite(fd, [b[0] ^ 0x5A], offset + 1000)
        }
    }

    /// check fails naming `expected`; check --repair says what it rewrote; check is clean.
    func assertNamedThenRepaired(_ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        let r = fails(["check"], "pool \(m.pool) is damaged", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(expected), r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.contains("run snapfs check --repair"), r.stderr, file: file, line: line)
        let fixed = ok(["check", "--repair"], file: file, line: line)
        let copy = expected.prefix { $0 != ":" }.components(separatedBy: " (")[0]   // "superblock slot 0"
        XCTAssertTrue(fixed.stdout.contains("repaired \(copy): rewritten"), fixed.stdout, file: file, line: line)
        XCTAssertTrue(fixed.stdout.contains("clean"), fixed.stdout, file: file, line: line)
        let after = ok(["check"], file: file, line: line)
        XCTAssertFalse(after.stdout.contains("repaired"), after.stdout, file: file, line: line)
    }

    func testYoungPoolWithOneSuperblockSlotNeverWrittenIsClean() throws {
        let generations = try PoolFiles.superblockGenerations(m.pool)
        XCTAssertEqual(generations, [0, 1], "a new pool has written slot 1 only")
        let j = try json(["check"])
        XCTAssertEqual(j["Clean"] as? Bool, true)
        XCTAssertEqual(j["Problems"] as? [String], [])
    }

    func testDamagedSuperblockSlotMountedAndOffline() throws {
        try populate()
        // Mounted: first the slot in use (the daemon rewrites it in place), then the other
        // (a commit rewrites it), with random bytes and with a bad checksum.
        let generations = try PoolFiles.superblockGenerations(m.pool)
        let inUse = generations[0] > generations[1] ? 0 : 1
        try damage("superblock", at: inUse * 4096, "checksum")
        assertNamedThenRepaired("superblock slot \(inUse) (generation \(generations[inUse]), in use): checksum mismatch")
        XCTAssertEqual(try PoolFiles.superblockGenerations(m.pool), generations, "rewritten in place")
        try damage("superblock", at: (1 - inUse) * 4096, "random")
        assertNamedThenRepaired("superblock slot \(1 - inUse): bad magic")
        XCTAssertEqual(try PoolFiles.superblockGenerations(m.pool).max(), generations.max()! + 1, "a commit wrote it")
        try assertContents()

        // Offline: random bytes over slot 0 (the finding), then a bad checksum in slot 1.
        try m.unmount()
        try damage("superblock", at: 0, "random")
        assertNamedThenRepaired("superblock slot 0: bad magic")
        try damage("superblock", at: 4096, "checksum")
        assertNamedThenRepaired("superblock slot 1: checksum mismatch")
        try m.mount()
        try assertContents()
        ok(["check"])
    }

    func testDamagedRefcountShadowSlotMountedAndOffline() throws {
        try populate()
        // Mounted: the older copy of meta.refs page 0, a bad checksum.
        let meta = try PoolFiles.refcountSlotGenerations(m.pool, "meta.refs", page: 0)
        let metaOlder = try XCTUnwrap(meta[0]) < XCTUnwrap(meta[1]) ? 0 : 1
        try damage("meta.refs", at: metaOlder * 4096, "checksum")
        assertNamedThenRepaired("meta.refs page 0 slot \(metaOlder): checksum mismatch")
        try assertContents()

        // Offline: the older copy of data.refs page 0, random bytes, then a bad checksum.
        try m.unmount()
        let data = try PoolFiles.refcountSlotGenerations(m.pool, "data.refs", page: 0)
        let dataOlder = try XCTUnwrap(data[0]) < XCTUnwrap(data[1]) ? 0 : 1
        try damage("data.refs", at: dataOlder * 4096, "random")
        assertNamedThenRepaired("data.refs page 0 slot \(dataOlder): bad magic")
        try damage("data.refs", at: dataOlder * 4096, "checksum")
        assertNamedThenRepaired("data.refs page 0 slot \(dataOlder): checksum mismatch")
        try m.mount()
        try assertContents()
    }

    /// Real damage stays reported after --repair, with a non-zero exit.
    func testRepairLeavesDataDamageReported() throws {
        try populate()
        try m.unmount()
        let fd = try Sys.open(m.pool + "/data.000000", O_RDWR)
        let offset = 300 << 10
        let b = try Sys.pread(fd, 1, offset)
        try Sys.pwrite(fd, [b[0] ^ 0x5A], offset)
        try Sys.close(fd)
        let r = fails(["check", "--repair"], "pool \(m.pool) is damaged")
        XCTAssertTrue(r.stderr.contains("checksum mismatch"), r.stderr)
        fails(["check"], "pool \(m.pool) is damaged")
    }
}

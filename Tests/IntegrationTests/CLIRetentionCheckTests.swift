import Foundation
import Glibc
import SnapStore
import TestSupport
import XCTest

/// Retention with the injectable clock, and `snapfs check` offline, mounted and on damage.
final class CLIRetentionCheckTests: CLITestCase {
    func testExpiredSnapshotsAreDeletedAlsoAfterRestart() throws {
        try remount(environment: ["SNAPFS_TEST_HOOKS": "1"])
        try makeDisk("vm1", size: 1 << 20)
        ok(["snapshot", "create", "vm1", "--label", "day1", "--retention-days", "1"])
        ok(["snapshot", "create", "vm1", "--label", "day3", "--retention-days", "3"])
        ok(["snapshot", "create", "vm1", "--label", "forever"])
        ok(["debug", "expire"])
        XCTAssertEqual(try snapshotIds(), ["vm1@day1", "vm1@day3", "vm1@forever"], "nothing expired yet")

        // The clock moves 1.5 days: only day1 goes, and the tree shows it at once.
        XCTAssertNotNil(try? Sys.stat("\(m.snapshots)/vm1@day1"))
        let r = ok(["debug", "expire", "--clock-offset-seconds", "\(1.5 * 86400)"])
        XCTAssertTrue(r.stdout.contains("vm1@day1"), r.stdout)
        XCTAssertEqual(try snapshotIds(), ["vm1@day3", "vm1@forever"])
        XCTAssertEqual(errnoOf { _ = try Sys.stat("\(m.snapshots)/vm1@day1") }, ENOENT)

        // After a restart with the clock 4 days ahead, the daemon expires day3 by itself.
        try remount(environment: ["SNAPFS_TEST_CLOCK_OFFSET_SECONDS": "\(4 * 86400)"])
        XCTAssertTrue(eventually(10) { (try? self.snapshotIds()) == ["vm1@forever"] }, "\((try? snapshotIds()) ?? [])")
        // Without the test hooks, debug.expire is refused.
        fails(["debug", "expire"], "SNAPFS_TEST_HOOKS=1")
    }

    func testCheckCleanOfflineAndMounted() throws {
        let image = try makeDisk("vm1", size: 4 << 20)
        try write(image, Bytes.random(4 << 20), at: 0)
        ok(["snapshot", "create", "vm1", "--label", "s1"])
        try write(image, Bytes.random(1 << 20), at: 0)
        ok(["disk", "create", "clone", "--from-snapshot", "vm1@s1"])

        let mounted = ok(["check"])
        XCTAssertTrue(mounted.stdout.contains("pool \(m.pool): clean, 2 disks, 1 snapshots, \((5 << 20) / PoolOptions().chunkSize) chunks verified"), mounted.stdout)
        // Writes go on while the pool is pinned and after.
        try write(image, Bytes.random(1 << 20), at: 2 << 20)
        XCTAssertEqual(ok(["check", "--no-data"]).status, 0)

        try m.unmount()
        let offline = ok(["check"])
        XCTAssertTrue(offline.stdout.contains("clean, 2 disks, 1 snapshots, \((6 << 20) / PoolOptions().chunkSize) chunks verified"), offline.stdout)
        let j = try json(["check"])
        XCTAssertEqual(j["Clean"] as? Bool, true)
    }

    func testCheckNamesDamage() throws {
        let image = try makeDisk("vm1", size: 2 << 20)
        try write(image, Bytes.random(2 << 20), at: 0)
        ok(["snapshot", "create", "vm1", "--label", "s1"])
        try m.unmount()

        // Flip one byte in the middle of the data file: inside one of vm1's 32 chunks.
        let data = m.pool + "/data.000000"
        let size = Int(try Sys.stat(data).st_size)
        let fd = try Sys.open(data, O_RDWR)
        let offset = size / 2 + 123
        let byte = try Sys.pread(fd, 1, offset)
        try Sys.pwrite(fd, [byte[0] ^ 0x5A], offset)
        try Sys.close(fd)

        let r = fails(["check"], "pool \(m.pool) is damaged")
        XCTAssertTrue(r.stderr.contains("checksum mismatch"), r.stderr)
        XCTAssertTrue(r.stderr.contains("vm1: bytes") && r.stderr.contains("vm1@s1: bytes"), r.stderr)
        // Without data verification the maps and counts are still fine.
        XCTAssertEqual(m.cli(["check", "--no-data"]).status, 0)
    }
}

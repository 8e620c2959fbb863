import Foundation
import Glibc
import TestSupport
import XCTest

/// SPEC §1: "ENOSPC when the pool is full (nothing else lost)", on a pool whose host
/// filesystem is a small ext4 of its own.
final class PoolFullTests: MountedTestCase {
    let MiB = 1 << 20
    let hostBytes = 128 << 20

    override func makePool() throws -> MountedPool { try MountedPool(poolFilesystemBytes: hostBytes) }

    func testWriteFailsWithENOSPCAndNothingElseIsLost() throws {
        let space = try SpaceUse.of(m.mountpoint)
        XCTAssertLessThanOrEqual(space.capacity, UInt64(hostBytes), "capacity is bounded by the host filesystem")

        let image = try makeDisk("D")
        let fd = try Sys.open(image, O_RDWR)
        var isOpen = true
        defer { if isOpen { try? Sys.close(fd) } }
        let keep = Bytes.random(4 * MiB)
        try Sys.pwrite(fd, keep, 0)
        try Sys.fsync(fd)
        let snap = try snapshot("D@s")
        let snapSum = try Shell.sha256(snap)

        // Fill the pool with 1 MiB writes until one fails.
        var accepted: [[UInt8]] = []
        var failure: Int32 = 0
        for i in 0..<(2 * hostBytes / MiB) {
            let block = Bytes.random(MiB)
            failure = errnoOf { try Sys.pwrite(fd, block, 8 * MiB + i * MiB) }
            if failure != 0 { break }
            accepted.append(block)
        }
        XCTAssertEqual(failure, ENOSPC, "a full pool fails writes with ENOSPC: got \(errnoName(failure)) after \(accepted.count) MiB")
        XCTAssertGreaterThan(accepted.count, 32, "the pool took far less than its host could hold")

        // Nothing else is lost: accepted writes persist, earlier data and the snapshot are intact.
        assertErrno(0, "fsync after ENOSPC (accepted writes must persist)") { try Sys.fsync(fd) }
        XCTAssertTrue(try Sys.pread(fd, keep.count, 0) == keep, "data written before the pool filled")
        XCTAssertEqual(try Shell.sha256(snap), snapSum, "snapshot after ENOSPC")
        XCTAssertEqual(try Sys.listdir(m.snapshots), ["D@s"])
        isOpen = false
        try Sys.close(fd)

        try m.unmount()                               // exit status 0 even on a full pool
        try m.mount()
        let after = try Sys.readFile(image)
        XCTAssertTrue(after.prefix(keep.count).elementsEqual(keep), "first 4 MiB after remount")
        for (i, block) in accepted.enumerated() {
            let off = 8 * MiB + i * MiB
            guard after.count >= off + MiB else { XCTFail("image too short after remount: \(after.count)"); break }
            if !after[off..<off + MiB].elementsEqual(block) { XCTFail("accepted MiB \(i) lost after remount"); break }
        }
        XCTAssertEqual(try Shell.sha256(snap), snapSum, "snapshot after remount")

        // Space comes back: delete the snapshot, punch the filler out, and writes work again.
        try Sys.rmdir("\(m.snapshots)/D@s")
        let fd2 = try Sys.open(image, O_RDWR)
        defer { try? Sys.close(fd2) }
        try Sys.punchHole(fd2, 0, after.count)
        try Sys.fsync(fd2)
        XCTAssertTrue(eventually(30) { errnoOf { try Sys.pwrite(fd2, Bytes.random(16 * MiB), 0) } == 0 },
                      "writes succeed again after space was freed")
    }

    /// A write that copies its map path (the leaf is shared with a snapshot) and then fails
    /// with ENOSPC must still have the disk's record rewritten by the next commit: the copy
    /// moved reference counts. Before the fix the record kept the old root with a count it
    /// had lost, `check` found it, and once the snapshot was deleted the disk's map pointed
    /// at a freed block (the daemon stopped on a failed precondition when the disk was punched).
    func testWriteThatCopiedItsMapPathBeforeENOSPCLeavesAConsistentPool() throws {
        let image = try makeDisk("D")
        let original = Bytes.random(4 * MiB)
        let fd = try Sys.open(image, O_RDWR)
        try Sys.pwrite(fd, original, 0)
        try Sys.fsync(fd)
        _ = try snapshot("D@s")          // commits: D's map is now shared with D@s

        // Leave the host less than the space a commit keeps back, so new chunks are refused.
        let hostDir = (m.pool as NSString).deletingLastPathComponent
        var vfs = statvfs()
        XCTAssertEqual(statvfs(hostDir, &vfs), 0)
        let free = Int(vfs.f_bavail) * Int(vfs.f_frsize)
        let filler = hostDir + "/filler"
        let fill = Shell.run(["fallocate", "-l", String(max(free - 2 * MiB, MiB)), filler])
        XCTAssertTrue(fill.ok, fill.description)
        usleep(100_000)                  // past the pool's cached estimate of free space
        let failure = errnoOf { try Sys.pwrite(fd, Bytes.random(4096), 0) }
        XCTAssertEqual(failure, ENOSPC, "a write needing a new chunk on a full host: got \(errnoName(failure))")
        try Sys.close(fd)
        unlink(filler)

        try m.unmount()
        let check = m.cli(["check"])
        XCTAssertTrue(check.ok && check.stdout.contains("clean"), "pool after the refused write: \(check)")
        try m.mount()
        try Sys.rmdir("\(m.snapshots)/D@s")
        _ = try makeDisk("E", size: MiB)   // a commit that allocates metadata blocks
        XCTAssertTrue(try Sys.readFile(image) == original, "D after its snapshot was deleted")
        let fd2 = try Sys.open(image, O_RDWR)
        defer { try? Sys.close(fd2) }
        assertErrno(0, "punching the disk") { try Sys.punchHole(fd2, 0, original.count) }
        assertErrno(0, "fsync after the punch") { try Sys.fsync(fd2) }
    }
}

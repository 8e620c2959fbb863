import Foundation
import Glibc
import TestSupport
import XCTest

/// SPEC §3, a failed flush is never retried as if it had worked: on a pool whose device
/// starts failing writes (its ext4 lives on a loop device over a file on a tmpfs that fills
/// up, so the kernel reports real writeback errors), the daemon stops acknowledging, reads
/// go on, and after kill -9 and a mended device the next mount has everything acknowledged.
final class FailStopTests: MountedTestCase {
    let MiB = 1 << 20

    override func makePool() throws -> MountedPool {
        // 32 MiB of intent log and ~17 MiB of ext4 metadata leave ~30 MiB for data.
        try MountedPool(poolFilesystemBytes: 512 << 20, backingBytes: 80 << 20)
    }

    func testAFailingDeviceStopsAcknowledgementsAndKill9LosesNothingAcknowledged() throws {
        let image = try makeDisk("D")
        let fd = try Sys.open(image, O_RDWR)
        var isOpen = true
        defer { if isOpen { try? Sys.close(fd) } }
        var acked: [[UInt8]] = []
        var snapshotAt = -1
        var failure: Int32 = 0
        for i in 0..<256 {
            let block = Bytes.random(MiB)
            failure = errnoOf { try Sys.pwrite(fd, block, i * MiB) }
            if failure == 0 { failure = errnoOf { try Sys.fsync(fd) } }
            if failure != 0 { break }
            acked.append(block)
            if i == 3 {
                _ = try snapshot("D@early")
                snapshotAt = acked.count
            }
        }
        XCTAssertEqual(failure, EIO, "the failing device surfaces as EIO after \(acked.count) MiB acknowledged")
        XCTAssertGreaterThan(acked.count, 4)
        XCTAssertEqual(snapshotAt, 4)

        // Stopped: nothing more is acknowledged, whatever is asked, and reads go on.
        XCTAssertEqual(errnoOf { try Sys.pwrite(fd, Bytes.random(4096), 0) }, EIO, "write after the failure")
        XCTAssertEqual(errnoOf { try Sys.fsync(fd) }, EIO, "fsync after the failure")
        XCTAssertEqual(errnoOf { try Sys.fsync(fd) }, EIO, "a second fsync does not 'succeed'")
        assertErrno(EIO, "mkdir of a snapshot") { try Sys.mkdir(m.snapshots + "/D@late") }
        XCTAssertEqual(try Sys.pread(fd, MiB, 0), acked[0], "reads go on")
        let log = (try? String(contentsOfFile: m.logPath, encoding: .utf8)) ?? ""
        XCTAssertTrue(log.contains("stopped acknowledging writes"), "the daemon says why on stderr:\n\(log)")
        try Sys.close(fd)
        isOpen = false

        // A crash now, then the disk is mended: everything acknowledged is there.
        try m.kill9()
        try m.mendBacking(growingTo: 1 << 30)
        try m.mount()
        let again = try Sys.open(image, O_RDONLY)
        defer { try? Sys.close(again) }
        for (i, block) in acked.enumerated() {
            XCTAssertEqual(try Sys.pread(again, MiB, i * MiB), block, "MiB \(i) was fsync'd before the failure")
        }
        let snap = try Sys.open(m.image(snapshot: "D@early"), O_RDONLY)
        defer { try? Sys.close(snap) }
        for i in 0..<snapshotAt {
            XCTAssertEqual(try Sys.pread(snap, MiB, i * MiB), acked[i], "snapshot D@early, MiB \(i)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: m.snapshots + "/D@late"))
        let check = m.cli(["check"])
        XCTAssertEqual(check.status, 0, "\(check)")
    }
}

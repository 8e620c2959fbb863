import Foundation
import Glibc
import TestSupport
import XCTest
@testable import FUSEBridge

/// SPEC §3–4: one daemon per pool, clean exits, foreign folders refused.
final class LifecycleTests: MountedTestCase {
    func testSecondMountOfSamePoolIsRefused() throws {
        let other = m.root + "/mnt2"
        try Sys.mkdir(other)
        defer {
            if MountedPool.mountType(at: other) != nil { _ = Shell.run(["umount", "-l", other]) }
            Glibc.rmdir(other)
        }
        let r = Shell.run([m.binary, "mount", "--pool", m.pool, other], timeout: 15)
        XCTAssertNotEqual(r.status, 0, "a second daemon on the same pool must fail: \(r)")
        XCTAssertNotEqual(r.status, -9, "the second daemon kept running")
        XCTAssertNil(MountedPool.mountType(at: other), "the second daemon mounted")
        XCTAssertFalse(r.stderr.split(separator: "\n").first.map(String.init)?.isEmpty ?? true,
                       "first stderr line says what is wrong")
        // The first daemon is unharmed.
        XCTAssertEqual(try Sys.listdir(m.mountpoint), ["disks", "snapshots"])
    }

    func testSigtermAndSigintExitZeroAndKeepData() throws {
        let image = try makeDisk("D")
        let data = Bytes.random(1 << 20)
        let fd = try Sys.open(image, O_WRONLY)
        try Sys.pwrite(fd, data, 0)
        try Sys.close(fd)
        try m.stop(signal: SIGTERM)             // requires exit status 0 and the mount gone
        try m.mount()
        XCTAssertTrue(try Sys.readFile(image) == data, "data after SIGTERM")
        try m.stop(signal: SIGINT)
        try m.mount()
        XCTAssertTrue(try Sys.readFile(image) == data, "data after SIGINT")
    }

    func testForeignNonEmptyFolderIsRefusedAndUntouched() throws {
        let folder = m.root + "/not-a-pool"
        let other = m.root + "/mnt3"
        try Sys.mkdir(folder)
        try Sys.mkdir(other)
        defer {
            if MountedPool.mountType(at: other) != nil { _ = Shell.run(["umount", "-l", other]) }
            Glibc.rmdir(other)
            try? FileManager.default.removeItem(atPath: folder)
        }
        let content = Bytes.random(1000)
        try Data(content).write(to: URL(fileURLWithPath: folder + "/precious.txt"))
        let r = Shell.run([m.binary, "mount", "--pool", folder, other], timeout: 15)
        XCTAssertNotEqual(r.status, 0, "a non-empty folder that is not a pool must be refused: \(r)")
        XCTAssertNil(MountedPool.mountType(at: other))
        XCTAssertEqual(try Sys.listdir(folder), ["precious.txt"], "nothing written into the folder")
        XCTAssertTrue(try Sys.readFile(folder + "/precious.txt") == content)
    }
}

/// Buffered sequential reads of images (cp, loop devices) get 1 MiB readahead, not the
/// kernel's 128 KiB default for a FUSE mount (BENCHMARKS.md, session 11).
final class ReadaheadTests: MountedTestCase {
    private func knob(_ path: String) throws -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { throw Errno(errno) }
        return Readahead.sysfsPath(device: st.st_dev)
    }

    private func value(_ knob: String) -> Int? { Readahead.kiB(at: knob) }

    func testMountRaisesReadaheadAndReadsStayCorrect() throws {
        let mine = try knob(m.mountpoint)
        XCTAssertTrue(eventually(5) { value(mine) == 1024 }, "\(mine) is \(value(mine).map(String.init) ?? "unreadable"), not 1024")

        // A buffered sequential read through the larger window returns the written bytes.
        let image = try makeDisk("D", size: 8 << 20)
        let data = Bytes.random(8 << 20)
        let fd = try Sys.open(image, O_WRONLY)
        try Sys.pwrite(fd, data, 0)
        try Sys.close(fd)
        dropCaches()
        XCTAssertTrue(try Sys.readFile(image) == data, "buffered read after raising readahead")
    }

    func testLargerValueKeptAndOtherFilesystemsUntouched() throws {
        let mine = try knob(m.mountpoint)
        XCTAssertTrue(eventually(5) { value(mine) == 1024 })
        try "4096\n".write(toFile: mine, atomically: false, encoding: .utf8)
        XCTAssertNil(Readahead.raise(mountpoint: m.mountpoint))
        XCTAssertEqual(value(mine), 4096, "an administrator's larger value is lowered")

        // The folder below a mountpoint (here: the pool's host filesystem) is never changed.
        let host = try knob(m.pool)
        let before = value(host)
        try "64\n".write(toFile: host, atomically: false, encoding: .utf8)
        defer { if let before { try? "\(before)\n".write(toFile: host, atomically: false, encoding: .utf8) } }
        XCTAssertNotNil(Readahead.raise(mountpoint: m.pool), "a non-FUSE path is refused")
        XCTAssertEqual(value(host), 64, "the host filesystem's readahead was changed")
    }
}

import Foundation
import Glibc
import SnapStore
import TestSupport
import XCTest

/// Writes a format 3 pool (one `data` file) at `pool` through the store, the way builds
/// before format 4 made them: disk "vm" with `dataMiB` of random data, a snapshot
/// "vm@before", then 8 MiB rewritten. The same bytes go to `reference` and its copy at
/// the snapshot, `reference.before`, for comparison through a mount later.
func makeFormatThreePool(at pool: String, dataMiB: Int, reference: String) throws {
    let MiB = 1 << 20
    var o = PoolOptions()
    o.dataSegments = .singleFile
    o.backgroundCommits = false
    let p = try Pool.open(directory: pool, options: o)
    let disk = try p.createDisk(name: "vm", size: UInt64(dataMiB * MiB + 16 * MiB))
    let ref = try Sys.open(reference, O_RDWR | O_CREAT | O_TRUNC)
    defer { try? Sys.close(ref) }
    try Sys.ftruncate(ref, dataMiB * MiB + 16 * MiB)
    func write(_ block: [UInt8], at offset: Int) throws {
        try block.withUnsafeBytes { try p.write(disk: disk.id, offset: UInt64(offset), data: $0) }
        try Sys.pwrite(ref, block, offset)
    }
    for i in 0..<dataMiB { try write(Bytes.random(MiB), at: i * MiB) }
    _ = try p.createSnapshots([SnapshotRequest(disk: "vm", label: "before")])
    XCTAssertEqual(Shell.run(["cp", "--sparse=always", reference, reference + ".before"]).status, 0)
    for i in 0..<8 { try write(Bytes.random(MiB), at: (i * 5 % dataMiB) * MiB) }
    try p.close()
}

/// `snapfs pool upgrade`, offline, on real format 3 pools.
final class PoolUpgradeCLITests: CLITestCase {
    override func makePool() throws -> MountedPool { try MountedPool(mount: false) }

    /// SIGKILL at several moments of the copy: each time `check` finds the pool intact
    /// (in whichever format), and a last run finishes. The disk and its snapshot then read
    /// back through a mount exactly as written.
    func testKill9DuringTheUpgradeLosesNothing() throws {
        let reference = m.root + "/reference.img"
        try makeFormatThreePool(at: m.pool, dataMiB: 160, reference: reference)
        XCTAssertEqual(try PoolFiles.superblockVersions(m.pool), [3, 3])
        var killed = 0
        // Each run starts over (a cut-short copy is removed at the next open), so each
        // kill lands `delay` into a whole upgrade: open, copy, switch, removal.
        for delay in stride(from: 0.02, to: 5.0, by: 0.04) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: m.binary)
            p.arguments = ["pool", "upgrade", "--pool", m.pool]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            usleep(useconds_t(delay * 1e6))
            guard p.isRunning else { p.waitUntilExit(); break }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            killed += 1
            let check = m.cli(["check"], timeout: 300)
            XCTAssertEqual(check.status, 0, "after SIGKILL at \(delay) s: \(check)")
            print("pool upgrade: SIGKILL at \(delay) s, then format \(try PoolFiles.superblockVersions(m.pool)), check clean")
        }
        XCTAssertGreaterThan(killed, 0, "the upgrade finished before the first kill")
        let done = ok(["pool", "upgrade"])
        XCTAssertTrue(done.stdout.contains("format 3 -> 5") || done.stdout.contains("already format 5"), done.stdout)
        XCTAssertEqual(try PoolFiles.superblockVersions(m.pool), [5, 5])
        let files = try FileManager.default.contentsOfDirectory(atPath: m.pool)
        XCTAssertFalse(files.contains("data"), "old data file removed: \(files)")
        XCTAssertTrue(files.contains("data.000000") && files.contains("data.000003"), "segment files: \(files.sorted())")

        try m.mount()
        XCTAssertEqual(try Shell.sha256(m.image(disk: "vm")), try Shell.sha256(reference), "disk after the upgrade")
        XCTAssertEqual(try Shell.sha256(m.image(snapshot: "vm@before")), try Shell.sha256(reference + ".before"), "snapshot after the upgrade")
        let fd = try Sys.open(m.image(disk: "vm"), O_RDWR)
        try Sys.pwrite(fd, Bytes.random(1 << 20), 3 << 20)
        try Sys.fsync(fd)
        try Sys.close(fd)
        try m.unmount()
        ok(["check"])
        XCTAssertEqual(try PoolFiles.superblockVersions(m.pool), [5, 5], "commits keep format 5")
    }

    func testUpgradeRefusesAMountedPoolAndLeavesACurrentOneAlone() throws {
        try m.mount()
        try makeDisk("d", size: 1 << 20)
        fails(["pool", "upgrade"], "is mounted: unmount it first")
        try m.unmount()
        let r = ok(["pool", "upgrade"])
        XCTAssertTrue(r.stdout.contains("already format 5"), r.stdout)
        let missing = Shell.run([m.binary, "pool", "upgrade", "--pool", m.root + "/nothing-here"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.hasPrefix("snapfs: no snapfs pool at"), missing.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: m.root + "/nothing-here"), "no pool is made")
    }
}

/// The copy needs the pool's data once more in free host space: refused up front.
final class PoolUpgradeSpaceTests: CLITestCase {
    override func makePool() throws -> MountedPool { try MountedPool(poolFilesystemBytes: 128 << 20, mount: false) }

    func testUpgradeOnAFullHostIsRefusedAndChangesNothing() throws {
        let reference = m.root + "/reference.img"
        try makeFormatThreePool(at: m.pool, dataMiB: 56, reference: reference)
        fails(["pool", "upgrade"], "MiB free on the host")
        XCTAssertEqual(try PoolFiles.superblockVersions(m.pool), [3, 3])
        let files = try FileManager.default.contentsOfDirectory(atPath: m.pool)
        XCTAssertTrue(files.contains("data"))
        XCTAssertFalse(files.contains { $0.hasPrefix("data.0") }, "no copy left behind: \(files)")
        ok(["check"])
        try m.mount()
        XCTAssertTrue(m.log.contains("is format 3") && m.log.contains("snapfs pool upgrade"), "the daemon names the upgrade: \(m.log.suffix(800))")
        XCTAssertEqual(try Shell.sha256(m.image(disk: "vm")), try Shell.sha256(reference))
    }
}

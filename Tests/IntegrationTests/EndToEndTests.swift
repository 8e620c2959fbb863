import Foundation
import Glibc
import TestSupport
import XCTest

/// The README tour for real: ext4 on a disk image, a snapshot, restore a file from it.
final class EndToEndTests: MountedTestCase {
    func testExt4SnapshotRestore() throws {
        let image = try makeDisk("vm1", size: 256 << 20)
        let loop = try LoopDevice(file: image, directIO: true)
        addTeardownBlock { loop.detach() }   // teardown blocks run before tearDown's unmount
        try Shell.check(["mkfs.ext4", "-q", loop.path], timeout: 300)
        let live = try FilesystemMount(device: loop.path)
        addTeardownBlock { live.unmount() }

        // A few files of random content.
        var originals: [String: String] = [:]
        for (name, size) in [("a.bin", 1 << 20), ("b.bin", 3 << 20 + 17), ("small.txt", 5)] {
            let path = "\(live.directory)/\(name)"
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(Bytes.random(size))))
            originals[name] = try Shell.sha256(path)
        }
        try Sys.mkdir("\(live.directory)/dir")
        try Data(Bytes.random(100_000)).write(to: URL(fileURLWithPath: "\(live.directory)/dir/c.bin"))
        originals["dir/c.bin"] = try Shell.sha256("\(live.directory)/dir/c.bin")
        try Shell.check(["sync"])

        try Sys.mkdir("\(m.snapshots)/vm1@s1")

        // Change and delete files on the live filesystem after the snapshot.
        try Data(Bytes.random(2 << 20)).write(to: URL(fileURLWithPath: "\(live.directory)/a.bin"))
        try Sys.unlink("\(live.directory)/b.bin")
        try Shell.check(["sync"])
        XCTAssertNotEqual(try Shell.sha256("\(live.directory)/a.bin"), originals["a.bin"])

        // Browse the snapshot through a second, read-only loop device.
        let snapLoop = try LoopDevice(file: m.image(snapshot: "vm1@s1"), readOnly: true)
        addTeardownBlock { snapLoop.detach() }
        let snap = try FilesystemMount(device: snapLoop.path, options: ["ro", "noload"])
        addTeardownBlock { snap.unmount() }
        for (name, sum) in originals {
            XCTAssertEqual(try Shell.sha256("\(snap.directory)/\(name)"), sum, "\(name) in the snapshot")
        }

        // Restore the deleted file and the changed one.
        for name in ["b.bin", "a.bin"] {
            try Shell.check(["cp", "\(snap.directory)/\(name)", "\(live.directory)/\(name)"])
            XCTAssertEqual(try Shell.sha256("\(live.directory)/\(name)"), originals[name], "restored \(name)")
        }
        try Shell.check(["sync"])

        // Tear down in order and check both filesystems are clean.
        snap.unmount()
        snapLoop.detach()
        live.unmount()
        let fsck = Shell.run(["e2fsck", "-fn", loop.path], timeout: 300)
        XCTAssertEqual(fsck.status, 0, "e2fsck of the live disk: \(fsck)")
        loop.detach()
        try m.unmount()
    }

    /// fstrim on ext4 over a loop device reaches the daemon as discards (punch-hole), and
    /// the chunks go back to the pool: `df` on the mount drops within 30 s (SPEC §1).
    func testDiscardThroughLoopDeviceReturnsChunks() throws {
        let image = try makeDisk("vm2", size: 256 << 20)
        let loop = try LoopDevice(file: image)
        addTeardownBlock { loop.detach() }
        try Shell.check(["mkfs.ext4", "-q", "-E", "nodiscard", loop.path], timeout: 300)
        let fs = try FilesystemMount(device: loop.path)
        addTeardownBlock { fs.unmount() }
        try Data(Bytes.random(64 << 20)).write(to: URL(fileURLWithPath: "\(fs.directory)/big.bin"))
        try Shell.check(["sync"])
        let full = try SpaceUse.of(m.mountpoint).used
        XCTAssertGreaterThan(full, 60 << 20, "64 MiB written through ext4 is in the pool")
        try Sys.unlink("\(fs.directory)/big.bin")
        try Shell.check(["sync"])
        try Shell.check(["fstrim", fs.directory])
        XCTAssertTrue(eventually(30) { ((try? SpaceUse.of(m.mountpoint).used) ?? full) < full - (48 << 20) },
                      "df after fstrim: \(String(describing: try? SpaceUse.of(m.mountpoint).used)) (was \(full))")
        fs.unmount()
        let fsck = Shell.run(["e2fsck", "-fn", loop.path], timeout: 300)
        XCTAssertEqual(fsck.status, 0, "e2fsck after fstrim: \(fsck)")
    }
}

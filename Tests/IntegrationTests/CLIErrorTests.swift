import Foundation
import Glibc
import TestSupport
import XCTest

/// Every error of the CLI: non-zero exit, a first stderr line "snapfs: <what is wrong>",
/// and nothing changed (same disks, snapshots and bytes afterwards).
final class CLIErrorTests: CLITestCase {
    /// What a failed command must leave as it was.
    private func state() throws -> String {
        let d = try disks().map { "\($0["DiskId"]!) \($0["Size"]!)" }.sorted()
        let s = try snapshots().map { "\($0["SnapshotId"]!) \($0["Tags"]!) \($0["Description"]!)" }.sorted()
        let bytes = try Shell.sha256(m.image(disk: "vm1"))
        return (d + s + [bytes]).joined(separator: "\n")
    }

    func testErrorsChangeNothing() throws {
        let image = try makeDisk("vm1", size: 1 << 20)
        try write(image, Bytes.random(1 << 20), at: 0)
        try makeDisk("vm2", size: 1 << 20)
        ok(["snapshot", "create", "vm1", "--label", "s1"])
        ok(["snapshot", "create", "vm2", "--label", "other"])
        let before = try state()

        let cases: [([String], String)] = [
            (["disk", "create", "bad name"], "invalid disk name 'bad name'"),
            (["disk", "create", "-x"], ""),   // malformed command line: usage follows
            (["disk", "create", "vm1"], "disk 'vm1' already exists"),
            (["disk", "create", "vm3", "--size", "12Q"], "invalid size '12Q'"),
            (["disk", "create", "vm3", "--size", "-5"], ""),
            (["disk", "create", "vm3", "--size", "2P"], "above the 1 PiB limit"),
            (["disk", "create", "vm3", "--from-snapshot", "vm1@nope"], "no snapshot 'vm1@nope'"),
            (["disk", "create", "vm3", "--from-snapshot", "vm1@s1", "--size", "4K"], "smaller than snapshot vm1@s1"),
            (["disk", "resize", "nope", "--size", "2M"], "no disk 'nope'"),
            (["disk", "resize", "vm1", "--size", "512K"], "cannot shrink disk 'vm1'"),
            (["disk", "resize", "vm1", "--size", "lots"], "invalid size 'lots'"),
            (["disk", "rollback", "nope", "--to", "vm1@s1"], "no disk 'nope'"),
            (["disk", "rollback", "vm1", "--to", "vm1@nope"], "no snapshot 'vm1@nope'"),
            (["disk", "rollback", "vm1", "--to", "vm2@other"], "snapshot 'vm2@other' is of disk 'vm2', not 'vm1'"),
            (["disk", "delete", "nope"], "no disk 'nope'"),
            (["disk", "delete", "bad/name"], "invalid disk name"),
            (["snapshot", "create", "nope"], "no disk 'nope'"),
            (["snapshot", "create", "vm1", "vm1"], "disk 'vm1' is named twice"),
            (["snapshot", "create", "vm1", "nope", "--label", "x"], "no disk 'nope'"),
            (["snapshot", "create", "vm1", "--label", "s1"], "snapshot 'vm1@s1' already exists"),
            (["snapshot", "create", "vm1", "vm2", "--label", "s1"], "snapshot 'vm1@s1' already exists"),
            (["snapshot", "create", "vm1", "--label", "bad@label"], "invalid snapshot label 'bad@label'"),
            (["snapshot", "create", "vm1", "--tag", "novalue"], "invalid tag 'novalue'"),
            (["snapshot", "create", "vm1", "--tag", "=v"], "invalid tag key ''"),
            (["snapshot", "create", "vm1", "--tag", "a=1", "--tag", "a=2"], "tag 'a' is given twice"),
            (["snapshot", "create", "vm1"] + (0...20).flatMap { ["--tag", "k\($0)=v"] }, "at most 20 tags"),
            (["snapshot", "create", "vm1", "--retention-days", "0"], "retention days must be 1 to"),
            (["snapshot", "create", "vm1", "--description", String(repeating: "d", count: 300)], "description is longer than 256"),
            (["snapshot", "delete", "vm1@nope"], "no snapshot 'vm1@nope'"),
            (["snapshot", "diff", "vm1@nope"], "no snapshot 'vm1@nope'"),
            (["snapshot", "diff", "vm1@s1", "vm1@nope"], "no snapshot 'vm1@nope'"),
        ]
        for (args, message) in cases {
            fails(args, message)
        }
        XCTAssertEqual(try state(), before)
        // 20 tags are fine.
        ok(["snapshot", "create", "vm1", "--label", "tags20"] + (0..<20).flatMap { ["--tag", "k\($0)=v"] })
    }

    func testBusyImagesAreRefusedAfterWaiting() throws {
        let image = try makeDisk("vm1", size: 1 << 20)
        try write(image, Bytes.random(1 << 20), at: 0)
        ok(["snapshot", "create", "vm1", "--label", "s1"])
        let before = try state()

        let fd = try Sys.open(image, O_RDWR)
        let start = Date()
        fails(["disk", "rollback", "vm1", "--to", "vm1@s1"], "disk 'vm1' is busy")
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 1.9, "waits up to 2 s for releases")
        fails(["disk", "delete", "vm1"], "disk 'vm1' is busy")
        try Sys.close(fd)
        let snapFd = try Sys.open(m.image(snapshot: "vm1@s1"), O_RDONLY)
        fails(["snapshot", "delete", "vm1@s1"], "snapshot 'vm1@s1' is busy")
        try Sys.close(snapFd)
        XCTAssertEqual(try state(), before, "no undo snapshot, no change")

        // A close() just before the command is waited for, not refused.
        let again = try Sys.open(image, O_RDONLY)
        try Sys.close(again)
        ok(["disk", "rollback", "vm1", "--to", "vm1@s1", "--no-undo"])
        ok(["snapshot", "delete", "vm1@s1"])
        XCTAssertEqual(try snapshotIds(), [])
    }
}

import Foundation
import Glibc
import SnapStore
import TestSupport
import XCTest

/// Every command of SPEC §4 against a live mount: results, JSON shapes, tree visibility.
final class CLICommandTests: CLITestCase {
    func testDiskLifecycleAndJSONShapes() throws {
        // A name the kernel has looked up (and cached as missing) shows at once after create.
        XCTAssertEqual(errnoOf { _ = try Sys.stat("\(m.disks)/vm1") }, ENOENT)
        let created = try json(["disk", "create", "vm1", "--size", "64M"])
        let d = try XCTUnwrap((created["Disks"] as? [[String: Any]])?.first)
        XCTAssertEqual(Set(d.keys), SpecKeys.disk)
        XCTAssertEqual(d["DiskId"] as? String, "vm1")
        XCTAssertEqual(d["Size"] as? Int, 64 << 20)
        XCTAssertEqual(d["AllocatedBytes"] as? Int, 0)
        XCTAssertTrue(isRFC3339(d["CreationTime"]), "\(d)")
        XCTAssertEqual(d["Status"] as? String, "available")
        XCTAssertEqual(try Sys.stat(m.image(disk: "vm1")).st_size, 64 << 20)

        // in_use while the image is open.
        let fd = try Sys.open(m.image(disk: "vm1"), O_RDWR)
        try Sys.pwrite(fd, Bytes.random(200_000), 0)
        XCTAssertEqual(try disk("vm1")?["Status"] as? String, "in_use")
        let chunk = PoolOptions().chunkSize
        XCTAssertEqual(try disk("vm1")?["AllocatedBytes"] as? Int, (200_000 + chunk - 1) / chunk * chunk)
        try Sys.close(fd)
        XCTAssertTrue(eventually(2) { (try? self.disk("vm1")?["Status"] as? String) == "available" })

        // Resize grows; the kernel sees the new size at once.
        XCTAssertEqual(try Sys.stat(m.image(disk: "vm1")).st_size, 64 << 20)
        ok(["disk", "resize", "vm1", "--size", "1G"])
        XCTAssertEqual(try Sys.stat(m.image(disk: "vm1")).st_size, 1 << 30)
        XCTAssertEqual(try disk("vm1")?["Size"] as? Int, 1 << 30)

        // Human table by default.
        let table = ok(["disk", "list"]).stdout
        XCTAssertTrue(table.contains("vm1") && table.contains("1 GiB") && table.contains("available"), table)

        // Delete: gone from the tree at once; its snapshots stay.
        ok(["snapshot", "create", "vm1", "--label", "keep"])
        XCTAssertNotNil(try? Sys.stat("\(m.disks)/vm1"))
        ok(["disk", "delete", "vm1"])
        XCTAssertEqual(errnoOf { _ = try Sys.stat("\(m.disks)/vm1") }, ENOENT)
        XCTAssertEqual(try disks().count, 0)
        XCTAssertEqual(try snapshotIds(), ["vm1@keep"])
        XCTAssertEqual(try Sys.stat(m.image(snapshot: "vm1@keep")).st_size, 1 << 30)
    }

    func testSnapshotCreateListDeleteAndInfoJSON() throws {
        let image = try makeDisk("db", size: 4 << 20)
        try makeDisk("log", size: 1 << 20)
        try write(image, Bytes.random(65536), at: 0)
        let out = try json(["snapshot", "create", "db", "--label", "s1", "--description", "before upgrade",
                            "--tag", "env=prod", "--tag", "team=db", "--retention-days", "7"])
        let s = try XCTUnwrap((out["Snapshots"] as? [[String: Any]])?.first)
        XCTAssertEqual(Set(s.keys), SpecKeys.snapshot)
        XCTAssertEqual(s["SnapshotId"] as? String, "db@s1")
        XCTAssertEqual(s["SourceDiskId"] as? String, "db")
        XCTAssertEqual(s["SourceDiskSize"] as? Int, 4 << 20)
        XCTAssertEqual(s["Status"] as? String, "accomplished")
        XCTAssertEqual(s["Progress"] as? Int, 100)
        XCTAssertNotNil(s["FreezeMicros"] as? Int)
        XCTAssertEqual(s["Description"] as? String, "before upgrade")
        XCTAssertEqual(s["Tags"] as? [String: String], ["env": "prod", "team": "db"])
        XCTAssertEqual(s["RetentionDays"] as? Int, 7)
        XCTAssertTrue(isRFC3339(s["CreationTime"]) && isRFC3339(s["ExpiresAt"]), "\(s)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(m.snapshots)/db@s1"))

        // Default label: the UTC time; no retention -> nulls.
        let plain = try XCTUnwrap((try json(["snapshot", "create", "log"])["Snapshots"] as? [[String: Any]])?.first)
        let id = try XCTUnwrap(plain["SnapshotId"] as? String)
        XCTAssertNotNil(id.range(of: #"^log@\d{8}T\d{6}Z$"#, options: .regularExpression), id)
        XCTAssertTrue(plain["RetentionDays"] is NSNull && plain["ExpiresAt"] is NSNull, "\(plain)")

        // ExclusiveBytes: what deleting the snapshot would free, once the disk has diverged.
        XCTAssertEqual(try snapshots(["--disk", "db"]).first?["ExclusiveBytes"] as? Int, 0)
        try write(image, Bytes.random(65536), at: 0)
        XCTAssertEqual(try snapshots(["--disk", "db"]).first?["ExclusiveBytes"] as? Int, 65536)

        // Filters.
        XCTAssertEqual(try snapshotIds(["--tag", "env=prod"]), ["db@s1"])
        XCTAssertEqual(try snapshotIds(["--tag", "env=dev"]), [])
        XCTAssertEqual(try snapshotIds(["--disk", "log"]), [id])
        XCTAssertEqual(try snapshotIds().count, 2)

        // info.json: same fields as the list entry; stat size matches the bytes read.
        let infoPath = "\(m.snapshots)/db@s1/info.json"
        let bytes = try read(infoPath)
        XCTAssertEqual(Int(try Sys.stat(infoPath).st_size), bytes.count)
        XCTAssertEqual(try Sys.stat(infoPath).st_mode & 0o777, 0o440, "the snapshot's mode: its disk's 0660 without write bits")
        let info = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        let listed = try XCTUnwrap(try snapshots(["--disk", "db"]).first)
        XCTAssertEqual(NSDictionary(dictionary: info), NSDictionary(dictionary: listed))
        XCTAssertEqual(try Sys.listdir("\(m.snapshots)/db@s1").sorted(), ["image", "info.json"])
        assertErrno(EROFS, "write info.json") { _ = try Sys.open(infoPath, O_WRONLY) }
        assertErrno(EROFS, "unlink info.json") { try Sys.unlink(infoPath) }
        assertErrno(EROFS, "create beside info.json") { try Sys.create("\(m.snapshots)/db@s1/x.json") }

        // Group capture prints both.
        let group = try json(["snapshot", "create", "db", "log", "--label", "g"])
        XCTAssertEqual((group["Snapshots"] as? [[String: Any]])?.compactMap { $0["SnapshotId"] as? String }.sorted(), ["db@g", "log@g"])

        // Delete: gone from the tree at once.
        XCTAssertNotNil(try? Sys.stat("\(m.snapshots)/db@s1"))
        ok(["snapshot", "delete", "db@s1"])
        XCTAssertEqual(errnoOf { _ = try Sys.stat("\(m.snapshots)/db@s1") }, ENOENT)
        XCTAssertEqual(try snapshotIds(), ["db@g", id, "log@g"].sorted())
        XCTAssertTrue(ok(["snapshot", "list"]).stdout.contains("log@g"))
    }

    func testCloneIsIndependentAndPoolStats() throws {
        let image = try makeDisk("base", size: 1 << 20)
        let original = Bytes.random(1 << 20)
        try write(image, original, at: 0)
        ok(["snapshot", "create", "base", "--label", "gold"])
        ok(["disk", "create", "clone", "--from-snapshot", "base@gold", "--size", "2M"])
        XCTAssertEqual(try disk("clone")?["Size"] as? Int, 2 << 20)
        XCTAssertEqual(Array(try read(m.image(disk: "clone"))[..<(1 << 20)]), original)
        try write(m.image(disk: "clone"), [UInt8](repeating: 7, count: 4096), at: 0)
        XCTAssertEqual(try read(m.image(disk: "base")), original)
        XCTAssertEqual(try read(m.image(snapshot: "base@gold")), original)

        let stats = try json(["pool", "stats"])
        XCTAssertEqual(Set(stats.keys), SpecKeys.stats)
        XCTAssertEqual(stats["ChunkSize"] as? Int, PoolOptions().chunkSize)
        XCTAssertEqual(stats["Disks"] as? Int, 2)
        XCTAssertEqual(stats["Snapshots"] as? Int, 1)
        XCTAssertEqual(stats["LogicalBytes"] as? Int, 3 << 20)
        let used = try XCTUnwrap(stats["UsedBytes"] as? Int), capacity = try XCTUnwrap(stats["CapacityBytes"] as? Int)
        XCTAssertGreaterThan(used, 1 << 20)
        XCTAssertGreaterThan(capacity, used)
        // 1 MiB stored once plus one copied chunk, referenced three times (2.82x at 64 KiB).
        let table = ok(["pool", "stats"]).stdout
        let sharing = String(format: "%.2fx", 3.0 * Double(1 << 20) / Double((1 << 20) + PoolOptions().chunkSize))
        XCTAssertTrue(table.contains("sharing") && table.contains(sharing), table)

        // Offline: pool stats still works (read-only), other commands say "not mounted".
        try m.unmount()
        let offline = try json(["pool", "stats"])
        XCTAssertEqual(offline["Disks"] as? Int, 2)
        XCTAssertEqual(offline["LogicalBytes"] as? Int, 3 << 20)
        fails(["disk", "list"], "is not mounted (no daemon on \(m.pool)/control.sock); start it with snapfs mount")
        XCTAssertFalse(FileManager.default.fileExists(atPath: m.pool + "/control.sock"), "socket removed on exit")
    }

    func testHelpAndCompletions() throws {
        for cmd in [["disk", "create"], ["disk", "list"], ["disk", "resize"], ["disk", "rollback"], ["disk", "delete"],
                    ["snapshot", "create"], ["snapshot", "list"], ["snapshot", "delete"], ["snapshot", "diff"],
                    ["pool", "stats"], ["check"]] {
            let r = Shell.run([m.binary] + cmd + ["--help"])
            XCTAssertEqual(r.status, 0, "\(r)")
            XCTAssertTrue(r.stdout.contains("--pool") && r.stdout.contains("--json"), "\(cmd): \(r.stdout)")
        }
        let bash = Shell.run([m.binary, "--generate-completion-script", "bash"])
        XCTAssertEqual(bash.status, 0)
        XCTAssertTrue(bash.stdout.contains("rollback") && bash.stdout.contains("--retention-days"), bash.stdout)
    }
}

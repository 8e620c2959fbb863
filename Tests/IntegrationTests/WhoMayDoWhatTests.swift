import Foundation
import Glibc
import TestSupport
import XCTest

/// SPEC §6 through a real mount, with other users of the host played by `setpriv`.
final class WhoMayDoWhatTests: CLITestCase {
    static let nobody = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    /// Another unprivileged user (Debian's `daemon`, uid 1).
    static let daemon = ["--reuid=daemon", "--regid=daemon", "--clear-groups"]
    let nobodyUID: uid_t = 65534
    let diskGID = gid_t(getgrnam("disk")?.pointee.gr_gid ?? 0)

    override func setUpWithError() throws {
        try super.setUpWithError()
        // mkdtemp made the test's folder 0700: let the other users reach the mount.
        try Sys.chmod(m.root, 0o755)
    }

    /// Runs `command` as `user`; the result's stderr carries strerror of any failure.
    @discardableResult
    func run(as user: [String], _ command: [String]) -> ShellResult {
        Shell.run(["setpriv"] + user + command, timeout: 30)
    }

    func assertDenied(_ r: ShellResult, _ errno: Int32, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, "\(what) should fail: \(r)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(String(cString: strerror(errno))), "\(what): expected \(errnoName(errno)): \(r)", file: file, line: line)
    }

    func assertAllowed(_ r: ShellResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, "\(what): \(r)", file: file, line: line)
    }

    func sha(_ r: ShellResult) -> String { String(r.stdout.prefix(64)) }

    func testOtherUsersReadNothingUntilTheDiskIsChownedToThem() throws {
        let image = try makeDisk("vm", size: 4 << 20)
        try write(image, Bytes.random(1 << 20), at: 4096)
        let before = try snapshot("vm@before")
        let st = try Sys.stat(image)
        XCTAssertEqual([st.st_uid, st.st_gid, st.st_mode & 0o7777], [0, diskGID, 0o660], "a new disk is root:disk 0660")
        let snapStat = try Sys.stat(before)
        XCTAssertEqual([snapStat.st_uid, snapStat.st_gid, snapStat.st_mode & 0o7777], [0, diskGID, 0o440])

        assertDenied(run(as: Self.nobody, ["sha256sum", image]), EACCES, "nobody reads the disk")
        assertDenied(run(as: Self.nobody, ["sha256sum", before]), EACCES, "nobody reads the snapshot")
        assertDenied(run(as: Self.nobody, ["cat", "\(m.snapshots)/vm@before/info.json"]), EACCES, "nobody reads info.json")
        assertDenied(run(as: Self.nobody, ["dd", "if=/dev/zero", "of=\(image)", "bs=4096", "count=1", "conv=notrunc"]), EACCES, "nobody writes the disk")
        assertDenied(run(as: Self.nobody, ["truncate", "-s", "0", image]), EACCES, "nobody truncates the disk")
        assertDenied(run(as: Self.nobody, ["chmod", "0666", image]), EPERM, "nobody chmods the disk")
        assertAllowed(run(as: Self.nobody, ["ls", "-l", m.disks + "/vm", m.snapshots]), "the names are not secret")

        XCTAssertEqual(chown(image, nobodyUID, gid_t.max), 0, "chown nobody: \(errnoName(errno))")
        XCTAssertEqual(try Sys.stat(image).st_uid, nobodyUID)
        let read = run(as: Self.nobody, ["sha256sum", image])
        assertAllowed(read, "the owner reads the disk")
        XCTAssertEqual(sha(read), try Shell.sha256(image))
        assertAllowed(run(as: Self.nobody, ["dd", "if=/dev/zero", "of=\(image)", "bs=4096", "count=1", "conv=notrunc,fsync"]), "the owner writes the disk")
        assertAllowed(run(as: Self.nobody, ["chmod", "0600", image]), "the owner chmods the disk")
        XCTAssertEqual(try Sys.stat(image).st_mode & 0o7777, 0o600)
        assertDenied(run(as: Self.nobody, ["chown", "daemon", image]), EPERM, "the owner gives the disk away")
        assertDenied(run(as: Self.nobody, ["sha256sum", before]), EACCES, "a snapshot keeps the owner it had at capture")

        let after = try snapshot("vm@after")
        let a = try Sys.stat(after)
        XCTAssertEqual([a.st_uid, a.st_gid, a.st_mode & 0o7777], [nobodyUID, diskGID, 0o400], "the disk's owner, without write bits")
        let snapRead = run(as: Self.nobody, ["sha256sum", after])
        assertAllowed(snapRead, "the owner reads the new snapshot")
        XCTAssertEqual(sha(snapRead), try Shell.sha256(image))
        assertAllowed(run(as: Self.nobody, ["cat", "\(m.snapshots)/vm@after/info.json"]), "and its info.json")
        assertDenied(run(as: Self.nobody, ["dd", "if=/dev/zero", "of=\(after)", "bs=4096", "count=1", "conv=notrunc"]), EROFS, "the owner writes the snapshot")
        assertDenied(run(as: Self.daemon, ["sha256sum", after]), EACCES, "another user reads the snapshot")
    }

    func testGroupReadThroughSupplementaryGroups() throws {
        let image = try makeDisk("vm", size: 1 << 20)
        try write(image, Bytes.random(8192), at: 0)
        try Sys.chmod(image, 0o640)
        let snap = try snapshot("vm@s")
        let inDisk = ["--reuid=nobody", "--regid=nogroup", "--groups=\(diskGID)"]
        let read = run(as: inDisk, ["sha256sum", image])
        assertAllowed(read, "a member of the disk group reads")
        XCTAssertEqual(sha(read), try Shell.sha256(image))
        assertAllowed(run(as: inDisk, ["sha256sum", snap]), "and reads its snapshot")
        assertDenied(run(as: inDisk, ["dd", "if=/dev/zero", "of=\(image)", "bs=4096", "count=1", "conv=notrunc"]), EACCES, "0640: the group does not write")
        assertDenied(run(as: Self.nobody, ["sha256sum", image]), EACCES, "without the group")
        XCTAssertEqual(Glibc.access(image, R_OK), 0)
        assertAllowed(run(as: inDisk, ["test", "-r", image]), "access(R_OK) for the group")
        assertDenied(run(as: inDisk, ["sh", "-c", "test -w \(image) || { echo '\(String(cString: strerror(EACCES)))' >&2; exit 1; }"]), EACCES, "access(W_OK) for the group")
    }

    func testChmodAndChownSurviveRemountAndKill9() throws {
        let image = try makeDisk("vm", size: 1 << 20)
        XCTAssertEqual(chown(image, nobodyUID, 65534), 0)
        try Sys.chmod(image, 0o604)
        try m.unmount()
        try m.mount()
        var st = try Sys.stat(image)
        XCTAssertEqual([st.st_uid, st.st_gid, st.st_mode & 0o7777], [nobodyUID, 65534, 0o604], "after unmount and mount")

        XCTAssertEqual(chown(image, 1, 1), 0)
        try Sys.chmod(image, 0o640)
        try m.kill9()   // right after they returned
        try m.mount()
        st = try Sys.stat(image)
        XCTAssertEqual([st.st_uid, st.st_gid, st.st_mode & 0o7777], [1, 1, 0o640], "after kill -9")
        assertAllowed(run(as: Self.daemon, ["sha256sum", image]), "daemon (uid 1) owns it now")
        assertDenied(run(as: Self.nobody, ["sha256sum", image]), EACCES, "nobody does not")
    }

    func testOnlyRootMakesDisksAndOnlyTheOwnerItsSnapshots() throws {
        assertDenied(run(as: Self.nobody, ["mkdir", "\(m.disks)/mine"]), EACCES, "nobody makes a disk")
        let image = try makeDisk("vm", size: 1 << 20)
        assertDenied(run(as: Self.nobody, ["rmdir", "\(m.disks)/vm"]), EACCES, "nobody removes a disk")
        assertDenied(run(as: Self.nobody, ["mkdir", "\(m.snapshots)/vm@n"]), EACCES, "nobody snapshots root's disk")

        XCTAssertEqual(chown(image, nobodyUID, gid_t.max), 0)
        assertDenied(run(as: Self.nobody, ["rmdir", "\(m.disks)/vm"]), EACCES, "owning the image is not owning the disk")
        assertAllowed(run(as: Self.nobody, ["mkdir", "\(m.snapshots)/vm@mine"]), "the owner snapshots their disk")
        XCTAssertEqual(try Sys.stat(m.image(snapshot: "vm@mine")).st_uid, nobodyUID)
        assertDenied(run(as: Self.daemon, ["mkdir", "\(m.snapshots)/vm@theirs"]), EACCES, "another user snapshots it")
        assertDenied(run(as: Self.daemon, ["rmdir", "\(m.snapshots)/vm@mine"]), EACCES, "another user removes the snapshot")
        assertAllowed(run(as: Self.nobody, ["rmdir", "\(m.snapshots)/vm@mine"]), "the owner removes their snapshot")
        XCTAssertEqual(try Sys.listdir(m.snapshots), [])
        try Sys.rmdir("\(m.disks)/vm")
    }
}

import Foundation
import Glibc
import SnapFS
import SnapStore
import XCTest

/// SPEC §6 in the core: every check made with the caller's credentials, exact errnos.
final class AccessTests: CoreTestCase {
    let alice = Caller(uid: 1000, gid: 1000)
    let bob = Caller(uid: 1001, gid: 1001)
    /// In group 100 only as a supplementary group.
    let carol = Caller(uid: 1002, gid: 1002, groups: [100, 7])

    func makeDisk(_ name: String) throws -> (folder: UInt64, image: UInt64) {
        let folder = try fs.mkdir(as: .root, parent: Inode.disks, name: name).ino
        return (folder, try fs.lookup(as: .root, parent: folder, name: "image").ino)
    }

    func openErrno(_ caller: Caller, _ ino: UInt64, _ flags: Int32) -> Int32 {
        errno {
            let f = try fs.open(as: caller, ino, flags: flags)
            fs.release(f.handle)
        }
    }

    func testPermissionRule() {
        let o = Ownership(uid: 1000, gid: 100, mode: 0o640)
        XCTAssertTrue(o.permits(alice, R_OK | W_OK, directory: false))
        XCTAssertFalse(o.permits(alice, X_OK, directory: false))
        XCTAssertTrue(o.permits(carol, R_OK, directory: false), "group read through a supplementary group")
        XCTAssertFalse(o.permits(carol, W_OK, directory: false))
        XCTAssertTrue(o.permits(Caller(uid: 5, gid: 100), R_OK, directory: false), "group read through the primary group")
        XCTAssertFalse(o.permits(bob, R_OK, directory: false))
        XCTAssertTrue(o.permits(bob, 0, directory: false), "F_OK")
        // The owner's bits apply to the owner even when the group's give more.
        let ownerLess = Ownership(uid: 1000, gid: 1000, mode: 0o060)
        XCTAssertFalse(ownerLess.permits(alice, R_OK, directory: false))
        XCTAssertTrue(Ownership(uid: 1, gid: 1, mode: 0o004).permits(bob, R_OK, directory: false), "others' bits")
        // Root reads and writes anything, executes only what has an x bit.
        XCTAssertTrue(Ownership(uid: 5, gid: 5, mode: 0).permits(.root, R_OK | W_OK, directory: false))
        XCTAssertFalse(Ownership(uid: 5, gid: 5, mode: 0o660).permits(.root, X_OK, directory: false))
        XCTAssertTrue(Ownership(uid: 5, gid: 5, mode: 0o010).permits(.root, X_OK, directory: false))
        XCTAssertTrue(Ownership(uid: 5, gid: 5, mode: 0).permits(.root, X_OK, directory: true))
        XCTAssertTrue(FileSystem.folderOwnership.permits(bob, R_OK | X_OK, directory: true))
        XCTAssertFalse(FileSystem.folderOwnership.permits(bob, W_OK, directory: true))
    }

    func testDiskImageIsRootDiskAndReadableOnlyAsModeAllows() throws {
        let (_, image) = try makeDisk("vm")
        let a = try fs.getattr(image).attributes
        XCTAssertEqual([a.uid, a.gid, a.permissions], [0, Ownership.diskGroup, 0o660])
        XCTAssertEqual(openErrno(.root, image, O_RDWR), 0)
        XCTAssertEqual(openErrno(alice, image, O_RDONLY), EACCES)
        XCTAssertEqual(openErrno(alice, image, O_WRONLY), EACCES)
        XCTAssertEqual(openErrno(Caller(uid: 1000, gid: 1000, groups: [Ownership.diskGroup]), image, O_RDWR), 0,
                       "the disk group reads and writes, as with block devices")
        XCTAssertEqual(errno { try fs.access(as: alice, image, mask: R_OK) }, EACCES)
        XCTAssertEqual(errno { try fs.access(as: alice, image, mask: 0) }, 0)
        XCTAssertEqual(errno { try fs.access(as: .root, image, mask: R_OK | W_OK) }, 0)
        XCTAssertEqual(errno { try fs.access(as: .root, image, mask: X_OK) }, EACCES)

        _ = try fs.setattr(as: .root, image, AttributeChanges(uid: 1000, gid: 100))
        _ = try fs.setattr(as: .root, image, AttributeChanges(mode: 0o640))
        XCTAssertEqual(openErrno(alice, image, O_RDWR), 0)
        XCTAssertEqual(openErrno(carol, image, O_RDONLY), 0, "group read via a supplementary group")
        XCTAssertEqual(openErrno(carol, image, O_RDWR), EACCES)
        XCTAssertEqual(openErrno(carol, image, O_RDONLY | O_TRUNC), EACCES, "O_TRUNC needs write")
        XCTAssertEqual(openErrno(bob, image, O_RDONLY), EACCES)
        XCTAssertEqual(errno { try fs.access(as: carol, image, mask: R_OK) }, 0)
        XCTAssertEqual(errno { try fs.access(as: carol, image, mask: W_OK) }, EACCES)
        // Folders stay open to all: names are not secret.
        XCTAssertEqual(errno { _ = try fs.lookup(as: bob, parent: Inode.disks, name: "vm") }, 0)
        XCTAssertEqual(errno { fs.releaseDirectory(try fs.openDirectory(as: bob, Inode.disks)) }, 0)
    }

    func testChmodChownRules() throws {
        let (_, image) = try makeDisk("vm")
        XCTAssertEqual(errno { _ = try fs.setattr(as: alice, image, AttributeChanges(mode: 0o666)) }, EPERM, "not the owner")
        XCTAssertEqual(errno { _ = try fs.setattr(as: alice, image, AttributeChanges(uid: 1000)) }, EPERM)
        XCTAssertEqual(errno { _ = try fs.setattr(as: alice, image, AttributeChanges(size: 4096)) }, EACCES, "truncate needs write")
        XCTAssertEqual(errno { _ = try fs.setattr(as: alice, image, AttributeChanges(mtime: .now)) }, EACCES)
        XCTAssertEqual(errno { _ = try fs.setattr(as: alice, image, AttributeChanges(mtime: .at(Date()))) }, EPERM)
        XCTAssertEqual(errno { _ = try fs.setattr(as: .root, image, AttributeChanges(mode: 0o2660)) }, EPERM, "never setgid")
        XCTAssertEqual(try fs.getattr(image).attributes.permissions, 0o660, "refused changes change nothing")

        _ = try fs.setattr(as: .root, image, AttributeChanges(uid: 1000))
        // The owner: chmod, chgrp to a group they are in; not chown away, not chgrp elsewhere.
        XCTAssertEqual(try fs.setattr(as: alice, image, AttributeChanges(mode: 0o600)).attributes.permissions, 0o600)
        XCTAssertEqual(errno { _ = try fs.setattr(as: alice, image, AttributeChanges(uid: 1001)) }, EPERM)
        XCTAssertEqual(errno { _ = try fs.setattr(as: alice, image, AttributeChanges(gid: 100)) }, EPERM)
        let member = Caller(uid: 1000, gid: 1000, groups: [100])
        XCTAssertEqual(try fs.setattr(as: member, image, AttributeChanges(gid: 100)).attributes.gid, 100)
        XCTAssertEqual(try fs.setattr(as: alice, image, AttributeChanges(mtime: .at(Date(timeIntervalSince1970: 5)))).attributes.mtime.seconds, 5)
        XCTAssertEqual(try fs.setattr(as: alice, image, AttributeChanges(size: 8192)).attributes.size, 8192)
        // Committed before the reply: the pool's files already hold it.
        try pool.close()
        pool = try Pool.open(directory: directory + "/pool")
        fs = FileSystem(pool: pool)
        XCTAssertEqual(pool.disk(named: "vm")?.owner, Ownership(uid: 1000, gid: 100, mode: 0o600))
    }

    func testSnapshotsTakeTheDisksOwnerWithoutWriteBits() throws {
        let (_, image) = try makeDisk("vm")
        _ = try fs.setattr(as: .root, image, AttributeChanges(uid: 1000, gid: 100))
        _ = try fs.setattr(as: .root, image, AttributeChanges(mode: 0o664))
        let folder = try fs.mkdir(as: alice, parent: Inode.snapshots, name: "vm@s1").ino
        let snap = try fs.lookup(as: bob, parent: folder, name: "image")
        XCTAssertEqual([snap.attributes.uid, snap.attributes.gid, snap.attributes.permissions], [1000, 100, 0o444])
        let info = try fs.lookup(as: bob, parent: folder, name: "info.json")
        XCTAssertEqual([info.attributes.uid, info.attributes.gid, info.attributes.permissions], [1000, 100, 0o444])
        XCTAssertEqual(openErrno(alice, snap.ino, O_RDONLY), 0)
        XCTAssertEqual(openErrno(alice, snap.ino, O_RDWR), EROFS, "EROFS before any permission check")
        XCTAssertEqual(errno { try fs.access(as: alice, snap.ino, mask: W_OK) }, EROFS)

        _ = try fs.setattr(as: .root, image, AttributeChanges(mode: 0o660))
        let later = try fs.mkdir(as: .root, parent: Inode.snapshots, name: "vm@s2").ino
        let closed = try fs.lookup(as: .root, parent: later, name: "image").ino
        XCTAssertEqual(try fs.getattr(closed).attributes.permissions, 0o440)
        XCTAssertEqual(openErrno(bob, closed, O_RDONLY), EACCES)
        XCTAssertEqual(openErrno(carol, closed, O_RDONLY), 0)
        let closedInfo = try fs.lookup(as: .root, parent: later, name: "info.json").ino
        XCTAssertEqual(openErrno(bob, closedInfo, O_RDONLY), EACCES, "info.json is guarded like the image")
        XCTAssertEqual(openErrno(Caller(uid: 1000, gid: 1000), closedInfo, O_RDONLY), 0)
    }

    func testWhoMayMakeAndRemoveDisksAndSnapshots() throws {
        XCTAssertEqual(errno { _ = try fs.mkdir(as: alice, parent: Inode.disks, name: "vm") }, EACCES)
        XCTAssertEqual(errno { _ = try fs.mkdir(as: alice, parent: Inode.disks, name: "-bad") }, EINVAL, "a bad name wins")
        let (_, image) = try makeDisk("vm")
        XCTAssertEqual(errno { try fs.rmdir(as: alice, parent: Inode.disks, name: "vm") }, EACCES)
        XCTAssertEqual(errno { _ = try fs.mkdir(as: alice, parent: Inode.snapshots, name: "vm@a") }, EACCES, "not the disk's owner")
        _ = try fs.setattr(as: .root, image, AttributeChanges(uid: 1000))
        XCTAssertEqual(errno { try fs.rmdir(as: alice, parent: Inode.disks, name: "vm") }, EACCES, "owning the image is not owning the disk")
        XCTAssertEqual(errno { _ = try fs.mkdir(as: alice, parent: Inode.snapshots, name: "vm@a") }, 0)
        XCTAssertEqual(errno { _ = try fs.mkdir(as: bob, parent: Inode.snapshots, name: "vm@b") }, EACCES)
        XCTAssertEqual(errno { try fs.rmdir(as: bob, parent: Inode.snapshots, name: "vm@a") }, EACCES)
        // The snapshot's owner is taken at capture: handing the disk on does not hand it on.
        _ = try fs.setattr(as: .root, image, AttributeChanges(uid: 1001))
        XCTAssertEqual(errno { try fs.rmdir(as: bob, parent: Inode.snapshots, name: "vm@a") }, EACCES)
        XCTAssertEqual(errno { _ = try fs.mkdir(as: alice, parent: Inode.snapshots, name: "vm@c") }, EACCES)
        XCTAssertEqual(errno { try fs.rmdir(as: alice, parent: Inode.snapshots, name: "vm@a") }, 0)
        XCTAssertEqual(errno { _ = try fs.mkdir(as: bob, parent: Inode.snapshots, name: "vm@b") }, 0)
        XCTAssertEqual(errno { try fs.rmdir(as: .root, parent: Inode.snapshots, name: "vm@b") }, 0)
        XCTAssertEqual(errno { try fs.rmdir(as: .root, parent: Inode.disks, name: "vm") }, 0)
    }
}

/// Builds that read format 3 would ignore owners and modes, so its images keep the defaults.
final class FormatThreeAccessTests: XCTestCase {
    func testChmodAndChownOfAFormatThreePoolAreRefused() throws {
        var template = Array("/tmp/snapfs-core-XXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template)!)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var o = PoolOptions()
        o.dataSegments = .singleFile
        let pool = try Pool.open(directory: directory + "/pool", options: o)
        defer { try? pool.close() }
        let fs = FileSystem(pool: pool)
        let folder = try fs.mkdir(as: .root, parent: Inode.disks, name: "vm").ino
        let image = try fs.lookup(as: .root, parent: folder, name: "image").ino
        for change in [AttributeChanges(mode: 0o600), AttributeChanges(uid: 1000), AttributeChanges(gid: 5)] {
            XCTAssertThrowsError(try fs.setattr(as: .root, image, change)) { e in
                XCTAssertEqual((e as? FSError)?.errno, EOPNOTSUPP, "\(change)")
            }
        }
        XCTAssertEqual(try fs.setattr(as: .root, image, AttributeChanges(mode: 0o660)).attributes.permissions, 0o660,
                       "a chmod to what it already is changes nothing and succeeds")
        XCTAssertEqual(try fs.setattr(as: .root, image, AttributeChanges(size: 4096)).attributes.size, 4096)
    }
}

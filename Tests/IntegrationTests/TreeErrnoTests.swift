import Foundation
import Glibc
import TestSupport
import XCTest

/// SPEC §1, row by row, with exact errnos, against a real mount.
final class TreeErrnoTests: MountedTestCase {
    let MiB = 1 << 20

    func testMountAndTree() throws {
        XCTAssertEqual(MountedPool.mountType(at: m.mountpoint), "fuse.snapfs", "fstype in /proc/self/mountinfo")
        XCTAssertEqual(try Sys.listdir(m.mountpoint), ["disks", "snapshots"])
        XCTAssertEqual(try Sys.listdir(m.disks), [])
        XCTAssertEqual(try Sys.listdir(m.snapshots), [])
        XCTAssertEqual(try Sys.stat(m.disks).st_mode & S_IFMT, S_IFDIR)
        XCTAssertEqual(try Sys.stat(m.snapshots).st_mode & S_IFMT, S_IFDIR)
    }

    // MARK: disks

    func testMkdirDisk() throws {
        let image = try makeDisk("d0")
        let st = try Sys.stat(image)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFREG)
        XCTAssertEqual(st.st_size, 0, "a new disk has size 0")
        XCTAssertTrue(try Sys.listdir(m.disks).contains("d0"))
        XCTAssertTrue(try Sys.listdir("\(m.disks)/d0").contains("image"))
        assertErrno(EEXIST, "mkdir existing disk") { try Sys.mkdir("\(m.disks)/d0") }
    }

    func testDiskNames() throws {
        for good in ["a", "Z9", "a.b_c-d", String(repeating: "x", count: 64), "0-", "A."] {
            assertErrno(0, "mkdir disks/\(good)") { try Sys.mkdir("\(m.disks)/\(good)") }
        }
        let bad = ["bad name", ".hidden", "-dash", "_under", String(repeating: "y", count: 65),
                   "at@sign", "é", "tab\t", "star*", "colon:"]
        for name in bad {
            assertErrno(EINVAL, "mkdir disks/\(name)") { try Sys.mkdir("\(m.disks)/\(name)") }
        }
        XCTAssertEqual(try Sys.listdir(m.disks).count, 6, "only the good names exist")
    }

    func testTruncateIsThin() throws {
        let image = try makeDisk("thin")
        let before = try SpaceUse.of(m.mountpoint)
        try Sys.truncate(image, 20 << 30)
        let st = try Sys.stat(image)
        XCTAssertEqual(st.st_size, 20 << 30)
        XCTAssertEqual(st.st_blocks, 0, "no blocks allocated by truncate")
        let after = try SpaceUse.of(m.mountpoint)
        XCTAssertLessThan(Int64(after.used) - Int64(before.used), Int64(4 * MiB), "truncate used pool space")
        let fd = try Sys.open(image, O_RDONLY)
        defer { try? Sys.close(fd) }
        XCTAssertTrue(Bytes.isZero(try Sys.pread(fd, 1 << 16, (10 << 30) + 123)), "thin range reads zeros")
        try Sys.truncate(image, 1234567)
        XCTAssertEqual(try Sys.stat(image).st_size, 1234567, "shrink")
        try Sys.truncate(image, 0)
        XCTAssertEqual(try Sys.stat(image).st_size, 0)
    }

    func testShrinkThenGrowReadsZeros() throws {
        let image = try makeDisk("sg")
        let fd = try Sys.open(image, O_RDWR)
        defer { try? Sys.close(fd) }
        try Sys.pwrite(fd, Bytes.random(300_000), 0)
        try Sys.ftruncate(fd, 100_001)
        try Sys.ftruncate(fd, 300_000)
        XCTAssertTrue(Bytes.isZero(try Sys.pread(fd, 199_999, 100_001)), "bytes past a shrink come back as zeros")
    }

    func testReadWriteOddOffsetsAndLengths() throws {
        let image = try makeDisk("odd")
        let fd = try Sys.open(image, O_RDWR)
        defer { try? Sys.close(fd) }
        var model = [UInt8]()
        func write(_ bytes: [UInt8], _ off: Int) throws {
            try Sys.pwrite(fd, bytes, off)
            if model.count < off + bytes.count { model += [UInt8](repeating: 0, count: off + bytes.count - model.count) }
            model.replaceSubrange(off..<off + bytes.count, with: bytes)
        }
        try write(Bytes.random(7), 4093)                 // straddles a page
        try write(Bytes.random(100_003), 65_533)         // straddles chunk boundaries
        try write(Bytes.random(1), 0)
        try write(Bytes.random(3 * MiB + 17), 5 * MiB + 1)  // past the end: extends, leaves a hole
        try write(Bytes.random(4096), 4096 * 7)           // aligned overwrite
        XCTAssertEqual(Int(try Sys.fstat(fd).st_size), model.count, "size after writing past the end")
        for (off, len) in [(0, 1), (1, 4095), (4093, 7), (4000, 200_000), (65_530, 100_011),
                           (200_000, 5 * MiB), (5 * MiB, 10), (0, model.count)] {
            let got = try Sys.pread(fd, len, off)
            XCTAssertEqual(got.count, min(len, model.count - off), "read length at \(off)+\(len)")
            XCTAssertTrue(got == Array(model[off..<off + got.count]), "bytes at \(off)+\(len)")
        }
        XCTAssertTrue(Bytes.isZero(try Sys.pread(fd, 4 * MiB, 1 * MiB)), "hole between writes reads zeros")
        XCTAssertEqual(try Sys.pread(fd, 100, model.count - 10).count, 10, "short read at EOF")
        XCTAssertEqual(try Sys.pread(fd, 100, model.count + 5000).count, 0, "read past EOF")
        // Bytes survive a close and reopen.
        let fd2 = try Sys.open(image, O_RDONLY)
        defer { try? Sys.close(fd2) }
        XCTAssertTrue(try Sys.pread(fd2, model.count, 0) == model, "whole image after reopen")
    }

    func testPunchHoleReadsZerosAndFreesSpace() throws {
        let image = try makeDisk("punch")
        let fd = try Sys.open(image, O_RDWR)
        defer { try? Sys.close(fd) }
        let data = Bytes.random(16 * MiB)
        try Sys.pwrite(fd, data, 0)
        try Sys.fsync(fd)
        let blocksBefore = try Sys.fstat(fd).st_blocks
        XCTAssertGreaterThanOrEqual(Int(blocksBefore) * 512, 16 * MiB, "st_blocks counts written data")
        let usedBefore = try SpaceUse.of(m.mountpoint).used
        try Sys.punchHole(fd, 1 * MiB + 3, 8 * MiB)
        XCTAssertEqual(Int(try Sys.fstat(fd).st_size), 16 * MiB, "KEEP_SIZE keeps the size")
        XCTAssertTrue(Bytes.isZero(try Sys.pread(fd, 8 * MiB, 1 * MiB + 3)), "punched range reads zeros")
        XCTAssertTrue(try Sys.pread(fd, MiB + 3, 0) == Array(data[0..<MiB + 3]), "bytes before the hole")
        let tail = 9 * MiB + 3
        XCTAssertTrue(try Sys.pread(fd, 16 * MiB - tail, tail) == Array(data[tail...]), "bytes after the hole")
        let blocksAfter = try Sys.fstat(fd).st_blocks
        XCTAssertLessThanOrEqual(Int(blocksAfter) * 512, Int(blocksBefore) * 512 - 7 * MiB, "st_blocks drops")
        try Sys.fsync(fd)
        XCTAssertTrue(eventually(30) { ((try? SpaceUse.of(m.mountpoint).used) ?? .max) + UInt64(7 * MiB) <= usedBefore },
                      "df used drops by the punched chunks within 30 s (before \(usedBefore))")
    }

    func testFsyncAndFdatasync() throws {
        let image = try makeDisk("sync")
        let fd = try Sys.open(image, O_RDWR)
        defer { try? Sys.close(fd) }
        try Sys.pwrite(fd, Bytes.random(12345), 999)
        assertErrno(0, "fsync") { try Sys.fsync(fd) }
        assertErrno(0, "fdatasync") { try Sys.fdatasync(fd) }
        let r = Shell.run(["sync", image])
        XCTAssertTrue(r.ok, "\(r)")
    }

    func testRmdirDiskBusyWhileOpen() throws {
        let image = try makeDisk("busy", size: MiB)
        let fd = try Sys.open(image, O_RDONLY)
        assertErrno(EBUSY, "rmdir disk while image open") { try Sys.rmdir("\(m.disks)/busy") }
        try Sys.close(fd)
        assertErrno(0, "rmdir disk right after close") { try Sys.rmdir("\(m.disks)/busy") }
        assertErrno(ENOENT, "stat deleted disk") { _ = try Sys.stat(image) }
        XCTAssertEqual(try Sys.listdir(m.disks), [])
        assertErrno(ENOENT, "rmdir missing disk") { try Sys.rmdir("\(m.disks)/busy") }
    }

    // MARK: snapshots

    func testMkdirSnapshotNames() throws {
        let image = try makeDisk("D", size: MiB)
        let fd = try Sys.open(image, O_WRONLY)
        try Sys.pwrite(fd, Bytes.random(4096), 0)
        try Sys.close(fd)
        for bad in ["D", "D@", "@L", "D@L@M", "D@bad label", "D@-x", "D@.x", "D@" + String(repeating: "l", count: 65)] {
            assertErrno(EINVAL, "mkdir snapshots/\(bad)") { try Sys.mkdir("\(m.snapshots)/\(bad)") }
        }
        assertErrno(ENOENT, "snapshot of a missing disk") { try Sys.mkdir("\(m.snapshots)/nodisk@L") }
        assertErrno(EINVAL, "bad name wins over ENOENT") { try Sys.mkdir("\(m.snapshots)/nodisk@bad label") }
        assertErrno(EINVAL, "bad disk name wins over ENOENT") { try Sys.mkdir("\(m.snapshots)/-nodisk@L") }
        assertErrno(0, "mkdir snapshots/D@L") { try Sys.mkdir("\(m.snapshots)/D@L") }
        assertErrno(EEXIST, "mkdir existing snapshot") { try Sys.mkdir("\(m.snapshots)/D@L") }
        XCTAssertEqual(try Sys.listdir(m.snapshots), ["D@L"])
        XCTAssertTrue(try Sys.listdir("\(m.snapshots)/D@L").contains("image"))
        let st = try Sys.stat(m.image(snapshot: "D@L"))
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFREG)
        XCTAssertEqual(st.st_size, off_t(MiB))
        XCTAssertEqual(st.st_mode & 0o222, 0, "snapshot image is not writable by mode")
        XCTAssertTrue(try Sys.readFile(m.image(snapshot: "D@L")) == (try Sys.readFile(image)))
    }

    func testRmdirSnapshotBusyWhileOpen() throws {
        try makeDisk("D", size: MiB)
        let snap = try snapshot("D@s")
        let fd = try Sys.open(snap, O_RDONLY)
        assertErrno(EBUSY, "rmdir snapshot while image open") { try Sys.rmdir("\(m.snapshots)/D@s") }
        try Sys.close(fd)
        assertErrno(0, "rmdir snapshot right after close") { try Sys.rmdir("\(m.snapshots)/D@s") }
        XCTAssertEqual(try Sys.listdir(m.snapshots), [])
        assertErrno(ENOENT, "rmdir missing snapshot") { try Sys.rmdir("\(m.snapshots)/D@s") }
    }

    func testSnapshotImageIsReadOnly() throws {
        let image = try makeDisk("D", size: 2 * MiB)
        let wfd = try Sys.open(image, O_WRONLY)
        try Sys.pwrite(wfd, Bytes.random(MiB), 4096)
        try Sys.close(wfd)
        let snap = try snapshot("D@ro")
        let before = try Sys.readFile(snap)
        let stBefore = try Sys.stat(snap)
        assertErrno(EROFS, "open O_WRONLY") { _ = try Sys.open(snap, O_WRONLY) }
        assertErrno(EROFS, "open O_RDWR") { _ = try Sys.open(snap, O_RDWR) }
        assertErrno(EROFS, "open O_TRUNC") { _ = try Sys.open(snap, O_RDONLY | O_TRUNC) }
        assertErrno(EROFS, "truncate") { try Sys.truncate(snap, 4096) }
        assertErrno(EROFS, "chmod") { try Sys.chmod(snap, 0o666) }
        assertErrno(EROFS, "utimens now") { try Sys.utimens(snap) }
        assertErrno(EROFS, "utimens explicit") { try Sys.utimens(snap, 1_000_000) }
        assertErrno(EROFS, "unlink") { try Sys.unlink(snap) }
        assertErrno(EROFS, "rename") { try Sys.rename(snap, "\(m.snapshots)/D@ro/other") }
        let fd = try Sys.open(snap, O_RDONLY)
        defer { try? Sys.close(fd) }
        assertErrno(oneOf: [EBADF, EINVAL, EROFS], "fallocate on a read-only fd") { try Sys.punchHole(fd, 0, 4096) }
        XCTAssertTrue(try Sys.readFile(snap) == before, "bytes unchanged")
        let stAfter = try Sys.stat(snap)
        XCTAssertEqual(stAfter.st_size, stBefore.st_size)
        XCTAssertEqual(stAfter.st_mode, stBefore.st_mode)
        XCTAssertEqual(stAfter.st_mtim.tv_sec, stBefore.st_mtim.tv_sec)
    }

    func testDiskImageUtimens() throws {
        let image = try makeDisk("D")
        assertErrno(0, "utimens on a disk image") { try Sys.utimens(image, 1_000_000) }
        XCTAssertEqual(try Sys.stat(image).st_mtim.tv_sec, 1_000_000)
    }

    // MARK: everything else is refused

    func testCreatingOtherThingsIsRefused() throws {
        let image = try makeDisk("D", size: MiB)
        try snapshot("D@L")
        let permOrAccess = [EPERM, EACCES]
        for dir in [m.mountpoint, m.disks, m.snapshots, "\(m.disks)/D"] {
            assertErrno(oneOf: permOrAccess, "create file in \(dir)") { try Sys.create("\(dir)/f") }
            assertErrno(oneOf: permOrAccess, "symlink in \(dir)") { try Sys.symlink("image", "\(dir)/l") }
            assertErrno(oneOf: permOrAccess, "hard link in \(dir)") { try Sys.link(image, "\(dir)/h") }
            assertErrno(oneOf: permOrAccess, "fifo in \(dir)") { try Sys.mkfifo("\(dir)/p") }
            assertErrno(oneOf: permOrAccess, "device node in \(dir)") { try Sys.mknod("\(dir)/n", S_IFCHR | 0o600, (1 << 8) | 3) }
        }
        for dir in [m.mountpoint, "\(m.disks)/D"] {
            assertErrno(oneOf: permOrAccess, "mkdir in \(dir)") { try Sys.mkdir("\(dir)/sub") }
        }
        assertErrno(oneOf: permOrAccess, "rename a disk image") { try Sys.rename(image, "\(m.disks)/D/other") }
        assertErrno(oneOf: permOrAccess, "unlink a disk image") { try Sys.unlink(image) }
        let snapDir = "\(m.snapshots)/D@L"
        assertErrno(EROFS, "create file in snapshot folder") { try Sys.create("\(snapDir)/f") }
        assertErrno(EROFS, "mkdir in snapshot folder") { try Sys.mkdir("\(snapDir)/sub") }
        assertErrno(EROFS, "symlink in snapshot folder") { try Sys.symlink("image", "\(snapDir)/l") }
        assertErrno(EROFS, "fifo in snapshot folder") { try Sys.mkfifo("\(snapDir)/p") }
        assertErrno(EROFS, "hard link in snapshot folder") { try Sys.link(image, "\(snapDir)/h") }
        // Nothing appeared.
        XCTAssertEqual(try Sys.listdir(m.mountpoint), ["disks", "snapshots"])
        XCTAssertEqual(try Sys.listdir(m.disks), ["D"])
        XCTAssertEqual(try Sys.listdir(m.snapshots), ["D@L"])
        XCTAssertFalse(try Sys.listdir("\(m.disks)/D").contains { ["f", "l", "h", "p", "n", "sub", "other"].contains($0) })
        XCTAssertFalse(try Sys.listdir(snapDir).contains { ["f", "l", "h", "p", "sub"].contains($0) })
    }

    // MARK: statfs and space

    func testStatfsUsedAndCapacity() throws {
        let host = try SpaceUse.of(m.root)
        let s0 = try SpaceUse.of(m.mountpoint)
        XCTAssertGreaterThan(s0.capacity, 0)
        XCTAssertGreaterThanOrEqual(s0.capacity, s0.used)
        XCTAssertLessThanOrEqual(s0.capacity, host.capacity + host.capacity / 100, "capacity beyond the host's disk")
        XCTAssertLessThan(s0.used, UInt64(64 * MiB), "an empty pool uses little")
        let image = try makeDisk("D")
        let fd = try Sys.open(image, O_RDWR)
        try Sys.pwrite(fd, Bytes.random(32 * MiB), 0)
        try Sys.fsync(fd)
        try Sys.close(fd)
        XCTAssertTrue(eventually(30) { ((try? SpaceUse.of(m.mountpoint).used) ?? 0) >= s0.used + UInt64(32 * MiB) },
                      "used grows by the written bytes")
        let s1 = try SpaceUse.of(m.mountpoint)
        XCTAssertGreaterThanOrEqual(s1.capacity, s1.used)
        XCTAssertLessThan(s1.used, s0.used + UInt64(48 * MiB), "used grows by about the data written")
        try Sys.rmdir("\(m.disks)/D")
        var last = s1.used
        XCTAssertTrue(eventually(30) {
            last = (try? SpaceUse.of(m.mountpoint).used) ?? .max
            return last < s0.used + UInt64(8 * MiB)
        }, "space of a deleted disk shows as free within 30 s: used empty \(s0.used), with 32 MiB \(s1.used), 30 s after rmdir \(last)")
    }

    func testRmdirDiskKeepsSnapshots() throws {
        let image = try makeDisk("D")
        let data = Bytes.random(3 * MiB + 5)
        let fd = try Sys.open(image, O_WRONLY)
        try Sys.pwrite(fd, data, 0)
        try Sys.close(fd)
        let s1 = try snapshot("D@one")
        let s2 = try snapshot("D@two")
        try Sys.rmdir("\(m.disks)/D")
        XCTAssertEqual(try Sys.listdir(m.disks), [])
        XCTAssertEqual(try Sys.listdir(m.snapshots), ["D@one", "D@two"])
        dropCaches()
        XCTAssertTrue(try Sys.readFile(s1) == data, "snapshot one intact after rmdir of its disk")
        XCTAssertTrue(try Sys.readFile(s2) == data, "snapshot two intact after rmdir of its disk")
        assertErrno(ENOENT, "snapshot of the deleted disk") { try Sys.mkdir("\(m.snapshots)/D@three") }
        // A new disk with the same name is a new, empty disk; the old snapshots stay as they were.
        let again = try makeDisk("D")
        XCTAssertEqual(try Sys.stat(again).st_size, 0)
        XCTAssertTrue(try Sys.readFile(s1) == data)
    }
}

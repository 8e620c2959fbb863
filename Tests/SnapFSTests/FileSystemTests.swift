import Foundation
import Glibc
import SnapFS
import SnapStore
import XCTest

/// The tree, its errnos and the control paths in the core (CoreTestCase's pool).
final class FileSystemTests: CoreTestCase {
    @discardableResult
    func makeDisk(_ name: String, size: UInt64 = 0) throws -> (folder: UInt64, image: UInt64) {
        let folder = try fs.mkdir(as: .root, parent: Inode.disks, name: name).ino
        let image = try fs.lookup(as: .root, parent: folder, name: "image").ino
        if size > 0 { _ = try fs.setattr(as: .root, image, AttributeChanges(size: size)) }
        return (folder, image)
    }

    func write(_ handle: UInt64, _ bytes: [UInt8], at offset: UInt64) throws {
        _ = try bytes.withUnsafeBytes { b throws(FSError) in try fs.write(handle, offset: offset, data: b) }
    }

    func read(_ handle: UInt64, _ count: Int, at offset: UInt64) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { b throws(FSError) in try fs.read(handle, offset: offset, into: b) }
        return Array(out[0..<n])
    }

    func testInodeNumbering() {
        XCTAssertEqual(Inode.folder(5), 36)
        XCTAssertEqual(Inode.image(5), 37)
        XCTAssertEqual(Inode.decode(36), .folder(5))
        XCTAssertEqual(Inode.decode(37), .image(5))
        XCTAssertEqual(Inode.decode(38), .info(5))  // info.json
        XCTAssertNil(Inode.decode(7))
        XCTAssertEqual(Inode.decode(1), .root)
    }

    func testDiskFolderErrnos() throws {
        XCTAssertEqual(errno { _ = try fs.mkdir(as: .root, parent: Inode.disks, name: "d1") }, 0)
        XCTAssertEqual(errno { _ = try fs.mkdir(as: .root, parent: Inode.disks, name: "d1") }, EEXIST)
        XCTAssertEqual(errno { _ = try fs.mkdir(as: .root, parent: Inode.disks, name: "-bad") }, EINVAL)
        XCTAssertEqual(errno { _ = try fs.mkdir(as: .root, parent: Inode.disks, name: String(repeating: "a", count: 65)) }, EINVAL)
        XCTAssertEqual(errno { _ = try fs.mkdir(as: .root, parent: Inode.root, name: "x") }, EPERM)
        XCTAssertEqual(errno { _ = try fs.lookup(as: .root, parent: Inode.disks, name: "nope") }, ENOENT)
        let e = try fs.lookup(as: .root, parent: Inode.disks, name: "d1")
        XCTAssertEqual(e.attributes.kind, .directory)
        XCTAssertEqual(e.attributes.permissions, 0o755)
        XCTAssertEqual(e.attributes.nlink, 2)
        let image = try fs.lookup(as: .root, parent: e.ino, name: "image").attributes
        XCTAssertEqual(image.permissions, 0o660)
        XCTAssertEqual(image.uid, 0)
        XCTAssertEqual(image.gid, Ownership.diskGroup)
        XCTAssertEqual(image.size, 0)
        XCTAssertEqual(errno { _ = try fs.mkdir(as: .root, parent: e.ino, name: "x") }, EPERM)
        XCTAssertEqual(fs.refuseNewEntry(parent: e.ino).errno, EPERM)
        XCTAssertEqual(errno { try fs.rmdir(as: .root, parent: Inode.disks, name: "d1") }, 0)
        XCTAssertEqual(errno { try fs.rmdir(as: .root, parent: Inode.disks, name: "d1") }, ENOENT)
        XCTAssertEqual(errno { _ = try fs.getattr(e.ino) }, ENOENT)
    }

    func testSnapshotFolderErrnos() throws {
        try makeDisk("d")
        for bad in ["d", "d@", "@l", "d@l@m", "d@-x"] {
            XCTAssertEqual(errno { _ = try fs.mkdir(as: .root, parent: Inode.snapshots, name: bad) }, EINVAL, bad)
        }
        XCTAssertEqual(errno { _ = try fs.mkdir(as: .root, parent: Inode.snapshots, name: "nodisk@l") }, ENOENT)
        XCTAssertEqual(errno { _ = try fs.mkdir(as: .root, parent: Inode.snapshots, name: "d@l") }, 0)
        XCTAssertEqual(errno { _ = try fs.mkdir(as: .root, parent: Inode.snapshots, name: "d@l") }, EEXIST)
        let folder = try fs.lookup(as: .root, parent: Inode.snapshots, name: "d@l").ino
        let image = try fs.lookup(as: .root, parent: folder, name: "image")
        XCTAssertEqual(image.attributes.permissions, 0o440)
        XCTAssertEqual(errno { _ = try fs.mkdir(as: .root, parent: folder, name: "x") }, EROFS)
        XCTAssertEqual(fs.refuseNewEntry(parent: folder).errno, EROFS)
        XCTAssertEqual(fs.unlink(parent: folder, name: "image").errno, EROFS)
        XCTAssertEqual(fs.rename(parent: folder, newParent: Inode.disks).errno, EROFS)
        XCTAssertEqual(errno { _ = try fs.open(as: .root, image.ino, flags: O_RDWR) }, EROFS)
        XCTAssertEqual(errno { _ = try fs.open(as: .root, image.ino, flags: O_WRONLY) }, EROFS)
        for change in [AttributeChanges(size: 0), AttributeChanges(mode: 0o600), AttributeChanges(uid: 1),
                       AttributeChanges(atime: .now, mtime: .now)] {
            XCTAssertEqual(errno { _ = try fs.setattr(as: .root, image.ino, change) }, EROFS)
        }
        XCTAssertEqual(errno { try fs.access(as: .root, image.ino, mask: W_OK) }, EROFS)
        XCTAssertEqual(errno { try fs.access(as: .root, image.ino, mask: R_OK) }, 0)
        // The snapshot outlives its disk.
        try fs.rmdir(as: .root, parent: Inode.disks, name: "d")
        XCTAssertNoThrow(try fs.getattr(image.ino))
        XCTAssertEqual(errno { try fs.rmdir(as: .root, parent: Inode.snapshots, name: "d@l") }, 0)
    }

    func testDiskImageAttributes() throws {
        let (_, image) = try makeDisk("d", size: 1 << 20)
        XCTAssertEqual(try fs.getattr(image).attributes.size, 1 << 20)
        XCTAssertEqual(try fs.setattr(as: .root, image, AttributeChanges(mode: 0o640)).attributes.permissions, 0o640)
        XCTAssertEqual(errno { _ = try fs.setattr(as: .root, image, AttributeChanges(mode: 0o4640)) }, EPERM, "never setuid")
        let owned = try fs.setattr(as: .root, image, AttributeChanges(uid: 7, gid: 8)).attributes
        XCTAssertEqual([owned.uid, owned.gid], [7, 8])
        let when = Date(timeIntervalSince1970: 1_000_000)
        let e = try fs.setattr(as: .root, image, AttributeChanges(mtime: .at(when)))
        XCTAssertEqual(e.attributes.mtime.seconds, 1_000_000)
        XCTAssertEqual(try fs.setattr(as: .root, image, AttributeChanges(size: 4096)).attributes.size, 4096)
    }

    func testReadWriteAndSnapshotImmutability() throws {
        let (_, image) = try makeDisk("d")
        let h = try fs.open(as: .root, image, flags: O_RDWR)
        XCTAssertFalse(h.keepCache)
        XCTAssertFalse(h.directIO)
        let a = [UInt8](repeating: 0xAA, count: 8192), b = [UInt8](repeating: 0xBB, count: 8192)
        try write(h.handle, a, at: 100_000)
        XCTAssertEqual(try fs.getattr(image).attributes.size, 108_192)
        XCTAssertEqual(try read(h.handle, 4, at: 0), [0, 0, 0, 0])  // a hole reads as zeros
        _ = try fs.mkdir(as: .root, parent: Inode.snapshots, name: "d@one")
        try write(h.handle, b, at: 100_000)
        let snapImage = try fs.lookup(as: .root, parent: try fs.lookup(as: .root, parent: Inode.snapshots, name: "d@one").ino, name: "image").ino
        let s = try fs.open(as: .root, snapImage, flags: O_RDONLY)
        XCTAssertTrue(s.keepCache)
        XCTAssertEqual(try read(s.handle, 8192, at: 100_000), a)
        XCTAssertEqual(try read(h.handle, 8192, at: 100_000), b)
        XCTAssertEqual(errno { try write(s.handle, b, at: 0) }, EROFS)
        XCTAssertEqual(try read(s.handle, 100, at: 108_192), [])  // EOF
        fs.release(s.handle)
        fs.release(h.handle)
    }

    func testBusyWhileOpenThenReleased() throws {
        let (_, image) = try makeDisk("d")
        let h = try fs.open(as: .root, image, flags: O_RDWR)
        XCTAssertTrue(fs.isOpen(object: h.handle))
        XCTAssertEqual(errno { try fs.rmdir(as: .root, parent: Inode.disks, name: "d") }, EBUSY)
        // A release arriving within the wait lets rmdir go through.
        fs.releaseWait = 2
        let core = self.fs!
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { core.release(h.handle) }
        XCTAssertEqual(errno { try fs.rmdir(as: .root, parent: Inode.disks, name: "d") }, 0)
        XCTAssertEqual(errno { _ = try fs.open(as: .root, image, flags: O_RDWR) }, ENOENT)
    }

    func testFallocate() throws {
        let (_, image) = try makeDisk("d")
        let h = try fs.open(as: .root, image, flags: O_RDWR)
        defer { fs.release(h.handle) }
        try write(h.handle, [UInt8](repeating: 7, count: 65536), at: 0)
        let punch = FallocateMode.punchHole | FallocateMode.keepSize
        XCTAssertEqual(errno { try fs.fallocate(h.handle, mode: punch, offset: 4096, length: 1 << 30) }, 0)
        XCTAssertEqual(try fs.getattr(image).attributes.size, 65536)
        XCTAssertEqual(try read(h.handle, 4096, at: 4096), [UInt8](repeating: 0, count: 4096))
        XCTAssertEqual(try read(h.handle, 1, at: 0), [7])
        XCTAssertEqual(errno { try fs.fallocate(h.handle, mode: 0, offset: 0, length: 1 << 20) }, 0)
        XCTAssertEqual(try fs.getattr(image).attributes.size, 1 << 20)
        XCTAssertEqual(errno { try fs.fallocate(h.handle, mode: 0, offset: 0, length: 10) }, 0)
        XCTAssertEqual(try fs.getattr(image).attributes.size, 1 << 20)  // never shrinks
        XCTAssertEqual(errno { try fs.fallocate(h.handle, mode: 0x10, offset: 0, length: 10) }, EOPNOTSUPP)
        XCTAssertEqual(errno { try fs.fallocate(h.handle, mode: FallocateMode.keepSize, offset: 0, length: 10) }, EOPNOTSUPP)
    }

    func testReaddirListsTheTree() throws {
        try makeDisk("b")
        try makeDisk("a")
        _ = try fs.mkdir(as: .root, parent: Inode.snapshots, name: "a@x")
        func names(_ ino: UInt64) throws -> [String] {
            let h = try fs.openDirectory(as: .root, ino)
            defer { fs.releaseDirectory(h) }
            return fs.readDirectory(h, from: 0).map(\.name)
        }
        XCTAssertEqual(try names(Inode.root), [".", "..", "disks", "snapshots"])
        XCTAssertEqual(try names(Inode.disks), [".", "..", "a", "b"])
        XCTAssertEqual(try names(Inode.snapshots), [".", "..", "a@x"])
        let h = try fs.openDirectory(as: .root, Inode.disks)
        XCTAssertEqual(fs.readDirectory(h, from: 3).map(\.name), ["b"])
        XCTAssertEqual(fs.readDirectory(h, from: 4).count, 0)
        fs.releaseDirectory(h)
    }

    func testStatfs() throws {
        let s = fs.statfs()
        XCTAssertEqual(s.blockSize, 4096)
        XCTAssertEqual(s.nameMax, 255)
        XCTAssertGreaterThanOrEqual(s.blocks, s.blocksAvailable)
        XCTAssertEqual(s.blocksFree, s.blocksAvailable)
    }

    /// Writers race captures; each write names its sequence number, and each snapshot must
    /// hold a prefix of the write sequence with every 4 KiB write whole (SPEC §2).
    func testCaptureIsPointInTime() throws {
        let (_, image) = try makeDisk("d")
        let h = try fs.open(as: .root, image, flags: O_RDWR)
        let blocks = 256
        let fs = self.fs!
        let stop = LockedFlag()
        let writer = Thread {
            var i: UInt64 = 1
            while !stop.value {
                var block = [UInt64](repeating: i, count: 512)
                _ = try? block.withUnsafeBytes { b throws(FSError) in
                    try fs.write(h.handle, offset: UInt64((Int(i) - 1) % blocks) * 4096, data: UnsafeRawBufferPointer(b))
                }
                block[0] = 0
                i += 1
            }
        }
        writer.start()
        usleep(50_000)
        for k in 0..<10 {
            let snap = try fs.mkdir(as: .root, parent: Inode.snapshots, name: "d@s\(k)")
            XCTAssertEqual(try fs.lookup(as: .root, parent: snap.ino, name: "image").attributes.kind, .regular)
            usleep(10_000)
        }
        stop.set()
        while !writer.isFinished { usleep(1000) }
        for k in 0..<10 {
            let folder = try fs.lookup(as: .root, parent: Inode.snapshots, name: "d@s\(k)").ino
            let s = try fs.open(as: .root, try fs.lookup(as: .root, parent: folder, name: "image").ino, flags: O_RDONLY)
            let bytes = try read(s.handle, blocks * 4096, at: 0)
            fs.release(s.handle)
            var values: [UInt64] = []
            for j in 0..<(bytes.count / 4096) {
                let words = bytes[(j * 4096)..<((j + 1) * 4096)].withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }
                XCTAssertTrue(words.allSatisfy { $0 == words[0] }, "torn write in block \(j) of s\(k)")
                values.append(words[0])
            }
            let newest = values.max() ?? 0
            for n in max(1, Int(newest) - blocks + 1)...max(1, Int(newest)) where newest > 0 {
                XCTAssertGreaterThanOrEqual(values[(n - 1) % blocks], UInt64(n), "s\(k) misses write \(n) but has \(newest)")
            }
        }
        fs.release(h.handle)
    }

    func testGroupCaptureRecordsFreeze() throws {
        try makeDisk("x", size: 65536)
        try makeDisk("y", size: 65536)
        let snaps = try fs.captureGroup(disks: ["y", "x"], label: "g", description: "group", tags: ["k": "v"])
        XCTAssertEqual(Set(snaps.map(\.name)), ["x@g", "y@g"])
        for s in snaps {
            XCTAssertEqual(pool.snapshot(named: s.name)?.freezeMicros, s.freezeMicros)
            XCTAssertEqual(pool.snapshot(named: s.name)?.tags, ["k": "v"])
        }
        XCTAssertEqual(errno { _ = try fs.captureGroup(disks: ["x", "x"], label: "h") }, EINVAL)
        XCTAssertEqual(errno { _ = try fs.captureGroup(disks: ["x", "nope"], label: "h") }, ENOENT)
        XCTAssertNil(pool.snapshot(named: "x@h"))
        XCTAssertEqual(errno { _ = try fs.captureGroup(disks: ["x"], label: "g") }, EEXIST)
    }
}

final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    var value: Bool { lock.withLock { flag } }
    func set() { lock.withLock { flag = true } }
}

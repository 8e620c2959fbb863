import Foundation
import Glibc
import SnapStore

/// `snapshots/<id>/info.json`: the snapshot's entry of `snapshot list --json`, read-only.
///
/// ExclusiveBytes changes as the disk diverges, so the bytes are generated again for every
/// lookup/getattr (the size the kernel sees matches what a read at that moment returns) and
/// frozen per open file, so one reader sees one consistent document. Opens use direct I/O,
/// so reads go to the daemon and end at the end of those frozen bytes, never at a stale size.
final class InfoFiles: @unchecked Sendable {
    static let name = "info.json"
    /// Handles of info.json opens: the snapshot bit (writes refused with EROFS) plus this bit.
    static let infoBit: UInt64 = 1 << 62

    private let lock = NSLock()
    private var next: UInt64 = 1
    private var contents: [UInt64: [UInt8]] = [:]

    static func isInfo(_ handle: UInt64) -> Bool { handle & infoBit != 0 }

    func open(_ bytes: [UInt8]) -> UInt64 {
        lock.withLock {
            let h = ImageHandle.snapshotBit | Self.infoBit | next
            next += 1
            contents[h] = bytes
            return h
        }
    }

    func read(_ handle: UInt64, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        lock.withLock {
            guard let bytes = contents[handle], offset < UInt64(bytes.count) else { return 0 }
            let n = min(buffer.count, bytes.count - Int(offset))
            bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(offset)..<Int(offset) + n])) }
            return n
        }
    }

    func release(_ handle: UInt64) {
        lock.withLock { contents[handle] = nil }
    }
}

extension FileSystem {
    /// The document: the snapshot record, pretty-printed, ending in a newline.
    func infoBytes(_ s: SnapshotInfo) -> [UInt8] {
        Array((snapshotRecord(s).json.render(pretty: true) + "\n").utf8)
    }

    func infoAttributes(_ s: SnapshotInfo) -> Attributes {
        let c = Timestamp(s.creationTime)
        let size = UInt64(infoBytes(s).count)
        return Attributes(ino: Inode.info(s.id), kind: .regular, permissions: s.owner.mode, nlink: 1,
                          size: size, blocks: (size + 511) / 512, blockSize: 4096,
                          uid: s.owner.uid, gid: s.owner.gid, atime: c, mtime: c, ctime: c)
    }

    func openInfo(_ s: SnapshotInfo, flags: Int32) throws(FSError) -> OpenFile {
        guard flags & O_ACCMODE == O_RDONLY, flags & O_TRUNC == 0 else { throw FSError(EROFS) }
        return OpenFile(handle: infoFiles.open(infoBytes(s)), keepCache: false, directIO: true)
    }
}

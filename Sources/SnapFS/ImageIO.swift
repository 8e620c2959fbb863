import Foundation
import Glibc
import SnapStore

/// fallocate(2) mode bits (linux/falloc.h).
public enum FallocateMode {
    public static let keepSize: Int32 = 0x01
    public static let punchHole: Int32 = 0x02
}

/// What open() hands back: the handle the kernel returns with every read/write, and the
/// page-cache policy for the file.
public struct OpenFile: Sendable, Equatable {
    public var handle: UInt64
    /// Keep pages cached from a previous open: only for immutable snapshot images.
    public var keepCache: Bool
    /// Bypass the page cache: never, so loop devices and mmap work on both kinds of image.
    public var directIO: Bool
}

/// A file handle names the object and whether it is a snapshot (top bit), so the write path
/// needs no catalog lookup to know it may write.
enum ImageHandle {
    static let snapshotBit: UInt64 = 1 << 63
    static func make(_ id: ObjectID, snapshot: Bool) -> UInt64 { snapshot ? id | snapshotBit : id }
    static func object(_ handle: UInt64) -> ObjectID { handle & ~snapshotBit }
    static func isSnapshot(_ handle: UInt64) -> Bool { handle & snapshotBit != 0 }
}

extension FileSystem {
    /// Read and/or write permission by the flags (Access.swift); a snapshot refuses any
    /// write with EROFS first.
    public func open(as caller: Caller, _ ino: UInt64, flags: Int32) throws(FSError) -> OpenFile {
        let node = try resolve(ino)
        switch node {
        case .snapshotImage, .snapshotInfo:
            guard flags & O_ACCMODE == O_RDONLY, flags & O_TRUNC == 0 else { throw FSError(EROFS) }
            try require(caller, R_OK, on: node)
        case .diskImage:
            try require(caller, Self.accessMask(openFlags: flags), on: node)
        default:
            throw FSError(EISDIR)
        }
        switch node {
        case .diskImage(let d):
            guard opens.open(d.id, stillExists: { pool.disk(id: d.id) != nil }) else { throw FSError(ENOENT) }
            return OpenFile(handle: ImageHandle.make(d.id, snapshot: false), keepCache: false, directIO: false)
        case .snapshotImage(let s):
            guard flags & O_ACCMODE == O_RDONLY, flags & O_TRUNC == 0 else { throw FSError(EROFS) }
            guard opens.open(s.id, stillExists: { pool.snapshot(id: s.id) != nil }) else { throw FSError(ENOENT) }
            return OpenFile(handle: ImageHandle.make(s.id, snapshot: true), keepCache: true, directIO: false)
        case .snapshotInfo(let s):
            return try openInfo(s, flags: flags)
        default:
            throw FSError(EISDIR)
        }
    }

    /// The kernel's RELEASE, a moment after the last close() of an open file description.
    public func release(_ handle: UInt64) {
        if InfoFiles.isInfo(handle) { return infoFiles.release(handle) }
        opens.release(ImageHandle.object(handle))
    }

    /// Reads never pass the write gate: they do not wait for a capture (SPEC §2).
    public func read(_ handle: UInt64, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FSError) -> Int {
        if InfoFiles.isInfo(handle) { return infoFiles.read(handle, offset: offset, into: buffer) }
        return try store { try pool.read(object: ImageHandle.object(handle), offset: offset, into: buffer) }
    }

    /// Returns once the store has the bytes (no writeback cache: a capture cannot miss it).
    public func write(_ handle: UInt64, offset: UInt64, data: UnsafeRawBufferPointer) throws(FSError) -> Int {
        guard !ImageHandle.isSnapshot(handle) else { throw FSError(EROFS) }
        let id = ImageHandle.object(handle)
        try gates.gate(id).admit { () throws(FSError) in
            try store { try pool.write(disk: id, offset: offset, data: data) }
        }
        return data.count
    }

    /// PUNCH_HOLE|KEEP_SIZE frees the range (discard from loop devices, fstrim); mode 0 only
    /// extends the size (the disk is thin: nothing is preallocated); anything else is refused.
    public func fallocate(_ handle: UInt64, mode: Int32, offset: UInt64, length: UInt64) throws(FSError) {
        guard !ImageHandle.isSnapshot(handle) else { throw FSError(EROFS) }
        let id = ImageHandle.object(handle)
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow else { throw FSError(EFBIG) }
        switch mode {
        case FallocateMode.punchHole | FallocateMode.keepSize:
            try gates.gate(id).admit { () throws(FSError) in
                guard let size = pool.disk(id: id)?.size else { throw FSError(ENOENT) }
                guard offset < size, length > 0 else { return }
                try store { try pool.punchHole(disk: id, offset: offset, length: min(end, size) - offset) }
            }
        case 0:
            try gates.gate(id).admit { () throws(FSError) in
                try store { try pool.growDisk(id: id, to: end) }
            }
        default:
            throw FSError(EOPNOTSUPP)
        }
    }
}

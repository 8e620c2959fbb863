import Foundation

/// Plain Swift mirrors of `struct stat` / `struct statvfs` data, so the core stays free of
/// libfuse types; the bridge converts them.

/// A point in time as the kernel wants it (seconds + nanoseconds since the epoch).
public struct Timestamp: Sendable, Equatable {
    public var seconds: Int64
    public var nanoseconds: Int64

    public init(_ date: Date) {
        let t = date.timeIntervalSince1970
        var s = t.rounded(.down)
        var ns = ((t - s) * 1_000_000_000).rounded()
        if ns >= 1_000_000_000 { s += 1; ns -= 1_000_000_000 }
        seconds = Int64(s); nanoseconds = Int64(ns)
    }
}

public enum FileKind: Sendable, Equatable {
    case directory
    case regular
}

public struct Attributes: Sendable, Equatable {
    public var ino: UInt64
    public var kind: FileKind
    /// Permission bits only (0o755, 0o644, 0o444); the bridge adds S_IFDIR/S_IFREG.
    public var permissions: UInt32
    public var nlink: UInt32
    public var size: UInt64
    /// 512-byte units, like st_blocks.
    public var blocks: UInt64
    public var blockSize: UInt32
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var atime: Timestamp
    public var mtime: Timestamp
    public var ctime: Timestamp
}

/// A lookup/mkdir answer: the attributes plus how long the kernel may cache them.
public struct Entry: Sendable, Equatable {
    public var attributes: Attributes
    /// Seconds the kernel may keep the name -> inode mapping.
    public var entryTimeout: Double
    /// Seconds the kernel may keep the attributes.
    public var attributeTimeout: Double
    public var ino: UInt64 { attributes.ino }
}

/// What `statfs` reports (`df MOUNT`).
public struct FileSystemStats: Sendable, Equatable {
    public var blockSize: UInt64
    public var fragmentSize: UInt64
    public var blocks: UInt64
    public var blocksFree: UInt64
    public var blocksAvailable: UInt64
    public var files: UInt64
    public var filesFree: UInt64
    public var nameMax: UInt64
}

public struct DirectoryEntry: Sendable, Equatable {
    public var name: String
    public var ino: UInt64
    public var kind: FileKind
}

/// A time change requested by setattr/utimens.
public enum TimeChange: Sendable, Equatable {
    case now
    case at(Date)
}

/// The changes a setattr asks for; nil means "leave alone".
public struct AttributeChanges: Sendable, Equatable {
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var atime: TimeChange?
    public var mtime: TimeChange?
    public init(mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: UInt64? = nil,
                atime: TimeChange? = nil, mtime: TimeChange? = nil) {
        self.mode = mode; self.uid = uid; self.gid = gid; self.size = size
        self.atime = atime; self.mtime = mtime
    }
    public var isEmpty: Bool {
        mode == nil && uid == nil && gid == nil && size == nil && atime == nil && mtime == nil
    }
}

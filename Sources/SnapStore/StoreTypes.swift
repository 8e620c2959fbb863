import Foundation

/// Errors the store reports. The filesystem core maps each to one errno.
public enum StoreError: Error, Equatable, CustomStringConvertible, Sendable {
    case invalidName(String)          // EINVAL
    case invalidArgument(String)      // EINVAL
    case notFound(String)             // ENOENT
    case exists(String)               // EEXIST
    case busy(String)                 // EBUSY
    case readOnly(String)             // EROFS
    case noSpace(String)              // ENOSPC
    case tooLarge(String)             // EFBIG
    case corrupt(String)              // EIO: a checksum or structure check failed
    case io(errno: Int32, String)     // EIO (or the errno) from the host
    case refused(String)              // pool cannot be opened (format, lock, damage)

    public var description: String {
        switch self {
        case .invalidName(let s), .invalidArgument(let s), .notFound(let s), .exists(let s),
             .busy(let s), .readOnly(let s), .noSpace(let s), .tooLarge(let s),
             .corrupt(let s), .refused(let s):
            return s
        case .io(let e, let s):
            return "\(s): \(String(cString: strerror(e)))"
        }
    }

    /// The errno a FUSE reply should carry for this error.
    public var errno: Int32 {
        switch self {
        case .invalidName, .invalidArgument: return EINVAL
        case .notFound: return ENOENT
        case .exists: return EEXIST
        case .busy: return EBUSY
        case .readOnly: return EROFS
        case .noSpace: return ENOSPC
        case .tooLarge: return EFBIG
        case .corrupt, .refused: return EIO
        case .io(let e, _): return e == ENOSPC || e == EDQUOT ? ENOSPC : EIO
        }
    }
}

/// Names of disks and labels: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}` (SPEC §1).
public enum Names {
    public static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...64).contains(bytes.count) else { return false }
        func alnum(_ c: UInt8) -> Bool {
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
        }
        guard alnum(bytes[0]) else { return false }
        return bytes.dropFirst().allSatisfy { alnum($0) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D }
    }

    /// Splits a snapshot id `disk@label`; nil unless both halves are valid names.
    public static func splitSnapshotId(_ id: String) -> (disk: String, label: String)? {
        let parts = id.split(separator: "@", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let disk = String(parts[0]), label = String(parts[1])
        guard isValid(disk), isValid(label) else { return nil }
        return (disk, label)
    }
}

/// Identifies a disk or snapshot for its whole life in the pool (never reused).
public typealias ObjectID = UInt64

public struct DiskInfo: Sendable, Equatable {
    public var id: ObjectID
    public var name: String
    public var size: UInt64
    /// Bytes of chunks this disk's map points to (shared or not).
    public var mappedBytes: UInt64
    public var creationTime: Date
    public var modificationTime: Date
    /// Owner, group and mode of its `image` (SPEC §6).
    public var owner: Ownership
}

public struct SnapshotInfo: Sendable, Equatable {
    public var id: ObjectID
    public var name: String              // "disk@label"
    public var sourceDisk: String
    public var sourceDiskId: ObjectID
    public var size: UInt64
    public var creationTime: Date
    /// How long the source disk's writes were held back for this capture.
    public var freezeMicros: UInt64
    public var description: String
    public var tags: [String: String]
    public var retentionDays: Int?
    /// Owner, group and mode of its `image` and `info.json`: the disk's at capture,
    /// without write bits (SPEC §6).
    public var owner: Ownership
}

public struct PoolStats: Sendable, Equatable {
    public var chunkSize: Int
    /// Bytes the pool's files occupy on the host.
    public var usedBytes: UInt64
    /// Bytes the host (or a quota) still lets the pool take.
    public var availableBytes: UInt64
    /// Sum of the sizes of all disks.
    public var logicalBytes: UInt64
    public var disks: Int
    public var snapshots: Int
    public var dataChunksInUse: UInt64
}

public struct PoolOptions: Sendable {
    /// Chunk size for a new pool (power of two, 4 KiB ... 1 MiB); ignored for an existing pool.
    public var chunkSize: Int = 16 * 1024
    /// Sizes of the data segment files for a new pool; ignored for an existing pool.
    public var dataSegments: SegmentLayout = .standard
    /// Open without taking the daemon lock and without writing anything (checker).
    public var readOnly: Bool = false
    /// Bound on cached clean metadata blocks.
    public var cacheBlocks: Int = 16_384
    /// Commit in the background every `Pool.commitInterval` (off in tests that need
    /// to know exactly what was committed).
    public var backgroundCommits: Bool = true
    /// Size of the intent log (`journal`), preallocated; `fsync` commits when it is full.
    public var journalBytes: UInt64 = Pool.defaultJournalBytes
    /// Where the pool's files are read and written; nil = the real files in the
    /// directory. Tests put a fault-injecting provider here.
    public var storage: (any StorageProvider)? = nil
    public init() {}
}

public struct SnapshotRequest: Sendable {
    public var disk: String
    public var label: String
    public var description: String = ""
    public var tags: [String: String] = [:]
    public var retentionDays: Int? = nil
    public var freezeMicros: UInt64 = 0
    public init(disk: String, label: String) { self.disk = disk; self.label = label }
}

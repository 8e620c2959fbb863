import Foundation

/// The control API between `snapfs` commands and the daemon: one JSON request line and one
/// JSON response line per connection on the Unix socket `POOL/control.sock`.
///
/// The records carry exactly the keys of SPEC §4, so the CLI prints them as they come.
public enum ControlOp: String, Codable, Sendable {
    case diskCreate = "disk.create", diskList = "disk.list", diskResize = "disk.resize"
    case diskRollback = "disk.rollback", diskDelete = "disk.delete"
    case snapshotCreate = "snapshot.create", snapshotList = "snapshot.list"
    case snapshotDelete = "snapshot.delete", snapshotDiff = "snapshot.diff"
    case poolStats = "pool.stats"
    /// Commit, then keep that commit's blocks from being reused while the client renews its
    /// lease (`snapfs check` of a mounted pool): see `PinLease`.
    case pin
    /// Report (and with `repair`, rewrite from the good copy) damaged redundant copies:
    /// superblock slots and reference-count page slots (`snapfs check` of a mounted pool).
    case checkCopies = "check.copies"
    /// Run the retention pass now (only with SNAPFS_TEST_HOOKS=1 in the daemon's environment).
    case debugExpire = "debug.expire"
}

/// The exchange after a `pin` request's `{"message":"pinned"}` answer. The client sends
/// `renewByte` at least every `seconds` (it sends every `renewEvery`), or the daemon drops the
/// pin and says so; when done reading it sends `releaseByte`, and the answer
/// `{"message":"released"}` proves the pin was held until then. Any other answer, or none,
/// means the pin was dropped before.
public enum PinLease {
    public static let seconds: Double = 15
    public static let renewEvery: Double = 2
    public static let renewByte: UInt8 = 0x2E     // "."
    public static let releaseByte: UInt8 = 0x52   // "R"
    public static let released = "released"
}

/// One request; each op reads the fields it needs (documented on the handler).
public struct ControlRequest: Codable, Sendable {
    public var op: ControlOp
    public var name: String?            // disk name, or snapshot id
    public var names: [String]?         // disks of a group capture
    public var other: String?           // second snapshot of a diff; rollback target
    public var size: UInt64?
    public var fromSnapshot: String?
    public var noUndo: Bool?
    public var label: String?
    public var description: String?
    public var tags: [String: String]?
    public var retentionDays: Int?
    public var disk: String?            // list filter
    public var clockOffsetSeconds: Double?  // debug.expire: move the daemon's clock
    public var repair: Bool?            // check.copies: rewrite damaged copies

    public init(op: ControlOp) { self.op = op }
}

/// SPEC §4 disk: `{"DiskId","Size","AllocatedBytes","CreationTime","Status"}`.
public struct DiskRecord: Codable, Sendable, Equatable {
    public var DiskId: String
    public var Size: UInt64
    public var AllocatedBytes: UInt64
    public var CreationTime: String
    public var Status: String
}

/// SPEC §4 snapshot. RetentionDays and ExpiresAt are written as null when absent.
public struct SnapshotRecord: Codable, Sendable, Equatable {
    public var SnapshotId: String
    public var SourceDiskId: String
    public var SourceDiskSize: UInt64
    public var CreationTime: String
    public var Status: String
    public var Progress: Int
    public var ExclusiveBytes: UInt64
    public var FreezeMicros: UInt64
    public var Description: String
    public var Tags: [String: String]
    public var RetentionDays: Int?
    public var ExpiresAt: String?

    enum CodingKeys: String, CodingKey {
        case SnapshotId, SourceDiskId, SourceDiskSize, CreationTime, Status, Progress,
             ExclusiveBytes, FreezeMicros, Description, Tags, RetentionDays, ExpiresAt
    }

    // Written by hand only so that nil becomes an explicit null (SPEC: "may be null").
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(SnapshotId, forKey: .SnapshotId)
        try c.encode(SourceDiskId, forKey: .SourceDiskId)
        try c.encode(SourceDiskSize, forKey: .SourceDiskSize)
        try c.encode(CreationTime, forKey: .CreationTime)
        try c.encode(Status, forKey: .Status)
        try c.encode(Progress, forKey: .Progress)
        try c.encode(ExclusiveBytes, forKey: .ExclusiveBytes)
        try c.encode(FreezeMicros, forKey: .FreezeMicros)
        try c.encode(Description, forKey: .Description)
        try c.encode(Tags, forKey: .Tags)
        try c.encode(RetentionDays, forKey: .RetentionDays)
        try c.encode(ExpiresAt, forKey: .ExpiresAt)
    }
}

public struct RangeRecord: Codable, Sendable, Equatable {
    public var Offset: UInt64
    public var Length: UInt64
    public init(Offset: UInt64, Length: UInt64) { self.Offset = Offset; self.Length = Length }
}

/// SPEC §4 diff: `{"ChunkSize":N,"ChangedRanges":[{"Offset":O,"Length":L},...]}`.
public struct DiffRecord: Codable, Sendable, Equatable {
    public var ChunkSize: Int
    public var ChangedRanges: [RangeRecord]
}

/// SPEC §4 pool stats. `referencedBytes` and `storedBytes` (for the sharing ratio) travel
/// beside it in `ControlResponse`, outside the SPEC shape.
public struct StatsRecord: Codable, Sendable, Equatable {
    public var CapacityBytes: UInt64
    public var UsedBytes: UInt64
    public var LogicalBytes: UInt64
    public var ChunkSize: Int
    public var Disks: Int
    public var Snapshots: Int
}

public struct ControlResponse: Codable, Sendable {
    public var error: String?
    public var disks: [DiskRecord]?
    public var snapshots: [SnapshotRecord]?
    public var diff: DiffRecord?
    public var stats: StatsRecord?
    public var referencedBytes: UInt64?
    public var storedBytes: UInt64?
    public var message: String?
    public var problems: [String]?      // check.copies: damaged copies (after any repair)
    public var repaired: [String]?      // check.copies: copies rewritten
    public init() {}
    public static func failure(_ message: String) -> ControlResponse {
        var r = ControlResponse()
        r.error = message
        return r
    }
}

/// A failure with the sentence the user sees after "snapfs: ".
public struct ControlFailure: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// RFC 3339 UTC times (`2025-01-31T12:00:00Z`) and the compact UTC labels
/// (`20250131T120000Z`) used for default snapshot labels and undo snapshots.
public enum ControlTime {
    public static func rfc3339(_ date: Date) -> String {
        format(date, "yyyy-MM-dd'T'HH:mm:ss'Z'")
    }
    public static func label(_ date: Date) -> String {
        format(date, "yyyyMMdd'T'HHmmss'Z'")
    }
    private static func format(_ date: Date, _ pattern: String) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = pattern
        return f.string(from: date)
    }
}

/// One JSON line, keys in declaration order (the SPEC's order), slashes unescaped.
public enum ControlJSON {
    public static func encode<T: Encodable>(_ value: T, pretty: Bool = false) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.prettyPrinted, .withoutEscapingSlashes] : [.withoutEscapingSlashes]
        return try e.encode(value)
    }
    public static func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        try JSONDecoder().decode(type, from: data)
    }
}

import Foundation
import SnapStore

/// Builds the SPEC §4 records from the pool. Shared by the control handler, `info.json`
/// and the CLI's offline `pool stats`.
extension FileSystem {
    func diskRecord(_ d: DiskInfo) -> DiskRecord {
        DiskRecord(DiskId: d.name, Size: d.size, AllocatedBytes: d.mappedBytes,
                   CreationTime: ControlTime.rfc3339(d.creationTime),
                   Status: isOpen(object: d.id) ? "in_use" : "available")
    }

    func snapshotRecord(_ s: SnapshotInfo) -> SnapshotRecord {
        PoolRecords.snapshot(s, exclusiveBytes: (try? pool.exclusiveBytes(s.id)) ?? 0)
    }
}

public enum PoolRecords {
    /// Captures complete before their snapshot is visible, so Status is always
    /// `accomplished` and Progress 100 here (`progressing` never shows).
    public static func snapshot(_ s: SnapshotInfo, exclusiveBytes: UInt64) -> SnapshotRecord {
        SnapshotRecord(SnapshotId: s.name, SourceDiskId: s.sourceDisk, SourceDiskSize: s.size,
                       CreationTime: ControlTime.rfc3339(s.creationTime), Status: "accomplished",
                       Progress: 100, ExclusiveBytes: exclusiveBytes, FreezeMicros: s.freezeMicros,
                       Description: s.description, Tags: s.tags, RetentionDays: s.retentionDays,
                       ExpiresAt: s.retentionDays.map {
                           ControlTime.rfc3339(Retention.expiry(created: s.creationTime, days: $0))
                       })
    }

    /// `pool stats`, plus the bytes the maps reference and the bytes stored (their ratio is
    /// the sharing ratio the table shows).
    public static func stats(_ pool: Pool) -> ControlResponse {
        let s = pool.stats()
        var r = ControlResponse()
        r.stats = StatsRecord(CapacityBytes: s.usedBytes + s.availableBytes, UsedBytes: s.usedBytes,
                              LogicalBytes: s.logicalBytes, ChunkSize: s.chunkSize,
                              Disks: s.disks, Snapshots: s.snapshots)
        r.referencedBytes = pool.referencedBytes()
        r.storedBytes = s.dataChunksInUse * UInt64(s.chunkSize)
        return r
    }
}

/// Limits on what `snapshot create` stores beside a snapshot. The whole record of a snapshot
/// must fit one 4 KiB metadata block (docs/FORMAT.md), so description and tags together get
/// a budget that leaves room for the names and numbers.
public enum SnapshotMetadata {
    public static let maxTags = 20
    public static let maxKeyLength = 128
    public static let maxValueLength = 256
    public static let maxDescriptionLength = 256
    static let budget = 2048
    public static let maxRetentionDays = 36_500

    public static func validate(description: String, tags: [String: String], retentionDays: Int?) throws {
        if description.utf8.count > maxDescriptionLength {
            throw ControlFailure("description is longer than \(maxDescriptionLength) bytes")
        }
        if description.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw ControlFailure("description must not contain control characters")
        }
        if tags.count > maxTags { throw ControlFailure("at most \(maxTags) tags (got \(tags.count))") }
        for (k, v) in tags.sorted(by: { $0.key < $1.key }) {
            try validateTag(key: k, value: v)
        }
        if let d = retentionDays, !(1...maxRetentionDays).contains(d) {
            throw ControlFailure("retention days must be 1 to \(maxRetentionDays) (got \(d))")
        }
        let encoded = (try? ControlJSON.encode([description: tags]).count) ?? Int.max
        if encoded > budget {
            throw ControlFailure("description and tags take \(encoded) bytes; at most \(budget) fit beside a snapshot")
        }
    }

    /// Keys: 1-128 characters, no '=', no control characters, not starting with a space.
    /// Values: 0-256 characters, no control characters.
    public static func validateTag(key: String, value: String) throws {
        let control: (Unicode.Scalar) -> Bool = { $0.properties.generalCategory == .control }
        guard !key.isEmpty, key.count <= maxKeyLength, !key.contains("="), !key.hasPrefix(" "),
              !key.unicodeScalars.contains(where: control) else {
            throw ControlFailure("invalid tag key '\(key)': 1-\(maxKeyLength) characters, no '=', no control characters")
        }
        guard value.count <= maxValueLength, !value.unicodeScalars.contains(where: control) else {
            throw ControlFailure("invalid value for tag '\(key)': at most \(maxValueLength) characters, no control characters")
        }
    }

    /// Parses `K=V` (the first '=' separates; V may be empty).
    public static func parseTag(_ text: String) throws -> (String, String) {
        guard let eq = text.firstIndex(of: "=") else { throw ControlFailure("invalid tag '\(text)': use KEY=VALUE") }
        let k = String(text[..<eq]), v = String(text[text.index(after: eq)...])
        try validateTag(key: k, value: v)
        return (k, v)
    }
}

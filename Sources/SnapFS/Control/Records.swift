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

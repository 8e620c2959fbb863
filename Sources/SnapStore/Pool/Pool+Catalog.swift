import Foundation
import Glibc

/// The catalog's questions: disks, snapshots, their infos, the pool's space figures.
extension Pool {
    func object(_ id: ObjectID) -> PoolObject? { objects[id] }

    func diskInfo(_ o: PoolObject) -> DiskInfo {
        DiskInfo(id: o.id, name: o.name, size: o.size, mappedBytes: o.mappedChunks * UInt64(chunkSize),
                 creationTime: o.created, modificationTime: o.modified, owner: o.owner)
    }

    func snapshotInfo(_ o: PoolObject) -> SnapshotInfo {
        SnapshotInfo(id: o.id, name: o.name, sourceDisk: o.sourceDisk, sourceDiskId: o.sourceDiskId, size: o.size,
                     creationTime: o.created, freezeMicros: o.freezeMicros, description: o.descriptionText,
                     tags: o.tags, retentionDays: o.retentionDays, owner: o.owner)
    }

    /// The on-disk format of the last commit (docs/FORMAT.md).
    public var formatVersion: UInt32 { lock.withLock { superblock.formatVersion } }
    /// The format new pools get and `upgrade` moves old ones to.
    public static var currentFormatVersion: UInt32 { Layout.formatVersion }

    public func disks() -> [DiskInfo] {
        lock.withLock { objects.values.filter { $0.kind == .disk }.map(diskInfo).sorted { $0.name < $1.name } }
    }
    public func snapshots() -> [SnapshotInfo] {
        lock.withLock { objects.values.filter { $0.kind == .snapshot }.map(snapshotInfo).sorted { $0.name < $1.name } }
    }
    public func disk(named name: String) -> DiskInfo? {
        lock.withLock { byName[name].flatMap { objects[$0] }.flatMap { $0.kind == .disk ? diskInfo($0) : nil } }
    }
    public func snapshot(named name: String) -> SnapshotInfo? {
        lock.withLock { byName[name].flatMap { objects[$0] }.flatMap { $0.kind == .snapshot ? snapshotInfo($0) : nil } }
    }
    public func disk(id: ObjectID) -> DiskInfo? {
        lock.withLock { objects[id].flatMap { $0.kind == .disk ? diskInfo($0) : nil } }
    }
    public func snapshot(id: ObjectID) -> SnapshotInfo? {
        lock.withLock { objects[id].flatMap { $0.kind == .snapshot ? snapshotInfo($0) : nil } }
    }

    public func stats() -> PoolStats {
        let (disks, snaps, logical, inUse, idleBytes) = lock.withLock { () -> (Int, Int, UInt64, UInt64, UInt64) in
            let d = objects.values.filter { $0.kind == .disk }
            return (d.count, objects.count - d.count, d.reduce(0) { $0 + $1.size }, dataRefs.inUse, allocatedIdleBytes)
        }
        var used: UInt64 = 0
        for f in [sbFile, metaFile, dataFile, metaRefs.file, dataRefs.file, journalFile].compactMap({ $0 }) { used += f.allocatedBytes() }
        // Allocated chunks with no data (the tail, freed ones not punched) are room for new ones.
        let idle = min(idleBytes, used)
        used -= idle
        var vfs = statvfs()
        let avail: UInt64 = (statvfs(directory, &vfs) == 0 ? UInt64(vfs.f_bavail) * UInt64(vfs.f_frsize) : 0) + idle
        return PoolStats(chunkSize: chunkSize, usedBytes: used, availableBytes: avail, logicalBytes: logical,
                         disks: disks, snapshots: snaps, dataChunksInUse: inUse)
    }
}

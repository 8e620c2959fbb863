import Foundation
import Glibc
import SnapStore

extension FileSystem {
    /// Crash-consistent capture of one or more disks at one point in time (SPEC §2):
    /// freeze each disk's writes (sorted by name, so two overlapping group captures cannot
    /// deadlock), share the roots in one O(1) store call, thaw, record each freeze length,
    /// then make the snapshots durable outside the freeze. Reads are never held back.
    public func captureGroup(disks: [String], label: String, description: String = "",
                             tags: [String: String] = [:], retentionDays: Int? = nil) throws(FSError) -> [SnapshotInfo] {
        guard Names.isValid(label), !disks.isEmpty, Set(disks).count == disks.count,
              disks.allSatisfy(Names.isValid) else { throw FSError(EINVAL) }
        let requests = disks.map { disk in
            var r = SnapshotRequest(disk: disk, label: label)
            r.description = description
            r.tags = tags
            r.retentionDays = retentionDays
            return r
        }
        return try capture(requests)
    }

    func capture(_ requests: [SnapshotRequest]) throws(FSError) -> [SnapshotInfo] {
        // Resolve every disk first: a missing one fails before anything is frozen.
        var targets: [(name: String, id: ObjectID, gate: WriteGate)] = []
        for r in requests.sorted(by: { $0.disk < $1.disk }) {
            guard let d = pool.disk(named: r.disk) else { throw FSError(ENOENT) }
            targets.append((d.name, d.id, gates.gate(d.id)))
        }

        var frozenSince: [ObjectID: UInt64] = [:]
        for t in targets { frozenSince[t.id] = t.gate.freeze() }
        let outcome: Result<[SnapshotInfo], FSError>
        if targets.allSatisfy({ pool.disk(named: $0.name)?.id == $0.id }) {
            do { outcome = .success(try pool.createSnapshots(requests)) } catch { outcome = .failure(FSError(error)) }
        } else {
            outcome = .failure(FSError(ENOENT))  // a disk was deleted (or replaced) while we froze
        }
        let thawedAt = monotonicNanos()
        for t in targets { t.gate.thaw() }

        var snapshots = try outcome.get()
        for i in snapshots.indices {
            let start = frozenSince[snapshots[i].sourceDiskId] ?? thawedAt
            let micros = (thawedAt - start) / 1000
            pool.setFreezeMicros(snapshot: snapshots[i].id, micros: micros)
            snapshots[i].freezeMicros = micros
        }
        // Durable before mkdir returns (SPEC §3), but never inside the freeze (GUIDE).
        try syncPool()
        return snapshots
    }
}

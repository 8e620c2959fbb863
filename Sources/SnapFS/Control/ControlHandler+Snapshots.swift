import Foundation
import Glibc
import SnapStore

extension FileSystem {
    /// `snapshot create DISK...`: one group capture (one point in time for all disks).
    func createSnapshots(_ r: ControlRequest) throws -> ControlResponse {
        let disks = try required(r.names, "disk names")
        guard !disks.isEmpty else { throw ControlFailure("name at least one disk") }
        var seen = Set<String>()
        for name in disks {
            _ = try existingDisk(name)
            guard seen.insert(name).inserted else { throw ControlFailure("disk '\(name)' is named twice") }
        }
        let label = r.label ?? ControlTime.label(Date())
        guard Names.isValid(label) else {
            throw ControlFailure("invalid snapshot label '\(label)': use [A-Za-z0-9][A-Za-z0-9._-]{0,63}")
        }
        for name in disks where pool.snapshot(named: "\(name)@\(label)") != nil {
            throw ControlFailure("snapshot '\(name)@\(label)' already exists")
        }
        let description = r.description ?? "", tags = r.tags ?? [:]
        for name in disks {   // the store's own check, so the refusal names the problem
            try SnapshotMetadata.validate(disk: name, label: label, description: description,
                                          tags: tags, retentionDays: r.retentionDays)
        }
        let infos: [SnapshotInfo]
        do {
            infos = try captureGroup(disks: disks, label: label, description: description,
                                     tags: tags, retentionDays: r.retentionDays)
        } catch {
            throw ControlFailure("cannot snapshot \(disks.joined(separator: ", ")): \(error)")
        }
        for s in infos { kernelCache?.invalidateEntry(parent: Inode.snapshots, name: s.name) }
        var out = ControlResponse()
        out.snapshots = infos.map(snapshotRecord)
        return out
    }

    /// `snapshot list [--disk D] [--tag K=V]...`: every filter must match.
    func listSnapshots(_ r: ControlRequest) -> ControlResponse {
        var list = pool.snapshots()
        if let d = r.disk { list = list.filter { $0.sourceDisk == d } }
        for (k, v) in r.tags ?? [:] { list = list.filter { $0.tags[k] == v } }
        var out = ControlResponse()
        out.snapshots = list.map(snapshotRecord)
        return out
    }

    /// `snapshot diff ID [ID2]`: from the block maps; ID2 omitted means the snapshot's disk now.
    func diff(_ r: ControlRequest) throws -> ControlResponse {
        let id = try required(r.name, "snapshot id")
        guard let s = pool.snapshot(named: id) else { throw ControlFailure("no snapshot '\(id)'") }
        let other: ObjectID
        if let id2 = r.other {
            guard let s2 = pool.snapshot(named: id2) else { throw ControlFailure("no snapshot '\(id2)'") }
            other = s2.id
        } else {
            guard let d = pool.disk(named: s.sourceDisk) else {
                throw ControlFailure("disk '\(s.sourceDisk)' of snapshot \(id) no longer exists; name a second snapshot")
            }
            other = d.id
        }
        let ranges = try pool.changedRanges(s.id, other)
        var out = ControlResponse()
        out.diff = DiffRecord(ChunkSize: pool.chunkSize,
                              ChangedRanges: ranges.map { RangeRecord(Offset: $0.offset, Length: $0.length) })
        return out
    }

    /// `disk rollback NAME --to ID [--no-undo]`: refused while the image is open (after
    /// waiting for pending releases); by default the current state is first captured as
    /// `NAME@undo-<UTC time>` through the normal capture path.
    func rollbackDisk(_ r: ControlRequest) throws -> ControlResponse {
        let d = try existingDisk(try required(r.name, "disk name"))
        let target = try required(r.other, "snapshot id")
        guard let s = pool.snapshot(named: target) else { throw ControlFailure("no snapshot '\(target)'") }
        guard s.sourceDisk == d.name else {
            throw ControlFailure("snapshot '\(target)' is of disk '\(s.sourceDisk)', not '\(d.name)'; a disk rolls back only to its own snapshots (clone with: snapfs disk create NAME --from-snapshot \(target))")
        }
        var failure: Error?
        var undo: SnapshotInfo?
        do {
            // Opens are held off while this runs, so nobody can open the image mid-rollback.
            try opens.whenClosed(d.id, timeout: releaseWait) { () throws(FSError) in
                do {
                    guard pool.disk(named: d.name)?.id == d.id else { throw ControlFailure("no disk '\(d.name)'") }
                    if r.noUndo != true {
                        undo = try captureUndo(d.name, before: target)
                    }
                    try gates.gate(d.id).admit { () throws in
                        try pool.rollbackDisk(name: d.name, toSnapshot: target)
                    }
                } catch { failure = error }
            }
        } catch {
            throw Self.busy("disk '\(d.name)'")
        }
        if let failure {
            if let undo { try? pool.deleteSnapshot(name: undo.name) }   // nothing changed
            throw failure
        }
        try commit()
        kernelCache?.invalidate(inode: Inode.image(d.id))               // pages and size
        kernelCache?.invalidateEntry(parent: Inode.folder(d.id), name: "image")
        if let undo { kernelCache?.invalidateEntry(parent: Inode.snapshots, name: undo.name) }
        var out = ControlResponse()
        out.disks = [diskRecord(pool.disk(id: d.id) ?? d)]
        out.snapshots = undo.map { [snapshotRecord($0)] } ?? []
        out.message = "disk \(d.name) rolled back to \(target)" + (undo.map { "; undo with: snapfs disk rollback \(d.name) --to \($0.name)" } ?? "")
        return out
    }

    private func captureUndo(_ disk: String, before target: String) throws -> SnapshotInfo {
        let base = "undo-" + ControlTime.label(Date())
        var label = base
        var n = 1
        while pool.snapshot(named: "\(disk)@\(label)") != nil {   // two rollbacks in one second
            n += 1
            label = "\(base)-\(n)"
        }
        do {
            return try captureGroup(disks: [disk], label: label,
                                    description: "state of \(disk) before rollback to \(target)")[0]
        } catch {
            throw ControlFailure("cannot capture the undo snapshot \(disk)@\(label): \(error)")
        }
    }
}

import Foundation
import Glibc
import SnapStore

/// Control requests (SPEC §4) served by the daemon. Each checks everything it can before it
/// changes anything (a failing command changes nothing), makes its change durable, and then,
/// holding no lock, tells the kernel to drop what it cached, so `ls`, `stat` and reads see
/// the change as soon as the command returns. (An invalidation issued while holding a lock a
/// FUSE request may wait for could deadlock against the kernel's folder lock.)
extension FileSystem {
    public func control(_ r: ControlRequest) -> ControlResponse {
        do {
            switch r.op {
            case .diskCreate: return try createDisk(r)
            case .diskList:
                var out = ControlResponse()
                out.disks = pool.disks().map(diskRecord)
                return out
            case .diskResize: return try resizeDisk(r)
            case .diskRollback: return try rollbackDisk(r)
            case .diskDelete: return try deleteDisk(r)
            case .snapshotCreate: return try createSnapshots(r)
            case .snapshotList: return listSnapshots(r)
            case .snapshotDelete:
                let id = try required(r.name, "snapshot id")
                guard let s = pool.snapshot(named: id) else { throw ControlFailure("no snapshot '\(id)'") }
                try deleteSnapshot(id: id, objectId: s.id, wait: releaseWait)
                var out = ControlResponse()
                out.message = "deleted snapshot \(id)"
                return out
            case .snapshotDiff: return try diff(r)
            case .poolStats: return PoolRecords.stats(pool)
            case .checkCopies:
                var out = ControlResponse()
                if r.repair == true {
                    let fix = pool.repairRedundantCopies()
                    out.repaired = fix.repaired
                    out.problems = fix.failures + fix.remaining
                } else {
                    out.problems = pool.redundantCopyProblems()
                }
                return out
            case .pin, .debugExpire:
                throw ControlFailure("\(r.op.rawValue) is handled by the control server")
            }
        } catch let e as ControlFailure {
            return .failure(e.description)
        } catch let e as StoreError {
            return .failure(e.description)
        } catch {
            return .failure("\(error)")
        }
    }

    func required<T>(_ value: T?, _ what: String) throws -> T {
        guard let value else { throw ControlFailure("missing \(what)") }
        return value
    }

    func validDiskName(_ name: String) throws {
        guard Names.isValid(name) else {
            throw ControlFailure("invalid disk name '\(name)': use [A-Za-z0-9][A-Za-z0-9._-]{0,63}")
        }
    }

    func existingDisk(_ name: String) throws -> DiskInfo {
        try validDiskName(name)
        guard let d = pool.disk(named: name) else { throw ControlFailure("no disk '\(name)'") }
        return d
    }

    func checkSize(_ size: UInt64) throws {
        guard size <= Pool.maxDiskSize else { throw ControlFailure("size \(size) is above the 1 PiB limit") }
    }

    static func busy(_ what: String) -> ControlFailure {
        ControlFailure("\(what) is busy: its image is open (EBUSY); close it (detach any loop device) and retry")
    }

    /// The pool's commit, with the message the CLI shows if the pool cannot persist.
    func commit() throws {
        do { try pool.sync() } catch { throw ControlFailure("cannot commit the pool: \(error)") }
    }

    private func createDisk(_ r: ControlRequest) throws -> ControlResponse {
        let name = try required(r.name, "disk name")
        try validDiskName(name)
        guard pool.disk(named: name) == nil else { throw ControlFailure("disk '\(name)' already exists") }
        var size = r.size ?? 0
        if let from = r.fromSnapshot {
            guard let s = pool.snapshot(named: from) else { throw ControlFailure("no snapshot '\(from)'") }
            if let want = r.size, want < s.size {
                throw ControlFailure("--size \(want) is smaller than snapshot \(from) (\(s.size) bytes); a clone can only be as large or larger")
            }
            size = max(size, s.size)
        }
        try checkSize(size)
        var d = try pool.createDisk(name: name, size: r.fromSnapshot == nil ? size : 0, fromSnapshot: r.fromSnapshot)
        if d.size < size {
            // A clone made larger than its snapshot: grow it; undo the clone if that fails.
            do { try pool.setDiskSize(id: d.id, size: size) } catch {
                try? pool.deleteDisk(name: name)
                throw error
            }
            d = pool.disk(id: d.id) ?? d
        }
        try commit()
        kernelCache?.invalidateEntry(parent: Inode.disks, name: name)   // a cached "no such file"
        var out = ControlResponse()
        out.disks = [diskRecord(d)]
        return out
    }

    private func resizeDisk(_ r: ControlRequest) throws -> ControlResponse {
        let d = try existingDisk(try required(r.name, "disk name"))
        let size = try required(r.size, "size")
        try checkSize(size)
        // Inside the write gate, so a capture sees the old size or the new; the store grows
        // in one step, so a concurrent write past the end cannot turn the grow into a shrink.
        var failure: Error?
        gates.gate(d.id).admit {
            do { try pool.growDisk(id: d.id, to: size, refusingShrink: true) } catch { failure = error }
        }
        if let failure { throw failure }
        try commit()
        kernelCache?.invalidate(inode: Inode.image(d.id))
        var out = ControlResponse()
        out.disks = [diskRecord(pool.disk(id: d.id) ?? d)]
        return out
    }

    private func deleteDisk(_ r: ControlRequest) throws -> ControlResponse {
        let d = try existingDisk(try required(r.name, "disk name"))
        var failure: Error?
        do {
            try opens.whenClosed(d.id, timeout: releaseWait) { () throws(FSError) in
                guard pool.disk(named: d.name)?.id == d.id else { failure = ControlFailure("no disk '\(d.name)'"); return }
                do { try pool.deleteDisk(name: d.name) } catch { failure = error }
            }
        } catch {
            throw Self.busy("disk '\(d.name)'")
        }
        if let failure { throw failure }
        gates.remove(d.id)
        try commit()
        kernelCache?.invalidateEntry(parent: Inode.disks, name: d.name)
        var out = ControlResponse()
        out.message = "deleted disk \(d.name)"
        return out
    }

    /// Deletes a snapshot once its image is closed (waiting up to `wait` seconds).
    /// Used by `snapshot delete` and by retention.
    public func deleteSnapshot(id: String, objectId: ObjectID, wait: TimeInterval) throws {
        var failure: Error?
        do {
            try opens.whenClosed(objectId, timeout: wait) { () throws(FSError) in
                guard pool.snapshot(named: id)?.id == objectId else { failure = ControlFailure("no snapshot '\(id)'"); return }
                do { try pool.deleteSnapshot(name: id) } catch { failure = error }
            }
        } catch {
            throw Self.busy("snapshot '\(id)'")
        }
        if let failure { throw failure }
        try commit()
        kernelCache?.invalidateEntry(parent: Inode.snapshots, name: id)
    }
}

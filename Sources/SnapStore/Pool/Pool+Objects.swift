import Foundation

/// Creating, cloning, deleting and rolling back disks and snapshots. Each is O(1) in
/// the size of the maps involved, except deletion, which visits what only it held.
extension Pool {
    private func newId() -> ObjectID {
        defer { nextObjectId += 1 }
        return nextObjectId
    }

    public func createDisk(name: String, size: UInt64 = 0, fromSnapshot: String? = nil) throws -> DiskInfo {
        guard Names.isValid(name) else { throw StoreError.invalidName("invalid disk name '\(name)': use [A-Za-z0-9][A-Za-z0-9._-]{0,63}") }
        guard size <= Self.maxDiskSize else { throw StoreError.tooLarge("disk size above the 1 PiB limit") }
        try ensureAcknowledging()
        journal.invalidate()   // before the change: no later record may be replayed without it
        return try lock.withLock {
            guard byName[name] == nil else { throw StoreError.exists("disk '\(name)' already exists") }
            var map = MapRoot()
            var diskSize = size
            var mapped: UInt64 = 0
            if let snapName = fromSnapshot {
                guard let sid = byName[snapName], let s = objects[sid], s.kind == .snapshot else {
                    throw StoreError.notFound("no snapshot '\(snapName)'")
                }
                map = s.map
                mapped = s.mappedChunks
                diskSize = s.size
                if map.ptr != 0 { metaRefs.increment(map.ptr) }
            }
            let o = PoolObject(id: newId(), kind: .disk, name: name, size: diskSize, map: map, mappedChunks: mapped, created: Date())
            objects[o.id] = o
            byName[name] = o.id
            dirtyObjects.insert(o.id)
            return diskInfo(o)
        }
    }

    public func deleteDisk(name: String) throws {
        try delete(name: name, kind: .disk)
    }

    public func deleteSnapshot(name: String) throws {
        try delete(name: name, kind: .snapshot)
    }

    /// Captures each requested disk at one instant: shares its map root (one reference
    /// count). The caller has stopped and drained writes to these disks; reads go on.
    public func createSnapshots(_ requests: [SnapshotRequest]) throws -> [SnapshotInfo] {
        for r in requests {
            guard Names.isValid(r.disk), Names.isValid(r.label) else {
                throw StoreError.invalidName("invalid snapshot id '\(r.disk)@\(r.label)': use DISK@LABEL with names [A-Za-z0-9][A-Za-z0-9._-]{0,63}")
            }
        }
        guard Set(requests.map(\.disk)).count == requests.count else {
            throw StoreError.invalidArgument("a disk is named twice in one snapshot group")
        }
        for r in requests {
            try SnapshotMetadata.validate(disk: r.disk, label: r.label, description: r.description,
                                          tags: r.tags, retentionDays: r.retentionDays)
        }
        try ensureAcknowledging()
        let disks = try lock.withLock {
            try requests.map { r -> PoolObject in
                guard let id = byName[r.disk], let d = objects[id], d.kind == .disk else { throw StoreError.notFound("no disk '\(r.disk)'") }
                return d
            }
        }
        // Shared: no write of these disks may be half done while their roots are shared.
        let ordered = disks.sorted { $0.id < $1.id }
        for d in ordered { d.io.readLock() }
        defer { for d in ordered { d.io.unlock() } }
        journal.invalidate()
        return try lock.withLock {
            for (r, d) in zip(requests, disks) {
                guard objects[d.id] === d else { throw StoreError.notFound("no disk '\(r.disk)'") }
                guard byName["\(r.disk)@\(r.label)"] == nil else { throw StoreError.exists("snapshot '\(r.disk)@\(r.label)' already exists") }
            }
            let now = Date()
            return zip(requests, disks).map { r, d in
                let s = PoolObject(id: newId(), kind: .snapshot, name: "\(r.disk)@\(r.label)", size: d.size,
                                   map: d.map, mappedChunks: d.mappedChunks, created: now)
                if d.map.ptr != 0 { metaRefs.increment(d.map.ptr) }
                s.sourceDisk = d.name
                s.sourceDiskId = d.id
                s.owner = d.owner.readOnly
                s.descriptionText = r.description
                s.tags = r.tags
                s.retentionDays = r.retentionDays
                s.freezeMicros = r.freezeMicros
                objects[s.id] = s
                byName[s.name] = s.id
                dirtyObjects.insert(s.id)
                return snapshotInfo(s)
            }
        }
    }

    /// chown/chmod of a disk's image; the caller commits. Snapshots keep what they took
    /// at capture (SPEC §6). Format 3 records are read by builds that would ignore these
    /// fields, so a format 3 pool keeps the defaults until `snapfs pool upgrade`.
    public func setOwnership(disk id: ObjectID, _ owner: Ownership) throws {
        guard canStoreOwnership else {
            throw StoreError.invalidArgument("pool format 3 cannot store owners and modes: run snapfs pool upgrade")
        }
        try ensureAcknowledging()
        journal.invalidate()
        try lock.withLock {
            guard let o = objects[id], o.kind == .disk else { throw StoreError.notFound("no such disk") }
            o.owner = owner
            dirtyObjects.insert(o.id)
        }
    }

    /// Whether owners and modes other than the defaults can be kept (format 4 and later;
    /// format 4 becomes 5 at its first commit).
    public var canStoreOwnership: Bool { formatVersion != 3 }

    public func setFreezeMicros(snapshot id: ObjectID, micros: UInt64) {
        journal.invalidate()
        lock.withLock {
            guard let s = objects[id], s.kind == .snapshot else { return }
            s.freezeMicros = micros
            dirtyObjects.insert(id)
        }
    }

    /// The disk takes the snapshot's bytes and size; its old map is released.
    public func rollbackDisk(name: String, toSnapshot snapName: String) throws {
        try ensureAcknowledging()
        guard let d = lock.withLock({ byName[name].flatMap { objects[$0] } }), d.kind == .disk else {
            throw StoreError.notFound("no disk '\(name)'")
        }
        d.io.writeLock()
        defer { d.io.unlock() }
        journal.invalidate()
        try lock.withLock {
            guard let sid = byName[snapName], let s = objects[sid], s.kind == .snapshot else {
                throw StoreError.notFound("no snapshot '\(snapName)'")
            }
            if s.map.ptr != 0 { metaRefs.increment(s.map.ptr) }
            let old = d.map
            d.map = s.map
            d.size = s.size
            d.mappedChunks = s.mappedChunks
            d.modified = Date()
            try maps.release(old)
            dirtyObjects.insert(d.id)
        }
    }
}

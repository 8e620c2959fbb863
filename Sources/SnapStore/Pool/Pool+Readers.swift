import Foundation

/// Readers of committed state (MapReader), and what keeps their blocks in place.
extension Pool {
    /// Nodes a reader caches: 4 KiB each, so a reader costs at most 4 MiB of memory.
    static let readerCacheNodes = 1024

    /// A reader of snapshot `id`'s map. While it lives the snapshot's blocks stay where they
    /// are: a deletion waits for it before releasing anything. The snapshot is committed
    /// first if its capture is not yet (its nodes must be in the files).
    public func openReader(snapshot id: ObjectID) throws -> MapReader {
        for attempt in 0..<2 {
            let held = try lock.withLock { () throws -> PoolObject? in
                guard let o = objects[id], o.kind == .snapshot else { throw StoreError.notFound("no snapshot with id \(id)") }
                guard o.recordBlock != 0, !dirtyObjects.contains(id), meta.isCommitted(o.map.ptr) else { return nil }
                o.holds += 1
                return o
            }
            if let o = held {
                return MapReader(objectId: id, name: o.name, size: o.size, chunkSize: chunkSize, root: o.map,
                                 metaFile: metaFile, dataFile: dataFile, cacheNodes: Self.readerCacheNodes,
                                 letGo: { [weak self] in self?.dropHold(id) })
            }
            if attempt == 0 { try sync() }
        }
        throw StoreError.io(errno: EIO, "snapshot \(id) is not committed after a commit")
    }

    /// A reader of disk `id` as of a commit made now. Its blocks are pinned against reuse
    /// until the reader goes (writes to the disk go on; they shadow, never overwrite).
    public func openReader(diskAtCommit id: ObjectID) throws -> MapReader {
        commitLock.lock()
        defer { commitLock.unlock() }
        try commitLocked()
        // No commit can run until we return: the object's record is the committed one.
        let (name, block, crc) = try lock.withLock { () throws -> (String, UInt64, UInt32) in
            guard let o = objects[id], o.kind == .disk else { throw StoreError.notFound("no disk with id \(id)") }
            reusePins += 1
            return (o.name, o.recordBlock, o.recordCRC)
        }
        do {
            let bytes = try meta.readBlock(block)
            guard crc32c(bytes) == crc else { throw StoreError.corrupt("record block \(block) of disk \(name): checksum mismatch") }
            let r = try ObjectRecord.decodeBlock(bytes, at: block)
            return MapReader(objectId: id, name: name, size: r.size, chunkSize: chunkSize,
                             root: MapRoot(ptr: r.root, crc: r.rootCRC, height: r.height),
                             metaFile: metaFile, dataFile: dataFile, cacheNodes: Self.readerCacheNodes,
                             letGo: { [weak self] in self?.unpinReuseLater() })
        } catch {
            lock.withLock { reusePins -= 1 }
            throw error
        }
    }

    /// A reader of disk or snapshot `id`, whichever it is.
    public func openReader(object id: ObjectID) throws -> MapReader {
        let kind = lock.withLock { objects[id]?.kind }
        switch kind {
        case .snapshot: return try openReader(snapshot: id)
        case .disk: return try openReader(diskAtCommit: id)
        case nil: throw StoreError.notFound("no such disk or snapshot")
        }
    }

    private func dropHold(_ id: ObjectID) {
        lock.withLock { if let o = objects[id] ?? releasing[id] { o.holds -= 1 } }
    }

    /// A reader's pin ends from its deinit, which may run on a thread holding `commitLock`
    /// (inside a commit); the unpin itself takes that lock, so it runs elsewhere.
    func unpinReuseLater() {
        DispatchQueue.global().async { [weak self] in self?.unpinReuse() }
    }
}

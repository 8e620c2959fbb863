import Foundation
import Glibc

/// Deleting a disk or snapshot without holding up I/O to the others (SPEC §3). The object
/// leaves the catalog at once (O(1)); its map is then released a piece at a time, each
/// piece one short hold of the lock with no device read in it (a subtree shared with
/// another map costs one count; a leaf its entries' counts), so writes to every other
/// disk go on between pieces. The record stays, marked deleting, until the map is empty:
/// a commit in between persists a map that is partly released but marked so, and the
/// next open finishes the release instead of showing it.
extension Pool {
    func delete(name: String, kind: PoolObject.Kind) throws {
        try ensureAcknowledging()
        guard let o = lock.withLock({ byName[name].flatMap { objects[$0] } }), o.kind == kind else {
            throw StoreError.notFound("no \(kind.rawValue) '\(name)'")
        }
        o.io.writeLock()   // waits for reads and writes in flight
        journal.invalidate()
        if lock.withLock({ superblock.formatVersion }) <= 3 {
            // Format 3 pools stay readable by builds that know no deleting records: the
            // map goes in one step, as those builds did it.
            defer { o.io.unlock() }
            return try lock.withLock {
                guard objects[o.id] === o else { throw StoreError.notFound("no \(kind.rawValue) '\(name)'") }
                try maps.release(o.map)
                o.map = MapRoot()
                _ = try objectTable.removeRange(&objectTree, first: o.id, last: o.id)
                objects[o.id] = nil
                byName[name] = nil
                dirtyObjects.remove(o.id)
            }
        }
        let taken = lock.withLock { () -> Bool in
            guard objects[o.id] === o else { return false }
            objects[o.id] = nil
            byName[name] = nil
            o.deleting = true
            releasing[o.id] = o
            dirtyObjects.insert(o.id)
            return true
        }
        o.io.unlock()
        guard taken else { throw StoreError.notFound("no \(kind.rawValue) '\(name)'") }
        try release(o)
    }

    /// Releases a deleted object's map, then its record. Readers that hold the object
    /// (MapReader) are waited for first: nothing they read may be freed under them.
    func release(_ o: PoolObject) throws {
        while lock.withLock({ o.holds }) > 0 { usleep(1000) }
        var pieces = 0
        while try withLockNoReads({ () throws -> Bool in
            dirtyObjects.insert(o.id)
            return try maps.releaseFirstPiece(&o.map)
        }) {
            pieces += 1
            releasePieceHook?(pieces)
        }
        try withLockNoReads {
            guard releasing[o.id] === o else { return }
            _ = try objectTable.removeRange(&objectTree, first: o.id, last: o.id)
            releasing[o.id] = nil
            dirtyObjects.remove(o.id)
        }
    }

    /// Finishes the deletions a crash interrupted (records marked deleting), at open.
    func resumeDeletions() throws {
        let pending = lock.withLock { Array(releasing.values) }
        guard !pending.isEmpty else { return }
        for o in pending { try release(o) }
        try commitNow()
    }

    /// Runs `body` under the lock with metadata reads refused: a node it needs that is not
    /// in memory is read (and verified) outside the lock, and `body` runs again. `body` must
    /// leave a valid state wherever a node read stops it (read before changing below).
    func withLockNoReads<T>(_ body: () throws -> T) throws -> T {
        while true {
            do {
                return try lock.withLock {
                    meta.refuseReads = true
                    defer { meta.refuseReads = false }
                    return try body()
                }
            } catch let u as MetaStore.Uncached {
                let n = try meta.readVerified(u.block, crc: u.crc)
                lock.withLock { meta.adopt(n) }
            }
        }
    }
}

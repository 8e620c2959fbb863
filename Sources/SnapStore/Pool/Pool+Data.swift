import Foundation

/// Hole punching, truncation and times of disks (reads: Pool+Read, writes: Pool+Write).
extension Pool {
    func lookupDisk(_ id: ObjectID) throws -> PoolObject {
        try lock.withLock {
            guard let o = objects[id] else { throw StoreError.notFound("no disk with id \(id)") }
            guard o.kind == .disk else { throw StoreError.readOnly("\(o.name) is a snapshot") }
            return o
        }
    }

    public func punchHole(disk id: ObjectID, offset: UInt64, length: UInt64) throws {
        try ensureAcknowledging()
        let o = try lookupDisk(id)
        guard length > 0 else { return }
        o.io.writeLock()
        defer { o.io.unlock() }
        txnLock.readLock()
        defer { txnLock.unlock() }
        let size = lock.withLock { o.size }
        guard offset < size else { return }
        let end = min(size, offset.addingReportingOverflow(length).overflow ? size : offset + length)
        try zeroRange(o, from: offset, to: end)
        journal.append(punch: id, offset: offset, length: end - offset)
    }

    /// Makes [from, to) read as zeros: whole chunks are unmapped, partial ones zero-filled.
    /// The caller holds o.io (write) and txnLock (read).
    func zeroRange(_ o: PoolObject, from: UInt64, to: UInt64) throws {
        guard from < to else { return }
        let cs = UInt64(chunkSize)
        let firstWhole = (from + cs - 1) / cs
        let endWhole = to / cs     // exclusive
        // Head and tail each lie within one chunk; whole chunks between them are unmapped.
        let headEnd = min(to, firstWhole * cs)
        if from < headEnd { try zeroPartial(o, from: from, to: headEnd) }
        if firstWhole < endWhole {
            try lock.withLock {
                dirtyObjects.insert(o.id)   // before the map changes, as in planWrites
                let removed = try maps.removeRange(&o.map, first: firstWhole, last: endWhole - 1)
                o.mappedChunks -= removed
                o.modified = Date()
            }
        }
        let tailStart = max(endWhole * cs, headEnd)
        if tailStart < to { try zeroPartial(o, from: tailStart, to: to) }
    }

    /// Zeroes part of one chunk, only if that chunk is mapped (a hole already reads zero).
    /// [from, to) must lie within one chunk.
    private func zeroPartial(_ o: PoolObject, from: UInt64, to: UInt64) throws {
        let mapped = try lock.withLock { try maps.lookup(o.map, from / UInt64(chunkSize)) } != nil
        guard mapped else { return }
        let zeros = [UInt8](repeating: 0, count: Int(to - from))
        let size = lock.withLock { o.size }
        try zeros.withUnsafeBytes { try writeLocked(o, offset: from, data: $0) }
        lock.withLock { o.size = size }   // zeroing never extends the disk
    }

    /// truncate(2): grow thinly, or shrink and give back the chunks past the new end.
    public func setDiskSize(id: ObjectID, size: UInt64) throws {
        try resizing(id, to: size) { o in try setSizeLocked(o, size) }
    }

    /// Runs `body` on disk `id` for a new size `size`, with writes to it held off (its `io`
    /// lock) and commits (`txnLock`): the preamble of every size change.
    private func resizing<T>(_ id: ObjectID, to size: UInt64, _ body: (PoolObject) throws -> T) throws -> T {
        try ensureAcknowledging()
        let o = try lookupDisk(id)
        guard size <= Self.maxDiskSize else { throw StoreError.tooLarge("disk size above the 1 PiB limit") }
        o.io.writeLock()
        defer { o.io.unlock() }
        txnLock.readLock()
        defer { txnLock.unlock() }
        return try body(o)
    }

    private func setSizeLocked(_ o: PoolObject, _ size: UInt64) throws {
        let old = lock.withLock { o.size }
        if size < old {
            let cs = UInt64(chunkSize)
            // Zero the tail of the last kept chunk so growing again shows zeros there.
            try zeroRange(o, from: size, to: min(old, (size + cs - 1) / cs * cs))
            try lock.withLock {
                dirtyObjects.insert(o.id)   // before the map changes, as in planWrites
                let removed = try maps.removeRange(&o.map, first: (size + cs - 1) / cs, last: UInt64.max)
                o.mappedChunks -= removed
            }
        }
        lock.withLock {
            o.size = size
            o.modified = Date()
            dirtyObjects.insert(o.id)
        }
        journal.append(size: o.id, size: size)
    }

    /// Grows the disk to at least `size`, in one step under the disk's `io` lock: a write
    /// past the end between reading the size and setting it cannot be cut off (growth is
    /// an atomic max). Smaller sizes leave the disk as it is, or are refused with
    /// `refusingShrink` (`disk resize`). Returns the size the disk has after.
    @discardableResult
    public func growDisk(id: ObjectID, to size: UInt64, refusingShrink: Bool = false) throws -> UInt64 {
        try resizing(id, to: size) { o in try growLocked(o, size, refusingShrink: refusingShrink) }
    }

    private func growLocked(_ o: PoolObject, _ size: UInt64, refusingShrink: Bool) throws -> UInt64 {
        let grown = try lock.withLock { () throws -> Bool in
            if size <= o.size {
                if refusingShrink && size < o.size {
                    throw StoreError.invalidArgument("cannot shrink disk '\(o.name)' from \(o.size) to \(size) bytes: disks only grow (shrinking would lose data)")
                }
                return false
            }
            o.size = size
            o.modified = Date()
            dirtyObjects.insert(o.id)
            return true
        }
        if grown { journal.append(size: o.id, size: size) }
        return lock.withLock { o.size }
    }

    public func setDiskTimes(id: ObjectID, modification: Date) {
        journal.invalidate()
        lock.withLock {
            guard let o = objects[id], o.kind == .disk else { return }
            o.modified = modification
            dirtyObjects.insert(o.id)
        }
    }
}

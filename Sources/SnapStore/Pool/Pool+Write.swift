import Foundation

/// Writing the bytes of disks. Committed chunks are never rewritten: a write to one goes
/// to a new chunk (copy-on-write). A request is served a leaf at a time, in three steps:
/// one lock round plans every chunk, the data I/O runs unlocked (one `pwrite` per run of
/// adjacent whole chunks), and one lock round points the map at the new bytes.
extension Pool {
    /// One chunk's share of a write.
    struct ChunkWrite {
        var index: UInt64
        var inChunk: Int
        var length: Int
        /// Offset of these bytes in the caller's buffer.
        var source: Int
        var old: MapTree.Entry? = nil
        var target: UInt64 = 0
        /// The chunk was born in the open transaction and only this disk holds it.
        var inPlace = false
        var crc: UInt32 = 0
    }

    public func write(disk id: ObjectID, offset: UInt64, data: UnsafeRawBufferPointer) throws {
        try ensureAcknowledging()
        let o = try lookupDisk(id)
        guard data.count > 0 else { return }
        let (end, overflow) = offset.addingReportingOverflow(UInt64(data.count))
        guard !overflow, end <= Self.maxDiskSize else { throw StoreError.tooLarge("write past the 1 PiB disk limit") }
        o.io.writeLock()
        defer { o.io.unlock() }
        txnLock.readLock()
        defer { txnLock.unlock() }
        try writeLocked(o, offset: offset, data: data)
        journal.append(write: id, offset: offset, bytes: data)
    }

    /// The write path; the caller holds o.io (write) and txnLock (read).
    func writeLocked(_ o: PoolObject, offset: UInt64, data: UnsafeRawBufferPointer) throws {
        let cs = UInt64(chunkSize)
        let lastIndex = (offset + UInt64(data.count) - 1) / cs
        var done = 0
        var buf: UnsafeMutableRawBufferPointer?
        defer { if let buf { chunkBuffers.give(buf) } }
        while done < data.count {
            let first = (offset + UInt64(done)) / cs
            var pieces: [ChunkWrite] = []
            for index in first...min(lastIndex, MapTree.lastIndexOfLeaf(first)) {
                let inChunk = Int((offset + UInt64(done)) % cs)
                let n = min(chunkSize - inChunk, data.count - done)
                pieces.append(ChunkWrite(index: index, inChunk: inChunk, length: n, source: done))
                done += n
            }
            let leaf = try planWrites(o, &pieces)
            var completed = 0
            do {
                try writeChunks(o, &pieces, data: data, completed: &completed, buffer: &buf)
            } catch {
                mapWrites(o, leaf, pieces, completed: completed, offset: offset)
                throw error
            }
            mapWrites(o, leaf, pieces, completed: completed, offset: offset)
        }
    }

    /// Step 1, under the lock: makes the path to the leaf exclusive and picks where each
    /// chunk's bytes go (in place, or new chunks allocated as one ascending run). Asks
    /// again, once the host's free space is read outside the lock, if that was stale.
    private func planWrites(_ o: PoolObject, _ pieces: inout [ChunkWrite]) throws -> Node {
        while true {
            do { return try planWritesLocked(o, &pieces) } catch is HostFreeStale { refreshHostFree() }
        }
    }

    private func planWritesLocked(_ o: PoolObject, _ pieces: inout [ChunkWrite]) throws -> Node {
        try lock.withLock {
            guard objects[o.id] === o else { throw StoreError.notFound("disk \(o.name) was deleted") }
            let leaf = try maps.leafForUpdate(&o.map, pieces[0].index)
            // The path to the leaf may have been copied (a new root, counts moved): the
            // next commit must write the object's record even if this write then fails
            // (ENOSPC below), or the record keeps the old root with a count it lost.
            dirtyObjects.insert(o.id)
            var fresh = 0
            for k in pieces.indices {
                pieces[k].old = nil
                pieces[k].inPlace = false
                let s = MapTree.slot(pieces[k].index, level: 1)
                if leaf.ptr[s] != 0 { pieces[k].old = MapTree.Entry(ptr: leaf.ptr[s], crc: leaf.crc[s]) }
                if let old = pieces[k].old, dataRefs.isBornInOpenTransaction(old.ptr), dataRefs.value(old.ptr) == 1 {
                    pieces[k].target = old.ptr
                    pieces[k].inPlace = true
                } else {
                    fresh += 1
                }
            }
            guard fresh > 0 else { return leaf }
            try reserveSpace(forChunks: fresh)
            var targets = dataRefs.allocate(count: fresh).makeIterator()
            for k in pieces.indices where !pieces[k].inPlace { pieces[k].target = targets.next()! }
            preallocateAheadIfNeeded()
            return leaf
        }
    }

    /// Step 2, unlocked: the data I/O. `completed` counts the pieces whose bytes are
    /// written and checksummed.
    private func writeChunks(_ o: PoolObject, _ pieces: inout [ChunkWrite], data: UnsafeRawBufferPointer,
                             completed: inout Int, buffer: inout UnsafeMutableRawBufferPointer?) throws {
        let cs = UInt64(chunkSize)
        var k = 0
        while k < pieces.count {
            let w = pieces[k]
            if w.length == chunkSize {
                var run = 1
                while k + run < pieces.count, pieces[k + run].length == chunkSize,
                      pieces[k + run].target == w.target + UInt64(run) { run += 1 }
                try writeData(UnsafeRawBufferPointer(rebasing: data[w.source..<(w.source + run * chunkSize)]), at: w.target * cs)
                for j in k..<(k + run) {
                    pieces[j].crc = crc32c(UnsafeRawBufferPointer(rebasing: data[pieces[j].source..<(pieces[j].source + chunkSize)]))
                }
                k += run
                completed = k
                continue
            }
            // Part of a chunk: the chunk is rewritten whole, since only it has a checksum.
            if buffer == nil { buffer = chunkBuffers.take() }
            let chunk = buffer!
            let piece = UnsafeRawBufferPointer(rebasing: data[w.source..<(w.source + w.length)])
            if w.inPlace {
                try writeData(piece, at: w.target * cs + UInt64(w.inChunk))
                let got = try dataFile.read(into: chunk, at: w.target * cs)
                if got < chunkSize { UnsafeMutableRawBufferPointer(rebasing: chunk[got...]).initializeMemory(as: UInt8.self, repeating: 0) }
            } else {
                if let old = w.old {
                    try readChunks([old], into: chunk, object: o, firstIndex: w.index)
                } else {
                    chunk.initializeMemory(as: UInt8.self, repeating: 0)
                }
                UnsafeMutableRawBufferPointer(rebasing: chunk[w.inChunk..<(w.inChunk + w.length)]).copyMemory(from: piece)
                try writeData(UnsafeRawBufferPointer(chunk), at: w.target * cs)
            }
            pieces[k].crc = crc32c(UnsafeRawBufferPointer(chunk))
            k += 1
            completed = k
        }
    }

    /// A chunk write to the data file. A full host is ENOSPC and the pool goes on (the
    /// bytes went to chunks no map points to yet); any other failure stops the pool.
    private func writeData(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        do { try dataFile.write(bytes, at: offset) } catch {
            if case StoreError.io(let e, let what) = error, e == ENOSPC || e == EDQUOT {
                throw StoreError.noSpace("pool \(directory) is full (\(what))")
            }
            throw failStop("writing the data segments", error)
        }
    }

    /// Step 3, under the lock: points the map at the written chunks and gives back the
    /// chunks allocated for pieces that were not written. The leaf is still ours: o.io
    /// keeps other changes to this disk out, txnLock keeps commits out.
    private func mapWrites(_ o: PoolObject, _ leaf: Node, _ pieces: [ChunkWrite], completed: Int, offset: UInt64) {
        lock.withLock {
            for (k, w) in pieces.enumerated() {
                guard k < completed else {
                    if !w.inPlace { dataRefs.decrement(w.target) }
                    continue
                }
                let s = MapTree.slot(w.index, level: 1)
                leaf.ptr[s] = w.target
                leaf.crc[s] = w.crc
                if !w.inPlace {
                    if let old = w.old {
                        if dataRefs.decrement(old.ptr) > 0, coldChunks.count < Self.maxColdChunks { coldChunks.append(old.ptr) }
                    } else {
                        o.mappedChunks += 1
                    }
                }
            }
            guard completed > 0 else { return }
            let last = pieces[completed - 1]
            let end = offset + UInt64(last.source + last.length)
            if end > o.size { o.size = end }
            // Already in dirtyObjects: planWrites put it there, and txnLock has kept the
            // commit that would clear it out since.
            o.modified = Date()
        }
    }
}

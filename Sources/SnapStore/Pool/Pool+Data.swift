import Foundation

/// Reading and writing the bytes of disks and snapshots.
extension Pool {
    private func lookupDisk(_ id: ObjectID) throws -> PoolObject {
        try lock.withLock {
            guard let o = objects[id] else { throw StoreError.notFound("no disk with id \(id)") }
            guard o.kind == .disk else { throw StoreError.readOnly("\(o.name) is a snapshot") }
            return o
        }
    }

    public func read(object id: ObjectID, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let o = lock.withLock({ objects[id] }) else { throw StoreError.notFound("no object with id \(id)") }
        o.io.readLock()
        defer { o.io.unlock() }
        let size = lock.withLock { o.size }
        guard offset < size, buffer.count > 0 else { return 0 }
        let total = Int(min(UInt64(buffer.count), size - offset))
        let cs = UInt64(chunkSize)
        var scratch: UnsafeMutableRawBufferPointer?
        defer { if let scratch { chunkBuffers.give(scratch) } }
        var done = 0
        while done < total {
            let pos = offset + UInt64(done)
            let index = pos / cs
            let inChunk = Int(pos % cs)
            let n = min(chunkSize - inChunk, total - done)
            let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + n)])
            let entry = try lock.withLock { try maps.lookup(o.map, index) }
            if let e = entry {
                if n == chunkSize {
                    try readChunk(e, into: dst, object: o, index: index)
                } else {
                    if scratch == nil { scratch = chunkBuffers.take() }
                    try readChunk(e, into: scratch!, object: o, index: index)
                    dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: scratch![inChunk..<(inChunk + n)]))
                }
            } else {
                dst.initializeMemory(as: UInt8.self, repeating: 0)
            }
            done += n
        }
        return total
    }

    /// Reads one whole chunk and verifies it: wrong bytes are never returned.
    func readChunk(_ e: MapTree.Entry, into dst: UnsafeMutableRawBufferPointer, object o: PoolObject, index: UInt64) throws {
        let got = try dataFile.read(into: dst, at: e.ptr * UInt64(chunkSize))
        if got < chunkSize {
            UnsafeMutableRawBufferPointer(rebasing: dst[got...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
        let actual = crc32c(UnsafeRawBufferPointer(dst))
        if actual != e.crc {
            let msg = "checksum mismatch in \(o.name) at offset \(index * UInt64(chunkSize)) (chunk \(e.ptr))"
            FileHandle.standardError.write("snapfs: \(msg)\n".data(using: .utf8)!)
            throw StoreError.corrupt(msg)
        }
    }

    public func write(disk id: ObjectID, offset: UInt64, data: UnsafeRawBufferPointer) throws {
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
        var done = 0
        var buf: UnsafeMutableRawBufferPointer?
        defer { if let buf { chunkBuffers.give(buf) } }
        while done < data.count {
            let pos = offset + UInt64(done)
            let index = pos / cs
            let inChunk = Int(pos % cs)
            let n = min(chunkSize - inChunk, data.count - done)
            let piece = UnsafeRawBufferPointer(rebasing: data[done..<(done + n)])

            // 1. Under the lock: make the path exclusive, pick where the bytes go.
            let (leaf, old, target, inPlace) = try lock.withLock { () throws -> (Node, MapTree.Entry?, UInt64, Bool) in
                guard objects[o.id] === o else { throw StoreError.notFound("disk \(o.name) was deleted") }
                let leaf = try maps.leafForUpdate(&o.map, index)
                let s = MapTree.slot(index, level: 1)
                let old = leaf.ptr[s] == 0 ? nil : MapTree.Entry(ptr: leaf.ptr[s], crc: leaf.crc[s])
                if let old, dataRefs.isBornInOpenTransaction(old.ptr), dataRefs.value(old.ptr) == 1 {
                    return (leaf, old, old.ptr, true)
                }
                try reserveSpaceForChunk()
                dirtyObjects.insert(o.id)
                return (leaf, old, dataRefs.allocate(), false)
            }

            // 2. Without the lock: the data I/O. Chunks are never rewritten once committed.
            if buf == nil { buf = chunkBuffers.take() }
            let chunk = buf!
            let crc: UInt32
            do {
                if inPlace {
                    try dataFile.write(piece, at: target * cs + UInt64(inChunk))
                    if n == chunkSize {
                        crc = crc32c(piece)
                    } else {
                        let got = try dataFile.read(into: chunk, at: target * cs)
                        if got < chunkSize { UnsafeMutableRawBufferPointer(rebasing: chunk[got...]).initializeMemory(as: UInt8.self, repeating: 0) }
                        crc = crc32c(UnsafeRawBufferPointer(chunk))
                    }
                } else {
                    if n < chunkSize {
                        if let old { try readChunk(old, into: chunk, object: o, index: index) } else {
                            chunk.initializeMemory(as: UInt8.self, repeating: 0)
                        }
                        UnsafeMutableRawBufferPointer(rebasing: chunk[inChunk..<(inChunk + n)]).copyMemory(from: piece)
                        try dataFile.write(UnsafeRawBufferPointer(chunk), at: target * cs)
                        crc = crc32c(UnsafeRawBufferPointer(chunk))
                    } else {
                        try dataFile.write(piece, at: target * cs)
                        crc = crc32c(piece)
                    }
                }
            } catch {
                if !inPlace { lock.withLock { _ = dataRefs.decrement(target) } }
                if case StoreError.io(let e, let what) = error, e == ENOSPC || e == EDQUOT {
                    throw StoreError.noSpace("pool \(directory) is full (\(what))")
                }
                throw error
            }

            // 3. Under the lock: point the map at the new bytes. The leaf is still ours:
            // o.io keeps other changes to this disk out, txnLock keeps commits out.
            lock.withLock {
                let s = MapTree.slot(index, level: 1)
                leaf.ptr[s] = target
                leaf.crc[s] = crc
                bornCRC[target] = crc
                if !inPlace {
                    if let old { dataRefs.decrement(old.ptr) } else { o.mappedChunks += 1 }
                }
                if pos + UInt64(n) > o.size { o.size = pos + UInt64(n) }
                o.modified = Date()
                dirtyObjects.insert(o.id)
            }
            done += n
        }
    }

    public func punchHole(disk id: ObjectID, offset: UInt64, length: UInt64) throws {
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
                let removed = try maps.removeRange(&o.map, first: firstWhole, last: endWhole - 1)
                o.mappedChunks -= removed
                o.modified = Date()
                dirtyObjects.insert(o.id)
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
        let o = try lookupDisk(id)
        guard size <= Self.maxDiskSize else { throw StoreError.tooLarge("disk size above the 1 PiB limit") }
        o.io.writeLock()
        defer { o.io.unlock() }
        txnLock.readLock()
        defer { txnLock.unlock() }
        let old = lock.withLock { o.size }
        if size < old {
            let cs = UInt64(chunkSize)
            // Zero the tail of the last kept chunk so growing again shows zeros there.
            try zeroRange(o, from: size, to: min(old, (size + cs - 1) / cs * cs))
            try lock.withLock {
                let removed = try maps.removeRange(&o.map, first: (size + cs - 1) / cs, last: UInt64.max)
                o.mappedChunks -= removed
            }
        }
        lock.withLock {
            o.size = size
            o.modified = Date()
            dirtyObjects.insert(o.id)
        }
        journal.append(size: id, size: size)
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

import Foundation

/// Reading the bytes of disks and snapshots. A request is served a leaf at a time: one
/// map walk per leaf, one `pread` per run of adjacent whole chunks, a checksum per chunk,
/// so small chunks cost no more system calls than large ones.
///
/// The runs of a leaf that lie apart in the data file (a disk rewritten at random, a
/// snapshot of one) are first read only from the host's page cache; the ones it lacks
/// are all asked of the device at once before any is waited for, so a cold read of
/// scattered chunks keeps the device busy with many reads instead of one at a time.
extension Pool {
    /// Whole chunks adjacent in the data file, and where their bytes go in the request.
    private struct Run {
        var entries: [MapTree.Entry]
        var destination: Range<Int>
        var firstIndex: UInt64
    }

    public func read(object id: ObjectID, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let o = lock.withLock({ objects[id] }) else { throw StoreError.notFound("no object with id \(id)") }
        o.io.readLock()
        defer { o.io.unlock() }
        let size = lock.withLock { o.size }
        guard offset < size, buffer.count > 0 else { return 0 }
        let total = Int(min(UInt64(buffer.count), size - offset))
        let cs = UInt64(chunkSize)
        let lastIndex = (offset + UInt64(total) - 1) / cs
        var scratch: UnsafeMutableRawBufferPointer?
        defer { if let scratch { chunkBuffers.give(scratch) } }
        var done = 0
        while done < total {
            let first = (offset + UInt64(done)) / cs
            let count = Int(min(lastIndex, MapTree.lastIndexOfLeaf(first)) - first + 1)
            let entries = try lock.withLock { try maps.lookupLeafRange(o.map, first: first, count: count) }
            var runs: [Run] = []
            var k = 0
            while k < count {
                let inChunk = Int((offset + UInt64(done)) % cs)
                let n = min(chunkSize - inChunk, total - done)
                let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + n)])
                guard let e = entries[k] else {
                    dst.initializeMemory(as: UInt8.self, repeating: 0)
                    done += n; k += 1
                    continue
                }
                if n < chunkSize {
                    // Part of a chunk: the whole chunk is read, because only it has a checksum.
                    if scratch == nil { scratch = chunkBuffers.take() }
                    try readChunks([e], into: scratch!, object: o, firstIndex: first + UInt64(k))
                    dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: scratch![inChunk..<(inChunk + n)]))
                    done += n; k += 1
                    continue
                }
                var run = [e]
                while k + run.count < count, total - done >= (run.count + 1) * chunkSize,
                      let next = entries[k + run.count], next.ptr == e.ptr + UInt64(run.count) {
                    run.append(next)
                }
                let bytes = run.count * chunkSize
                runs.append(Run(entries: run, destination: done..<(done + bytes), firstIndex: first + UInt64(k)))
                done += bytes; k += run.count
            }
            try readRuns(runs, into: buffer, object: o)
        }
        return total
    }

    /// One run is read as it is. Several: those the page cache holds are taken from it, the
    /// rest prefetched together, then read (each waits only for its own bytes).
    private func readRuns(_ runs: [Run], into buffer: UnsafeMutableRawBufferPointer, object o: PoolObject) throws {
        let cs = UInt64(chunkSize)
        func destination(_ r: Run) -> UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(rebasing: buffer[r.destination])
        }
        guard runs.count > 1 else {
            if let r = runs.first { try readChunks(r.entries, into: destination(r), object: o, firstIndex: r.firstIndex) }
            return
        }
        var missing: [Run] = []
        for r in runs {
            if dataFile.readIfCached(into: destination(r), at: r.entries[0].ptr * cs) {
                try verifyChunks(r.entries, in: destination(r), object: o, firstIndex: r.firstIndex)
            } else {
                missing.append(r)
            }
        }
        if missing.count > 1 {
            for r in missing { dataFile.prefetch(at: r.entries[0].ptr * cs, length: UInt64(r.destination.count)) }
        }
        for r in missing { try readChunks(r.entries, into: destination(r), object: o, firstIndex: r.firstIndex) }
    }

    /// Reads chunks stored next to each other (entries[i].ptr == entries[0].ptr + i) with
    /// one `pread` and verifies each against its checksum: wrong bytes are never returned.
    func readChunks(_ entries: [MapTree.Entry], into dst: UnsafeMutableRawBufferPointer, object o: PoolObject, firstIndex: UInt64) throws {
        let bytes = entries.count * chunkSize
        let got = try dataFile.read(into: UnsafeMutableRawBufferPointer(rebasing: dst[0..<bytes]), at: entries[0].ptr * UInt64(chunkSize))
        if got < bytes {
            UnsafeMutableRawBufferPointer(rebasing: dst[got..<bytes]).initializeMemory(as: UInt8.self, repeating: 0)
        }
        try verifyChunks(entries, in: dst, object: o, firstIndex: firstIndex)
    }

    /// Checks each chunk read into `dst` against its checksum: wrong bytes are never returned.
    private func verifyChunks(_ entries: [MapTree.Entry], in dst: UnsafeMutableRawBufferPointer, object o: PoolObject, firstIndex: UInt64) throws {
        for (k, e) in entries.enumerated() {
            let actual = crc32c(UnsafeRawBufferPointer(rebasing: dst[(k * chunkSize)..<((k + 1) * chunkSize)]))
            if actual != e.crc {
                let msg = "checksum mismatch in \(o.name) at offset \((firstIndex + UInt64(k)) * UInt64(chunkSize)) (chunk \(e.ptr))"
                FileHandle.standardError.write("snapfs: \(msg)\n".data(using: .utf8)!)
                throw StoreError.corrupt(msg)
            }
        }
    }
}

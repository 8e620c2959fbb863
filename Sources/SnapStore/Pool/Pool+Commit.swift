import Foundation

/// Everything one commit must write before its superblock.
struct CommitBatch {
    /// Map nodes of the closed transaction, checksummed; encoded only when written, outside
    /// every lock (nothing changes a closed transaction's node: writers shadow it).
    var nodes: [Node] = []
    var records: [UInt64: [UInt8]] = [:]        // metadata block -> record bytes
    var metaPages: [Int: RefcountTable.PageWrite] = [:]
    var dataPages: [Int: RefcountTable.PageWrite] = [:]
    var metaFreed: [UInt64] = []
    var dataFreed: [UInt64] = []
    /// Chunks written in the transaction and still mapped, with their checksums (logged).
    var bornData: [(chunk: UInt64, crc: UInt32)] = []
    var superblock: Superblock
}

/// The commit protocol: close the open transaction under the lock (O(changes), no I/O),
/// then write every node, record and refcount page to places the previous commit does
/// not use, the commit log (CommitLog) and the superblock slot of this generation, and
/// flush all pool files together. Recovery verifies the newest commit against its log.
/// Only after the flush are blocks freed by the transaction handed out again. A commit that
/// fails stops the pool (Pool+FailStop): it is never retried as if its writes had landed.
extension Pool {
    /// Everything done before the call is durable when it returns (group commit).
    public func sync() throws {
        guard !readOnly else { return }
        try ensureAcknowledging()
        let wanted = lock.withLock { meta.txn - 1 + (hasChanges ? 1 : 0) }
        commitLock.lock()
        defer { commitLock.unlock() }
        if lock.withLock({ lastCommitted >= wanted }) { return }
        try commitLocked()
    }

    /// Commits now, even with nothing changed (then only a new superblock is written).
    func commitNow() throws {
        commitLock.lock()
        defer { commitLock.unlock() }
        try commitLocked()
    }

    /// The caller holds `commitLock`.
    func commitLocked() throws {
        try ensureAcknowledging()
        let batch: CommitBatch
        do { batch = try closeTransaction() } catch {
            throw failStop("closing transaction \(lock.withLock { metaRefs.txn })", error)
        }
        do {
            try writeBatch(batch)
        } catch {
            throw failStop("commit of generation \(batch.superblock.generation)", error)
        }
        // Durable: freed blocks may now be reused, unless a checker is reading an older
        // commit from the files (then they wait until it is done). They are sorted here,
        // outside the lock: a deletion frees hundreds of thousands at once.
        var metaFreed = batch.metaFreed.sorted(), dataFreed = batch.dataFreed.sorted()
        lock.withLock {
            meta.committed()
            if reusePins > 0 {
                deferredMetaFree += metaFreed
                deferredDataFree += dataFreed
                metaFreed = []
                dataFreed = []
            }
            metaRefs.committed(Array(batch.metaPages.values), ascending: metaFreed)
            dataRefs.committed(Array(batch.dataPages.values), ascending: dataFreed,
                               recycle: true, now: DispatchTime.now().uptimeNanoseconds)
            superblock = batch.superblock
            lastCommitted = batch.superblock.generation
        }
    }

    /// Gives freed chunks' space back to the host; returns the number of `fallocate` calls.
    /// One call per run of adjacent chunks: each call takes the data file's inode
    /// lock, which also holds off writes, so small chunks must not pay one call apiece.
    @discardableResult
    private func punch(_ chunks: [UInt64]) -> Int {
        let cs = UInt64(chunkSize)
        return forEachRun(chunks.sorted()) { try? dataFile.punchHole(at: $0 * cs, length: $1 * cs) }.runs
    }

    /// Calls `body(first, count)` for each run of adjacent entries of `sorted`, at most
    /// `maxRuns` times; returns how many entries those runs covered, and the runs.
    private func forEachRun(_ sorted: [UInt64], maxRuns: Int = .max, _ body: (UInt64, UInt64) -> Void) -> (covered: Int, runs: Int) {
        var k = 0, runs = 0
        while k < sorted.count, runs < maxRuns {
            var n: UInt64 = 1
            while k + Int(n) < sorted.count, sorted[k + Int(n)] == sorted[k] + n { n += 1 }
            body(sorted[k], n)
            k += Int(n)
            runs += 1
        }
        return (k, runs)
    }

    /// Drops the cached pages of old chunk versions (moved away from by writes, still held
    /// by snapshots or clones: rarely read again, and clean since their commit), in runs,
    /// at most `maxCalls` calls. Else every rewrite under a snapshot grows the host's page
    /// cache by its size, into memory that on a VM may first have to be backed by the
    /// hypervisor (350 MiB/s here past ~11 GiB: BENCHMARKS.md, session 4). Reads of those
    /// versions still work; they come from the device.
    func dropColdChunkCache(maxCalls: Int = .max) {
        let cold: [UInt64] = lock.withLock {
            defer { coldChunks = [] }
            return coldChunks
        }
        guard !cold.isEmpty else { return }
        let cs = UInt64(chunkSize)
        let sorted = cold.sorted()
        let done = forEachRun(sorted, maxRuns: maxCalls) { dataFile.dropCache(at: $0 * cs, length: $1 * cs) }.covered
        if done < sorted.count { lock.withLock { coldChunks.append(contentsOf: sorted[done...]) } }
    }

    /// While pinned, no block of the last commit is reused, so another process may read
    /// that commit from the files (`snapfs check` on a mounted pool).
    public func pinReuse() {
        lock.withLock { reusePins += 1 }
    }

    public func unpinReuse() {
        commitLock.lock()
        defer { commitLock.unlock() }
        let (meta, data) = lock.withLock { () -> ([UInt64], [UInt64]) in
            reusePins -= 1
            guard reusePins == 0 else { return ([], []) }
            defer { deferredMetaFree = []; deferredDataFree = [] }
            return (deferredMetaFree, deferredDataFree)
        }
        let (metaSorted, dataSorted) = (meta.sorted(), data.sorted())   // outside the lock
        lock.withLock {
            metaRefs.committed([], ascending: metaSorted)
            dataRefs.committed([], ascending: dataSorted, recycle: true, now: DispatchTime.now().uptimeNanoseconds)
        }
    }

    /// Freed chunks stay allocated on the host for cheap reuse (a write into a hole waits
    /// for the host's block allocation: BENCHMARKS.md). Those unused after `punchDelay`
    /// are punched, except a reserve that with the allocated tail stays within the
    /// allocation margin (`keepReserve`; none at close). `df` counts both as available.
    /// At most `maxCalls` `fallocate` calls for those (the committer's budget per tick).
    func punchIdleChunks(olderThan delay: TimeInterval = Pool.punchDelay, keepReserve: Bool = true, maxCalls: Int = .max) {
        // Free at open, maybe allocated: punched before any reuse, all at once (once after
        // a crash), since until then neither reuse nor the space accounting can count them.
        var unbounded = Int.max
        punchBatches(calls: &unbounded) { _ in dataRefs.takeUnsure(max: 4096) }
        var calls = maxCalls
        let now = DispatchTime.now().uptimeNanoseconds
        let cutoff = now > UInt64(delay * 1e9) ? now - UInt64(delay * 1e9) : 0
        punchBatches(calls: &calls) {
            let keep = keepReserve ? Int(idleReserveBytes / UInt64(chunkSize)) : 0
            return dataRefs.takeRecycled(freedBefore: cutoff, max: 4096, keeping: keep, maxRuns: $0)
        }
    }

    /// Punches what `take` (called under the lock with the calls left) hands out, until it
    /// hands out nothing or the calls are spent; the punched chunks become plain free ones.
    private func punchBatches(calls: inout Int, _ take: (Int) -> [UInt64]) {
        while calls > 0 {
            let left = calls
            let batch = lock.withLock { take(left) }
            if batch.isEmpty { return }
            calls -= punch(batch)
            lock.withLock { dataRefs.returnPunched(batch) }
        }
    }

    private func closeTransaction() throws -> CommitBatch {
        txnLock.writeLock()    // no write is between its phases now
        defer { txnLock.unlock() }
        return try lock.withLock {
            var encoded: [UInt64: UInt32] = [:]
            var batch = CommitBatch(superblock: superblock)
            // 1. Checksums of changed map nodes, bottom up, into the objects' roots.
            for id in dirtyObjects.sorted() {
                guard let o = objects[id] ?? releasing[id], o.map.ptr != 0 else { continue }
                // The leaves also name the chunks born in this transaction, for the commit
                // log: each once (a chunk in two leaves, disk and new snapshot, is one chunk).
                o.map.crc = maps.finalize(o.map.ptr, crc: o.map.crc, level: o.map.height, encoded: &encoded, nodes: &batch.nodes) { leaf in
                    for s in 0..<Layout.fanout where leaf.ptr[s] != 0 && dataRefs.takeBorn(leaf.ptr[s]) {
                        batch.bornData.append((leaf.ptr[s], leaf.crc[s]))
                    }
                }
            }
            // 2. A new record block for every changed object, entered in the object table.
            // All are encoded first (metadata was validated on entry, so this cannot fail on
            // input; any failure from here on stops the pool rather than half-close).
            var records: [ObjectID: [UInt8]] = [:]
            for id in dirtyObjects {
                if let o = objects[id] ?? releasing[id] { records[id] = try ObjectRecord(o).encodeBlock() }
            }
            for id in dirtyObjects.sorted() {
                guard let o = objects[id] ?? releasing[id], let bytes = records[id] else { continue }
                let block = metaRefs.allocate()
                let crc = crc32c(bytes)
                let leaf = try objectTable.leafForUpdate(&objectTree, id)
                let s = MapTree.slot(id, level: 1)
                if leaf.ptr[s] != 0 { metaRefs.decrement(leaf.ptr[s]) }
                leaf.ptr[s] = block
                leaf.crc[s] = crc
                o.recordBlock = block
                o.recordCRC = crc
                batch.records[block] = bytes
            }
            dirtyObjects.removeAll()
            // 3. The object table itself.
            if objectTree.ptr != 0 {
                objectTree.crc = objectTable.finalize(objectTree.ptr, crc: objectTree.crc, level: objectTree.height,
                                                     encoded: &encoded, nodes: &batch.nodes)
            }
            for n in meta.takeDirty() where encoded[n.block] == nil {
                // Unreachable from any root: a leak `check` will name. Write it anyway
                // so the block's checksum state is defined.
                encoded[n.block] = n.checksum()
                batch.nodes.append(n)
            }
            // 4. Reference counts; this also opens the next transaction.
            let m = metaRefs.closeTransaction()
            let d = dataRefs.closeTransaction()
            for w in m.writes { batch.metaPages[w.index] = w }
            for w in d.writes { batch.dataPages[w.index] = w }
            batch.metaFreed = m.freed
            batch.dataFreed = d.freed
            var sb = superblock
            // The transaction just closed (a failed commit stops the pool: no number is skipped).
            sb.generation = metaRefs.txn - 1
            // Format 5 only adds record fields: a format 4 pool is format 5 from its first commit.
            if sb.formatVersion == 4 { sb.formatVersion = Layout.formatVersion }
            precondition(metaRefs.txn == dataRefs.txn, "transaction numbers out of step")
            sb.objectTree = objectTree
            sb.nextObjectId = nextObjectId
            sb.metaBlockCount = m.count
            sb.dataChunkCount = d.count
            sb.commitMicros = Int64(Date().timeIntervalSince1970 * 1e6)
            batch.superblock = sb
            // Every logged record is in this commit; new ones build on it.
            journal.reset(base: IntentLog.Base(generation: sb.generation, commitMicros: sb.commitMicros))
            return batch
        }
    }

    private func writeBatch(_ batch: CommitBatch) throws {
        var log = CommitLog(generation: batch.superblock.generation)
        var bytes = [UInt8](repeating: 0, count: Layout.blockSize)
        for n in batch.nodes {
            try bytes.withUnsafeMutableBytes { b in
                n.encode(into: b)
                try metaFile.write(UnsafeRawBufferPointer(b), at: n.block * UInt64(Layout.blockSize))
            }
            log.entries.append(.init(kind: .metaBlock, index: n.block, value: crc32c(bytes)))
        }
        for (block, bytes) in batch.records {
            try bytes.withUnsafeBytes { try metaFile.write($0, at: block * UInt64(Layout.blockSize)) }
            log.entries.append(.init(kind: .metaBlock, index: block, value: crc32c(bytes)))
        }
        try metaRefs.write(Array(batch.metaPages.values), generation: batch.superblock.generation)
        try dataRefs.write(Array(batch.dataPages.values), generation: batch.superblock.generation)
        for w in batch.metaPages.values { log.entries.append(.init(kind: .metaRefsSlot, index: UInt64(w.index), value: UInt32(w.slot))) }
        for w in batch.dataPages.values { log.entries.append(.init(kind: .dataRefsSlot, index: UInt64(w.index), value: UInt32(w.slot))) }
        for b in batch.bornData { log.entries.append(.init(kind: .dataChunk, index: b.chunk, value: b.crc)) }
        let logBytes = log.encode()
        var sb = batch.superblock
        sb.commitLogLength = UInt32(logBytes.count)
        sb.commitLogCRC = crc32c(logBytes)
        guard log.entries.count <= CommitLog.maxEntries else {
            throw StoreError.io(errno: EFBIG, "commit of \(log.entries.count) blocks is larger than the commit log")
        }
        try logBytes.withUnsafeBytes { try sbFile.write($0, at: CommitLog.offset(generation: sb.generation)) }
        try sb.write(to: sbFile)
        // One flush of everything: the host merges concurrent cache flushes, so this costs
        // about one flush. A crash before it completes leaves a commit the log exposes as torn.
        try syncConcurrently([dataFile, metaFile, metaRefs.file, dataRefs.file, sbFile])
    }
}

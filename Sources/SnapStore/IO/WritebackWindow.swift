/// Bounds how much of the pool's data file is written but not yet on the device.
///
/// New chunks go to the host page cache and their writeback starts at once. Without a
/// bound, a writer faster than the device piles up gigabytes of pages in writeback, and
/// the next commit (every snapshot, every fsync that commits) waits for all of them: a
/// snapshot every second then costs most of the write throughput (BENCHMARKS.md). With
/// the bound, the writer that pushes past it waits for the oldest ranges, so a commit's
/// flush waits for at most `limit` bytes. The same idea as RocksDB's `bytes_per_sync`.
final class WritebackWindow: @unchecked Sendable {
    private let file: StorageFile
    private let limit: UInt64
    private let lock = Mutex()
    private var ranges: [(offset: UInt64, length: UInt64)] = []
    private var head = 0
    private var outstanding: UInt64 = 0

    init(file: StorageFile, limit: UInt64) {
        self.file = file
        self.limit = limit
    }

    /// The range was just written: start its writeback.
    func written(at offset: UInt64, length: UInt64) {
        guard limit > 0 else { return }
        file.startWriteback(at: offset, length: length)
        lock.withLock {
            ranges.append((offset, length))
            outstanding += length
        }
    }

    /// If too much is in flight, waits for the oldest half of it. Writers call this after
    /// releasing every pool lock, so only the writer that went past the bound waits.
    func throttle() {
        let toWait = lock.withLock { () -> [(offset: UInt64, length: UInt64)] in
            guard outstanding > limit else { return [] }
            var out: [(offset: UInt64, length: UInt64)] = []
            while outstanding > limit / 2, head < ranges.count {
                let r = ranges[head]
                head += 1
                outstanding -= r.length
                out.append(r)
            }
            if head > 4096 && head * 2 > ranges.count {
                ranges.removeFirst(head)
                head = 0
            }
            return out
        }
        for r in toWait { file.waitWriteback(at: r.offset, length: r.length) }
    }

    /// A commit flushed the file: nothing is outstanding any more.
    func flushed() {
        lock.withLock {
            ranges.removeAll(keepingCapacity: true)
            head = 0
            outstanding = 0
        }
    }
}

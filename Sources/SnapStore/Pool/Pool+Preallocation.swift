import Foundation

/// The data segments are allocated on the host ahead of the high-water mark. After a
/// snapshot every write goes to a new chunk, and on ext4 a buffered write that must
/// allocate host blocks runs at a third of the speed of one into blocks allocated with
/// fallocate within the file's size (BENCHMARKS.md; fallocate with KEEP_SIZE past the end
/// is no faster than nothing). A background queue allocates the whole segment after the
/// one new chunks go to: `fallocate` holds its file's inode lock while the host reads
/// block bitmaps (half a second behind a snapshot's flush: BENCHMARKS.md, session 8),
/// and no write waits for that lock when it is another segment's. Opening or closing the
/// pool truncates the data back to the committed high-water mark (the tail holds no data).
extension Pool {
    struct Preallocation {
        var enabled = true
        /// An extension is under way.
        var running = false
        /// Host blocks are allocated up to here (bytes of the data file).
        var end: UInt64 = 0
        /// After a failure (host full), not before this uptime.
        var retryAfter: UInt64 = 0
    }

    /// End of the newest chunk ever allocated: the data file's high-water mark in bytes.
    /// The caller holds `lock`.
    var dataHighWater: UInt64 { dataRefs.count * UInt64(chunkSize) }

    /// How much free space the pool keeps allocated: half the data, from 64 MiB to 1 GiB
    /// (about the segment after the current one). The caller holds `lock`.
    var preallocationMargin: UInt64 {
        min(max(dataHighWater / 2, 64 << 20), 1 << 30)
    }

    /// Freed chunks kept allocated (not punched) besides the tail: together within the
    /// margin. The caller holds `lock`.
    var idleReserveBytes: UInt64 {
        let margin = preallocationMargin
        return margin > preallocatedSpare ? margin - preallocatedSpare : 0
    }

    /// Host bytes the pool holds with no data in them: the allocated tail and the freed
    /// chunks not punched yet. Room for new chunks, counted as available. Caller holds `lock`.
    var allocatedIdleBytes: UInt64 {
        preallocatedSpare + UInt64(dataRefs.recycledCount) * UInt64(chunkSize)
    }

    /// Host bytes already allocated past the high-water mark: free space the pool holds.
    /// The caller holds `lock`.
    var preallocatedSpare: UInt64 {
        let high = dataHighWater
        return preallocation.end > high ? preallocation.end - high : 0
    }

    /// Where the allocated space should end: with the segment after the one new chunks
    /// go to. The caller holds `lock`.
    var preallocationTarget: UInt64 {
        let layout = dataFile.layout
        // Format 3's single file: a margin ahead, extended once half of it is used.
        if layout.isSingleFile {
            let high = dataHighWater, margin = preallocationMargin
            return preallocation.end < high + margin / 2 ? high + margin : preallocation.end
        }
        return layout.end(of: layout.segment(of: dataHighWater) + 1)
    }

    /// Starts an extension when new chunks reached a segment with none allocated after
    /// it. The caller holds `lock`.
    func preallocateAheadIfNeeded() {
        guard preallocation.enabled, !preallocation.running else { return }
        let high = dataHighWater
        let to = preallocationTarget
        guard preallocation.end < to else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        guard now >= preallocation.retryAfter else { return }
        let from = max(preallocation.end, high)
        preallocation.running = true
        let keep = commitReserve + (256 << 20)
        preallocationQueue.async { [self] in
            // Never into the space the next commit needs, nor the host's last few hundred MiB.
            var vfs = statvfs()
            let free = statvfs(directory, &vfs) == 0 ? UInt64(vfs.f_bavail) * UInt64(vfs.f_frsize) : 0
            let length = min(to - from, free > keep ? free - keep : 0)
            let ok = length >= UInt64(chunkSize) && (try? dataFile.preallocate(at: from, length: length)) != nil
            lock.withLock {
                preallocation.running = false
                if ok {
                    preallocation.end = max(preallocation.end, from + length)
                } else {
                    preallocation.retryAfter = DispatchTime.now().uptimeNanoseconds + 10_000_000_000
                }
            }
        }
    }

    /// At close, after the last commit: waits for a running extension and gives back the
    /// blocks past the high-water mark.
    func releasePreallocation() {
        preallocationQueue.sync {}
        let (high, end) = lock.withLock { () -> (UInt64, UInt64) in
            preallocation.enabled = false
            return (dataHighWater, preallocation.end)
        }
        if end > high { try? dataFile.truncate(to: high) }
    }
}

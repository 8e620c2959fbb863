import Foundation

/// The committer thread: every 100 ms it gives freed chunks back to the host and drops cold
/// pages within its budgets, and commits when the interval is up or a bound is reached
/// (dirty nodes, new chunks, the intent log half full).
extension Pool {
    func startCommitter() {
        let t = Thread { [self] in
            var last = Date()
            while !stopRequested.withLock({ $0 }) {
                usleep(100_000)
                let (changed, pressure) = lock.withLock { (hasChanges, meta.dirtyCount > Self.dirtyNodesPerCommit || dataRefs.bornCount > Self.bornChunksPerCommit(chunkSize: chunkSize)) }
                punchIdleChunks(maxCalls: Self.punchCallsPerTick)
                dropColdChunkCache(maxCalls: Self.cacheDropCallsPerTick)
                let logFilling = journal.filled >= Self.logCommitThreshold
                if changed && stoppedReason == nil
                    && (pressure || logFilling || Date().timeIntervalSince(last) >= Self.commitInterval) {
                    // The chunks written since the last commit are flushed first, outside
                    // every lock: fsyncs keep going through the log meanwhile, and the
                    // commit itself (during which they wait) has little left to flush.
                    // A failed flush stops the pool (the failure says so on stderr).
                    do { try dataFile.sync() } catch { _ = failStop("flushing the data segments", error) }
                    try? sync()
                    last = Date()
                }
            }
        }
        t.name = "snapfs-committer"
        committer = t
        t.start()
    }

}

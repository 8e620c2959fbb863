import Foundation

/// `fsync` through the intent log (IntentLog), and its replay after a crash.
extension Pool {
    /// The default size of the `journal` file: about a second of 4 KiB write+fsync pairs
    /// at this machine's flush rate before a commit is forced.
    public static let defaultJournalBytes: UInt64 = 32 << 20

    /// Everything written to disks before the call is durable when it returns: one batch
    /// of the intent log and one flush when the log can carry the changes, else a commit.
    public func syncWrites() throws {
        guard !readOnly else { return }
        try ensureAcknowledging()
        commitLock.lock()
        defer { commitLock.unlock() }
        try ensureAcknowledging()   // a commit that failed while we waited
        let durable = lock.withLock { IntentLog.Base(generation: lastCommitted, commitMicros: superblock.commitMicros) }
        switch journal.takeBatch(durable: durable) {
        case .nothingToWrite:
            return
        case .write(let bytes, let at):
            guard let journalFile else { throw StoreError.readOnly("no intent log") }
            do {
                try bytes.withUnsafeBytes { try journalFile.writeDurably($0, at: at) }
                return
            } catch {
                journal.invalidate()
                throw failStop("writing the intent log", error)
            }
        case .commit:
            break
        }
        let changed = lock.withLock { hasChanges }
        if changed { try commitLocked() }
    }

    /// What recovery found in the intent log.
    public struct JournalReplay: Sendable, Equatable {
        public var batches = 0
        public var records = 0
        public var skipped = 0
    }

    /// The log's batches built on the recovered commit (what the next open replays).
    func journalBatches() throws -> [[IntentLog.Record]] {
        guard let journalFile else { return [] }
        let base = IntentLog.Base(generation: superblock.generation, commitMicros: superblock.commitMicros)
        return try IntentLog.readBatches(from: journalFile, capacity: journal.capacity, base: base)
    }

    /// Records in the intent log that the next writable open will replay (for `check`).
    public func pendingJournalRecords() throws -> Int {
        try journalBatches().reduce(0) { $0 + $1.count }
    }

    /// Applies the batches built on the recovered commit and commits them, so the log
    /// can start again. Runs at open, before anything else can write.
    func replayJournal() throws -> JournalReplay {
        let batches = try journalBatches()
        var result = JournalReplay()
        guard !batches.isEmpty else { return result }
        journal.invalidate()   // the replay ends in a commit: recording it again is wasted copying
        for records in batches {
            result.batches += 1
            for r in records {
                result.records += 1
                do {
                    switch r {
                    case .write(let id, let offset, let bytes):
                        try bytes.withUnsafeBytes { try write(disk: id, offset: offset, data: $0) }
                    case .punch(let id, let offset, let length):
                        try punchHole(disk: id, offset: offset, length: length)
                    case .size(let id, let size):
                        try setDiskSize(id: id, size: size)
                    }
                } catch StoreError.notFound, StoreError.readOnly {
                    // A record for an object the commit does not have cannot come from this
                    // log's own history; note it rather than refuse the pool.
                    result.skipped += 1
                }
            }
        }
        try commitNow()
        return result
    }
}

import Foundation

/// `snapfs check --repair`: rewrites damaged redundant copies from the good one. Offline
/// the CLI opens the pool writable (as a mount would: recovery and intent-log replay
/// first); while mounted the daemon does it (control op `check.copies`), so its own
/// writer is the only one.
///
/// Every step writes only the damaged copy, never the good one, and flushes before the
/// next, so a crash or a failed write at any point leaves the pool as it was before that
/// step or mended; never with both copies bad.
///
/// - Refcount slot not in use: the in-use slot's bytes are copied into it unchanged (same
///   page, generation g and counts). For the current commit G (g ≤ G) both slots are then
///   valid with the same generation and counts, so whichever `RefcountTable.load` picks,
///   the counts are the same. For an older superblock G' (the fallback), a copy with
///   g ≤ G' is what it would pick anyway, and with g > G' it is ignored like the damaged
///   slot was, so the fallback gains or loses nothing. A torn copy is an invalid slot,
///   ignored as the damaged one was. The commit log of G names slots by page and slot
///   number with G's generation; the slot it names is the in-use one, untouched. The next
///   commit that changes the page writes the slot not holding its newest committed copy:
///   in this process that is still the original slot's twin, i.e. the copy; after a reopen
///   load may take the copy (equal generations), and the commit overwrites the original
///   instead: either way one of two identical copies survives that commit.
/// - Refcount slot in use (damaged under a running daemon): rewritten in place with the
///   counts in memory under the generation that wrote them, i.e. the bytes that commit
///   wrote, provided the open transaction has not changed the page (else the next commit
///   writes a fresh copy to the other slot, and a later `--repair` copies it back).
/// - Superblock slot in use (damaged under a running daemon): rewritten in place with the
///   daemon's superblock and the length and CRC of its commit log, after checking that
///   commit still verifies as recovery would verify it. A commit instead would write the
///   other slot, the only good one, while this one is bad.
/// - Superblock slot not in use: one ordinary commit, which writes exactly that slot
///   (commit G + 1 writes slot (G + 1) mod 2) through the normal protocol; the slot in use
///   is not written. Refused if the next commit's generation would land on the good slot.
extension Pool {
    public struct CopyRepair: Sendable {
        /// One line per copy rewritten.
        public var repaired: [String] = []
        /// Copies whose repair failed, and why.
        public var failures: [String] = []
        /// What is still damaged afterwards (not repairable, or a write failed).
        public var remaining: [String] = []
    }

    public func repairRedundantCopies() -> CopyRepair {
        var result = CopyRepair()
        guard !readOnly else {
            result.failures = ["cannot repair: the pool is open read-only"]
            result.remaining = redundantCopyProblems()
            return result
        }
        commitLock.lock()
        defer { commitLock.unlock() }
        let damaged = damagedCopies(commitLockHeld: true).filter(\.repairable)
        for d in damaged {
            guard case .refcount(let name, let page, let slot, let inUse) = d.copy else { continue }
            let table = name == metaRefs.name ? metaRefs : dataRefs
            do {
                if let line = try repairRefcountSlot(table, page: page, slot: slot, inUse: inUse) { result.repaired.append(line) }
            } catch {
                result.failures.append("\(name).refs page \(page) slot \(slot): repair failed: \(error)")
            }
        }
        for case .superblock(let slot, true) in damaged.map(\.copy) {
            do { result.repaired.append(try rewriteSuperblockInUse(slot: slot)) } catch {
                result.failures.append("superblock slot \(slot): repair failed: \(error)")
            }
        }
        for case .superblock(let slot, false) in damaged.map(\.copy) {
            do { result.repaired.append(try rewriteOtherSuperblock(slot: slot)) } catch {
                result.failures.append("superblock slot \(slot): repair failed: \(error)")
            }
        }
        result.remaining = damagedCopies(commitLockHeld: true).map(\.description)
        return result
    }

    /// Caller holds `commitLock`. Returns nil when it must wait (see above).
    private func repairRefcountSlot(_ table: RefcountTable, page: Int, slot: Int, inUse: Bool) throws -> String? {
        let name = "\(table.name).refs page \(page) slot \(slot)"
        let bytes: [UInt8]
        if inUse {
            let encoded = lock.withLock { () -> [UInt8]? in
                guard let g = table.committedGeneration(ofPage: page), g <= superblock.generation else { return nil }
                return table.encodedPage(page, generation: g)
            }
            guard let encoded else { return nil }
            bytes = encoded
        } else {
            bytes = try readRefcountSlot(table, page: page, slot: 1 - slot)
            guard case .valid = RefcountTable.content(of: bytes, page: page) else { return nil }
        }
        try bytes.withUnsafeBytes { try table.file.write($0, at: UInt64((page * 2 + slot) * Layout.blockSize)) }
        try table.file.sync()
        return inUse ? "\(name): rewritten from the counts in memory" : "\(name): rewritten from slot \(1 - slot)"
    }

    /// Caller holds `commitLock`.
    private func rewriteSuperblockInUse(slot: Int) throws -> String {
        var sb = lock.withLock { superblock }
        if sb.generation == 1 {
            sb.commitLogLength = 0   // `format`'s superblock has no log
            sb.commitLogCRC = 0
        } else {
            guard let log = try CommitLog.lengthAndCRC(in: sbFile, generation: sb.generation) else {
                throw StoreError.corrupt("the commit log of generation \(sb.generation) is damaged too; the next commit rewrites both")
            }
            sb.commitLogLength = log.length
            sb.commitLogCRC = log.crc
        }
        guard try Self.commitIsIntact(sb, sbFile: sbFile, provider: storage) else {
            throw StoreError.corrupt("generation \(sb.generation) no longer verifies against its commit log")
        }
        try sb.write(to: sbFile)
        try sbFile.sync()
        return "superblock slot \(slot): rewritten from the pool's superblock in memory (generation \(sb.generation))"
    }

    /// Caller holds `commitLock`.
    private func rewriteOtherSuperblock(slot: Int) throws -> String {
        let next = lock.withLock { metaRefs.txn }
        guard Int(next % 2) == slot else {
            throw StoreError.busy("the next commit (generation \(next)) would write the good slot; retry after it")
        }
        try commitLocked()
        return "superblock slot \(slot): rewritten by a commit (generation \(next))"
    }
}

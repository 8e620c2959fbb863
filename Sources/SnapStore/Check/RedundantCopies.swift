import Foundation

/// A redundant copy that is damaged while its twin still serves (SPEC §3): the pool runs,
/// but has lost a safety margin. `description` is the line `snapfs check` prints.
struct DamagedCopy {
    enum Copy: Equatable {
        /// A superblock slot; `inUse` when it holds the commit the pool runs on.
        case superblock(slot: Int, inUse: Bool)
        /// A shadow slot of a reference-count page; `inUse` when it holds the copy chosen
        /// at open or written by the last commit that changed the page.
        case refcount(table: String, page: Int, slot: Int, inUse: Bool)
    }
    let copy: Copy
    let description: String
    /// Whether `repairRedundantCopies` may rewrite it from the good copy.
    let repairable: Bool
}

/// `snapfs check`'s look at the redundant copies: the two superblock slots and the two
/// shadow slots of every reference-count page. (The intent log has no header of its own:
/// each batch's header is that batch's only copy, so there is nothing redundant there.)
///
/// What a copy not in use may legitimately hold:
/// - superblock: the previous commit; after a crash, until the next commit, a newer commit
///   cut short; all zeros only while the pool has never committed (`format` writes
///   generation 1 to slot 1 alone).
/// - refcount page slot: an older copy of the page; all zeros (the page was written once,
///   or mounting wiped a copy a crashed commit had written); offline after a crash, a
///   valid copy of a later generation that never committed (the next mount wipes it).
/// Anything else (bad magic, another page's index, a checksum mismatch) is damage.
///
/// Reads run under `commitLock`, so no commit writes a slot while it is read (while
/// mounted this runs in the daemon); pages are read 64 at a time, so commits and `fsync`
/// wait at most one batch.
extension Pool {
    /// One line per damaged redundant copy; empty when every copy is sound.
    public func redundantCopyProblems() -> [String] {
        damagedCopies(commitLockHeld: false).map(\.description)
    }

    func damagedCopies(commitLockHeld: Bool) -> [DamagedCopy] {
        superblockCopies(commitLockHeld: commitLockHeld)
            + refcountCopies(metaRefs, commitLockHeld: commitLockHeld)
            + refcountCopies(dataRefs, commitLockHeld: commitLockHeld)
    }

    private func excludingCommits<T>(_ held: Bool, _ body: () -> T) -> T {
        if held { return body() }
        commitLock.lock()
        defer { commitLock.unlock() }
        return body()
    }

    private func superblockCopies(commitLockHeld: Bool) -> [DamagedCopy] {
        excludingCommits(commitLockHeld) {
            let current = lock.withLock { superblock }
            var out: [DamagedCopy] = []
            for s in 0..<2 {
                let inUse = s == Int(current.generation % 2)
                var bytes = [UInt8](repeating: 0, count: Superblock.slotSize)
                let why: String?
                do {
                    // Past the file's end reads as zeros: a slot never written.
                    _ = try bytes.withUnsafeMutableBytes { try sbFile.read(into: $0, at: UInt64(s * Superblock.slotSize)) }
                    why = Self.superblockSlotProblem(bytes, slot: s, current: current)
                } catch {
                    why = "unreadable (\(error))"
                }
                guard let why else { continue }
                let text = inUse
                    ? "superblock slot \(s) (generation \(current.generation), in use): \(why) (the pool has one good superblock, the previous commit's; run snapfs check --repair)"
                    : "superblock slot \(s): \(why) (the pool has one good superblock; run snapfs check --repair)"
                out.append(DamagedCopy(copy: .superblock(slot: s, inUse: inUse), description: text, repairable: true))
            }
            return out
        }
    }

    /// What is wrong with superblock slot `slot`, given the commit the pool runs on; nil if
    /// it holds what it may.
    static func superblockSlotProblem(_ bytes: [UInt8], slot: Int, current: Superblock) -> String? {
        let inUse = slot == Int(current.generation % 2)
        switch Superblock.decode(bytes) {
        case .valid(let sb):
            if inUse {
                return sb.generation == current.generation ? nil : "holds generation \(sb.generation), not the generation in use (\(current.generation))"
            }
            return Int(sb.generation % 2) == slot ? nil : "holds generation \(sb.generation), which belongs in slot \(1 - slot)"
        case .invalid(let why), .unsupported(let why):
            if bytes.allSatisfy({ $0 == 0 }) {
                return !inUse && current.generation == 1 ? nil : "all zeros"
            }
            return why
        }
    }

    private func refcountCopies(_ table: RefcountTable, commitLockHeld: Bool) -> [DamagedCopy] {
        let pages = lock.withLock { table.pageCount }
        var out: [DamagedCopy] = []
        var first = 0
        while first < pages {
            let end = min(first + 64, pages)
            excludingCommits(commitLockHeld) {
                let (generation, chosen) = lock.withLock { (superblock.generation, (first..<end).map { table.committedSlot(ofPage: $0) }) }
                for (k, page) in (first..<end).enumerated() where chosen[k] < 2 {
                    out += refcountPageCopies(table, page: page, chosen: Int(chosen[k]), generation: generation)
                }
            }
            first = end
        }
        return out
    }

    private func refcountPageCopies(_ table: RefcountTable, page: Int, chosen: Int, generation: UInt64) -> [DamagedCopy] {
        let name = "\(table.name).refs page \(page)"
        let slots: [[UInt8]]
        do {
            slots = try (0..<2).map { try readRefcountSlot(table, page: page, slot: $0) }
        } catch {
            return [DamagedCopy(copy: .refcount(table: table.name, page: page, slot: chosen, inUse: true),
                                description: "\(name): unreadable (\(error))", repairable: false)]
        }
        let other = 1 - chosen
        let inUse = RefcountTable.content(of: slots[chosen], page: page)
        guard case .valid(let inUseGeneration) = inUse, inUseGeneration <= generation else {
            // Only while mounted: opening chose a valid copy, and commits write valid ones.
            let why: String
            switch inUse {
            case .damaged(let w, _): why = w
            case .zeros: why = "all zeros"
            case .valid(let g): why = "holds generation \(g), above the pool's (\(generation))"
            }
            return [DamagedCopy(copy: .refcount(table: table.name, page: page, slot: chosen, inUse: true),
                                description: "\(name) slot \(chosen) (in use): \(why) (the pool runs on its counts in memory; run snapfs check --repair)",
                                repairable: true)]
        }
        guard case .damaged(let why, let claimed) = RefcountTable.content(of: slots[other], page: page) else { return [] }
        if let claimed, claimed > inUseGeneration, claimed <= generation {
            // The newer copy is the damaged one: the pool fell back to an older copy, whose
            // counts may be out of date. Copying it over would hide that.
            return [DamagedCopy(copy: .refcount(table: table.name, page: page, slot: other, inUse: false),
                                description: "\(name) slot \(other): \(why) in a newer copy (generation \(claimed)) than the one in use (generation \(inUseGeneration)); this page's reference counts may be out of date",
                                repairable: false)]
        }
        return [DamagedCopy(copy: .refcount(table: table.name, page: page, slot: other, inUse: false),
                            description: "\(name) slot \(other): \(why) (one good copy of this reference-count page is left; run snapfs check --repair)",
                            repairable: true)]
    }

    /// Slot `slot` of page `page` as on disk (bytes past the file's end read as zeros).
    func readRefcountSlot(_ table: RefcountTable, page: Int, slot: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Layout.blockSize)
        _ = try bytes.withUnsafeMutableBytes { try table.file.read(into: $0, at: UInt64((page * 2 + slot) * Layout.blockSize)) }
        return bytes
    }
}

import Foundation

/// Reference counts of one address space (data chunks or metadata blocks), the space
/// map of the dm-thin design. Entry 0 is reserved (pointer 0 means "none").
///
/// Persistence: the counts live in 4 KiB pages; each page has two slots in the file
/// (shadow paging). A commit writes a changed page to the slot that does NOT hold its
/// newest committed copy, so the committed copy survives a crash mid-commit; at load
/// the valid slot with the highest generation not above the superblock's wins. No
/// journal, no replay: recovery costs nothing beyond reading the pages.
///
/// Blocks freed in the open transaction are held back until it is committed, so a
/// crash never finds a committed pointer to a reused block.
final class RefcountTable {
    static let perPage = 1016
    static let headerSize = 32
    static let pageMagic: UInt32 = 0x4346_5253   // "SRFC"

    let name: String
    let file: StorageFile
    /// Every count, page after page (entry i is counts[i]); one flat array, so changing
    /// a count touches no reference-counted object.
    private(set) var counts: [UInt32] = []
    /// The transaction that last changed each page.
    private(set) var pageGen: [UInt64] = []
    /// Slot (0/1) holding each page's newest committed copy; 2 = never written.
    private(set) var slot: [UInt8] = []
    private(set) var count: UInt64 = 1
    /// Freed and committed: safe to hand out.
    private(set) var free: [UInt64] = []
    /// Freed and committed but still allocated on the host (data chunks): handed out
    /// first, because rewriting allocated host blocks needs no host-filesystem metadata
    /// change, which keeps fdatasync cheap. Punched after `Pool.punchDelay` if unused.
    private(set) var recycled: [(index: UInt64, freedAt: UInt64)] = []
    /// Freed in the open transaction.
    private(set) var pending: [UInt64] = []
    private var dirtyPages = Set<Int>()
    /// Entries allocated in the open transaction (may be modified in place): one bit
    /// each, plus the list of those set, to clear them when the transaction closes.
    private var bornBits: [UInt64] = []
    private var bornList: [UInt64] = []
    /// Entries allocated in the open transaction (freed ones included).
    var bornCount: Int { bornList.count }
    var txn: UInt64

    init(name: String, file: StorageFile, txn: UInt64) {
        self.name = name; self.file = file; self.txn = txn
    }

    /// Any count changed in the open transaction (frees included).
    var hasChanges: Bool { !dirtyPages.isEmpty }

    var inUse: UInt64 { count - 1 - UInt64(free.count + recycled.count + unsure.count + pending.count) }
    var freeCount: Int { free.count + recycled.count + unsure.count }
    /// Free entries still allocated on the host (handed out first).
    var recycledCount: Int { recycled.count }
    /// Free entries that are holes on the host (handed out after the recycled ones).
    var holeCount: Int { free.count }

    func value(_ i: UInt64) -> UInt32 {
        Int(i) < counts.count ? counts[Int(i)] : 0
    }

    private func set(_ i: UInt64, _ v: UInt32) {
        let p = Int(i) / Self.perPage
        while pageGen.count <= p {
            dirtyPages.insert(pageGen.count)
            pageGen.append(txn)
            slot.append(2)
            counts.append(contentsOf: repeatElement(0, count: Self.perPage))
        }
        if pageGen[p] != txn {
            pageGen[p] = txn
            dirtyPages.insert(p)
        }
        counts[Int(i)] = v
    }

    /// A new pool: page 0 (holding the reserved entry 0) must exist on disk.
    func formatFirstPage() {
        set(0, 0)
    }

    func increment(_ i: UInt64) {
        precondition(i != 0 && i < count, "\(name): increment of unallocated \(i)")
        set(i, value(i) + 1)
    }

    /// Returns the new count; at 0 the entry is held back until commit.
    @discardableResult
    func decrement(_ i: UInt64) -> UInt32 {
        let v = value(i)
        precondition(i != 0 && i < count && v > 0, "\(name): decrement of free \(i)")
        set(i, v - 1)
        if v == 1 { pending.append(i); clearBorn(i) }
        return v - 1
    }

    /// A fresh entry with count 1.
    func allocate() -> UInt64 { allocate(count: 1)[0] }

    /// `n` fresh entries with count 1, in ascending order: entries freed together (a
    /// rewritten run) come back as a run, so the caller can write them with one `pwrite`.
    func allocate(count n: Int) -> [UInt64] {
        var out: [UInt64] = []
        out.reserveCapacity(n)
        while out.count < n, let r = recycled.popLast() { out.append(r.index) }
        while out.count < n, let f = free.popLast() { out.append(f) }
        if out.count < n {
            let start = count
            count += UInt64(n - out.count)
            out.append(contentsOf: start..<count)
        }
        out.sort()
        for i in out { set(i, 1); markBorn(i) }
        return out
    }

    func isBornInOpenTransaction(_ i: UInt64) -> Bool {
        let w = Int(i >> 6)
        return w < bornBits.count && bornBits[w] & (1 << (i & 63)) != 0
    }

    /// Whether `i` was born in the open transaction, forgetting it: the closing
    /// transaction lists each born chunk once for its commit log.
    func takeBorn(_ i: UInt64) -> Bool {
        guard isBornInOpenTransaction(i) else { return false }
        clearBorn(i)
        return true
    }

    private func markBorn(_ i: UInt64) {
        let w = Int(i >> 6)
        if w >= bornBits.count { bornBits.append(contentsOf: repeatElement(0, count: max(w + 1 - bornBits.count, bornBits.count))) }
        bornBits[w] |= 1 << (i & 63)
        bornList.append(i)
    }

    private func clearBorn(_ i: UInt64) {
        let w = Int(i >> 6)
        if w < bornBits.count { bornBits[w] &= ~(1 << (i & 63)) }
    }

    // MARK: Commit

    /// A changed page as the transaction closed it (a copy: the commit writes it outside
    /// the lock while the next transaction changes counts).
    struct PageWrite { let index: Int; let counts: [UInt32]; let slot: UInt8 }

    /// Closes the open transaction: what to write, and the entries it freed.
    func closeTransaction() -> (writes: [PageWrite], freed: [UInt64], count: UInt64) {
        let writes = dirtyPages.sorted().map { p in
            PageWrite(index: p, counts: Array(counts[(p * Self.perPage)..<((p + 1) * Self.perPage)]), slot: slot[p] == 0 ? 1 : 0)
        }
        let freed = pending
        dirtyPages.removeAll(keepingCapacity: true)
        pending.removeAll(keepingCapacity: true)
        for i in bornList { clearBorn(i) }
        bornList.removeAll(keepingCapacity: true)
        txn += 1
        return (writes, freed, count)
    }

    /// Encodes and writes the pages of a closed transaction (no lock needed: they are
    /// copies), stamped with the generation of the
    /// commit that writes them (a page retried after a failed commit belongs to the next).
    func write(_ writes: [PageWrite], generation: UInt64) throws {
        var buf = [UInt8](repeating: 0, count: Layout.blockSize)
        for w in writes {
            w.counts.withUnsafeBytes { Self.encodeSlot(into: &buf, page: w.index, generation: generation, counts: $0) }
            let off = UInt64((w.index * 2 + Int(w.slot)) * Layout.blockSize)
            try buf.withUnsafeBytes { try file.write($0, at: off) }
        }
    }

    /// After the superblock of the closed transaction is durable. Freed entries go back
    /// in ascending order: `allocate` takes from the end, so a later write of several
    /// chunks gets entries that were neighbours (one `pwrite`, sequential writeback), not
    /// the order random writes freed them in, which would scatter every later sequential
    /// rewrite of the disk for good.
    /// `ascending`: the freed entries, sorted (the pool sorts them outside its lock).
    func committed(_ writes: [PageWrite], ascending: [UInt64], recycle: Bool = false, now: UInt64 = 0) {
        for w in writes { slot[w.index] = w.slot }
        if recycle {
            recycled.append(contentsOf: ascending.map { ($0, now) })
        } else {
            free.append(contentsOf: ascending)
        }
    }

    /// Takes recycled entries freed at or before `before` (oldest first), for punching,
    /// leaving at least `keeping` of them; at most `maxRuns` runs of adjacent entries
    /// (one `fallocate` each).
    func takeRecycled(freedBefore before: UInt64, max: Int, keeping: Int = 0, maxRuns: Int = .max) -> [UInt64] {
        var n = 0, runs = 0
        while n < recycled.count - keeping, n < max, recycled[n].freedAt <= before {
            if n == 0 || recycled[n].index != recycled[n - 1].index + 1 {
                guard runs < maxRuns else { break }
                runs += 1
            }
            n += 1
        }
        defer { recycled.removeFirst(n) }
        return recycled[0..<n].map(\.index)
    }

    /// Free at open, maybe still allocated on the host (after a crash nobody knows):
    /// punched in the background, then plain free. Not handed out meanwhile, so
    /// `recycled` only ever holds entries known to be allocated (the ENOSPC accounting
    /// counts them as space the pool already has).
    private(set) var unsure: [UInt64] = []

    /// At open: every free entry is unsure until punched.
    func markFreeUnsure() {
        unsure = free
        free = []
    }

    /// Takes up to `max` unsure entries, for punching.
    func takeUnsure(max: Int) -> [UInt64] {
        let n = min(max, unsure.count)
        defer { unsure.removeLast(n) }
        return Array(unsure.suffix(n))
    }

    /// Punched entries become plain free ones (in ascending order, as in `committed`).
    func returnPunched(_ entries: [UInt64]) { free.append(contentsOf: entries.sorted()) }

    // MARK: Load

    /// Slots written by a transaction that never committed (generation above the
    /// superblock's). Generations repeat after a crash, so these must be wiped before
    /// the pool commits again, or a later load could take one for a committed copy.
    private(set) var stale: [(page: Int, slot: UInt8)] = []

    func wipeStaleSlots() throws {
        guard !stale.isEmpty else { return }
        let zeros = [UInt8](repeating: 0, count: Layout.blockSize)
        for (p, s) in stale {
            try zeros.withUnsafeBytes { try file.write($0, at: UInt64((p * 2 + Int(s)) * Layout.blockSize)) }
        }
        try file.sync()
        stale = []
    }

    static func encodeSlot(into buf: inout [UInt8], page: Int, generation: UInt64, counts: UnsafeRawBufferPointer) {
        buf.withUnsafeMutableBytes { b in
            b.initializeMemory(as: UInt8.self, repeating: 0)
            b.put(pageMagic, at: 0)
            b.put(UInt32(page), at: 4)
            b.put(generation, at: 8)
            (b.baseAddress! + headerSize).copyMemory(from: counts.baseAddress!, byteCount: counts.count)
            b.put(crc32c(UnsafeRawBufferPointer(b)), at: 16)
        }
    }

    /// A slot holding page `page` exactly as commit `generation` wrote it.
    static func slotIsValid(_ bytes: [UInt8], page: Int, generation: UInt64) -> Bool {
        var b = bytes
        return b.withUnsafeMutableBytes { m in
            let r = UnsafeRawBufferPointer(m)
            guard r.get(UInt32.self, at: 0) == pageMagic, r.get(UInt32.self, at: 4) == UInt32(page),
                  r.get(UInt64.self, at: 8) == generation else { return false }
            let stored = r.get(UInt32.self, at: 16)
            m.put(UInt32(0), at: 16)
            return crc32c(UnsafeRawBufferPointer(m)) == stored
        }
    }

    /// Loads the committed counts of a pool whose superblock has generation `gen`.
    func load(count: UInt64, generation gen: UInt64) throws {
        stale = []
        self.count = max(count, 1)
        let pageCount = (Int(self.count) + Self.perPage - 1) / Self.perPage
        counts = []; pageGen = []; slot = []
        counts.reserveCapacity(pageCount * Self.perPage)
        var buf = [UInt8](repeating: 0, count: 2 * Layout.blockSize)
        for p in 0..<pageCount {
            let n = try buf.withUnsafeMutableBytes { try file.read(into: $0, at: UInt64(p * 2 * Layout.blockSize)) }
            if n < buf.count { for k in n..<buf.count { buf[k] = 0 } }
            var best: (UInt8, UInt64)?
            buf.withUnsafeMutableBytes { all in
                for s in 0..<2 {
                    let b = UnsafeMutableRawBufferPointer(rebasing: all[(s * Layout.blockSize)..<((s + 1) * Layout.blockSize)])
                    guard UnsafeRawBufferPointer(b).get(UInt32.self, at: 0) == Self.pageMagic,
                          UnsafeRawBufferPointer(b).get(UInt32.self, at: 4) == UInt32(p) else { continue }
                    let g = UnsafeRawBufferPointer(b).get(UInt64.self, at: 8)
                    let stored = UnsafeRawBufferPointer(b).get(UInt32.self, at: 16)
                    b.put(UInt32(0), at: 16)
                    let ok = crc32c(UnsafeRawBufferPointer(b)) == stored
                    b.put(stored, at: 16)
                    if ok, g <= gen, g >= (best?.1 ?? 0) { best = (UInt8(s), g) }
                    if ok, g > gen { stale.append((p, UInt8(s))) }
                }
            }
            guard let (s, g) = best else {
                throw StoreError.corrupt("\(name) refcount page \(p): no valid copy")
            }
            buf.withUnsafeBytes { b in
                let base = Int(s) * Layout.blockSize + Self.headerSize
                for k in 0..<Self.perPage { counts.append(b.get(UInt32.self, at: base + 4 * k)) }
            }
            pageGen.append(g)
            slot.append(s)
        }
        free = []
        var i = self.count
        while i > 1 { i -= 1; if value(i) == 0 { free.append(i) } }   // pops lowest first
        pending = []; dirtyPages = []; bornBits = []; bornList = []; unsure = []
    }
}

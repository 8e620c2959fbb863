import Foundation

/// The shadow slots of reference-count pages as `snapfs check` sees them: which slot holds
/// each page's committed copy, what a slot on disk holds, and a page encoded from memory
/// (Check/RedundantCopies.swift reports and repairs them).
extension RefcountTable {
    /// Pages that have a committed copy on disk or are new in the open transaction.
    var pageCount: Int { slot.count }

    /// The slot load chose (or the last commit wrote) for page `p`'s newest committed
    /// copy; 2 when the page is new in the open transaction.
    func committedSlot(ofPage p: Int) -> UInt8 { slot[p] }

    /// The generation of page `p`'s newest committed copy, while the open transaction has
    /// not changed it.
    func committedGeneration(ofPage p: Int) -> UInt64? { pageGen[p] == txn ? nil : pageGen[p] }

    /// Page `p` as slot bytes of generation `generation`, from the counts in memory (the
    /// same bytes `write` produces).
    func encodedPage(_ p: Int, generation: UInt64) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: Layout.blockSize)
        counts[(p * Self.perPage)..<((p + 1) * Self.perPage)].withUnsafeBytes {
            Self.encodeSlot(into: &buf, page: p, generation: generation, counts: $0)
        }
        return buf
    }

    /// What a 4 KiB slot of the file holds for page `page`.
    enum SlotContent: Equatable {
        case zeros
        case valid(generation: UInt64)
        /// Not a readable copy; `generation` is what its header claims, when the header is
        /// this page's (magic and index intact), to tell a newer copy from an older one.
        case damaged(why: String, generation: UInt64?)
    }

    static func content(of bytes: [UInt8], page: Int) -> SlotContent {
        if bytes.allSatisfy({ $0 == 0 }) { return .zeros }
        let (magic, index, gen) = bytes.withUnsafeBytes { b in
            (b.get(UInt32.self, at: 0), b.get(UInt32.self, at: 4), b.get(UInt64.self, at: 8))
        }
        guard magic == pageMagic else { return .damaged(why: "bad magic", generation: nil) }
        guard index == UInt32(page) else { return .damaged(why: "holds page \(index), not page \(page)", generation: nil) }
        return slotIsValid(bytes, page: page, generation: gen) ? .valid(generation: gen) : .damaged(why: "checksum mismatch", generation: gen)
    }
}

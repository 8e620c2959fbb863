import Foundation

/// Reading one shadow slot of a reference-count page as it is on disk, for `snapfs check`'s
/// report on redundant copies (Check/RedundantCopies.swift).
extension RefcountTable {
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

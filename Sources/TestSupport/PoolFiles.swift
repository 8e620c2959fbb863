import Foundation

/// Reads of a pool's files that tests make without opening the pool.
public enum PoolFiles {
    /// The format version field (offset 8) of both superblock slots, slot 0 first; 0 for a
    /// slot never written (docs/FORMAT.md, "Superblock slot").
    public static func superblockVersions(_ pool: String) throws -> [UInt32] {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: pool + "/superblock"))
        return (0..<2).map { slot in
            let o = slot * 4096 + 8
            guard bytes.count >= o + 4 else { return 0 }
            return bytes[o..<(o + 4)].reversed().reduce(0) { $0 << 8 | UInt32($1) }
        }
    }

    /// The generation field (offset 56) of both superblock slots, slot 0 first; 0 for a
    /// slot never written. The newest is the commit in use.
    public static func superblockGenerations(_ pool: String) throws -> [UInt64] {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: pool + "/superblock"))
        return (0..<2).map { slot in le(bytes, slot * 4096 + 56, 8) }
    }

    /// The generation (offset 8) of both shadow slots of page `page` of `meta.refs` or
    /// `data.refs`, slot 0 first; nil for a slot without the page magic `SRFC`.
    public static func refcountSlotGenerations(_ pool: String, _ file: String, page: Int) throws -> [UInt64?] {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: pool + "/" + file))
        return (0..<2).map { slot in
            let o = (page * 2 + slot) * 4096
            return le(bytes, o, 4) == 0x4346_5253 ? le(bytes, o + 8, 8) : nil
        }
    }

    private static func le(_ bytes: Data, _ offset: Int, _ count: Int) -> UInt64 {
        guard bytes.count >= offset + count else { return 0 }
        return bytes[(bytes.startIndex + offset)..<(bytes.startIndex + offset + count)].reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
}

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
}

import Foundation

/// What one commit wrote, so recovery can tell a whole commit from a torn one.
///
/// A commit issues every write (chunks, nodes, records, refcount pages, this log and its
/// superblock slot) and then flushes all pool files at once: one flush instead of a
/// flush-then-superblock-then-flush sequence. After a crash the newest superblock may be
/// on disk while some of its blocks are not; recovery re-reads every block this log names
/// (work since the previous commit, not pool size) and, if any is missing or torn, takes
/// the previous superblock, whose blocks the commit never overwrote.
///
/// Stored in `superblock` in one of two regions, like the superblock slots: commit G uses
/// region G % 2 at offset 8192 + (G % 2) × 128 MiB (the file is sparse), so the previous
/// commit's log survives while this one is written. Layout: header (magic u64
/// "SNAPCLOG", generation u64, entry count u32, reserved u32), then 16-byte entries (kind
/// u8, 3 reserved bytes, crc/slot u32, index u64). The superblock records the log's
/// length and CRC-32C.
struct CommitLog: Equatable {
    static let regionSize: UInt64 = 128 << 20
    static func offset(generation: UInt64) -> UInt64 { 8192 + (generation % 2) * regionSize }
    static var maxEntries: Int { Int(regionSize) / 16 - 2 }
    static let magic: UInt64 = 0x474F_4C43_5041_4E53   // "SNAPCLOG" as LE bytes
    static let headerSize = 24

    enum Kind: UInt8 { case metaBlock = 0, dataChunk = 1, metaRefsSlot = 2, dataRefsSlot = 3 }
    struct Entry: Equatable {
        var kind: Kind
        var index: UInt64
        /// Block or chunk checksum; for refcount pages, the slot written.
        var value: UInt32
    }

    var generation: UInt64
    var entries: [Entry] = []

    func encode() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.headerSize + entries.count * 16)
        out.withUnsafeMutableBytes { b in
            b.put(Self.magic, at: 0)
            b.put(generation, at: 8)
            b.put(UInt32(entries.count), at: 16)
            for (i, e) in entries.enumerated() {
                let o = Self.headerSize + i * 16
                b.put(e.kind.rawValue, at: o)
                b.put(e.value, at: o + 4)
                b.put(e.index, at: o + 8)
            }
        }
        return out
    }

    /// Length and CRC-32C of commit `generation`'s log as it lies in its region (what its
    /// superblock records), or nil if the region holds no intact log of that commit.
    /// Rebuilding a damaged superblock slot needs them (`Pool.repairRedundantCopies`).
    static func lengthAndCRC(in file: StorageFile, generation: UInt64) throws -> (length: UInt32, crc: UInt32)? {
        var header = [UInt8](repeating: 0, count: headerSize)
        guard try header.withUnsafeMutableBytes({ try file.read(into: $0, at: offset(generation: generation)) }) == headerSize else { return nil }
        let (magicOK, count) = header.withUnsafeBytes { b in
            (b.get(UInt64.self, at: 0) == magic && b.get(UInt64.self, at: 8) == generation, Int(b.get(UInt32.self, at: 16)))
        }
        guard magicOK, count <= maxEntries else { return nil }
        let length = UInt32(headerSize + count * 16)
        var bytes = [UInt8](repeating: 0, count: Int(length))
        guard try bytes.withUnsafeMutableBytes({ try file.read(into: $0, at: offset(generation: generation)) }) == bytes.count else { return nil }
        let crc = crc32c(bytes)
        // The same parse recovery does, so a log it would refuse is not vouched for here.
        guard try read(from: file, length: length, crc: crc, generation: generation) != nil else { return nil }
        return (length, crc)
    }

    /// Reads the log a superblock describes; nil if it is missing, torn or another commit's.
    static func read(from file: StorageFile, length: UInt32, crc: UInt32, generation: UInt64) throws -> CommitLog? {
        guard length >= UInt32(headerSize) else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(length))
        let n = try bytes.withUnsafeMutableBytes { try file.read(into: $0, at: offset(generation: generation)) }
        guard n == bytes.count, crc32c(bytes) == crc else { return nil }
        return bytes.withUnsafeBytes { b -> CommitLog? in
            guard b.get(UInt64.self, at: 0) == magic, b.get(UInt64.self, at: 8) == generation else { return nil }
            let count = Int(b.get(UInt32.self, at: 16))
            guard headerSize + count * 16 == b.count else { return nil }
            var log = CommitLog(generation: generation)
            for i in 0..<count {
                let o = headerSize + i * 16
                guard let kind = Kind(rawValue: b.get(UInt8.self, at: o)) else { return nil }
                log.entries.append(Entry(kind: kind, index: b.get(UInt64.self, at: o + 8), value: b.get(UInt32.self, at: o + 4)))
            }
            return log
        }
    }
}

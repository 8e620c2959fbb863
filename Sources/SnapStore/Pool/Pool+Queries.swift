import Foundation

/// Read-only questions about the maps: what differs between two images, and what a
/// deletion would free. Both walk committed maps through readers (MapReader), outside the
/// pool's lock and without holding up writes; each walks only what is not shared.
extension Pool {
    public struct ByteRange: Equatable, Sendable {
        public var offset: UInt64
        public var length: UInt64
    }

    /// Byte ranges (chunk-aligned, sorted, coalesced) where `first` and `second` may
    /// differ: chunks mapped differently in their block maps. Either id may be a disk
    /// (as of a commit made now) or a snapshot.
    public func changedRanges(_ first: ObjectID, _ second: ObjectID) throws -> [ByteRange] {
        let a = try openReader(object: first)
        let b = first == second ? a : try openReader(object: second)
        var ranges: [ByteRange] = []
        let cs = UInt64(chunkSize)
        for c in try MapReader.changedChunks(a, b) {
            if let last = ranges.last, last.offset + last.length == c * cs {
                ranges[ranges.count - 1].length += cs
            } else {
                ranges.append(ByteRange(offset: c * cs, length: cs))
            }
        }
        return ranges
    }

    /// Bytes that deleting this disk or snapshot would give back to the pool now. The map
    /// is read through a reader; only the reference counts are looked up under the lock,
    /// one short hold per node.
    public func exclusiveBytes(_ id: ObjectID) throws -> UInt64 {
        let r = try openReader(object: id)
        guard let top = r.top else { return 0 }
        return try exclusiveChunks(r, top.ptr, crc: top.crc, level: top.height) * UInt64(chunkSize)
    }

    private func exclusiveChunks(_ r: MapReader, _ ptr: UInt64, crc: UInt32, level: Int) throws -> UInt64 {
        guard lock.withLock({ metaRefs.value(ptr) }) == 1 else { return 0 }   // another map holds it
        let n = try r.node(ptr, crc: crc)
        if level == 1 {
            return lock.withLock { n.ptr.reduce(0) { $0 + ($1 != 0 && dataRefs.value($1) == 1 ? 1 : 0) } }
        }
        var total: UInt64 = 0
        for s in 0..<Layout.fanout where n.ptr[s] != 0 {
            total += try exclusiveChunks(r, n.ptr[s], crc: n.crc[s], level: level - 1)
        }
        return total
    }
}

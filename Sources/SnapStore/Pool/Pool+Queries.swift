import Foundation

/// Read-only questions about the maps: what differs between two images, and what a
/// deletion would free. Both walk only the parts of the trees that are not shared.
extension Pool {
    public struct ByteRange: Equatable, Sendable {
        public var offset: UInt64
        public var length: UInt64
    }

    /// Byte ranges (chunk-aligned, sorted, coalesced) where `first` and `second` may
    /// differ: chunks mapped differently in their block maps. Time is proportional to
    /// the unshared parts of the two maps. Either id may be a disk or a snapshot.
    public func changedRanges(_ first: ObjectID, _ second: ObjectID) throws -> [ByteRange] {
        guard let a = lock.withLock({ objects[first] }), let b = lock.withLock({ objects[second] }) else {
            throw StoreError.notFound("no such disk or snapshot")
        }
        // Keep writes out of a disk while its map is walked (each object once, in id order).
        let locked = a === b ? [a] : [a, b].sorted { $0.id < $1.id }
        for o in locked { o.io.readLock() }
        defer { for o in locked { o.io.unlock() } }
        let chunks = try lock.withLock { () throws -> [UInt64] in
            var out: [UInt64] = []
            let top = max(a.map.height, b.map.height)
            try diff(sub(a.map), sub(b.map), level: top, base: 0, into: &out)
            let limit = (max(a.size, b.size) + UInt64(chunkSize) - 1) / UInt64(chunkSize)
            return out.filter { $0 < limit }
        }
        var ranges: [ByteRange] = []
        let cs = UInt64(chunkSize)
        for c in chunks {
            if let last = ranges.last, last.offset + last.length == c * cs {
                ranges[ranges.count - 1].length += cs
            } else {
                ranges.append(ByteRange(offset: c * cs, length: cs))
            }
        }
        return ranges
    }

    /// A subtree: node pointer, checksum, and the level the node really sits at.
    private struct Sub { var ptr: UInt64; var crc: UInt32; var height: Int }

    private func sub(_ root: MapRoot) -> Sub? { root.ptr == 0 ? nil : Sub(ptr: root.ptr, crc: root.crc, height: root.height) }

    /// Entry `s` of a subtree seen at `level`; a shorter tree sits under slot 0.
    private func child(_ x: Sub?, _ s: Int, level: Int) throws -> (Sub?, MapTree.Entry?) {
        guard let x else { return (nil, nil) }
        if x.height < level { return (s == 0 ? x : nil, nil) }
        let n = try meta.node(x.ptr, crc: x.crc)
        guard n.ptr[s] != 0 else { return (nil, nil) }
        return (level > 1 ? Sub(ptr: n.ptr[s], crc: n.crc[s], height: level - 1) : nil, MapTree.Entry(ptr: n.ptr[s], crc: n.crc[s]))
    }

    private func diff(_ a: Sub?, _ b: Sub?, level: Int, base: UInt64, into out: inout [UInt64]) throws {
        if a == nil && b == nil { return }
        if let a, let b, a.ptr == b.ptr, a.height == b.height { return }   // shared: identical
        let span = MapTree.capacity(height: level - 1)
        for s in 0..<Layout.fanout {
            let (ca, ea) = try child(a, s, level: level)
            let (cb, eb) = try child(b, s, level: level)
            if level == 1 {
                if ea?.ptr != eb?.ptr { out.append(base + UInt64(s)) }
            } else {
                try diff(ca, cb, level: level - 1, base: base + UInt64(s) * span, into: &out)
            }
        }
    }

    /// Bytes that deleting this disk or snapshot would give back to the pool now.
    public func exclusiveBytes(_ id: ObjectID) throws -> UInt64 {
        try lock.withLock {
            guard let o = objects[id] else { throw StoreError.notFound("no such disk or snapshot") }
            guard o.map.ptr != 0 else { return 0 }
            return try exclusiveChunks(o.map.ptr, crc: o.map.crc, level: o.map.height) * UInt64(chunkSize)
        }
    }

    private func exclusiveChunks(_ ptr: UInt64, crc: UInt32, level: Int) throws -> UInt64 {
        guard metaRefs.value(ptr) == 1 else { return 0 }   // another map holds this subtree
        let n = try meta.node(ptr, crc: crc)
        var total: UInt64 = 0
        for s in 0..<Layout.fanout where n.ptr[s] != 0 {
            if level == 1 {
                if dataRefs.value(n.ptr[s]) == 1 { total += 1 }
            } else {
                total += try exclusiveChunks(n.ptr[s], crc: n.crc[s], level: level - 1)
            }
        }
        return total
    }
}

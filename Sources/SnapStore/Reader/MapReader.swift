import Foundation
import Synchronization

/// An immutable view of one committed block map (a snapshot's, or a disk's as of a pinned
/// commit), read straight from the pool files with a node cache of its own and no lock
/// that writers take (GUIDE: "Reading committed state"). Committed blocks are never
/// overwritten while something references them, and the reader holds that reference: a
/// snapshot reader keeps its snapshot from being released, a disk reader pins the commit's
/// blocks against reuse (`Pool.openReader`). `diff`, `exclusiveBytes` and (next) the files
/// view and the send stream are built on it.
public final class MapReader: @unchecked Sendable {
    public let objectId: ObjectID
    public let name: String
    /// Bytes of the image this map describes.
    public let size: UInt64
    public let chunkSize: Int
    let root: MapRoot
    private let metaFile: StorageFile
    private let dataFile: StorageFile
    private let cache: Mutex<NodeCache>
    private let letGo: @Sendable () -> Void

    init(objectId: ObjectID, name: String, size: UInt64, chunkSize: Int, root: MapRoot,
         metaFile: StorageFile, dataFile: StorageFile, cacheNodes: Int, letGo: @escaping @Sendable () -> Void) {
        self.objectId = objectId; self.name = name; self.size = size; self.chunkSize = chunkSize
        self.root = root; self.metaFile = metaFile; self.dataFile = dataFile
        self.cache = Mutex(NodeCache(limit: cacheNodes))
        self.letGo = letGo
    }

    deinit { letGo() }

    /// The committed node at `block`, verified against the checksum its parent recorded.
    func node(_ block: UInt64, crc: UInt32) throws -> CommittedNode {
        if let n = cache.withLock({ $0.get(block) }) { return n }
        let bytes: [UInt8]
        do { bytes = try MetaStore.readVerifiedBlock(block, crc: crc, from: metaFile) } catch StoreError.corrupt(let why) {
            throw StoreError.corrupt("\(name): \(why)")
        }
        let n = bytes.withUnsafeBytes { CommittedNode(block: block, decoding: $0) }
        cache.withLock { $0.put(n) }
        return n
    }

    /// A subtree seen while walking: pointer, checksum, the level it really sits at.
    struct Sub { var ptr: UInt64; var crc: UInt32; var height: Int }
    var top: Sub? { root.ptr == 0 ? nil : Sub(ptr: root.ptr, crc: root.crc, height: root.height) }

    /// Entry `s` of a subtree seen at `level` (a shorter tree sits under slot 0), and
    /// the leaf entry when `level` is 1.
    func child(_ x: Sub?, _ s: Int, level: Int) throws -> (Sub?, MapTree.Entry?) {
        guard let x else { return (nil, nil) }
        if x.height < level { return (s == 0 ? x : nil, nil) }
        let n = try node(x.ptr, crc: x.crc)
        guard n.ptr[s] != 0 else { return (nil, nil) }
        return (level > 1 ? Sub(ptr: n.ptr[s], crc: n.crc[s], height: level - 1) : nil,
                MapTree.Entry(ptr: n.ptr[s], crc: n.crc[s]))
    }

    /// The chunk entry at `index`, or nil for a hole.
    public func lookup(_ index: UInt64) throws -> (chunk: UInt64, crc: UInt32)? {
        guard root.ptr != 0, index < MapTree.capacity(height: root.height) else { return nil }
        var n = try node(root.ptr, crc: root.crc)
        var level = root.height
        while level > 1 {
            let s = MapTree.slot(index, level: level)
            guard n.ptr[s] != 0 else { return nil }
            n = try node(n.ptr[s], crc: n.crc[s])
            level -= 1
        }
        let s = MapTree.slot(index, level: 1)
        return n.ptr[s] == 0 ? nil : (n.ptr[s], n.crc[s])
    }

    /// Reads `buffer.count` bytes at `offset` (fewer at the end of the image), every chunk
    /// verified against its checksum; holes read as zeros.
    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset < size, buffer.count > 0 else { return 0 }
        let total = Int(min(UInt64(buffer.count), size - offset))
        let cs = UInt64(chunkSize)
        var chunk = [UInt8](repeating: 0, count: chunkSize)
        var done = 0
        while done < total {
            let at = offset + UInt64(done)
            let index = at / cs, inChunk = Int(at % cs)
            let n = min(chunkSize - inChunk, total - done)
            let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + n)])
            if let e = try lookup(index) {
                let got = try chunk.withUnsafeMutableBytes { try dataFile.read(into: $0, at: e.chunk * cs) }
                if got < chunkSize { for i in got..<chunkSize { chunk[i] = 0 } }
                guard crc32c(chunk) == e.crc else {
                    throw StoreError.corrupt("\(name): chunk \(e.chunk) at byte \(index * cs): checksum mismatch")
                }
                chunk.withUnsafeBytes { dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[inChunk..<(inChunk + n)])) }
            } else {
                dst.initializeMemory(as: UInt8.self, repeating: 0)
            }
            done += n
        }
        return total
    }

    /// Chunk indices (below both images' ends) mapped differently in the two maps: time
    /// proportional to their unshared parts, since a shared subtree is skipped whole.
    public static func changedChunks(_ a: MapReader, _ b: MapReader) throws -> [UInt64] {
        var out: [UInt64] = []
        let top = max(a.root.height, b.root.height)
        try diff(a, a.top, b, b.top, level: top, base: 0, into: &out)
        let cs = UInt64(a.chunkSize)
        let limit = (max(a.size, b.size) + cs - 1) / cs
        return out.filter { $0 < limit }
    }

    private static func diff(_ ra: MapReader, _ a: Sub?, _ rb: MapReader, _ b: Sub?, level: Int, base: UInt64,
                             into out: inout [UInt64]) throws {
        if a == nil && b == nil { return }
        if let a, let b, a.ptr == b.ptr, a.height == b.height { return }   // shared: identical
        let span = MapTree.capacity(height: level - 1)
        for s in 0..<Layout.fanout {
            let (ca, ea) = try ra.child(a, s, level: level)
            let (cb, eb) = try rb.child(b, s, level: level)
            if level == 1 {
                if ea?.ptr != eb?.ptr { out.append(base + UInt64(s)) }
            } else {
                try diff(ra, ca, rb, cb, level: level - 1, base: base + UInt64(s) * span, into: &out)
            }
        }
    }
}

/// A committed node as a reader sees it: immutable (Node is the writers' mutable form).
struct CommittedNode: Sendable {
    let block: UInt64
    let ptr: [UInt64]
    let crc: [UInt32]

    init(block: UInt64, decoding b: UnsafeRawBufferPointer) {
        self.block = block
        ptr = (0..<Layout.fanout).map { b.get(UInt64.self, at: $0 * Layout.entrySize) }
        crc = (0..<Layout.fanout).map { b.get(UInt32.self, at: $0 * Layout.entrySize + 8) }
    }
}

/// A bounded cache of decoded nodes: at the limit, about a quarter is dropped (maps'
/// upper levels, the hot part, are re-read at once).
struct NodeCache {
    let limit: Int
    private var nodes: [UInt64: CommittedNode] = [:]
    init(limit: Int) { self.limit = max(limit, 16) }
    func get(_ block: UInt64) -> CommittedNode? { nodes[block] }
    mutating func put(_ n: CommittedNode) {
        if nodes.count >= limit {
            for k in nodes.keys.prefix(nodes.count - limit * 3 / 4) { nodes[k] = nil }
        }
        nodes[n.block] = n
    }
}

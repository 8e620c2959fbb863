/// The metadata space: 4 KiB blocks in the file `meta`, their reference counts, and a
/// bounded cache of decoded nodes. Nodes created in the open transaction are pinned
/// in `dirty` until a commit writes them.
final class MetaStore {
    let file: StorageFile
    let refs: RefcountTable
    private var cache: [UInt64: Node] = [:]
    private(set) var dirty: [UInt64: Node] = [:]
    /// Nodes of a closed transaction whose commit has not written them yet: never evicted
    /// (a reader would find the block unwritten on disk).
    private var committing: [UInt64: Node] = [:]
    let cacheLimit: Int
    var txn: UInt64 { refs.txn }

    init(file: StorageFile, refs: RefcountTable, cacheLimit: Int) {
        self.file = file; self.refs = refs; self.cacheLimit = max(cacheLimit, 64)
    }

    /// The node at `block`, verified against the checksum its parent recorded.
    /// Nodes of the open transaction have no checksum yet and come from memory.
    func node(_ block: UInt64, crc: UInt32) throws -> Node {
        if let n = dirty[block] ?? committing[block] ?? cache[block] { return n }
        if refuseReads { throw Uncached(block: block, crc: crc) }
        let n = try readVerified(block, crc: crc)
        if cache.count >= cacheLimit { evict() }
        cache[block] = n
        return n
    }

    func readBlock(_ block: UInt64) throws -> [UInt8] { try Self.readBlock(block, from: file) }

    /// Block `block` of a metadata file; a block past its end is damage.
    static func readBlock(_ block: UInt64, from file: StorageFile) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Layout.blockSize)
        let n = try bytes.withUnsafeMutableBytes { try file.read(into: $0, at: block * UInt64(Layout.blockSize)) }
        guard n == Layout.blockSize else { throw StoreError.corrupt("metadata block \(block) lies past the end of the metadata file") }
        return bytes
    }

    /// Block `block` of a metadata file, checked against the checksum its parent recorded.
    static func readVerifiedBlock(_ block: UInt64, crc: UInt32, from file: StorageFile) throws -> [UInt8] {
        let bytes = try readBlock(block, from: file)
        let actual = crc32c(bytes)
        guard actual == crc else {
            throw StoreError.corrupt("metadata block \(block): checksum mismatch (stored \(hex(crc)), computed \(hex(actual)))")
        }
        return bytes
    }

    func newNode(copying other: Node? = nil) -> Node {
        let b = refs.allocate()
        let n = other.map { Node(block: b, gen: txn, copying: $0) } ?? Node(block: b, gen: txn)
        cache[b] = nil
        dirty[b] = n
        return n
    }

    /// The block's count reached zero: forget the node.
    func forget(_ block: UInt64) {
        dirty[block] = nil
        committing[block] = nil
        cache[block] = nil
    }

    /// Hands the open transaction's nodes to a commit; they stay pinned until
    /// `committed()` says the commit has written them.
    func takeDirty() -> [Node] {
        let nodes = Array(dirty.values)
        for n in nodes { committing[n.block] = n }
        dirty.removeAll(keepingCapacity: true)
        return nodes
    }

    /// The commit wrote its nodes: they become ordinary clean cache entries.
    func committed() {
        for (b, n) in committing { cache[b] = n }
        committing.removeAll(keepingCapacity: true)
        if cache.count > cacheLimit { evict() }
    }

    func isDirty(_ block: UInt64) -> Bool { dirty[block] != nil }

    /// Written by a finished commit (or no block): a reader finds it in the file.
    func isCommitted(_ block: UInt64) -> Bool { block == 0 || (dirty[block] == nil && committing[block] == nil) }

    /// When set, `node` throws `Uncached` instead of reading the file: callers holding the
    /// pool's lock read the block without it and retry (no device read under the lock).
    var refuseReads = false
    struct Uncached: Error { let block: UInt64; let crc: UInt32 }

    /// Reads and verifies a node without touching the cache (no lock needed: the file's
    /// committed blocks do not change while referenced); `adopt` then caches it.
    func readVerified(_ block: UInt64, crc: UInt32) throws -> Node {
        let bytes = try Self.readVerifiedBlock(block, crc: crc, from: file)
        return bytes.withUnsafeBytes { Node(block: block, decoding: $0) }
    }

    func adopt(_ n: Node) {
        guard dirty[n.block] == nil, committing[n.block] == nil, cache[n.block] == nil else { return }
        if cache.count >= cacheLimit { evict() }
        cache[n.block] = n
    }

    var dirtyCount: Int { dirty.count }

    private func evict() {
        // Drop about a quarter of the clean cache; which ones matters little for maps
        // whose hot upper levels are re-read immediately.
        var toDrop = cache.count - cacheLimit * 3 / 4
        for k in cache.keys where toDrop > 0 {
            cache[k] = nil
            toDrop -= 1
        }
    }
}

func hex(_ v: UInt32) -> String { String(v, radix: 16) }

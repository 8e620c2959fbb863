/// One 4 KiB node of a block map: 256 entries of (pointer u64, crc32c u32, reserved u32).
/// Interior entries point to child nodes; leaf entries point to data chunks (disk and
/// snapshot maps) or to record blocks (the object table). A node carries no header:
/// its checksum lives in the parent's entry (Merkle style), which also catches
/// misdirected writes.
final class Node {
    let block: UInt64
    /// The transaction that created this node; 0 for nodes read from disk. Only a node
    /// of the open transaction with reference count 1 may change in place.
    let gen: UInt64
    var ptr: [UInt64]
    var crc: [UInt32]

    init(block: UInt64, gen: UInt64) {
        self.block = block
        self.gen = gen
        ptr = [UInt64](repeating: 0, count: Layout.fanout)
        crc = [UInt32](repeating: 0, count: Layout.fanout)
    }

    init(block: UInt64, gen: UInt64, copying other: Node) {
        self.block = block
        self.gen = gen
        ptr = other.ptr
        crc = other.crc
    }

    init(block: UInt64, decoding b: UnsafeRawBufferPointer) {
        self.block = block
        gen = 0
        ptr = [UInt64](repeating: 0, count: Layout.fanout)
        crc = [UInt32](repeating: 0, count: Layout.fanout)
        for i in 0..<Layout.fanout {
            ptr[i] = b.get(UInt64.self, at: i * Layout.entrySize)
            crc[i] = b.get(UInt32.self, at: i * Layout.entrySize + 8)
        }
    }

    var isEmpty: Bool { !ptr.contains { $0 != 0 } }

    /// CRC-32C of the node's encoding, made in a scratch buffer on the stack (a commit
    /// checksums thousands of nodes while writes wait: no allocation per node).
    func checksum() -> UInt32 {
        withUnsafeTemporaryAllocation(byteCount: Layout.blockSize, alignment: 16) { b in
            encode(into: b)
            return crc32c(UnsafeRawBufferPointer(b))
        }
    }

    func encode(into b: UnsafeMutableRawBufferPointer) {
        for i in 0..<Layout.fanout {
            b.put(ptr[i], at: i * Layout.entrySize)
            b.put(crc[i], at: i * Layout.entrySize + 8)
            b.put(UInt32(0), at: i * Layout.entrySize + 12)
        }
    }
}

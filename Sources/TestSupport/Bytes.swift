import Foundation

public enum Bytes {
    /// `count` random bytes (never all zero for count >= 8, so they differ from a hole).
    public static func random(_ count: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { buf in
            var i = 0
            while i + 8 <= buf.count {
                buf.storeBytes(of: g.next() as UInt64, toByteOffset: i, as: UInt64.self)
                i += 8
            }
            while i < buf.count { buf[i] = UInt8.random(in: 1...255, using: &g); i += 1 }
        }
        if count >= 8, out.allSatisfy({ $0 == 0 }) { out[0] = 1 }
        return out
    }

    /// A block (4 KiB by default) that names its sequence number: one never-zero 64-bit word,
    /// derived from `index`, repeated. `size` must be a multiple of 8.
    public static func sequenceBlock(_ index: Int, size: Int = 4096) -> [UInt8] {
        let words = [UInt64](repeating: sequenceWord(index).littleEndian, count: size / 8)
        return words.withUnsafeBytes { Array($0) }
    }

    static func sequenceWord(_ index: Int) -> UInt64 { UInt64(index) &+ 0x5A5A_0000_0000_0001 }

    public enum BlockKind: Equatable, Sendable { case sequence, zero, other }

    /// Whether `block` is `sequenceBlock(index, size: block.count)`, all zeros, or anything else.
    public static func classify(_ block: UnsafeRawBufferPointer, index: Int) -> BlockKind {
        guard block.count >= 8 else { return isZero(block) ? .zero : .other }
        let first = UInt64(littleEndian: block.loadUnaligned(as: UInt64.self))
        guard first == sequenceWord(index) || first == 0 else { return .other }
        // All 8-byte words equal <=> the block equals itself shifted by one word.
        let same = memcmp(block.baseAddress!, block.baseAddress! + 8, block.count - 8) == 0
        guard same else { return .other }
        return first == 0 ? .zero : .sequence
    }

    public static func isZero<C: Collection>(_ bytes: C) -> Bool where C.Element == UInt8 {
        bytes.allSatisfy { $0 == 0 }
    }
}

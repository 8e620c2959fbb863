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

    /// A 4 KiB block that names its sequence number: `index` as 8 little-endian bytes, repeated.
    public static func sequenceBlock(_ index: Int, size: Int = 4096) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: size)
        let v = UInt64(index) &+ 0x5A5A_0000_0000_0001  // never zero
        for i in stride(from: 0, to: size, by: 8) {
            withUnsafeBytes(of: v.littleEndian) { for j in 0..<8 where i + j < size { out[i + j] = $0[j] } }
        }
        return out
    }

    public static func isZero<C: Collection>(_ bytes: C) -> Bool where C.Element == UInt8 {
        bytes.allSatisfy { $0 == 0 }
    }
}

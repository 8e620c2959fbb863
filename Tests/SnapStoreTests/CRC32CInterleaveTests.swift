import CStoreSupport
import XCTest
@testable import SnapStore

/// snap_crc32c runs three interleaved crc32 streams over long buffers and merges
/// them with a carry-less multiply. Check it against a bitwise reference on every
/// short length, around block/round boundaries, at every misalignment, and when
/// continuing from a non-zero crc.
final class CRC32CInterleaveTests: XCTestCase {
    /// Bitwise CRC-32C continuing from `crc` (same convention as snap_crc32c).
    static func reference(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 == 1 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        }
        return ~c
    }

    static let data: [UInt8] = {
        var rng = PoolModelTests.RNG(state: 0xC3C3)
        return (0..<200_016).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }()

    /// Checks snap_crc32c from `start` at each of `lengths` (ascending), carrying
    /// one running reference crc along so the bitwise reference reads the data once.
    func check(_ start: Int, _ lengths: [Int], crc: UInt32 = 0, file: StaticString = #filePath, line: UInt = #line) {
        Self.data.withUnsafeBytes { all in
            var ref = crc, done = 0
            for len in lengths {
                ref = Self.reference(ref, UnsafeRawBufferPointer(rebasing: all[(start + done)..<(start + len)]))
                done = len
                XCTAssertEqual(snap_crc32c(crc, all.baseAddress! + start, len), ref,
                               "offset \(start) length \(len) crc \(crc)", file: file, line: line)
            }
        }
    }

    func testEveryLengthUpTo3000AtEveryMisalignment() {
        for start in 0..<8 {
            check(start, Array(0...3000))
        }
    }

    func testLengthsAroundBlockBoundaries() {
        // Rounds are 3 blocks of 8k bytes (k <= 512, so up to 12 KiB per round),
        // merged only from 128 bytes up; probe each side of those edges.
        var lengths: Set<Int> = []
        for base in [96, 128, 192, 256, 1024, 4096, 8192, 12_288, 16_384, 24_576, 36_864, 65_536, 131_072, 200_000] {
            for d in -25...25 where base + d >= 0 && base + d <= 200_000 { lengths.insert(base + d) }
        }
        for n in stride(from: 3001, through: 200_000, by: 4999) { lengths.insert(n) }
        for start in 0..<8 {
            check(start, lengths.sorted())
        }
    }

    func testNonZeroInitialCrcAndChaining() {
        for (start, len) in [(0, 1), (1, 127), (3, 128), (5, 4096), (7, 65_536), (2, 100_003)] {
            for crc: UInt32 in [1, 0xDEAD_BEEF, 0xFFFF_FFFF] { check(start, [len], crc: crc) }
        }
        // crc(A) continued over B == crc(A + B), for splits around the interleave sizes.
        Self.data.withUnsafeBytes { all in
            for (start, total) in [(0, 3000), (3, 4096), (5, 65_536), (1, 200_000)] {
                let whole = UnsafeRawBufferPointer(rebasing: all[start..<(start + total)])
                let expected = snap_crc32c(0, whole.baseAddress, total)
                for split in [0, 1, 7, 127, 128, 1000, 1500, 2999, 4095, 12_289, 65_535, total] where split <= total {
                    let a = snap_crc32c(0, whole.baseAddress, split)
                    let ab = snap_crc32c(a, whole.baseAddress! + split, total - split)
                    XCTAssertEqual(ab, expected, "offset \(start) total \(total) split \(split)")
                }
            }
        }
    }
}

/// How the data chunks are split into segment files (docs/FORMAT.md, "Data segments").
/// Chunk n lives at byte n × chunk size of one logical data space; that space is cut into
/// segments `data.000000`, `data.000001`, ...: segment 0 holds the first `first` bytes,
/// each later segment is twice its predecessor's size up to `largest`, then all are
/// `largest`. So a small pool has few small files and a big one 1 GiB files, and
/// allocating host space for the next segment never takes the lock of the file that
/// writes are going to (BENCHMARKS.md, session 9).
public struct SegmentLayout: Equatable, Sendable {
    /// Size of segment 0 (and 1) in bytes: a power of two, at least the chunk size.
    public var first: UInt64
    /// Size every segment grows to: a power of two, at least `first`.
    public var largest: UInt64

    public static let standard = SegmentLayout(first: 32 << 20, largest: 1 << 30)
    /// Format 3's layout: all chunks in one file, `data` (superblock offsets 128 and 136
    /// are zero). Pools of format 3 keep it, and stay format 3.
    public static let singleFile = SegmentLayout(first: 0, largest: 0)
    public var isSingleFile: Bool { first == 0 }

    public init(first: UInt64, largest: UInt64) {
        self.first = first
        self.largest = largest
    }

    /// Why this layout cannot be used with the chunk size, or nil.
    func problem(chunkSize: UInt64) -> String? {
        if isSingleFile { return largest == 0 ? nil : "bad data segment sizes \(first)/\(largest)" }
        func pow2(_ v: UInt64) -> Bool { v != 0 && v & (v - 1) == 0 }
        guard pow2(first), pow2(largest), first >= chunkSize, first >= 4096, largest >= first, largest <= 1 << 40 else {
            return "bad data segment sizes \(first)/\(largest) for chunk size \(chunkSize)"
        }
        return nil
    }

    /// Index of the first segment of size `largest`: it starts at byte `largest`.
    private var firstLargest: UInt64 { UInt64((largest / first).trailingZeroBitCount) + 1 }

    /// The segment holding byte `offset`.
    func segment(of offset: UInt64) -> UInt64 {
        if isSingleFile || offset < first { return 0 }
        if offset < largest { return UInt64(63 - (offset / first).leadingZeroBitCount) + 1 }
        return firstLargest + (offset - largest) / largest
    }

    /// First byte of segment k.
    func start(of k: UInt64) -> UInt64 {
        if k == 0 { return 0 }
        if isSingleFile { return .max }
        if k < firstLargest { return first << (k - 1) }
        return largest * (k - firstLargest + 1)
    }

    func end(of k: UInt64) -> UInt64 { start(of: k + 1) }

    /// The file holding segment k.
    func fileName(_ k: UInt64) -> String {
        isSingleFile ? "data" : Self.fileName(k)
    }

    /// The file name of segment k in a segmented layout.
    static func fileName(_ k: UInt64) -> String {
        let digits = String(k)
        return "data." + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }

    /// The segment a pool file name stands for in this layout, or nil.
    func segmentIndex(ofFileName name: String) -> UInt64? {
        isSingleFile ? (name == "data" ? 0 : nil) : Self.index(ofFileName: name)
    }

    /// The segment index a pool file name stands for in a segmented layout, or nil.
    static func index(ofFileName name: String) -> UInt64? {
        guard name.hasPrefix("data."), name.count >= 11 else { return nil }
        let digits = name.dropFirst(5)
        guard digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt64(digits)
    }
}

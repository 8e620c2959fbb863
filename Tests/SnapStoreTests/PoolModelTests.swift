import Foundation
import XCTest
@testable import SnapStore

/// Random sequences of writes, punches, truncates, snapshots, clones, deletions,
/// commits and reopenings, checked against an in-memory model of every disk's and
/// snapshot's bytes, with the reference-count checker after each sequence.
final class PoolModelTests: XCTestCase {
    /// Sparse model of one image: 4 KiB pages; absent pages are zeros.
    struct Image {
        var size: UInt64 = 0
        var pages: [UInt64: [UInt8]] = [:]

        mutating func write(_ off: UInt64, _ bytes: [UInt8]) {
            var i = 0
            while i < bytes.count {
                let pos = off + UInt64(i)
                let p = pos / 4096, o = Int(pos % 4096)
                let n = min(4096 - o, bytes.count - i)
                var page = pages[p] ?? [UInt8](repeating: 0, count: 4096)
                page.replaceSubrange(o..<(o + n), with: bytes[i..<(i + n)])
                pages[p] = page
                i += n
            }
            size = max(size, off + UInt64(bytes.count))
        }

        mutating func zero(_ from: UInt64, _ to: UInt64) {
            guard from < to else { return }
            for p in (from / 4096)...((to - 1) / 4096) {
                guard var page = pages[p] else { continue }
                let lo = max(from, p * 4096) - p * 4096, hi = min(to, (p + 1) * 4096) - p * 4096
                for k in Int(lo)..<Int(hi) { page[k] = 0 }
                pages[p] = page
            }
        }

        mutating func truncate(_ newSize: UInt64) {
            if newSize < size { zero(newSize, size) }
            size = newSize
        }

        func bytes(_ off: UInt64, _ len: Int) -> [UInt8] {
            let n = off >= size ? 0 : Int(min(UInt64(len), size - off))
            var out = [UInt8](repeating: 0, count: n)
            var i = 0
            while i < n {   // a page at a time
                let pos = off + UInt64(i)
                let inPage = Int(pos % 4096)
                let k = min(4096 - inPage, n - i)
                if let page = pages[pos / 4096] {
                    for j in 0..<k { out[i + j] = page[inPage + j] }
                }
                i += k
            }
            return out
        }
    }

    struct RNG: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    var dir = ""

    override func setUp() {
        dir = NSTemporaryDirectory() + "snapfs-model-\(UUID().uuidString)"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    func readAll(_ pool: Pool, _ id: ObjectID, _ off: UInt64, _ len: Int) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0xAA, count: len)
        let n = try buf.withUnsafeMutableBytes { try pool.read(object: id, offset: off, into: $0) }
        return Array(buf[0..<n])
    }

    func verify(_ pool: Pool, _ disks: [String: Image], _ snaps: [String: Image], _ rng: inout RNG, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(Set(pool.disks().map(\.name)), Set(disks.keys), file: file, line: line)
        XCTAssertEqual(Set(pool.snapshots().map(\.name)), Set(snaps.keys), file: file, line: line)
        func compare(_ id: ObjectID, _ name: String, _ m: Image, size: UInt64) throws {
            XCTAssertEqual(size, m.size, "size of \(name)", file: file, line: line)
            // Every written page, plus random samples (holes must read zero).
            var offsets = m.pages.keys.map { $0 * 4096 }
            for _ in 0..<8 where m.size > 0 { offsets.append(UInt64.random(in: 0..<m.size, using: &rng)) }
            for off in offsets where off < m.size {
                let got = try readAll(pool, id, off, 5000)
                XCTAssertEqual(got, m.bytes(off, 5000), "\(name) at \(off)", file: file, line: line)
            }
            // One large read: runs of adjacent chunks, holes between them, several leaves.
            if m.size > 0 {
                let off = UInt64.random(in: 0..<min(m.size, 6 << 20), using: &rng)
                let got = try readAll(pool, id, off, 3 << 20)
                XCTAssertTrue(got == m.bytes(off, 3 << 20), "\(name): 3 MiB at \(off)", file: file, line: line)
            }
        }
        for (name, m) in disks { let d = pool.disk(named: name)!; try compare(d.id, name, m, size: d.size) }
        for (name, m) in snaps { let s = pool.snapshot(named: name)!; try compare(s.id, name, m, size: s.size) }
    }

    func runSequence(seed: UInt64, steps: Int) throws {
        var rng = RNG(state: seed)
        var options = PoolOptions()
        options.chunkSize = 4096
        options.cacheBlocks = 64   // small: evictions and re-reads get exercised
        options.dataSegments = SegmentLayout(first: 16384, largest: 65536)   // many segment files
        var pool = try Pool.open(directory: dir, options: options)
        var disks: [String: Image] = [:]
        var snaps: [String: Image] = [:]
        var nextName = 0
        for step in 0..<steps {
            let roll = Int.random(in: 0..<100, using: &rng)
            let diskNames = disks.keys.sorted()
            if diskNames.isEmpty || roll < 3 {
                let name = "d\(nextName)"; nextName += 1
                _ = try pool.createDisk(name: name, size: 0)
                disks[name] = Image()
                continue
            }
            let dname = diskNames.randomElement(using: &rng)!
            let d = pool.disk(named: dname)!
            switch roll {
            case 3..<60:
                // Mostly near the start, sometimes far out (taller trees).
                let far = Int.random(in: 0..<20, using: &rng) == 0
                let off = far ? UInt64.random(in: 0..<(1 << 30), using: &rng) : UInt64.random(in: 0..<(6 << 20), using: &rng)
                // Now and then a large write: many chunks, runs of adjacent ones, across leaves.
                let large = Int.random(in: 0..<30, using: &rng) == 0
                let len = large ? Int.random(in: 1...(2_600_000), using: &rng) : Int.random(in: 1...12_000, using: &rng)
                let bytes: [UInt8]
                if large {
                    let k = UInt8.random(in: 1...255, using: &rng)
                    bytes = (0..<len).map { UInt8(truncatingIfNeeded: $0 / 7) &* k &+ UInt8(truncatingIfNeeded: $0) }
                } else {
                    bytes = (0..<len).map { _ in UInt8.random(in: 0...255, using: &rng) }
                }
                try bytes.withUnsafeBytes { try pool.write(disk: d.id, offset: off, data: $0) }
                disks[dname]!.write(off, bytes)
            case 60..<67:
                guard d.size > 0 else { continue }
                let off = UInt64.random(in: 0..<d.size, using: &rng)
                let len = UInt64.random(in: 1...(200 * 1024), using: &rng)
                try pool.punchHole(disk: d.id, offset: off, length: len)
                disks[dname]!.zero(off, min(d.size, off + len))
            case 67..<71:
                let newSize = UInt64.random(in: 0...(d.size + 100_000), using: &rng)
                try pool.setDiskSize(id: d.id, size: newSize)
                disks[dname]!.truncate(newSize)
            case 71..<80:
                let label = "s\(step)"
                _ = try pool.createSnapshots([SnapshotRequest(disk: dname, label: label)])
                snaps["\(dname)@\(label)"] = disks[dname]!
            case 80..<85:
                guard let s = snaps.keys.sorted().randomElement(using: &rng) else { continue }
                try pool.deleteSnapshot(name: s)
                snaps[s] = nil
            case 85..<89:
                guard let s = snaps.keys.sorted().randomElement(using: &rng) else { continue }
                let name = "d\(nextName)"; nextName += 1
                _ = try pool.createDisk(name: name, fromSnapshot: s)
                disks[name] = snaps[s]!
            case 89..<91:
                guard let s = snaps.keys.sorted().filter({ $0.hasPrefix(dname + "@") }).randomElement(using: &rng) else { continue }
                try pool.rollbackDisk(name: dname, toSnapshot: s)
                disks[dname] = snaps[s]!
            case 91..<93:
                try pool.deleteDisk(name: dname)
                disks[dname] = nil
            case 93..<98:
                try pool.sync()
            default:
                // Everything synced survives a clean reopen.
                try pool.close()
                pool = try Pool.open(directory: dir, options: options)
            }
        }
        try verify(pool, disks, snaps, &rng)
        try pool.sync()
        let live = pool.check()
        XCTAssertTrue(live.isClean, "seed \(seed): " + live.problems.prefix(10).joined(separator: "\n"))
        try pool.close()
        pool = try Pool.open(directory: dir, options: options)
        try verify(pool, disks, snaps, &rng)
        let reopened = pool.check()
        XCTAssertTrue(reopened.isClean, "seed \(seed) after reopen: " + reopened.problems.prefix(10).joined(separator: "\n"))
        try pool.close()
    }

    func testRandomSequencesAgainstModel() throws {
        for seed in UInt64(1)...6 {
            setUp()
            try runSequence(seed: seed, steps: 1500)
            tearDown()
        }
    }
}

import Foundation
import Glibc
import SnapStore
import TestSupport
import XCTest

/// `disk rollback` (with a warm page cache, the undo snapshot) and `snapshot diff`.
final class CLIRollbackDiffTests: CLITestCase {
    /// Reads a whole file through one descriptor (so its pages are in the page cache).
    private func readAll(_ path: String) throws -> [UInt8] {
        let fd = try Sys.open(path, O_RDONLY)
        defer { try? Sys.close(fd) }
        return try Sys.pread(fd, Int(try Sys.fstat(fd).st_size), 0)
    }

    func testRollbackWithWarmCacheAndUndo() throws {
        let image = try makeDisk("vm1", size: 8 << 20)
        let p1 = Bytes.random(8 << 20)
        try write(image, p1, at: 0)
        ok(["snapshot", "create", "vm1", "--label", "s1"])
        let p2 = Bytes.random(12 << 20)      // different bytes and a larger size
        try write(image, p2, at: 0)

        // Warm: the kernel has every page of p2 and its size cached.
        XCTAssertEqual(try readAll(image), p2)
        XCTAssertEqual(try readAll(image), p2)
        let out = try json(["disk", "rollback", "vm1", "--to", "vm1@s1"])
        let undo = try XCTUnwrap((out["Snapshots"] as? [[String: Any]])?.first?["SnapshotId"] as? String)
        XCTAssertNotNil(undo.range(of: #"^vm1@undo-\d{8}T\d{6}Z$"#, options: .regularExpression), undo)
        XCTAssertEqual((out["Disks"] as? [[String: Any]])?.first?["Size"] as? Int, 8 << 20)

        XCTAssertEqual(try Sys.stat(image).st_size, 8 << 20, "size invalidated")
        let after = try readAll(image)
        XCTAssertEqual(after.count, p1.count)
        XCTAssertTrue(after == p1, "a reopen after rollback reads the snapshot, not cached pages")
        XCTAssertEqual(after, try readAll(m.image(snapshot: "vm1@s1")))

        // The undo snapshot holds the state before the rollback, and restores it.
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(m.snapshots)/\(undo)/image"), "visible at once")
        XCTAssertEqual(try readAll(m.image(snapshot: undo)), p2)
        ok(["disk", "rollback", "vm1", "--to", undo, "--no-undo"])
        XCTAssertEqual(try readAll(image), p2)
        XCTAssertEqual(try snapshotIds(), [undo, "vm1@s1"].sorted(), "--no-undo adds no snapshot")

        // Later snapshots stay; rolling back to an older one leaves them intact.
        ok(["snapshot", "create", "vm1", "--label", "s2"])
        ok(["disk", "rollback", "vm1", "--to", "vm1@s1", "--no-undo"])
        XCTAssertEqual(try readAll(m.image(snapshot: "vm1@s2")), p2)
        XCTAssertEqual(try readAll(image), p1)
    }

    /// Chunk-aligned, sorted, coalesced ranges covering `writes` (offset, length).
    private func expectedRanges(_ writes: [(Int, Int)], chunk: Int = PoolOptions().chunkSize) -> [[Int]] {
        var chunks = Set<Int>()
        for (o, l) in writes { for c in (o / chunk)...((o + l - 1) / chunk) { chunks.insert(c) } }
        var out: [[Int]] = []
        for c in chunks.sorted() {
            if let last = out.last, last[0] + last[1] == c * chunk { out[out.count - 1][1] += chunk }
            else { out.append([c * chunk, chunk]) }
        }
        return out
    }

    private func diffRanges(_ args: [String]) throws -> [[Int]] {
        let d = try json(["snapshot", "diff"] + args)
        XCTAssertEqual(Set(d.keys), SpecKeys.diff)
        XCTAssertEqual(d["ChunkSize"] as? Int, PoolOptions().chunkSize)
        let ranges = try XCTUnwrap(d["ChangedRanges"] as? [[String: Any]])
        for r in ranges { XCTAssertEqual(Set(r.keys), SpecKeys.range) }
        return ranges.map { [$0["Offset"] as! Int, $0["Length"] as! Int] }
    }

    func testDiffMatchesWhatWasWritten() throws {
        let image = try makeDisk("vm1", size: 16 << 20)
        try write(image, Bytes.random(16 << 20), at: 0)
        ok(["snapshot", "create", "vm1", "--label", "s1"])
        XCTAssertEqual(try diffRanges(["vm1@s1"]), [], "nothing written yet")

        var first: [(Int, Int)] = []
        for _ in 0..<12 {
            let offset = Int.random(in: 0..<(16 << 20) - 300_000), length = Int.random(in: 1...300_000)
            try write(image, Bytes.random(length), at: offset)
            first.append((offset, length))
        }
        first.append((5 * 65536 + 100, 1))   // a one-byte write marks its whole chunk
        try write(image, [0xAB], at: 5 * 65536 + 100)
        XCTAssertEqual(try diffRanges(["vm1@s1"]), expectedRanges(first))
        ok(["snapshot", "create", "vm1", "--label", "s2"])

        let second: [(Int, Int)] = [(15 << 20, 4096), (0, 70_000)]
        for (o, l) in second { try write(image, Bytes.random(l), at: o) }
        XCTAssertEqual(try diffRanges(["vm1@s1", "vm1@s2"]), expectedRanges(first), "between two snapshots")
        XCTAssertEqual(try diffRanges(["vm1@s2"]), expectedRanges(second), "snapshot vs the disk now")
        XCTAssertEqual(try diffRanges(["vm1@s1"]), expectedRanges(first + second))
        let human = ok(["snapshot", "diff", "vm1@s2"]).stdout
        XCTAssertTrue(human.contains("OFFSET") && human.contains("\(15 << 20)"), human)
    }
}

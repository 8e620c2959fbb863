import Foundation
import XCTest
import TestSupport
@testable import SnapStore

/// No metadata can make a commit fail: `createSnapshots` either refuses it up front with
/// nothing changed, or stores it and the commit goes through (SPEC §6).
final class MetadataValidationTests: XCTestCase {
    func testAnyMetadataIsRefusedUpFrontOrCommits() throws {
        let dir = NSTemporaryDirectory() + "snapfs-meta-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o = PoolOptions()
        o.backgroundCommits = false
        let pool = try Pool.open(directory: dir, options: o)
        _ = try pool.createDisk(name: String(repeating: "d", count: 64))
        let disk = String(repeating: "d", count: 64)
        // Characters whose encoded width differs: escaped ones, multi-byte ones, plain ones.
        let alphabet: [String] = ["/", "\"", "\\", "a", "é", "日", "😀", "\u{2028}", "<", "&", " "]
        var rng = PoolModelTests.RNG(state: 7)
        func text(_ maxBytes: Int) -> String {
            var s = ""
            let target = Int.random(in: 0...maxBytes, using: &rng)
            while true {
                let c = alphabet.randomElement(using: &rng)!
                if s.utf8.count + c.utf8.count > target { return s }
                s += c
            }
        }
        var stored = 0, refused = 0
        for i in 0..<300 {
            var r = SnapshotRequest(disk: disk, label: "s\(i)" + String(repeating: "x", count: 60))
            r.description = text(SnapshotMetadata.maxDescriptionBytes)
            for _ in 0..<Int.random(in: 0...SnapshotMetadata.maxTags, using: &rng) {
                let k = text(SnapshotMetadata.maxKeyBytes).replacingOccurrences(of: "=", with: "")
                if !k.isEmpty { r.tags[k] = text(SnapshotMetadata.maxValueBytes) }
            }
            r.retentionDays = Bool.random(using: &rng) ? SnapshotMetadata.maxRetentionDays : nil
            r.freezeMicros = .max
            let before = pool.snapshots().count
            do {
                let made = try pool.createSnapshots([r])
                pool.setFreezeMicros(snapshot: made[0].id, micros: .max)
                stored += 1
            } catch StoreError.invalidArgument {
                refused += 1
                XCTAssertEqual(pool.snapshots().count, before, "a refusal changes nothing")
            }
            XCTAssertNoThrow(try pool.sync(), "commit after input \(i)")
        }
        XCTAssertGreaterThan(stored, 20)
        XCTAssertGreaterThan(refused, 20)
        try pool.close()
        let again = try Pool.open(directory: dir, options: o)
        XCTAssertEqual(again.snapshots().count, stored)
        try again.close()
    }
}

import Foundation
import Glibc
import TestSupport
import XCTest

/// Metadata that users give is validated once, in the store, with the encoder that writes
/// it (SPEC §6): any input fits and is stored, or is refused before anything changes, and
/// no input can stop the pool from committing.
final class CLIMetadataTests: CLITestCase {
    /// The input that used to pass the check and then wedge every commit: characters the
    /// record's encoder escaped but the check's did not.
    func testSlashHeavyMetadataIsStoredExactlyAndThePoolKeepsCommitting() throws {
        let image = try makeDisk("d", size: 1 << 20)
        let other = try makeDisk("e", size: 1 << 20)
        let description = String(repeating: "/", count: 256)
        let tags = (1...7).map { ("k\($0)", String(repeating: "/", count: 250 - 5 * ($0 - 1))) }
        ok(["snapshot", "create", "d", "--label", "slashes", "--description", description]
           + tags.flatMap { ["--tag", "\($0.0)=\($0.1)"] })
        try assertPoolCommits(other)
        let s = try XCTUnwrap(try snapshots().first { $0["SnapshotId"] as? String == "d@slashes" })
        XCTAssertEqual(s["Description"] as? String, description)
        XCTAssertEqual(s["Tags"] as? [String: String], Dictionary(uniqueKeysWithValues: tags))
        try write(image, [7], at: 0)
        try m.kill9()
        try m.mount()
        let again = try XCTUnwrap(try snapshots().first { $0["SnapshotId"] as? String == "d@slashes" })
        XCTAssertEqual(again["Description"] as? String, description)
        XCTAssertEqual(again["Tags"] as? [String: String], Dictionary(uniqueKeysWithValues: tags))
    }

    /// Within every per-field limit but too large once encoded (quotes and backslashes take
    /// two bytes each): refused with one clear line, nothing listed, the pool unharmed.
    func testMetadataTooLargeWhenEncodedIsRefusedAndChangesNothing() throws {
        _ = try makeDisk("d", size: 1 << 20)
        let other = try makeDisk("e", size: 1 << 20)
        let quotes = String(repeating: "\"", count: 256)
        let args = ["snapshot", "create", "d", "--label", "big", "--description", quotes]
            + (0..<20).flatMap { ["--tag", "k\($0)=" + String(repeating: "\\", count: 256)] }
        fails(args, "too large together")
        XCTAssertEqual(try snapshotIds(), [])
        try assertPoolCommits(other)
        // Unicode other than control characters is accepted and reads back exactly.
        let text = "snapshot ✓ 日本語 \"quoted\" back\\slash 😀"
        ok(["snapshot", "create", "d", "--label", "uni", "--description", text, "--tag", "ключ=значение/✓"])
        let s = try XCTUnwrap(try snapshots().first { $0["SnapshotId"] as? String == "d@uni" })
        XCTAssertEqual(s["Description"] as? String, text)
        XCTAssertEqual(s["Tags"] as? [String: String], ["ключ": "значение/✓"])
        // Limits are bytes, as SPEC §6 says: 129 bytes of key is one too many.
        fails(["snapshot", "create", "d", "--tag", String(repeating: "é", count: 65) + "=v"], "invalid tag key")
    }

    /// fsync on another disk and a snapshot by mkdir both still work.
    private func assertPoolCommits(_ image: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let fd = try Sys.open(image, O_RDWR)
        defer { try? Sys.close(fd) }
        try Sys.pwrite(fd, Bytes.random(4096), 0)
        XCTAssertEqual(fsync(fd), 0, "fsync after the metadata: errno \(errno)", file: file, line: line)
        let label = "after-\(UInt32.random(in: 0...UInt32.max))"
        XCTAssertEqual(Glibc.mkdir(m.snapshots + "/e@\(label)", 0o755), 0, "mkdir snapshot: errno \(errno)", file: file, line: line)
    }
}

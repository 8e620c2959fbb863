import Foundation
import Glibc
import TestSupport
import XCTest

/// Helpers for tests that run the built `snapfs` CLI against a live mount.
class CLITestCase: MountedTestCase {
    /// Runs `snapfs ARGS --pool POOL`; fails the test unless it exits 0.
    @discardableResult
    func ok(_ args: [String], file: StaticString = #filePath, line: UInt = #line) -> ShellResult {
        let r = m.cli(args)
        XCTAssertEqual(r.status, 0, "\(r)", file: file, line: line)
        return r
    }

    /// Runs the command; it must exit non-zero with a first stderr line "snapfs: ..." that
    /// contains `message`.
    @discardableResult
    func fails(_ args: [String], _ message: String, file: StaticString = #filePath, line: UInt = #line) -> ShellResult {
        let r = m.cli(args)
        XCTAssertNotEqual(r.status, 0, "expected failure: \(r)", file: file, line: line)
        let first = r.stderr.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
        XCTAssertTrue(first.hasPrefix("snapfs: "), "first stderr line: \(first)", file: file, line: line)
        XCTAssertTrue(message.isEmpty || first.contains(message), "first stderr line '\(first)' lacks '\(message)'", file: file, line: line)
        return r
    }

    /// `snapfs ARGS --json` parsed as a JSON object.
    func json(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let r = ok(args + ["--json"], file: file, line: line)
        let value = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8), options: [.fragmentsAllowed])
        return try XCTUnwrap(value as? [String: Any], "not a JSON object: \(r.stdout)", file: file, line: line)
    }

    func snapshots(_ extra: [String] = []) throws -> [[String: Any]] {
        try XCTUnwrap(try json(["snapshot", "list"] + extra)["Snapshots"] as? [[String: Any]])
    }

    func snapshotIds(_ extra: [String] = []) throws -> [String] {
        try snapshots(extra).compactMap { $0["SnapshotId"] as? String }.sorted()
    }

    func disks() throws -> [[String: Any]] {
        try XCTUnwrap(try json(["disk", "list"])["Disks"] as? [[String: Any]])
    }

    func disk(_ name: String) throws -> [String: Any]? {
        try disks().first { $0["DiskId"] as? String == name }
    }

    /// Writes `bytes` at `offset` of a disk image (open, pwrite, close).
    func write(_ image: String, _ bytes: [UInt8], at offset: Int) throws {
        let fd = try Sys.open(image, O_WRONLY)
        defer { try? Sys.close(fd) }
        try Sys.pwrite(fd, bytes, offset)
    }

    func read(_ path: String) throws -> [UInt8] { try Sys.readFile(path) }

    /// Restarts the daemon with extra environment variables (inherited by the child).
    func remount(environment: [String: String]) throws {
        try m.unmount()
        for (k, v) in environment { setenv(k, v, 1) }
        defer { for k in environment.keys { unsetenv(k) } }
        try m.mount()
    }
}

let rfc3339 = try! NSRegularExpression(pattern: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"#)
func isRFC3339(_ value: Any?) -> Bool {
    guard let s = value as? String else { return false }
    return rfc3339.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) != nil
}

enum SpecKeys {
    static let disk: Set<String> = ["DiskId", "Size", "AllocatedBytes", "CreationTime", "Status"]
    static let snapshot: Set<String> = ["SnapshotId", "SourceDiskId", "SourceDiskSize", "CreationTime", "Status",
                                        "Progress", "ExclusiveBytes", "FreezeMicros", "Description", "Tags",
                                        "RetentionDays", "ExpiresAt"]
    static let stats: Set<String> = ["CapacityBytes", "UsedBytes", "LogicalBytes", "ChunkSize", "Disks", "Snapshots"]
    static let diff: Set<String> = ["ChunkSize", "ChangedRanges"]
    static let range: Set<String> = ["Offset", "Length"]
}

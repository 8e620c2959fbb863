import Foundation
import Glibc
import TestSupport
import XCTest

/// Base for tests that need a live mount: a fresh pool per test, always torn down.
/// Setting up throws (so the test FAILS) if /dev/fuse or the snapfs binary is missing.
class MountedTestCase: XCTestCase {
    var m: MountedPool!
    private var watchdog: Watchdog?
    /// A test still running after this long has its daemon killed (so it fails, not hangs).
    class var testTimeLimit: Double { 600 }

    override func setUpWithError() throws {
        try super.setUpWithError()
        m = try makePool()
        watchdog = m.watchdog(seconds: Self.testTimeLimit)
    }

    /// The pool each test gets; override for a different set-up.
    func makePool() throws -> MountedPool { try MountedPool() }

    override func tearDown() {
        if watchdog?.disarm() == true {
            XCTFail("test ran over \(Self.testTimeLimit) s: the daemon was killed; log:\n\(m?.log.suffix(4000) ?? "")")
        }
        // Tests register loop devices / ext4 mounts with addTeardownBlock; those run before this.
        m?.teardown()
        m = nil
        super.tearDown()
    }

    /// mkdir disks/NAME, optionally with a size, returning the image path.
    @discardableResult
    func makeDisk(_ name: String, size: Int? = nil) throws -> String {
        try Sys.mkdir("\(m.disks)/\(name)")
        let image = m.image(disk: name)
        if let size { try Sys.truncate(image, size) }
        return image
    }

    /// mkdir snapshots/ID, returning the snapshot image path.
    @discardableResult
    func snapshot(_ id: String) throws -> String {
        try Sys.mkdir("\(m.snapshots)/\(id)")
        return m.image(snapshot: id)
    }
}

/// Asserts `body` fails with exactly `expected` (or succeeds, for 0).
func assertErrno(_ expected: Int32, _ what: String, file: StaticString = #filePath, line: UInt = #line,
                 _ body: () throws -> Void) {
    let got = errnoOf(body)
    XCTAssertEqual(got, expected, "\(what): expected \(errnoName(expected)), got \(errnoName(got))",
                   file: file, line: line)
}

/// Asserts `body` fails with one of `allowed` (SPEC's "EPERM or EACCES").
func assertErrno(oneOf allowed: [Int32], _ what: String, file: StaticString = #filePath, line: UInt = #line,
                 _ body: () throws -> Void) {
    let got = errnoOf(body)
    XCTAssertTrue(allowed.contains(got),
                  "\(what): expected one of \(allowed.map(errnoName)), got \(errnoName(got))", file: file, line: line)
}

/// Polls `condition` every 100 ms until it holds or `seconds` pass; returns whether it held.
func eventually(_ seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(100_000)
    }
    return condition()
}

/// Best effort: drop the kernel's clean page cache, so reads reach the daemon.
func dropCaches() {
    sync()
    if let h = FileHandle(forWritingAtPath: "/proc/sys/vm/drop_caches") {
        h.write("3\n".data(using: .utf8)!)
        try? h.close()
    }
}

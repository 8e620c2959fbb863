import Foundation
import Glibc
import TestSupport
import XCTest

/// Pins (what `snapfs check` of a mounted pool holds) are leases: renewed, they keep the
/// commit's blocks; not renewed, they lapse and the freed blocks come back; a check whose
/// pin lapsed says so instead of reporting what it read.
final class ControlPinTests: CLITestCase {
    var socketPath: String { m.pool + "/control.sock" }

    func usedBytes() throws -> Int {
        try XCTUnwrap(try json(["pool", "stats"])["UsedBytes"] as? Int)
    }

    /// A disk holding 16 MiB, then a pin (which commits it), then the disk deleted: its blocks
    /// are freed but kept for the pin. Returns the pin's connection and the pool's use while
    /// pinned.
    func pinThenFreeSixteenMiB() throws -> (RawControlClient, Int) {
        let image = try makeDisk("vm1", size: 16 << 20)
        try write(image, Bytes.random(16 << 20), at: 0)
        let pin = try RawControlClient(path: socketPath)
        pin.send(#"{"op":"pin"}"# + "\n")
        XCTAssertEqual(pin.readLine(within: 10), #"{"message":"pinned"}"#)
        // Measured after the pin's commit, which also empties the intent log.
        let before = try usedBytes()
        ok(["disk", "delete", "vm1"])
        XCTAssertGreaterThanOrEqual(try usedBytes(), before - (1 << 20), "the pinned blocks were freed")
        return (pin, before)
    }

    func testPinWhoseClientStopsRenewingLapsesAndItsBlocksAreFreed() throws {
        let (pin, before) = try pinThenFreeSixteenMiB()
        // The client sends nothing more (stopped, stuck): the lease lapses after 15 s.
        let end = try XCTUnwrap(pin.readUntilClosed(within: 25), "a pin nobody renewed was still held after 25 s")
        XCTAssertTrue(end.text.contains("no renewal from the client within 15 s"), end.text)
        XCTAssertGreaterThanOrEqual(end.closedAfter, 15)
        XCTAssertTrue(eventually(5) { ((try? self.usedBytes()) ?? .max) <= before - (15 << 20) },
                      "the lapsed pin's blocks were not freed: used \((try? usedBytes()) ?? -1), before \(before)")
        // Freed, they are reused: a new disk of the same size takes no more of the pool.
        let image = try makeDisk("vm2", size: 16 << 20)
        try write(image, Bytes.random(16 << 20), at: 0)
        ok(["pool", "stats"])
        XCTAssertLessThanOrEqual(try usedBytes(), before + (1 << 20))
    }

    func testRenewedPinOutlivesTheLeaseAndReleaseConfirmsIt() throws {
        let (pin, before) = try pinThenFreeSixteenMiB()
        for _ in 0..<10 {
            XCTAssertTrue(pin.send("."))
            usleep(2_000_000)
        }
        XCTAssertGreaterThanOrEqual(try usedBytes(), before - (1 << 20), "a renewed pin was dropped")
        pin.send("R")
        XCTAssertEqual(pin.readLine(within: 5), #"{"message":"released"}"#)
        XCTAssertNotNil(pin.readUntilClosed(within: 5))
        XCTAssertTrue(eventually(5) { ((try? self.usedBytes()) ?? .max) <= before - (15 << 20) },
                      "the released pin's blocks were not freed")
    }

    func testCheckWhosePinLapsedFailsAndAsksToBeRunAgain() throws {
        let image = try makeDisk("vm1", size: 256 << 20)
        try Shell.check(["dd", "if=/dev/urandom", "of=\(image)", "bs=1M", "count=256", "conv=fsync", "status=none"], timeout: 120)
        let err = m.root + "/check.err"
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        defer { unlink(err) }   // else the pool's teardown cannot remove its folder
        let check = Process()
        check.executableURL = URL(fileURLWithPath: m.binary)
        check.arguments = ["check", "--pool", m.pool]
        check.standardOutput = FileHandle.nullDevice
        check.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        try check.run()
        let pid = check.processIdentifier
        // The pool files are opened after the pin is granted: stop the check while it reads.
        XCTAssertTrue(eventually(20) { self.hasPoolFileOpen(pid) }, "the check never opened the pool")
        kill(pid, SIGSTOP)
        XCTAssertTrue(check.isRunning, "the check ended before it could be stopped")
        sleep(18)
        kill(pid, SIGCONT)
        check.waitUntilExit()
        let stderr = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
        XCTAssertNotEqual(check.terminationStatus, 0, stderr)
        XCTAssertTrue(stderr.hasPrefix("snapfs: the daemon dropped the check's pin; run again"), stderr)
        XCTAssertTrue(stderr.contains("no renewal from the client within 15 s"), stderr)
        // Nothing was damaged: a check that keeps its pin passes.
        ok(["check", "--no-data"])
    }

    private func hasPoolFileOpen(_ pid: Int32) -> Bool {
        let dir = "/proc/\(pid)/fd"
        for fd in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + fd),
               target.hasPrefix(m.pool + "/data.") { return true }
        }
        return false
    }
}

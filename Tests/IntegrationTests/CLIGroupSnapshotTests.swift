import Foundation
import Glibc
import TestSupport
import XCTest

/// A group snapshot of two disks is one point in time (SPEC §2, multi-disk): under two
/// writers where write n to disk B begins only after write n to disk A returned, and write
/// n+1 to A only after write n to B returned, no snapshot may hold B's n without A's n.
/// A capture that froze A and B at different instants would show B > A (A is frozen first:
/// the daemon freezes disks in name order).
final class CLIGroupSnapshotTests: CLITestCase {
    func testGroupCaptureIsOnePointInTime() throws {
        let a = try makeDisk("ga", size: 1 << 20), b = try makeDisk("gb", size: 1 << 20)
        let fdA = try Sys.open(a, O_WRONLY), fdB = try Sys.open(b, O_WRONLY)
        let aDone = DispatchSemaphore(value: 0), bDone = DispatchSemaphore(value: 0)
        let stop = Flag(), failure = Flag()
        let last = Counter()

        /// Block 0 holds seq as a 4 KiB block of repeated UInt64 (torn writes are detectable).
        @Sendable func block(_ seq: UInt64) -> [UInt8] {
            var out = [UInt8](); out.reserveCapacity(4096)
            for _ in 0..<512 { withUnsafeBytes(of: seq.littleEndian) { out += $0 } }
            return out
        }
        let writerA = Thread {
            var seq: UInt64 = 1
            while !stop.isSet {
                do { try Sys.pwrite(fdA, block(seq), 0) } catch { failure.set(); break }
                aDone.signal()
                if bDone.wait(timeout: .now() + 30) == .timedOut { failure.set(); break }
                seq += 1
            }
            aDone.signal()
        }
        let writerB = Thread {
            var seq: UInt64 = 1
            while !stop.isSet {
                if aDone.wait(timeout: .now() + 30) == .timedOut { failure.set(); break }
                if stop.isSet { break }
                do { try Sys.pwrite(fdB, block(seq), 0) } catch { failure.set(); break }
                last.value = seq
                bDone.signal()
                seq += 1
            }
            bDone.signal()
        }
        writerA.start(); writerB.start()

        var captured = 0
        for i in 0..<25 {
            usleep(UInt32.random(in: 2_000...20_000))
            ok(["snapshot", "create", "ga", "gb", "--label", "g\(i)"])
            captured += 1
        }
        stop.set()
        usleep(200_000)
        aDone.signal(); bDone.signal()
        try Sys.close(fdA); try Sys.close(fdB)
        XCTAssertFalse(failure.isSet, "a writer failed")
        XCTAssertGreaterThan(last.value, 25, "the writers made progress during the captures")

        func seq(_ path: String) throws -> UInt64 {
            let bytes = try Sys.readFile(path)
            let words = stride(from: 0, to: 4096, by: 8).map { o in bytes[o..<o + 8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.1) << (8 * UInt64($1.0)) } }
            XCTAssertEqual(Set(words).count, 1, "a torn block in \(path)")
            return words[0]
        }
        for i in 0..<captured {
            let sa = try seq(m.image(snapshot: "ga@g\(i)")), sb = try seq(m.image(snapshot: "gb@g\(i)"))
            XCTAssertLessThanOrEqual(sb, sa, "g\(i): B's write \(sb) is in the snapshot without A's")
            XCTAssertLessThanOrEqual(sa, sb + 1, "g\(i): A ran ahead of the lockstep (\(sa) vs \(sb))")
        }
    }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock(); private var on = false
    var isSet: Bool { lock.withLock { on } }
    func set() { lock.withLock { on = true } }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock(); private var v: UInt64 = 0
    var value: UInt64 { get { lock.withLock { v } } set { lock.withLock { v = newValue } } }
}

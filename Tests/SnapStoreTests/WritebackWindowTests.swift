import Foundation
import XCTest
@testable import SnapStore

/// The writeback bound: new chunks start writeback at once, and a writer that pushes
/// the amount in flight past the limit waits for the oldest ranges first.
final class WritebackWindowTests: XCTestCase {
    final class Recorder: StorageFile, @unchecked Sendable {
        var started: [UInt64] = []
        var waited: [UInt64] = []
        func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int { 0 }
        func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {}
        func sync() throws {}
        func startWriteback(at offset: UInt64, length: UInt64) { started.append(offset) }
        func waitWriteback(at offset: UInt64, length: UInt64) { waited.append(offset) }
        func punchHole(at offset: UInt64, length: UInt64) throws {}
        func truncate(to size: UInt64) throws {}
        func size() throws -> UInt64 { 0 }
        func allocatedBytes() -> UInt64 { 0 }
    }

    func testWaitsForTheOldestHalfOnlyPastTheLimit() {
        let file = Recorder()
        let window = WritebackWindow(file: file, limit: 4 * 65536)
        for i in 0..<4 { window.written(at: UInt64(i) * 65536, length: 65536); window.throttle() }
        XCTAssertEqual(file.started, [0, 65536, 131072, 196608])
        XCTAssertEqual(file.waited, [], "at the limit, nobody waits")
        window.written(at: 4 * 65536, length: 65536)
        window.throttle()
        XCTAssertEqual(file.waited, [0, 65536, 131072], "past it, the oldest ranges until half the limit is left")
        window.flushed()
        for i in 5..<9 { window.written(at: UInt64(i) * 65536, length: 65536); window.throttle() }
        XCTAssertEqual(file.waited.count, 3, "a commit's flush empties the window")
    }

    func testDisabledWindowDoesNothing() {
        let file = Recorder()
        let window = WritebackWindow(file: file, limit: 0)
        for i in 0..<10 { window.written(at: UInt64(i) * 65536, length: 65536); window.throttle() }
        XCTAssertEqual(file.started, [])
        XCTAssertEqual(file.waited, [])
    }
}

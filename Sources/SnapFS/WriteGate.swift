import Foundation
import Glibc
import SnapStore

/// Monotonic clock in nanoseconds (CLOCK_MONOTONIC: immune to wall-clock jumps).
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Admission control for the writes of one disk, so a snapshot sees a single point in time
/// (SPEC §2). Every mutation of the disk's bytes or size runs between `enter()` and `leave()`;
/// a capture calls `freeze()`, which stops new writers and waits for the ones in flight, so
/// each write is wholly before or wholly after the capture. Reads never come here.
final class WriteGate: @unchecked Sendable {
    private let condition = NSCondition()
    private var frozen = false
    private var inflight = 0

    /// Waits while a capture holds the disk, then counts the caller as in flight.
    func enter() {
        condition.lock()
        while frozen { condition.wait() }
        inflight += 1
        condition.unlock()
    }

    func leave() {
        condition.lock()
        inflight -= 1
        if inflight == 0 { condition.broadcast() }
        condition.unlock()
    }

    /// Runs `body` as an admitted writer.
    func admit<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        enter()
        defer { leave() }
        return try body()
    }

    /// Stops admitting writers and waits for those in flight. One capture at a time per disk:
    /// a second freezer waits for the first to thaw. Returns the monotonic time at which
    /// writers started being held back (the start of the freeze).
    func freeze() -> UInt64 {
        condition.lock()
        while frozen { condition.wait() }
        frozen = true
        let start = monotonicNanos()
        while inflight > 0 { condition.wait() }
        condition.unlock()
        return start
    }

    func thaw() {
        condition.lock()
        frozen = false
        condition.broadcast()
        condition.unlock()
    }
}

/// One gate per disk id, created on first use. Ids are never reused, so a gate can never
/// be shared by two disks; gates of deleted disks are dropped with `remove`.
final class WriteGates: @unchecked Sendable {
    private let lock = NSLock()
    private var gates: [ObjectID: WriteGate] = [:]

    func gate(_ disk: ObjectID) -> WriteGate {
        lock.lock()
        defer { lock.unlock() }
        if let g = gates[disk] { return g }
        let g = WriteGate()
        gates[disk] = g
        return g
    }

    func remove(_ disk: ObjectID) {
        lock.lock()
        gates[disk] = nil
        lock.unlock()
    }
}

import Foundation
import SnapStore

/// How many times each image (disk or snapshot, by object id) is open, so deleting an
/// image's folder can refuse with EBUSY (SPEC §1) and `disk list` can say `in_use`.
///
/// One condition guards the counts. `whenClosed` runs its body while holding it, so no open
/// can slip in between "nobody has it open" and the deletion.
final class OpenFiles: @unchecked Sendable {
    private let condition = NSCondition()
    private var counts: [ObjectID: Int] = [:]

    /// Counts an open of `id` if `stillExists()` (checked under the lock, so an open cannot
    /// race a deletion and end up holding a deleted object).
    func open(_ id: ObjectID, stillExists: () -> Bool) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard stillExists() else { return false }
        counts[id, default: 0] += 1
        return true
    }

    func release(_ id: ObjectID) {
        condition.lock()
        defer { condition.unlock() }
        guard let n = counts[id] else { return }
        if n <= 1 {
            counts[id] = nil
            condition.broadcast()
        } else {
            counts[id] = n - 1
        }
    }

    func isOpen(_ id: ObjectID) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return counts[id] != nil
    }

    /// Waits up to `timeout` seconds for every open of `id` to be released (the kernel sends
    /// RELEASE a moment after close() returns), then runs `body` with opens held off.
    /// Throws EBUSY if the image is still open at the deadline.
    func whenClosed<T>(_ id: ObjectID, timeout: TimeInterval,
                       _ body: () throws(FSError) -> T) throws(FSError) -> T {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while counts[id] != nil {
            if !condition.wait(until: deadline) && counts[id] != nil { throw FSError(EBUSY) }
        }
        return try body()
    }
}

import Foundation
import Synchronization

/// Fail-stop after a failed write or flush of the pool's files (SPEC §3; PostgreSQL's
/// answer to "fsyncgate"). When Linux fails to write back a page it marks it clean and
/// reports the error once, so a second flush can "succeed" without the data: nothing that
/// depends on the lost pages may ever be acknowledged. From the first failure on, every
/// operation that would acknowledge a change (write, fsync, commit, snapshot, create,
/// delete, resize) fails with EIO; reads keep working; the next open recovers to the last
/// good commit and replays the intent log's acknowledged batches.
extension Pool {
    /// What failed, once the pool has stopped acknowledging; nil while it works.
    public var stoppedReason: String? { stopState.withLock { $0 } }

    /// Throws EIO once the pool has stopped. Every acknowledging operation calls it first.
    func ensureAcknowledging() throws {
        if let why = stoppedReason { throw Self.stoppedError(directory, why) }
    }

    /// Records the first failure (and says it once on stderr) and returns the error that
    /// the failed operation throws.
    func failStop(_ what: String, _ error: Error) -> StoreError {
        let why = "\(what) failed (\(error))"
        let first = stopState.withLock { state -> Bool in
            guard state == nil else { return false }
            state = why
            return true
        }
        if first {
            let line = "snapfs: pool \(directory) stopped acknowledging writes: \(why); the host may have dropped the unwritten data, so nothing more is acknowledged; reads go on; unmount and mount again to recover the last good commit and the intent log\n"
            FileHandle.standardError.write(Data(line.utf8))
        }
        return Self.stoppedError(directory, stoppedReason ?? why)
    }

    private static func stoppedError(_ directory: String, _ why: String) -> StoreError {
        .io(errno: EIO, "pool \(directory) stopped acknowledging writes after \(why)")
    }
}

/// The fail-stop state's storage: the reason, set once.
typealias StopState = Mutex<String?>

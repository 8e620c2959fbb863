import Foundation

/// Flushes `files` all at once and throws the first failure after every flush has ended.
/// The host merges concurrent cache flushes, so several files cost about one flush.
func syncConcurrently(_ files: [StorageFile]) throws {
    if files.count <= 1 {
        try files.first?.sync()
        return
    }
    let failures = FirstError()
    DispatchQueue.concurrentPerform(iterations: files.count) { i in
        do { try files[i].sync() } catch { failures.record(error) }
    }
    if let e = failures.error { throw e }
}

/// The first error of several concurrent operations.
final class FirstError: @unchecked Sendable {
    private let lock = PthreadMutex()
    private var first: Error?
    func record(_ e: Error) { lock.withLock { if first == nil { first = e } } }
    var error: Error? { lock.withLock { first } }
}

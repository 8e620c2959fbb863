import Glibc

/// A pthread mutex owned by a class, so its address is stable. Named apart from the
/// Synchronization module's `Mutex<State>`, which new state should prefer (compiler-checked).
final class PthreadMutex: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    deinit { pthread_mutex_destroy(&m) }
    func lock() { pthread_mutex_lock(&m) }
    func unlock() { pthread_mutex_unlock(&m) }
    @inline(__always) func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock(); defer { unlock() }
        return try body()
    }
}

/// Readers/writer lock that prefers writers, so a commit or capture waiting for
/// exclusive access is not starved by a stream of readers.
final class RWLock: @unchecked Sendable {
    private var l = pthread_rwlock_t()
    init() {
        var attr = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attr)
        pthread_rwlockattr_setkind_np(&attr, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(&l, &attr)
        pthread_rwlockattr_destroy(&attr)
    }
    deinit { pthread_rwlock_destroy(&l) }
    func readLock() { pthread_rwlock_rdlock(&l) }
    func writeLock() { pthread_rwlock_wrlock(&l) }
    func unlock() { pthread_rwlock_unlock(&l) }
    @inline(__always) func withRead<T>(_ body: () throws -> T) rethrows -> T {
        readLock(); defer { unlock() }
        return try body()
    }
    @inline(__always) func withWrite<T>(_ body: () throws -> T) rethrows -> T {
        writeLock(); defer { unlock() }
        return try body()
    }
}

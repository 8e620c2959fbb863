import Foundation

extension Pool {
    /// Bytes that all disk and snapshot maps point to, a shared chunk counted once per map
    /// (read-only; for the sharing ratio of `snapfs pool stats`: referenced / stored).
    public func referencedBytes() -> UInt64 {
        lock.withLock { objects.values.reduce(UInt64(0)) { $0 + $1.mappedChunks } } * UInt64(chunkSize)
    }
}

import Foundation
import Glibc

/// Host space: what a commit may still need, and the check that refuses new chunks while
/// keeping that much back (ENOSPC for writes, never for the commit of what was acknowledged).
extension Pool {
    /// Host space a commit may still need: a floor for superblock and refcount pages plus
    /// two blocks per dirty node (the node and its record/page churn).
    var commitReserve: UInt64 { 8 << 20 + UInt64(meta.dirtyCount + 256) * UInt64(Layout.blockSize) * 2 }

    /// Refuses `count` new chunks when the host could not also hold the next commit, so a
    /// full pool fails writes with ENOSPC but still commits what it acknowledged. Chunks
    /// reused while still allocated, or taken from the data file's allocated tail, need no
    /// host space; the commit's metadata always does. Caller holds `lock`; when the figure
    /// of free host space is stale it throws `HostFreeStale`, and the caller refreshes it
    /// outside the lock (`refreshHostFree`: statvfs can wait on the host) and asks again.
    func reserveSpace(forChunks count: Int) throws {
        // Allocation order: freed chunks still allocated, then holes, then past the end.
        let cs = UInt64(chunkSize), n = UInt64(count)
        let recycled = min(n, UInt64(dataRefs.recycledCount))
        let holes = min(n - recycled, UInt64(dataRefs.holeCount))
        let beyond = n - recycled - holes
        let needed = (holes + beyond - min(beyond, preallocatedSpare / cs)) * cs
        let age = DispatchTime.now().uptimeNanoseconds - hostFreeCheckedAt
        if age > 50_000_000 || (hostFreeEstimate < commitReserve + needed + cs * 64 && age > 1_000_000) {
            throw HostFreeStale()
        }
        guard hostFreeEstimate >= commitReserve + needed else {
            throw StoreError.noSpace("pool \(directory) is full")
        }
        hostFreeEstimate -= needed
    }

    struct HostFreeStale: Error {}

    /// Reads the host's free space (outside the lock) for `reserveSpace`.
    func refreshHostFree() {
        var vfs = statvfs()
        let ok = statvfs(directory, &vfs) == 0
        let now = DispatchTime.now().uptimeNanoseconds
        lock.withLock {
            if ok { hostFreeEstimate = UInt64(vfs.f_bavail) * UInt64(vfs.f_frsize) }
            hostFreeCheckedAt = now
        }
    }

}

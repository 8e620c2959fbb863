import Foundation
import Glibc

/// What `Pool.upgrade` did.
public struct UpgradeReport: Sendable {
    public var fromVersion: UInt32
    public var toVersion: UInt32
    /// Segment files the data now lives in (0 when nothing was converted).
    public var segmentFiles: Int
    /// Bytes of chunk data copied (holes and zeros are not copied).
    public var copiedBytes: UInt64
}

/// Moves a format 3 pool (all chunks in one `data` file) to the current format (segment
/// files, format 4; owners and modes in records, format 5), so it gets segments' allocation ahead without write stalls (BENCHMARKS.md, session 9).
/// Offline: it holds the pool's lock throughout.
///
/// Crash safety: the old file is the truth until the switch. (1) Commit what is pending and
/// punch freed chunks. (2) Copy the chunks into `data.NNNNNN` files (zeros stay holes) and
/// flush them and the directory. (3) The switch: two commits whose superblocks say format 4
/// and the segment sizes, so both slots describe the new layout. (4) Remove `data`.
/// Recovery finishes or undoes an upgrade cut short: a format 3 pool deletes segment files
/// (a copy never switched to), a format 4 pool deletes a leftover `data`. The copy needs
/// free host space for the pool's data once more, checked before anything is written.
extension Pool {
    public static func upgrade(directory: String, to layout: SegmentLayout = .standard,
                               options: PoolOptions = PoolOptions()) throws -> UpgradeReport {
        // Opening read-write would make a new pool where there is none.
        guard (options.storage ?? PosixDirectory(path: directory)).exists("superblock") else {
            throw StoreError.refused("no snapfs pool at \(directory) (no superblock)")
        }
        var o = options
        o.readOnly = false
        o.backgroundCommits = false
        let pool = try Pool.open(directory: directory, options: o)
        let version = pool.lock.withLock { pool.superblock.formatVersion }
        guard version == 3 else {
            // Format 4 -> 5 adds record fields only: two commits write format 5 into both
            // superblock slots (any commit would, this makes it explicit and immediate).
            if version == 4 {
                try pool.commitNow()
                try pool.commitNow()
            }
            try pool.close()
            return UpgradeReport(fromVersion: version, toVersion: Layout.formatVersion, segmentFiles: 0, copiedBytes: 0)
        }
        // From the copy on, the pool object describes the old layout: never used again.
        defer { pool.abandon() }
        return try pool.convertToSegments(layout)
    }

    private func convertToSegments(_ layout: SegmentLayout) throws -> UpgradeReport {
        if let why = layout.problem(chunkSize: UInt64(chunkSize)) { throw StoreError.invalidArgument(why) }
        guard !layout.isSingleFile else { throw StoreError.invalidArgument("the target layout must have segments") }
        // 1. Everything committed, freed chunks punched, no allocation ahead running.
        try sync()
        punchIdleChunks(olderThan: 0, keepReserve: false)
        lock.withLock { preallocation.enabled = false }
        preallocationQueue.sync {}
        let high = lock.withLock { superblock.dataChunkCount } * UInt64(chunkSize)
        try dataFile.truncate(to: high)   // the allocated tail holds no data
        try checkRoomForCopy(of: dataFile.allocatedBytes())

        // 2. The copy. Leftovers of an earlier attempt were removed when the pool opened;
        // a failed copy removes its own.
        let copied: UInt64
        do {
            copied = try copy(upTo: high, into: SegmentedFile(provider: storage, layout: layout, readOnly: false))
        } catch {
            try? Self.removeUpgradeLeftovers(storage, layout: .singleFile)
            throw error
        }

        // 3. The switch, in both superblock slots.
        lock.withLock {
            superblock.formatVersion = Layout.formatVersion
            superblock.segments = layout
        }
        try commitNow()
        try commitNow()

        // 4. The old file goes.
        try storage.remove("data")
        try storage.syncDirectory()
        let files = try storage.fileNames().filter { SegmentLayout.index(ofFileName: $0) != nil }.count
        return UpgradeReport(fromVersion: 3, toVersion: Layout.formatVersion, segmentFiles: files, copiedBytes: copied)
    }

    /// Copies the data file's first `high` bytes into `target`, skipping zeros, and makes
    /// the copy durable. Returns the bytes copied.
    private func copy(upTo high: UInt64, into target: SegmentedFile) throws -> UInt64 {
        let piece = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: piece, alignment: 4096)
        defer { buffer.deallocate() }
        var copied: UInt64 = 0
        var at: UInt64 = 0
        while at < high {
            let n = Int(min(UInt64(piece), high - at))
            let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
            let got = try dataFile.read(into: dst, at: at)
            if got < n { UnsafeMutableRawBufferPointer(rebasing: dst[got...]).initializeMemory(as: UInt8.self, repeating: 0) }
            if !Self.isAllZero(UnsafeRawBufferPointer(dst)) {
                try target.write(UnsafeRawBufferPointer(dst), at: at)
                copied += UInt64(n)
            }
            at += UInt64(n)
        }
        try target.sync()
        try storage.syncDirectory()
        return copied
    }

    /// The copy briefly holds the data twice: refuse up front, leaving the host's last
    /// 256 MiB alone as the allocation ahead does.
    private func checkRoomForCopy(of bytes: UInt64) throws {
        var vfs = statvfs()
        guard statvfs(directory, &vfs) == 0 else { return }
        let free = UInt64(vfs.f_bavail) * UInt64(vfs.f_frsize)
        let needed = bytes + (256 << 20)
        if free < needed {
            throw StoreError.noSpace("upgrading pool \(directory) copies its \(bytes >> 20) MiB of data into segment files before removing the old file: it needs \(needed >> 20) MiB free on the host, which has \(free >> 20) MiB")
        }
    }

    static func isAllZero(_ b: UnsafeRawBufferPointer) -> Bool {
        // Word by word; the buffers are whole 4 KiB pages.
        let words = b.count / 8
        for i in 0..<words where b.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) != 0 { return false }
        for i in (words * 8)..<b.count where b[i] != 0 { return false }
        return true
    }

    /// At open, read-write: removes what an upgrade cut short left behind (see above).
    static func removeUpgradeLeftovers(_ provider: StorageProvider, layout: SegmentLayout) throws {
        let names = try provider.fileNames()
        let stale = layout.isSingleFile
            ? names.filter { SegmentLayout.index(ofFileName: $0) != nil }
            : names.filter { $0 == "data" }
        guard !stale.isEmpty else { return }
        for name in stale { try provider.remove(name) }
        try provider.syncDirectory()
    }
}

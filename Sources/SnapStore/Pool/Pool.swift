import Foundation
import Glibc
import Synchronization

/// A pool: disks and snapshots as copy-on-write block maps over one directory.
///
/// Files (docs/FORMAT.md): `superblock` (two slots), `meta` (4 KiB metadata blocks:
/// map nodes and object records), `data.NNNNNN` (chunks, in segments), `meta.refs` and `data.refs`
/// (reference counts, shadow-paged), `lock` (one daemon per pool).
///
/// Its jobs, one file each: opening and closing (here), reads, writes, holes and sizes
/// (Pool+Read, +Write, +Data), the catalog (+Objects, +Catalog), deletion in pieces
/// (+Deletion), commits and the committer thread (+Commit, +Committer), the intent log
/// (+Journal), host space (+Space, +Preallocation), fail-stop (+FailStop), readers of
/// committed maps (+Readers, Reader/MapReader), checks (Check/), upgrades (+Upgrade).
///
/// Concurrency: `lock` guards all metadata (short critical sections over memory: walks
/// and reports go through readers outside it, deletions release a piece per hold, the
/// host's free space is read outside it); each object's `io` lock orders its data I/O;
/// `txnLock` keeps a commit from closing a transaction while a write is half done;
/// `commitLock` serialises commits.
public final class Pool: @unchecked Sendable {
    public let directory: String
    public let chunkSize: Int
    let readOnly: Bool

    /// The pool directory's files (real, or a test's fault-injecting provider).
    let storage: StorageProvider
    let sbFile: StorageFile
    let metaFile: StorageFile
    let dataFile: SegmentedFile
    let metaRefs: RefcountTable
    let dataRefs: RefcountTable
    let meta: MetaStore
    /// nil only when opened read-only on a pool that has no log yet.
    let journalFile: StorageFile?
    let journal: IntentLog
    /// What opening replayed from the intent log.
    public private(set) var recoveredFromJournal = JournalReplay()
    private var lockFd: Int32

    let lock = PthreadMutex()
    let txnLock = RWLock()
    let commitLock = PthreadMutex()
    /// Set by the first failed write or flush of pool files (Pool+FailStop).
    let stopState = StopState(nil)

    // Guarded by `lock`.
    var superblock: Superblock
    var objectTree: MapRoot
    var nextObjectId: UInt64
    var objects: [ObjectID: PoolObject] = [:]
    var byName: [String: ObjectID] = [:]
    /// Deleted objects whose maps are still being released (Pool+Deletion): not in
    /// `objects`, so nothing finds them by name or id.
    var releasing: [ObjectID: PoolObject] = [:]
    /// Tests: called after each piece of a map a deletion releases.
    nonisolated(unsafe) var releasePieceHook: ((Int) -> Void)?
    var dirtyObjects = Set<ObjectID>()
    var lastCommitted: UInt64
    var closed = false
    var reusePins = 0
    var hostFreeEstimate: UInt64 = 0
    var hostFreeCheckedAt: UInt64 = 0
    var preallocation = Preallocation()
    let preallocationQueue = DispatchQueue(label: "snapfs.preallocate")
    var deferredMetaFree: [UInt64] = []
    var deferredDataFree: [UInt64] = []
    /// Chunks a write moved away from that a snapshot or clone still holds: old versions,
    /// whose cached pages the committer drops (`dropColdChunkCache`).
    var coldChunks: [UInt64] = []

    let chunkBuffers: ChunkBuffers
    var maps: MapTree { MapTree(meta: meta, leafRefs: dataRefs) }
    var objectTable: MapTree { MapTree(meta: meta, leafRefs: metaRefs) }

    /// Largest disk: 1 PiB (keeps every map within 5 levels at 64 KiB chunks).
    public static let maxDiskSize: UInt64 = 1 << 50
    /// Background commits: unsynced data is never older than this when a crash comes.
    public static let commitInterval: TimeInterval = 5
    /// A commit is due once this many bytes of new chunks were written since the last one:
    /// it bounds the commit log, the open transaction's memory and what recovery verifies.
    public static let bornBytesPerCommit: UInt64 = 1 << 30
    static func bornChunksPerCommit(chunkSize: Int) -> Int { Int(bornBytesPerCommit / UInt64(chunkSize)) }
    /// A commit is due once this many map nodes are dirty: closing a transaction checksums
    /// each while writes wait (~2-3 µs a node here, release build), so this bounds that
    /// wait to a few milliseconds (issue 19: writes wait at most 5 ms for a commit).
    static let dirtyNodesPerCommit = 2048
    /// The committer commits once the intent log is this full, so an fsync seldom finds
    /// it full and has to commit (and wait for the data's flush) itself.
    static let logCommitThreshold = 0.5
    /// Freed chunks unused for this long are punched (space back to the host).
    public static let punchDelay: TimeInterval = 5
    /// Hole punches the committer makes per 100 ms tick. Each takes the data file's inode
    /// lock, which writes wait for: a gigabyte of scattered 16 KiB chunks punched at once
    /// cut a write+fsync stream to a fifth for three seconds (BENCHMARKS.md, session 4).
    /// At this pace (~8 ms a tick at most) scattered chunks go back to the host at
    /// 40 MiB/s, runs much faster.
    public static let punchCallsPerTick = 256
    /// Page-cache drops (`posix_fadvise`) the committer makes per tick. They take no lock
    /// writes wait for and cost ~2 µs each here, so the budget is wide (≤ ~8 ms a tick):
    /// 4 KiB random writes under snapshots move ~50,000 chunks a second.
    public static let cacheDropCallsPerTick = 4096
    /// Most old chunk versions waiting for their cached pages to be dropped (a hint: any
    /// beyond are left to the host's own reclaim).
    static let maxColdChunks = 1 << 20
    var committer: Thread?
    /// Set once to end the committer thread (close, abandon).
    let stopRequested = Mutex(false)

    public static func open(directory: String, options: PoolOptions = PoolOptions()) throws -> Pool {
        try Pool(directory: directory, options: options)
    }

    private init(directory: String, options: PoolOptions) throws {
        let dir = URL(fileURLWithPath: directory).standardizedFileURL.path
        self.directory = dir
        self.readOnly = options.readOnly
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if !fm.fileExists(atPath: dir, isDirectory: &isDir) {
            guard !options.readOnly else { throw StoreError.refused("no pool at \(dir)") }
            do { try fm.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
                throw StoreError.refused("cannot create pool directory \(dir): \(error.localizedDescription)")
            }
        } else if !isDir.boolValue {
            throw StoreError.refused("\(dir) is not a directory")
        }
        let provider = options.storage ?? PosixDirectory(path: dir)
        storage = provider
        // A folder that is neither a pool nor empty is refused before anything (even the
        // lock file) is written into it.
        if !provider.exists("superblock") {
            let others = (try? fm.contentsOfDirectory(atPath: dir))?.filter { $0 != "lock" } ?? []
            if !others.isEmpty {
                throw StoreError.refused("\(dir) is not a snapfs pool and not empty (no superblock; found \(others.sorted().prefix(3).joined(separator: ", ")))")
            }
        }
        let fd = options.readOnly ? -1 : try Self.takeLock(dir)
        lockFd = fd
        do {
            if !provider.exists("superblock") {
                guard !options.readOnly else { throw StoreError.refused("\(dir) is not a snapfs pool (no superblock)") }
                let others = (try? fm.contentsOfDirectory(atPath: dir))?.filter { $0 != "lock" } ?? []
                guard others.isEmpty else {
                    throw StoreError.refused("\(dir) is not a snapfs pool and not empty (no superblock; found \(others.sorted().prefix(3).joined(separator: ", ")))")
                }
                try Self.format(provider, chunkSize: options.chunkSize, segments: options.dataSegments)
            }
            let ro = options.readOnly
            sbFile = try provider.open("superblock", create: false, readOnly: ro)
            let sb = try Self.newestIntactCommit(sbFile: sbFile, provider: provider, readOnly: ro, path: dir)
            if !ro { try Self.removeUpgradeLeftovers(provider, layout: sb.segments) }
            metaFile = try provider.open("meta", create: false, readOnly: ro)
            dataFile = try SegmentedFile(provider: provider, layout: sb.segments, readOnly: ro)
            let txn = sb.generation + 1
            metaRefs = RefcountTable(name: "meta", file: try provider.open("meta.refs", create: false, readOnly: ro), txn: txn)
            dataRefs = RefcountTable(name: "data", file: try provider.open("data.refs", create: false, readOnly: ro), txn: txn)
            try metaRefs.load(count: sb.metaBlockCount, generation: sb.generation)
            try dataRefs.load(count: sb.dataChunkCount, generation: sb.generation)
            meta = MetaStore(file: metaFile, refs: metaRefs, cacheLimit: options.cacheBlocks)
            chunkSize = Int(sb.chunkSize)
            chunkBuffers = ChunkBuffers(size: Int(sb.chunkSize))
            superblock = sb
            objectTree = sb.objectTree
            nextObjectId = sb.nextObjectId
            lastCommitted = sb.generation
            if !ro {
                // Whatever lies past the committed ends was written by a transaction that
                // never committed: drop it so a reallocated block starts clean.
                try metaFile.truncate(to: sb.metaBlockCount * UInt64(Layout.blockSize))
                try dataFile.truncate(to: sb.dataChunkCount * UInt64(sb.chunkSize))
                try metaRefs.wipeStaleSlots()
                try dataRefs.wipeStaleSlots()
                dataRefs.markFreeUnsure()
            }
            let (jf, capacity) = try Self.openJournal(provider, capacity: options.journalBytes, readOnly: ro)
            journalFile = jf
            journal = IntentLog(capacity: capacity,
                                base: IntentLog.Base(generation: sb.generation, commitMicros: sb.commitMicros))
            try loadObjects()
            if !ro {
                recoveredFromJournal = try replayJournal()
                try resumeDeletions()
            }
        } catch {
            if fd >= 0 { Glibc.close(fd) }
            throw error
        }
        if !readOnly && options.backgroundCommits { startCommitter() }
    }

    deinit {
        if lockFd >= 0 { Glibc.close(lockFd) }
    }

    /// The intent log's file, its blocks written once (zeros) so that appending to it
    /// later changes no host-filesystem metadata and a flush stays one device flush.
    /// Returns the file and its capacity (a larger existing log keeps its size).
    private static func openJournal(_ provider: StorageProvider, capacity: UInt64, readOnly: Bool) throws -> (StorageFile?, UInt64) {
        let exists = provider.exists("journal")
        if readOnly {
            guard exists else { return (nil, capacity) }
            let f = try provider.open("journal", create: false, readOnly: true)
            return (f, try f.size())
        }
        let f = try provider.openLog("journal", create: !exists)
        let have = try f.size()
        if have < capacity {
            let zeros = [UInt8](repeating: 0, count: 1 << 20)
            var at = have / UInt64(zeros.count) * UInt64(zeros.count)
            while at < capacity {
                let n = Int(min(UInt64(zeros.count), capacity - at))
                try zeros.withUnsafeBytes { try f.write(UnsafeRawBufferPointer(rebasing: $0[0..<n]), at: at) }
                at += UInt64(n)
            }
            try f.sync()
            if !exists { try provider.syncDirectory() }
        }
        return (f, max(have, capacity))
    }

    /// One daemon per pool: an exclusive flock on DIR/lock, held for the pool's life.
    private static func takeLock(_ dir: String) throws -> Int32 {
        let path = dir + "/lock"
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StoreError.refused("cannot open \(path): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            var buf = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buf, 31, 0)
            let pid = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
            Glibc.close(fd)
            throw StoreError.refused("pool \(dir) is already in use by another snapfs (pid \(pid))")
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = pid.withCString { pwrite(fd, $0, strlen($0), 0) }
        return fd
    }

    /// Writes an empty pool: generation 1, no objects.
    private static func format(_ provider: StorageProvider, chunkSize: Int, segments: SegmentLayout) throws {
        guard chunkSize >= 4096, chunkSize <= 1 << 20, chunkSize & (chunkSize - 1) == 0 else {
            throw StoreError.invalidArgument("chunk size must be a power of two from 4K to 1M (got \(chunkSize))")
        }
        if let why = segments.problem(chunkSize: UInt64(chunkSize)) { throw StoreError.invalidArgument(why) }
        // The data segments are created by the first write into each; format 3's single
        // `data` file exists from the start (as format 3 readers expect).
        for name in ["meta", "meta.refs", "data.refs"] + (segments.isSingleFile ? ["data"] : []) {
            let f = try provider.open(name, create: true, readOnly: false)
            try f.truncate(to: 0)
            try f.sync()
        }
        var sb = Superblock(chunkSize: UInt32(chunkSize), generation: 1,
                            createdMicros: Int64(Date().timeIntervalSince1970 * 1e6))
        sb.segments = segments
        if segments.isSingleFile { sb.formatVersion = 3 }
        let metaRefs = RefcountTable(name: "meta", file: try provider.open("meta.refs", create: false, readOnly: false), txn: 1)
        let dataRefs = RefcountTable(name: "data", file: try provider.open("data.refs", create: false, readOnly: false), txn: 1)
        // Page 0 of each table (holding the reserved entry 0) must exist on disk.
        for t in [metaRefs, dataRefs] {
            t.formatFirstPage()
            let closed = t.closeTransaction()
            try t.write(closed.writes, generation: 1)
            try t.file.sync()
        }
        let f = try provider.open("superblock", create: true, readOnly: false)
        try sb.write(to: f)
        try f.sync()
        try provider.syncDirectory()
    }

    private func loadObjects() throws {
        var loaded: [PoolObject] = []
        try objectTable.forEach(objectTree) { id, entry in
            let block = try meta.readBlock(entry.ptr)
            guard crc32c(block) == entry.crc else {
                throw StoreError.corrupt("record block \(entry.ptr) of object \(id): checksum mismatch")
            }
            let o = try ObjectRecord.decodeBlock(block, at: entry.ptr).makeObject()
            o.recordBlock = entry.ptr
            o.recordCRC = entry.crc
            loaded.append(o)
        }
        for o in loaded {
            if o.deleting {
                releasing[o.id] = o
                continue
            }
            objects[o.id] = o
            byName[o.name] = o.id
        }
    }

    /// Commits what is pending and releases the pool. Idempotent.
    public func close() throws {
        let wasClosed = lock.withLock { () -> Bool in defer { closed = true }; return closed }
        if wasClosed { return }
        stopRequested.withLock { $0 = true }
        // The committer thread's closure holds the pool: let go of the thread, so the
        // pool (and its open files) is freed once the thread ends.
        committer = nil
        if let why = stoppedReason {
            // Nothing may be written after a failed flush: the next open recovers.
            releaseLockFile()
            throw StoreError.io(errno: EIO, "pool \(directory) was not closed cleanly: \(why); the next mount recovers the last good commit and the intent log")
        }
        if !readOnly {
            try sync()
            // An empty commit on top confirms the last real one: a later bit flip in its
            // blocks then shows up as damage, not as a commit cut short by a crash.
            try commitNow()
            punchIdleChunks(olderThan: 0, keepReserve: false)
            releasePreallocation()
        }
        releaseLockFile()
    }

    private func releaseLockFile() {
        lock.withLock {
            if lockFd >= 0 { Glibc.close(lockFd) }
            lockFd = -1
        }
    }

    /// Simulates the daemon's death for crash tests: no final commit, lock released.
    func abandon() {
        stopRequested.withLock { $0 = true }
        committer = nil
        lock.withLock {
            closed = true
            if lockFd >= 0 { Glibc.close(lockFd) }
            lockFd = -1
        }
    }

    /// Something to commit: every change to a map, record or count dirties a refcount page.
    var hasChanges: Bool {
        !dirtyObjects.isEmpty || meta.dirtyCount > 0 || metaRefs.hasChanges || dataRefs.hasChanges
    }
}

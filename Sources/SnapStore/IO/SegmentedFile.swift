import Foundation
import Glibc

/// The pool's data chunks as one byte array over segment files (SegmentLayout). Each
/// operation is cut at segment boundaries and passed to that segment's file, so the rest
/// of the store sees one file. Segments are opened on first use and kept open; a missing
/// segment reads as zeros (a hole) and is created by the first write or allocation.
final class SegmentedFile: StorageFile, @unchecked Sendable {
    let layout: SegmentLayout
    private let provider: StorageProvider
    private let readOnly: Bool
    private let lock = PthreadMutex()
    /// Guarded by `lock`: open segments, and those written since their last flush.
    private var segments: [UInt64: StorageFile] = [:]
    private var unsynced = Set<UInt64>()
    /// A segment file was created since the directory was last flushed.
    private var directoryUnsynced = false

    init(provider: StorageProvider, layout: SegmentLayout, readOnly: Bool) throws {
        self.provider = provider
        self.layout = layout
        self.readOnly = readOnly
        Self.raiseOpenFileLimit()
        for k in try existingSegments() { segments[k] = try provider.open(layout.fileName(k), create: false, readOnly: readOnly) }
    }

    /// A pool with a terabyte of data has a thousand segments open: lift the soft limit on
    /// open files (1024 by default) to the hard one, as databases and qemu do.
    static func raiseOpenFileLimit() {
        var l = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &l)
        }
    }

    private func existingSegments() throws -> [UInt64] {
        try provider.fileNames().compactMap(layout.segmentIndex(ofFileName:)).sorted()
    }

    /// The segment's file; nil if it does not exist and `create` is false.
    private func segment(_ k: UInt64, create: Bool) throws -> StorageFile? {
        if let f = lock.withLock({ segments[k] }) { return f }
        let name = layout.fileName(k)
        // Another process (the daemon, while `check` reads) may have created it since.
        guard (create && !readOnly) || provider.exists(name) else { return nil }
        let f = try provider.open(name, create: create && !readOnly, readOnly: readOnly)
        return lock.withLock {
            if let other = segments[k] { return other }
            segments[k] = f
            if create { directoryUnsynced = true }
            return f
        }
    }

    private func writable(_ k: UInt64) throws -> StorageFile {
        guard let f = try segment(k, create: true) else {
            throw StoreError.readOnly("data segment \(layout.fileName(k)) opened read-only")
        }
        return f
    }

    /// Calls body(segment, offset in segment, range of the request) for each piece.
    private func pieces(_ offset: UInt64, _ length: UInt64, _ body: (UInt64, UInt64, Range<UInt64>) throws -> Void) rethrows {
        var at = offset
        let end = offset + length
        while at < end {
            let k = layout.segment(of: at)
            let start = layout.start(of: k)
            let stop = min(end, layout.end(of: k))
            try body(k, at - start, (at - offset)..<(stop - offset))
            at = stop
        }
    }

    private var lastSegment: UInt64? { lock.withLock { segments.keys.max() } }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        var done = 0
        var atEnd = false
        try pieces(offset, UInt64(buffer.count)) { k, local, r in
            guard !atEnd else { return }
            let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[Int(r.lowerBound)..<Int(r.upperBound)])
            let n = try segment(k, create: false)?.read(into: dst, at: local) ?? 0
            if n < dst.count {
                // Short: the end of the data, unless a later segment exists (then a hole).
                if let last = lastSegment, last > k {
                    UnsafeMutableRawBufferPointer(rebasing: dst[n...]).initializeMemory(as: UInt8.self, repeating: 0)
                } else {
                    done += n
                    atEnd = true
                    return
                }
            }
            done += dst.count
        }
        return done
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try pieces(offset, UInt64(bytes.count)) { k, local, r in
            try writable(k).write(UnsafeRawBufferPointer(rebasing: bytes[Int(r.lowerBound)..<Int(r.upperBound)]), at: local)
            // Marked after the write: a flush that took the mark then covers it.
            lock.withLock { _ = unsynced.insert(k) }
        }
    }

    /// Flushes the segments written since their last flush (all at once: the host merges
    /// concurrent flushes), then the directory if a segment was created. A failure is not
    /// marked for another try: the host may have dropped the pages that failed, so a later
    /// flush would "succeed" without them. The pool stops instead (Pool+FailStop).
    func sync() throws {
        let (files, newFiles) = lock.withLock { () -> ([StorageFile], Bool) in
            defer { unsynced = []; directoryUnsynced = false }
            return (unsynced.compactMap { segments[$0] }, directoryUnsynced)
        }
        try syncConcurrently(files)
        if newFiles { try provider.syncDirectory() }
    }

    func readIfCached(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) -> Bool {
        var all = true
        pieces(offset, UInt64(buffer.count)) { k, local, r in
            guard all else { return }
            let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[Int(r.lowerBound)..<Int(r.upperBound)])
            all = (try? segment(k, create: false))??.readIfCached(into: dst, at: local) ?? false
        }
        return all
    }

    func prefetch(at offset: UInt64, length: UInt64) {
        pieces(offset, length) { k, local, r in
            (try? segment(k, create: false))??.prefetch(at: local, length: UInt64(r.count))
        }
    }

    func dropCache(at offset: UInt64, length: UInt64) {
        pieces(offset, length) { k, local, r in
            (try? segment(k, create: false))??.dropCache(at: local, length: UInt64(r.count))
        }
    }

    func punchHole(at offset: UInt64, length: UInt64) throws {
        try pieces(offset, length) { k, local, r in
            try segment(k, create: false)?.punchHole(at: local, length: UInt64(r.count))
        }
    }

    func preallocate(at offset: UInt64, length: UInt64) throws {
        try pieces(offset, length) { k, local, r in
            try writable(k).preallocate(at: local, length: UInt64(r.count))
        }
    }

    /// Cuts the data at `size`: the segment holding byte `size` keeps what lies before it,
    /// later segments (and that one, if nothing of it is kept) are removed.
    func truncate(to size: UInt64) throws {
        let k = layout.segment(of: size)
        let local = size - layout.start(of: k)
        let removeFrom = local == 0 && k > 0 ? k : k + 1
        let known = lock.withLock { Set(segments.keys) }.union(try existingSegments())
        for s in known.filter({ $0 >= removeFrom }).sorted(by: >) {
            lock.withLock { segments[s] = nil; unsynced.remove(s); directoryUnsynced = true }
            try provider.remove(layout.fileName(s))
        }
        if removeFrom > k { try segment(k, create: false)?.truncate(to: local) }
    }

    func size() throws -> UInt64 {
        guard let last = lastSegment, let f = try segment(last, create: false) else { return 0 }
        return layout.start(of: last) + (try f.size())
    }

    func allocatedBytes() -> UInt64 {
        lock.withLock { Array(segments.values) }.reduce(0) { $0 + $1.allocatedBytes() }
    }
}

import Foundation
import Glibc
import TestSupport
import XCTest

/// SPEC §3: what fsync and mkdir promised survives `kill -9` of the daemon.
final class CrashTests: MountedTestCase {
    let MiB = 1 << 20

    func testFsyncedDataSurvivesKill9() throws {
        let image = try makeDisk("D")
        let fd = try Sys.open(image, O_RDWR)
        let a = Bytes.random(5 * MiB + 333)
        let b = Bytes.random(70_001)
        try Sys.pwrite(fd, a, 0)
        try Sys.pwrite(fd, b, 9 * MiB + 4095)       // past the end, odd offset
        try Sys.fsync(fd)
        let size = 9 * MiB + 4095 + b.count
        try Sys.pwrite(fd, Bytes.random(MiB), 1 * MiB)  // not fsync'd: may or may not survive
        try m.kill9()
        _ = try? Sys.close(fd)                     // ENOTCONN after the crash is fine

        try m.mount()
        let after = try Sys.readFile(image)
        XCTAssertEqual(after.count, size, "size after recovery")
        guard after.count == size else { return }
        XCTAssertTrue(after[0..<MiB].elementsEqual(a[0..<MiB]), "fsync'd bytes before the unsynced write")
        XCTAssertTrue(after[2 * MiB..<a.count].elementsEqual(a[(2 * MiB)...]), "fsync'd bytes after the unsynced write")
        XCTAssertTrue(Bytes.isZero(after[a.count..<9 * MiB + 4095]), "hole stays a hole")
        XCTAssertTrue(after[(9 * MiB + 4095)...].elementsEqual(b), "fsync'd bytes past the old end")
        assertCheckPasses()
    }

    func testFsyncedDataSurvivesRepeatedCrashes() throws {
        let image = try makeDisk("D", size: 4 * MiB)
        var model = [UInt8](repeating: 0, count: 4 * MiB)
        for round in 0..<3 {
            let fd = try Sys.open(image, O_RDWR)
            let data = Bytes.random(300_000 + round)
            let off = round * 1_000_003
            try Sys.pwrite(fd, data, off)
            model.replaceSubrange(off..<off + data.count, with: data)
            try Sys.fdatasync(fd)
            try m.kill9()
            _ = try? Sys.close(fd)
            try m.mount()
            XCTAssertTrue(try Sys.readFile(image) == model, "round \(round): disk after kill -9")
        }
        assertCheckPasses()
    }

    /// Small writes each followed by fsync go to the intent log, not to a commit: after
    /// kill -9 the next mount replays them (and says so), and every one is there.
    func testFsyncedSmallWritesReplayFromTheIntentLogAfterKill9() throws {
        let image = try makeDisk("D", size: 4 * MiB)
        var model = [UInt8](repeating: 0, count: 4 * MiB)
        var replayedRounds = 0
        for round in 0..<3 {
            let fd = try Sys.open(image, O_RDWR)
            for i in 0..<150 {
                let data = Bytes.random(Int.random(in: 1...9000))
                let off = Int.random(in: 0..<(4 * MiB - data.count))
                try Sys.pwrite(fd, data, off)
                model.replaceSubrange(off..<off + data.count, with: data)
                if i % 2 == 1 { try Sys.fsync(fd) }
            }
            try Sys.fsync(fd)
            try m.kill9()
            _ = try? Sys.close(fd)
            let before = m.log.components(separatedBy: "from the intent log").count
            try m.mount()
            if m.log.components(separatedBy: "from the intent log").count > before { replayedRounds += 1 }
            XCTAssertTrue(try Sys.readFile(image) == model, "round \(round): every fsync'd write after kill -9")
        }
        // A background commit may land between the last fsync and the kill, but not in
        // every round: the log is what carried the fsyncs.
        XCTAssertGreaterThan(replayedRounds, 0, "the mount reported replaying the intent log; log:\n\(m.log.suffix(2000))")
        assertCheckPasses()
    }

    /// A steady stream of 4 KiB write+fsync pairs fills the intent log past half several
    /// times a second, so the committer flushes and commits while fsyncs keep coming.
    /// kill -9 at an arbitrary moment of that: every acknowledged pair is there, the one in
    /// flight is wholly old or wholly new, and fewer records are replayed than were
    /// acknowledged (commits took the rest).
    func testFsyncStreamThroughBackgroundCommitsSurvivesKill9() throws {
        let size = 64 * MiB, block = 4096
        let image = try makeDisk("D", size: size)
        var model = [UInt8](repeating: 0, count: size)
        for round in 0..<3 {
            let stream = FsyncStream(path: image, blocks: size / block, blockSize: block, model: model)
            let writer = Thread { stream.run() }
            writer.start()
            // Past 2,048 batches of 8 KiB the default 32 MiB log is half full: a commit came.
            let deadline = Date().addingTimeInterval(60)
            while stream.acknowledged < 2_500 && Date() < deadline { usleep(20_000) }
            usleep(useconds_t.random(in: 0...1_000_000))
            try m.kill9()
            stream.finished.wait()
            let logBefore = m.log
            try m.mount()
            let replayed = m.log.dropFirst(logBefore.count)
            let after = try Sys.readFile(image)
            XCTAssertGreaterThanOrEqual(stream.acknowledged, 2_500, "round \(round): the stream ran")
            if let (off, data) = stream.inFlight {
                let old = stream.model[off..<off + block], got = after[off..<off + block]
                XCTAssertTrue(got.elementsEqual(old) || got.elementsEqual(data), "round \(round): the pair in flight is old or new")
                stream.model.replaceSubrange(off..<off + block, with: got)
            }
            XCTAssertTrue(after == stream.model, "round \(round): every acknowledged write+fsync after kill -9")
            if let records = replayed.firstMatch(of: /recovered (\d+) fsync/)?.1, let n = Int(records) {
                XCTAssertLessThan(n, stream.acknowledged, "round \(round): background commits took part of the stream")
            }
            model = stream.model
        }
        assertCheckPasses()
    }

    func testSnapshotSurvivesKill9() throws {
        let image = try makeDisk("D")
        let fd = try Sys.open(image, O_RDWR)
        try Sys.pwrite(fd, Bytes.random(6 * MiB + 1), 0)   // not fsync'd: mkdir must make it durable
        try snapshot("D@s1")
        let sum = try Shell.sha256(m.image(snapshot: "D@s1"))
        try Sys.pwrite(fd, Bytes.random(2 * MiB), 3 * MiB)
        try snapshot("D@s2")
        let sum2 = try Shell.sha256(m.image(snapshot: "D@s2"))
        try Sys.pwrite(fd, Bytes.random(2 * MiB), 0)       // later writes, never synced
        try m.kill9()
        _ = try? Sys.close(fd)

        try m.mount()
        XCTAssertEqual(try Sys.listdir(m.snapshots), ["D@s1", "D@s2"])
        XCTAssertEqual(try Shell.sha256(m.image(snapshot: "D@s1")), sum, "D@s1 byte-identical after kill -9")
        XCTAssertEqual(try Shell.sha256(m.image(snapshot: "D@s2")), sum2, "D@s2 byte-identical after kill -9")
        XCTAssertGreaterThanOrEqual(try Sys.stat(image).st_size, off_t(6 * MiB + 1), "disk keeps what the snapshot captured")
        assertCheckPasses()
    }

    func testSnapshotSurvivesDeletionsAndKill9() throws {
        let image = try makeDisk("D", size: MiB)
        let fd = try Sys.open(image, O_WRONLY)
        try Sys.pwrite(fd, Bytes.random(MiB), 0)
        try Sys.close(fd)
        try snapshot("D@keep")
        try snapshot("D@gone")
        let sum = try Shell.sha256(m.image(snapshot: "D@keep"))
        try Sys.rmdir("\(m.snapshots)/D@gone")
        try Sys.rmdir("\(m.disks)/D")
        sync()
        try m.kill9()
        try m.mount()
        // SPEC makes mkdir durable on return, not rmdir: only the kept snapshot is asserted.
        XCTAssertTrue(try Sys.listdir(m.snapshots).contains("D@keep"))
        XCTAssertEqual(try Shell.sha256(m.image(snapshot: "D@keep")), sum)
        assertCheckPasses()
    }

    /// The data outgrows several segment files (32, 32, 64 MiB...) while the next segment
    /// is allocated in the background; a snapshot, rewrites under it (copies into new
    /// chunks further out), fsync, then kill -9 in the middle of more writes: everything
    /// acknowledged is there, in the disk and in the snapshot.
    func testDataAcrossSegmentFilesSurvivesKill9() throws {
        let size = 160 * MiB
        let image = try makeDisk("D", size: size)
        let fd = try Sys.open(image, O_RDWR)
        var model = [UInt8](repeating: 0, count: size)
        func write(_ off: Int, _ data: [UInt8]) throws {
            try Sys.pwrite(fd, data, off)
            model.replaceSubrange(off..<off + data.count, with: data)
        }
        for i in 0..<80 { try write(i * MiB, Bytes.random(MiB)) }
        try snapshot("D@s")
        let atSnapshot = model
        for _ in 0..<40 { try write(Int.random(in: 0..<120) * MiB + Int.random(in: 0..<MiB - 8192), Bytes.random(8192 * Int.random(in: 1...64))) }
        try Sys.fsync(fd)
        let segments = try Sys.listdir(m.pool).filter { $0.hasPrefix("data.0") }
        XCTAssertTrue(segments.contains("data.000002"), "the data reached the third segment: \(segments)")
        // Unacknowledged writes beyond the asserted range, then death mid-stream.
        let mib = MiB
        let writer = Thread { for i in 0..<20 { _ = try? Sys.pwrite(fd, Bytes.random(mib), (140 + i) * mib) } }
        writer.start()
        usleep(useconds_t.random(in: 0...200_000))
        try m.kill9()
        _ = try? Sys.close(fd)

        try m.mount()
        let after = try Sys.readFile(image)
        XCTAssertEqual(after.count, size)
        XCTAssertTrue(after[0..<140 * MiB].elementsEqual(model[0..<140 * MiB]), "every fsync'd byte after kill -9")
        XCTAssertTrue(try Sys.readFile(m.image(snapshot: "D@s")) == atSnapshot, "the snapshot after kill -9")
        assertCheckPasses()
    }

    func testCleanUnmountExitsZeroAndKeepsEverything() throws {
        let image = try makeDisk("D")
        let fd = try Sys.open(image, O_WRONLY)
        let data = Bytes.random(2 * MiB + 9)
        try Sys.pwrite(fd, data, 0)
        try Sys.close(fd)                          // no fsync: a clean unmount makes it durable
        try m.unmount()                            // asserts exit status 0
        try m.mount()
        XCTAssertTrue(try Sys.readFile(image) == data)
    }

    /// `snapfs check` passes on the mounted pool (SPEC §3: online check).
    func assertCheckPasses(file: StaticString = #filePath, line: UInt = #line) {
        let r = m.cli(["check"], timeout: 120)
        XCTAssertEqual(r.status, 0, "snapfs check after recovery: \(r)", file: file, line: line)
    }
}

/// Random 4 KiB write+fsync pairs on one image until the mount dies; `model` holds every
/// acknowledged pair, `inFlight` the one whose fsync had not returned.
final class FsyncStream: @unchecked Sendable {
    let path: String, blocks: Int, blockSize: Int
    /// `model` and `inFlight` belong to the writer until `finished`.
    var model: [UInt8]
    var inFlight: (Int, [UInt8])?
    private let lock = NSLock()
    private var acked = 0
    /// Pairs whose fsync returned; the watching thread reads it while the writer runs.
    var acknowledged: Int { lock.withLock { acked } }
    let finished = DispatchSemaphore(value: 0)

    init(path: String, blocks: Int, blockSize: Int, model: [UInt8]) {
        self.path = path; self.blocks = blocks; self.blockSize = blockSize; self.model = model
    }

    func run() {
        defer { finished.signal() }
        guard let fd = try? Sys.open(path, O_RDWR) else { return }
        defer { _ = try? Sys.close(fd) }
        while true {
            let off = Int.random(in: 0..<blocks) * blockSize
            let data = Bytes.random(blockSize)
            inFlight = (off, data)
            guard (try? Sys.pwrite(fd, data, off)) != nil, (try? Sys.fsync(fd)) != nil else { return }
            model.replaceSubrange(off..<off + blockSize, with: data)
            inFlight = nil
            lock.withLock { acked += 1 }
        }
    }
}

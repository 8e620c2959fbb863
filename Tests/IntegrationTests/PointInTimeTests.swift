import Foundation
import Glibc
import TestSupport
import XCTest

/// Writes sequence-numbered blocks in order, one pwrite at a time, and counts them:
/// `started` is bumped before each pwrite is called, `completed` after it returns.
final class SequenceWriter: @unchecked Sendable {
    let fd: Int32
    let blockSize: Int
    let maxBlocks: Int
    private let lock = NSLock()
    private var started = 0, completed = 0, stopRequested = false
    private var failed: Errno?
    var failure: Errno? { lock.withLock { failed } }
    private let done = DispatchSemaphore(value: 0)

    init(fd: Int32, blockSize: Int, maxBlocks: Int) {
        self.fd = fd
        self.blockSize = blockSize
        self.maxBlocks = maxBlocks
    }

    var counts: (started: Int, completed: Int) { lock.withLock { (started, completed) } }

    func start() {
        let t = Thread { [self] in
            defer { done.signal() }
            for i in 0..<maxBlocks {
                let block = Bytes.sequenceBlock(i, size: blockSize)
                let go = lock.withLock { () -> Bool in
                    if stopRequested { return false }
                    started = i + 1
                    return true
                }
                guard go else { return }
                do { try Sys.pwrite(fd, block, i * blockSize) } catch {
                    lock.withLock { failed = error as? Errno ?? Errno(-1) }
                    return
                }
                lock.withLock { completed = i + 1 }
            }
        }
        t.start()
    }

    func stop() {
        lock.withLock { stopRequested = true }
        done.wait()
    }
}

/// SPEC §2: point in time, whole-or-nothing writes, dependent-write order, immutability.
final class PointInTimeTests: MountedTestCase {
    let MiB = 1 << 20

    func testPointInTime4KiBWritesExtendingDisk() throws {
        try checkPointInTime(blockSize: 4096, presize: false)
    }

    func testPointInTime4KiBWritesPresizedDisk() throws {
        try checkPointInTime(blockSize: 4096, presize: true)
    }

    func testPointInTime128KiBWritesAreWholeOrNothing() throws {
        try checkPointInTime(blockSize: 128 << 10, presize: true)
    }

    /// A writer runs while `mkdir` takes snapshots. For each snapshot with bounds
    /// lo = completed before mkdir was called, hi = started after mkdir returned:
    /// the blocks present are exactly a prefix 0..<k with lo <= k <= hi, each one whole.
    func checkPointInTime(blockSize: Int, presize: Bool) throws {
        let maxBlocks = ((presize && blockSize < 64 << 10 ? 64 : 256) * MiB) / blockSize
        let image = try makeDisk("D", size: presize ? maxBlocks * blockSize : nil)
        let fd = try Sys.open(image, O_WRONLY)
        let writer = SequenceWriter(fd: fd, blockSize: blockSize, maxBlocks: maxBlocks)
        writer.start()
        var bounds: [(id: String, lo: Int, hi: Int)] = []
        XCTAssertTrue(eventually(30) { writer.counts.completed >= 50 || writer.failure != nil }, "writer makes progress")
        for n in 0..<8 {
            let id = "D@p\(n)"
            let lo = writer.counts.completed
            let e = errnoOf { try Sys.mkdir("\(m.snapshots)/\(id)") }
            let hi = writer.counts.started
            XCTAssertEqual(e, 0, "mkdir \(id): \(errnoName(e))")
            if e == 0 { bounds.append((id, lo, hi)) }
            usleep(UInt32(5_000 + n * 7_000))
        }
        writer.stop()
        try Sys.close(fd)
        XCTAssertNil(writer.failure, "writer failed: \(writer.failure.map { "\($0)" } ?? "")")
        XCTAssertTrue(bounds.contains { $0.lo > 0 && $0.hi < writer.counts.started }, "some snapshot fell mid-stream")

        var previousK = 0
        for (id, lo, hi) in bounds {
            let bytes = try Sys.readFile(m.image(snapshot: id))
            let size = bytes.count
            if presize {
                XCTAssertEqual(size, maxBlocks * blockSize, "\(id): size of a presized disk")
            } else {
                XCTAssertEqual(size % blockSize, 0, "\(id): size \(size) is not whole blocks: a torn extension")
            }
            var k = 0            // length of the prefix of present blocks
            var holes = 0, torn: [Int] = [], afterGap: [Int] = []
            bytes.withUnsafeBytes { all in
                for i in 0..<(size / blockSize) {
                    let block = UnsafeRawBufferPointer(rebasing: all[i * blockSize..<(i + 1) * blockSize])
                    switch Bytes.classify(block, index: i) {
                    case .sequence: if holes == 0 { k = i + 1 } else { afterGap.append(i) }
                    case .zero: holes += 1
                    case .other: torn.append(i)
                    }
                }
            }
            XCTAssertEqual(torn.prefix(10), [], "\(id): blocks neither whole nor absent (torn writes)")
            XCTAssertEqual(afterGap.prefix(10), [], "\(id): blocks present after a missing one (dependent order broken)")
            if !presize { XCTAssertEqual(k * blockSize, size, "\(id): size is not the end of the present prefix") }
            XCTAssertGreaterThanOrEqual(k, lo, "\(id): missing writes that returned before mkdir (lo \(lo), hi \(hi))")
            XCTAssertLessThanOrEqual(k, hi, "\(id): holds writes begun after mkdir returned (lo \(lo), hi \(hi))")
            XCTAssertGreaterThanOrEqual(k, previousK, "\(id): a later snapshot holds less than an earlier one")
            previousK = k
        }
    }

    func testSnapshotsAreImmutable() throws {
        let image = try makeDisk("D")
        let fd = try Sys.open(image, O_RDWR)
        var isOpen = true
        defer { if isOpen { try? Sys.close(fd) } }
        try Sys.pwrite(fd, Bytes.random(8 * MiB + 123), 0)
        var expected: [String: String] = [:]
        func capture(_ id: String) throws {
            expected[id] = try Shell.sha256(try snapshot(id))
        }
        func verify(_ after: String) throws {
            dropCaches()
            for (id, sum) in expected.sorted(by: { $0.key < $1.key }) {
                XCTAssertEqual(try Shell.sha256(m.image(snapshot: id)), sum, "\(id) changed after \(after)")
            }
        }
        try capture("D@a")
        try Sys.pwrite(fd, Bytes.random(3 * MiB), 2 * MiB + 7)        // overwrite shared chunks
        try Sys.pwrite(fd, Bytes.random(1 * MiB), 20 * MiB)            // extend
        try verify("writes")
        try capture("D@b")
        try Sys.punchHole(fd, 0, 4 * MiB)
        try Sys.ftruncate(fd, 5 * MiB)
        try Sys.fsync(fd)
        try verify("punch hole and shrink")
        try capture("D@c")
        try Sys.pwrite(fd, Bytes.random(6 * MiB), 1 * MiB)
        try Sys.rmdir("\(m.snapshots)/D@b")
        expected["D@b"] = nil
        try verify("deleting another snapshot")
        isOpen = false
        try Sys.close(fd)
        try Sys.rmdir("\(m.disks)/D")
        try verify("deleting the disk")
        try m.unmount()
        try m.mount()
        try verify("a clean remount")
    }
}

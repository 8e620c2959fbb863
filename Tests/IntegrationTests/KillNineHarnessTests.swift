import Foundation
import Glibc
import SnapStore
import TestSupport
import XCTest

/// SPEC §3 under fire: the real daemon serves a mixed load (writes, fsyncs, punch-holes,
/// snapshot mkdir/rmdir, clones through the CLI) and is killed with SIGKILL at random moments. After each kill:
/// the offline checker must find the pool clean; after remount every fsync'd block holds
/// its fsync'd value or a later one (never a torn or older one), every snapshot whose
/// mkdir returned is byte-identical, and no deleted snapshot is back.
/// `SNAPFS_KILL_POINTS` sets the number of kills (50 in CI; the long run uses more).
final class KillNineHarnessTests: MountedTestCase {
    /// The long run (SNAPFS_KILL_POINTS=300+) needs more than the default limit.
    override class var testTimeLimit: Double { max(600, Double(killPoints) * 10) }
    static var killPoints: Int { Int(ProcessInfo.processInfo.environment["SNAPFS_KILL_POINTS"] ?? "") ?? 50 }
    static let blockSize = 4096
    static let blocks = 1024                  // 4 MiB disks
    let diskNames = ["a", "b"]

    /// What a disk's block may hold: its value at the last fsync (or recovery) and
    /// anything written after it. 0 is the zero block.
    struct DiskModel {
        var latest = [UInt32](repeating: 0, count: KillNineHarnessTests.blocks)
        var possible = [Set<UInt32>](repeating: [0], count: KillNineHarnessTests.blocks)
        mutating func synced() { possible = latest.map { [$0] } }
    }

    /// Word i of block `block` written with `seq`: cheap to check anywhere in the block.
    @inline(__always)
    static func word(_ i: Int, disk: Int, block: Int, seq: UInt32) -> UInt32 {
        switch i {
        case 0: return 0x534E_4150
        case 1: return UInt32(disk)
        case 2: return UInt32(block)
        case 3: return seq
        default: return (seq &* 0x9E37_79B1) ^ (UInt32(i) &* 0x85EB_CA77) ^ (UInt32(block) &* 40503) ^ UInt32(disk)
        }
    }

    static func content(disk: Int, block: Int, seq: UInt32) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: blockSize)
        guard seq != 0 else { return out }
        out.withUnsafeMutableBytes { b in
            let words = b.bindMemory(to: UInt32.self)
            for i in 0..<words.count { words[i] = word(i, disk: disk, block: block, seq: seq) }
        }
        return out
    }

    /// The seq a block holds, or nil if it is no block this test ever wrote (torn, stale).
    /// Checks the header and a spread of words (the whole block would make debug builds slow).
    static func seqOf(_ bytes: ArraySlice<UInt8>, disk: Int, block: Int) -> UInt32? {
        bytes.withUnsafeBytes { b -> UInt32? in
            let w = { (i: Int) in b.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self) }
            if w(0) == 0 {
                for i in stride(from: 0, to: blockSize / 4, by: 61) where w(i) != 0 { return nil }
                return w(blockSize / 4 - 1) == 0 ? 0 : nil
            }
            let seq = w(3)
            for i in Array(0..<8) + Array(stride(from: 8, to: blockSize / 4, by: 61)) + [blockSize / 4 - 1]
            where w(i) != word(i, disk: disk, block: block, seq: seq) { return nil }
            return seq
        }
    }

    final class Shared: @unchecked Sendable {
        let lock = NSLock()
        var disks: [DiskModel]
        var snaps: [String: [UInt32]] = [:]       // mkdir returned: exact content
        var snapInFlight: (String, [UInt32])?     // mkdir called, not returned
        var deleteInFlight: String?
        var clones: [String: (of: String, content: [UInt32])] = [:]   // `disk create --from-snapshot` returned
        var cloneInFlight: (String, String, [UInt32])?
        var deleted: Set<String> = []
        var seq: UInt32 = 1
        var clonesMade = 0
        var lastStep = ""   // what verification was doing (for failure messages)
        var ops = 0
        init(disks: Int) { self.disks = Array(repeating: DiskModel(), count: disks) }
    }

    func testRandomKillsUnderMixedLoad() throws {
        let kills = Self.killPoints
        for d in diskNames { try makeDisk(d, size: Self.blocks * Self.blockSize) }
        let shared = Shared(disks: diskNames.count)
        var rng = SystemRandomNumberGenerator()
        var killedDuring = [String: Int]()
        var phase = [String: Double]()
        for round in 0..<kills {
            let stop = NSLock()
            nonisolated(unsafe) var stopped = false
            let done = DispatchSemaphore(value: 0)
            let m = self.m!
            let names = diskNames
            Thread.detachNewThread {
                Self.load(m, names, shared, round: round) { stop.withLock { stopped } }
                done.signal()
            }
            usleep(UInt32.random(in: 30_000...400_000, using: &rng))
            var t = Date()
            func lap(_ what: String) { phase[what, default: 0] += Date().timeIntervalSince(t); t = Date() }
            try m.kill9()
            lap("kill")
            stop.withLock { stopped = true }
            XCTAssertEqual(done.wait(timeout: .now() + 30), .success, "load thread did not stop after the kill")
            lap("join")
            killedDuring[shared.lock.withLock { shared.snapInFlight != nil ? "mkdir" : shared.deleteInFlight != nil ? "rmdir" : shared.cloneInFlight != nil ? "clone" : "io" }, default: 0] += 1

            // Offline check of exactly what the crash left.
            var ro = PoolOptions()
            ro.readOnly = true
            let pool = try Pool.open(directory: m.pool, options: ro)
            let report = pool.check()
            XCTAssertTrue(report.isClean, "round \(round): check after kill -9: \(report.problems.prefix(5))")
            try pool.close()
            lap("check")
            try m.mount()
            lap("mount")
            do { try verifyAndRebase(shared, round: round) } catch {
                XCTFail("round \(round): verification failed at \(shared.lock.withLock { shared.lastStep }): \(error); daemon log:\n\(m.log.suffix(3000))")
                return
            }
            lap("verify")
            if round % 10 == 9 { print("kill -9 harness: \(round + 1) kills, \(shared.ops) operations, killed during \(killedDuring)") }
        }
        print("kill -9 harness: \(kills) kill points, \(shared.ops) operations, \(shared.clonesMade) clones, killed during \(killedDuring), seconds per phase \(phase.mapValues { Int($0) })")
    }

    /// One load thread: random operations until the daemon dies under it.
    static func load(_ m: MountedPool, _ names: [String], _ s: Shared, round: Int, stopped: () -> Bool) {
        var fds: [Int32] = []
        defer { for fd in fds { try? Sys.close(fd) } }
        do {
            for n in names { fds.append(try Sys.open(m.image(disk: n), O_RDWR)) }
        } catch { return }
        var step = 0
        while !stopped() {
            step += 1
            let d = Int.random(in: 0..<names.count)
            let roll = Int.random(in: 0..<100)
            do {
                switch roll {
                case 0..<65:
                    let first = Int.random(in: 0..<blocks), count = min(Int.random(in: 1...8), blocks - first)
                    var bytes: [UInt8] = []
                    var seqs: [UInt32] = []
                    s.lock.withLock {
                        for b in first..<(first + count) {
                            let q = s.seq; s.seq += 1
                            seqs.append(q)
                            s.disks[d].possible[b].insert(q)   // may land even if the call never returns
                        }
                    }
                    for (i, q) in seqs.enumerated() { bytes += content(disk: d, block: first + i, seq: q) }
                    try Sys.pwrite(fds[d], bytes, first * blockSize)
                    s.lock.withLock { for (i, q) in seqs.enumerated() { s.disks[d].latest[first + i] = q } }
                case 65..<75:
                    try Sys.fsync(fds[d])
                    // fsync commits the whole pool: every returned write on every disk.
                    s.lock.withLock { for i in s.disks.indices { s.disks[i].synced() } }
                case 75..<82:
                    let first = Int.random(in: 0..<blocks), count = min(Int.random(in: 1...16), blocks - first)
                    s.lock.withLock { for b in first..<(first + count) { s.disks[d].possible[b].insert(0) } }
                    try Sys.punchHole(fds[d], first * blockSize, count * blockSize)
                    s.lock.withLock { for b in first..<(first + count) { s.disks[d].latest[b] = 0 } }
                case 82..<85:
                    // A clone through the CLI: instant, independent, durable when it returns.
                    guard let (src, content) = s.lock.withLock({ s.snaps.sorted { $0.key < $1.key }.randomElement().map { ($0.key, $0.value) } }) else { continue }
                    let name = "c\(round)x\(step)"
                    s.lock.withLock { s.cloneInFlight = (name, src, content) }
                    let r = m.cli(["disk", "create", name, "--from-snapshot", src])
                    guard r.ok else { return }   // the daemon died under the command
                    s.lock.withLock { s.clones[name] = (src, content); s.cloneInFlight = nil; s.clonesMade += 1; for i in s.disks.indices { s.disks[i].synced() } }
                case 85..<92:
                    let id = "\(names[d])@r\(round)s\(step)"
                    s.lock.withLock { s.snapInFlight = (id, s.disks[d].latest) }
                    try Sys.mkdir("\(m.snapshots)/\(id)")
                    // mkdir commits the pool too.
                    s.lock.withLock {
                        s.snaps[id] = s.snapInFlight!.1
                        s.snapInFlight = nil
                        for i in s.disks.indices { s.disks[i].synced() }
                    }
                default:
                    guard let victim = s.lock.withLock({ s.snaps.count > 4 ? s.snaps.keys.sorted().randomElement() : nil }) else { continue }
                    s.lock.withLock { s.deleteInFlight = victim }
                    try Sys.rmdir("\(m.snapshots)/\(victim)")
                    s.lock.withLock {
                        s.snaps[victim] = nil
                        s.deleted.insert(victim)
                        s.deleteInFlight = nil
                        for i in s.disks.indices { s.disks[i].synced() }
                    }
                }
                s.lock.withLock { s.ops += 1 }
            } catch {
                return   // the daemon is gone (ENOTCONN and friends)
            }
        }
    }

    func verifyAndRebase(_ s: Shared, round: Int) throws {
        try s.lock.withLock {
            for (d, name) in diskNames.enumerated() {
                s.lastStep = "read disk \(name)"
                let bytes = try Sys.readFile(m.image(disk: name))
                XCTAssertEqual(bytes.count, Self.blocks * Self.blockSize, "round \(round): size of \(name)")
                var observed = [UInt32](repeating: 0, count: Self.blocks)
                for b in 0..<Self.blocks {
                    let slice = bytes[(b * Self.blockSize)..<((b + 1) * Self.blockSize)]
                    guard let q = Self.seqOf(slice, disk: d, block: b) else {
                        XCTFail("round \(round): \(name) block \(b) holds bytes no write put there"); return
                    }
                    XCTAssertTrue(s.disks[d].possible[b].contains(q),
                                  "round \(round): \(name) block \(b) holds seq \(q), allowed \(s.disks[d].possible[b].sorted())")
                    observed[b] = q
                }
                s.disks[d].latest = observed
                s.disks[d].synced()
            }
            s.lastStep = "list snapshots"
            let present = Set(try Sys.listdir(m.snapshots))
            if let (id, content) = s.snapInFlight {
                if present.contains(id) { s.snaps[id] = content }
                s.snapInFlight = nil
            }
            if let id = s.deleteInFlight {
                if !present.contains(id) { s.snaps[id] = nil; s.deleted.insert(id) }
                s.deleteInFlight = nil
            }
            XCTAssertEqual(present, Set(s.snaps.keys), "round \(round): snapshots after recovery")
            // Clones: every returned one exists with its snapshot's bytes; no other disks.
            s.lastStep = "list disks"
            let diskDirs = Set(try Sys.listdir(m.disks))
            if let (name, src, content) = s.cloneInFlight {
                if diskDirs.contains(name) { s.clones[name] = (src, content) }
                s.cloneInFlight = nil
            }
            XCTAssertEqual(diskDirs, Set(diskNames).union(s.clones.keys), "round \(round): disks after recovery")
            for (name, c) in s.clones where diskDirs.contains(name) {
                s.lastStep = "read clone \(name)"
                let d = diskNames.firstIndex(of: String(c.of.split(separator: "@")[0]))!
                let bytes = try Sys.readFile(m.image(disk: name))
                for b in 0..<Self.blocks where Self.seqOf(bytes[(b * Self.blockSize)..<((b + 1) * Self.blockSize)], disk: d, block: b) != c.content[b] {
                    XCTFail("round \(round): clone \(name) of \(c.of) differs at block \(b)"); break
                }
            }
            // Keep the pool small: drop clones now and then (synced by rmdir).
            if s.clones.count > 3, let victim = s.clones.keys.sorted().first {
                s.lastStep = "rmdir clone \(victim) (present: \(diskDirs.contains(victim)))"
                try Sys.rmdir("\(m.disks)/\(victim)")
                s.clones[victim] = nil
            }
            for (id, content) in s.snaps where present.contains(id) {
                let d = diskNames.firstIndex(of: String(id.split(separator: "@")[0]))!
                s.lastStep = "read snapshot \(id)"
                let bytes = try Sys.readFile(m.image(snapshot: id))
                for b in 0..<Self.blocks {
                    let got = Self.seqOf(bytes[(b * Self.blockSize)..<((b + 1) * Self.blockSize)], disk: d, block: b)
                    if got != content[b] {
                        XCTFail("round \(round): snapshot \(id) block \(b) holds \(String(describing: got)), captured \(content[b])"); break
                    }
                }
            }
            XCTAssertTrue(s.deleted.isDisjoint(with: present), "round \(round): a deleted snapshot came back")
        }
    }
}

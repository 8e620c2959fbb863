import Foundation
import XCTest
import TestSupport
@testable import SnapStore

/// Kills the store at random I/O points (torn write, then nothing; on even trials a power
/// cut also drops a random subset of unflushed writes) and checks that
/// the reopened pool is exactly the last committed state — or the state of the
/// commit that was under way — with a clean check.
final class CrashRecoveryTests: XCTestCase {
    typealias Image = PoolModelTests.Image

    struct State: Equatable {
        var disks: [String: Image] = [:]
        var snaps: [String: Image] = [:]
        static func == (a: State, b: State) -> Bool {
            func norm(_ m: [String: Image]) -> [String: [UInt64: [UInt8]]] {
                m.mapValues { img in img.pages.filter { $0.value.contains { $0 != 0 } && $0.key * 4096 < img.size } }
            }
            return a.disks.mapValues(\.size) == b.disks.mapValues(\.size) && a.snaps.mapValues(\.size) == b.snaps.mapValues(\.size)
                && norm(a.disks) == norm(b.disks) && norm(a.snaps) == norm(b.snaps)
        }
    }

    func observed(_ pool: Pool, like model: State) throws -> State {
        var s = State()
        func image(_ id: ObjectID, _ size: UInt64, _ pagesToRead: Set<UInt64>) throws -> Image {
            var img = Image()
            img.size = size
            for p in pagesToRead where p * 4096 < size {
                var buf = [UInt8](repeating: 0, count: 4096)
                let n = try buf.withUnsafeMutableBytes { try pool.read(object: id, offset: p * 4096, into: $0) }
                img.pages[p] = Array(buf[0..<n]) + [UInt8](repeating: 0, count: 4096 - n)
            }
            return img
        }
        // Read every page either candidate state has data in.
        let pages = Set(model.disks.values.flatMap { $0.pages.keys } + model.snaps.values.flatMap { $0.pages.keys })
        for d in pool.disks() { s.disks[d.name] = try image(d.id, d.size, pages) }
        for sn in pool.snapshots() { s.snaps[sn.name] = try image(sn.id, sn.size, pages) }
        return s
    }

    func testKillAtRandomIOPoints() throws {
        try killAtRandomIOPoints(trials: 120, layout: SegmentLayout(first: 16384, largest: 65536))   // many segment files
    }

    /// The same in a format 3 pool (all chunks in one `data` file).
    func testKillAtRandomIOPointsInAFormatThreePool() throws {
        try killAtRandomIOPoints(trials: 40, layout: .singleFile)
    }

    func killAtRandomIOPoints(trials: Int, layout: SegmentLayout) throws {
        var rng = PoolModelTests.RNG(state: 42)
        var killPoints = 0
        for trial in 0..<trials {
            let dir = NSTemporaryDirectory() + "snapfs-crash-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let crash = CrashSwitch(seed: UInt64(trial) + 1)
            var options = PoolOptions()
            options.chunkSize = 4096
            options.backgroundCommits = false
            options.cacheBlocks = 64
            options.dataSegments = layout
            options.storage = CrashingStorage(directory: dir, crash: crash)
            let pool = try Pool.open(directory: dir, options: options)
            var model = State()
            var committed = State()
            var committing: State?
            let armAt = Int.random(in: 5..<120, using: &rng)
            step: for step in 0..<200 {
                if step == armAt { crash.arm(afterOperations: Int.random(in: 0..<60, using: &rng)) }
                do {
                    let roll = Int.random(in: 0..<100, using: &rng)
                    if model.disks.isEmpty || roll < 4 {
                        let name = "d\(step)"
                        _ = try pool.createDisk(name: name)
                        model.disks[name] = Image()
                        continue
                    }
                    let dname = model.disks.keys.sorted().randomElement(using: &rng)!
                    let d = pool.disk(named: dname)!
                    switch roll {
                    case 4..<60:
                        let off = UInt64.random(in: 0..<(2 << 20), using: &rng)
                        let bytes = (0..<Int.random(in: 1...9000, using: &rng)).map { _ in UInt8.random(in: 1...255, using: &rng) }
                        try bytes.withUnsafeBytes { try pool.write(disk: d.id, offset: off, data: $0) }
                        model.disks[dname]!.write(off, bytes)
                    case 60..<66:
                        guard d.size > 0 else { continue }
                        let off = UInt64.random(in: 0..<d.size, using: &rng)
                        try pool.punchHole(disk: d.id, offset: off, length: 50_000)
                        model.disks[dname]!.zero(off, min(d.size, off + 50_000))
                    case 66..<76:
                        _ = try pool.createSnapshots([SnapshotRequest(disk: dname, label: "s\(step)")])
                        model.snaps["\(dname)@s\(step)"] = model.disks[dname]!
                    case 76..<82:
                        guard let s = model.snaps.keys.sorted().randomElement(using: &rng) else { continue }
                        try pool.deleteSnapshot(name: s)
                        model.snaps[s] = nil
                    case 82..<85:
                        guard let s = model.snaps.keys.sorted().randomElement(using: &rng) else { continue }
                        _ = try pool.createDisk(name: "c\(step)", fromSnapshot: s)
                        model.disks["c\(step)"] = model.snaps[s]!
                    case 85..<87:
                        try pool.deleteDisk(name: dname)
                        model.disks[dname] = nil
                    default:
                        // fsync (the intent log when it can carry the changes) or a commit.
                        committing = model
                        if roll % 2 == 0 { try pool.syncWrites() } else { try pool.sync() }
                        committed = model
                        committing = nil
                    }
                } catch {
                    XCTAssertTrue(crash.crashed, "trial \(trial): unexpected error \(error)")
                    break step
                }
                if crash.crashed { break }
            }
            if !crash.crashed { continue }
            killPoints += 1
            pool.abandon()
            if trial % 2 == 0 { crash.powerLoss() }   // odd trials: kill -9 (page cache survives)
            var plain = PoolOptions()
            plain.backgroundCommits = false
            let reopened: Pool
            do { reopened = try Pool.open(directory: dir, options: plain) } catch {
                XCTFail("trial \(trial) (power loss: \(trial % 2 == 0), committing: \(committing != nil)): reopen failed: \(error)")
                continue
            }
            // Read every page either candidate has data in.
            func union(_ a: [String: Image], _ b: [String: Image]) -> [String: Image] {
                a.merging(b) { x, y in var m = x; m.pages.merge(y.pages) { p, _ in p }; return m }
            }
            let seen = try observed(reopened, like: State(disks: union(committed.disks, committing?.disks ?? [:]),
                                                          snaps: union(committed.snaps, committing?.snaps ?? [:])))
            let matchesCommitted = seen == committed
            let matchesCommitting = committing.map { seen == $0 } ?? false
            XCTAssertTrue(matchesCommitted || matchesCommitting,
                          "trial \(trial): recovered state is neither the last commit nor the one under way; disks \(seen.disks.keys.sorted()) vs \(committed.disks.keys.sorted())")
            let report = reopened.check()
            XCTAssertTrue(report.isClean, "trial \(trial): " + report.problems.prefix(5).joined(separator: "; "))
            try reopened.close()
        }
        XCTAssertGreaterThan(killPoints, trials / 2, "too few trials reached their kill point")
    }

    /// A power cut while a commit flushes: some files' flushes completed, the rest lose a
    /// random subset of their writes. Recovery must find the torn commit and take the
    /// previous one, or the whole new one if everything landed.
    func testPowerCutDuringTheFlush() throws {
        var rng = PoolModelTests.RNG(state: 7)
        var sawPrevious = 0, sawNew = 0
        for trial in 0..<80 {
            let dir = NSTemporaryDirectory() + "snapfs-flushcut-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let crash = CrashSwitch(seed: UInt64(trial) &* 977 + 5)
            var options = PoolOptions()
            options.chunkSize = 4096
            options.backgroundCommits = false
            options.storage = CrashingStorage(directory: dir, crash: crash)
            options.dataSegments = SegmentLayout(first: 16384, largest: 65536)   // many segment files
            let pool = try Pool.open(directory: dir, options: options)
            var model = State()
            var committed = State()
            for step in 0..<Int.random(in: 20...80, using: &rng) {
                if model.disks.isEmpty || step % 17 == 0 {
                    _ = try pool.createDisk(name: "d\(step)"); model.disks["d\(step)"] = Image()
                }
                let name = model.disks.keys.sorted().randomElement(using: &rng)!
                let off = UInt64.random(in: 0..<(1 << 20), using: &rng)
                let bytes = (0..<Int.random(in: 1...9000, using: &rng)).map { _ in UInt8.random(in: 1...255, using: &rng) }
                try bytes.withUnsafeBytes { try pool.write(disk: pool.disk(named: name)!.id, offset: off, data: $0) }
                model.disks[name]!.write(off, bytes)
                if step % 7 == 0 {
                    _ = try pool.createSnapshots([SnapshotRequest(disk: name, label: "s\(step)")])
                    model.snaps["\(name)@s\(step)"] = model.disks[name]!
                }
                if step % 11 == 0 { try pool.sync(); committed = model }
            }
            let last = model.disks.keys.sorted()[0]
            let tail = [UInt8](repeating: UInt8(trial % 250 + 1), count: 5000)
            try tail.withUnsafeBytes { try pool.write(disk: pool.disk(named: last)!.id, offset: 4096, data: $0) }
            model.disks[last]!.write(4096, tail)
            crash.arm(atFlush: Int.random(in: 0..<5, using: &rng))
            XCTAssertThrowsError(try pool.sync())
            pool.abandon()
            crash.powerLoss()
            var plain = PoolOptions()
            plain.backgroundCommits = false
            let reopened = try Pool.open(directory: dir, options: plain)
            func union(_ a: [String: Image], _ b: [String: Image]) -> [String: Image] {
                a.merging(b) { x, y in var m = x; m.pages.merge(y.pages) { p, _ in p }; return m }
            }
            let seen = try observed(reopened, like: State(disks: union(committed.disks, model.disks), snaps: union(committed.snaps, model.snaps)))
            if seen == committed { sawPrevious += 1 } else if seen == model { sawNew += 1 } else {
                XCTFail("trial \(trial): recovered state is neither the previous commit nor the cut one")
            }
            let report = reopened.check()
            XCTAssertTrue(report.isClean, "trial \(trial): " + report.problems.prefix(5).joined(separator: "; "))
            try reopened.close()
        }
        XCTAssertGreaterThan(sawPrevious, 10, "torn commits were exercised")
        print("power cut during flush: \(sawPrevious) fell back, \(sawNew) complete")
    }
}

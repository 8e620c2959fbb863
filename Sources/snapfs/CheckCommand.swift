import ArgumentParser
import Foundation
import SnapFS
import SnapStore

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Verify the whole pool: checksums, maps, reference counts, free space (offline or mounted).",
        discussion: """
            While the pool is mounted, the daemon commits and keeps that commit's blocks from being \
            reused until the check ends (the check renews this pin every 2 s; if the daemon dropped \
            it, the check fails and asks to be run again); the check reads that commit. Damaged \
            redundant copies (a superblock slot, a shadow slot of a reference-count page) are problems \
            too: the pool still runs on the other copy, but has lost that safety margin. Exit status \
            0: clean; 1: damage \
            found (each problem and each damaged disk or snapshot with its byte ranges is listed).
            """)
    @OptionGroup var options: ClientOptions
    @Flag(help: "Skip reading and checksumming data chunks (maps and counts only; much faster).")
    var noData = false
    @Flag(help: "Rewrite damaged redundant copies from the good one first (offline: opens the pool as a mount would).")
    var repair = false

    func run() throws {
        let dir = options.pool
        let pin: ControlClient.Pin?
        let pool: Pool
        // Redundant copies first: a repaired superblock decides which commit the walk reads.
        let copies: CopiesOutcome
        do {
            copies = try checkCopies(dir)
            pin = try ControlClient.pin(pool: dir)
            var o = PoolOptions()
            o.readOnly = true
            pool = try Pool.open(directory: dir, options: o)
        } catch {
            throw fail("\(error)")
        }
        var report = pool.check(verifyData: !noData) { line in
            FileHandle.standardError.write(Data("snapfs: check: \(line)\n".utf8))
        }
        // A pin the daemon dropped (its lease lapsed) may have let blocks the check read be
        // reused: what it found cannot be trusted either way.
        do { try pin?.finish() } catch { throw fail("\(error)") }
        report.problems = copies.failures + (copies.problems ?? pool.redundantCopyProblems()) + report.problems
        if !options.json {
            Table.print(copies.repaired.map { "repaired \($0)\n" }.joined())
        }
        // Offline only: while mounted the daemon owns the log and replays nothing.
        let journalRecords = pin == nil ? ((try? pool.pendingJournalRecords()) ?? 0) : 0
        let disks = pool.disks().count, snapshots = pool.snapshots().count
        let damaged = report.damaged.mapValues { ranges in
            ranges.map { RangeRecord(Offset: $0.lowerBound, Length: $0.upperBound - $0.lowerBound + 1) }
        }
        if options.json {
            options.printJSON(.object([
                ("Clean", .bool(report.isClean)), ("Disks", .int(Int64(disks))), ("Snapshots", .int(Int64(snapshots))),
                ("ChunksVerified", .int(Int64(report.chunksVerified))), ("JournalRecords", .int(Int64(journalRecords))),
                ("Problems", .array(report.problems.map(JSONValue.string))),
                ("Repaired", .array(copies.repaired.map(JSONValue.string))),
                ("Damaged", .object(damaged.sorted { $0.key < $1.key }.map { ($0.key, .array($0.value.map(\.json))) })),
            ]))
        }
        if report.isClean {
            if !options.json {
                let pending = journalRecords > 0 ? "; \(journalRecords) fsync'd changes in the intent log, replayed at the next mount" : ""
                Table.print("pool \(dir): clean, \(disks) disks, \(snapshots) snapshots, \(report.chunksVerified) chunks verified\(pending)\n")
            }
            return
        }
        let e = fail("pool \(dir) is damaged: \(report.problems.count) problems, \(damaged.count) disks or snapshots affected")
        if !options.json {
            var text = "problems:\n" + report.problems.map { "  \($0)\n" }.joined()
            if !damaged.isEmpty { text += "damaged:\n" }
            for (name, ranges) in damaged.sorted(by: { $0.key < $1.key }) {
                text += "  \(name): " + ranges.map { "bytes \($0.Offset)-\($0.Offset + $0.Length - 1)" }.joined(separator: ", ") + "\n"
            }
            FileHandle.standardError.write(Data(text.utf8))
        }
        throw e
    }
}

/// What the redundant copies look like. `problems` nil: not asked yet (offline without a
/// repair, the read-only pool answers).
struct CopiesOutcome {
    var problems: [String]?
    var repaired: [String] = []
    var failures: [String] = []
}

extension CheckCommand {
    /// Mounted: the daemon checks (and repairs) under its own commit lock. Offline with
    /// `--repair`: the pool opened writable, as a mount would, then closed (a clean close
    /// commits once more). Offline without: nothing yet.
    func checkCopies(_ dir: String) throws -> CopiesOutcome {
        var request = ControlRequest(op: .checkCopies)
        request.repair = repair
        if let r = try ControlClient.send(request, pool: dir) {
            return CopiesOutcome(problems: r.problems ?? [], repaired: r.repaired ?? [])
        }
        guard repair else { return CopiesOutcome() }
        var o = PoolOptions()
        o.backgroundCommits = false
        let writable: Pool
        do { writable = try Pool.open(directory: dir, options: o) } catch {
            return CopiesOutcome(failures: ["cannot repair: \(error)"])
        }
        let fix = writable.repairRedundantCopies()
        var outcome = CopiesOutcome(repaired: fix.repaired, failures: fix.failures)
        do { try writable.close() } catch { outcome.failures.append("cannot repair: closing the pool failed: \(error)") }
        return outcome
    }
}

/// Test hooks; hidden from help. Refused by the daemon unless it runs with SNAPFS_TEST_HOOKS=1.
struct DebugCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "debug", abstract: "Test hooks (daemon needs SNAPFS_TEST_HOOKS=1).",
        shouldDisplay: false, subcommands: [DebugExpire.self])
}

struct DebugExpire: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "expire", abstract: "Run the retention pass now.")
    @OptionGroup var options: ClientOptions
    @Option(help: "First set the daemon's retention clock to the wall clock plus this many seconds.")
    var clockOffsetSeconds: Double?

    func run() throws {
        var r = ControlRequest(op: .debugExpire)
        r.clockOffsetSeconds = clockOffsetSeconds
        Table.print((try options.send(r).message ?? "") + "\n")
    }
}

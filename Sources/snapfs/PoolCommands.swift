import ArgumentParser
import Foundation
import SnapFS
import SnapStore

struct PoolCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool", abstract: "Pool-wide information and format upgrade.", subcommands: [PoolStats.self, PoolUpgrade.self])
}

struct PoolStats: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Capacity, space used, logical size, sharing and counts (works offline too).")
    @OptionGroup var options: ClientOptions

    func run() throws {
        let out: ControlResponse
        do {
            if let served = try ControlClient.send(ControlRequest(op: .poolStats), pool: options.pool) {
                out = served
            } else {
                // Not mounted: read the last commit without taking the pool's lock or writing.
                var o = PoolOptions()
                o.readOnly = true
                let pool = try Pool.open(directory: options.pool, options: o)
                out = PoolRecords.stats(pool)
            }
        } catch {
            throw fail("\(error)")
        }
        guard let s = out.stats else { throw fail("the daemon sent no statistics") }
        if options.json { return options.printJSON(s) }
        let referenced = out.referencedBytes ?? 0, stored = out.storedBytes ?? 0
        let ratio = stored == 0 ? "-" : String(format: "%.2fx", Double(referenced) / Double(stored))
        let rows: [[String]] = [
            ["capacity", Table.size(s.CapacityBytes), "what the pool holds plus what the host still lets it take"],
            ["used", Table.size(s.UsedBytes), "space the pool's files occupy"],
            ["logical", Table.size(s.LogicalBytes), "sum of the disks' sizes"],
            ["referenced", Table.size(referenced), "what all disks and snapshots point to"],
            ["stored", Table.size(stored), "chunks actually kept"],
            ["sharing", ratio, "referenced / stored"],
            ["chunk size", Table.size(UInt64(s.ChunkSize)), ""],
            ["disks", "\(s.Disks)", ""],
            ["snapshots", "\(s.Snapshots)", ""],
        ]
        Table.print("pool \(options.pool)\n" + Table.render(rows[0], Array(rows.dropFirst())))
    }
}

struct PoolUpgrade: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upgrade",
        abstract: "Move a pool to the current on-disk format (offline: unmount it first).",
        discussion: """
            A format 3 pool keeps all its data in one file; format 4 splits it into segment \
            files, so allocating space ahead never stalls writes (docs/FORMAT.md). The upgrade \
            copies the data into the segment files, switches the superblock, then deletes the \
            old file: it needs free host space for the pool's data once more. If it is \
            interrupted (even by kill -9 or a power cut) the pool opens in the old or the new \
            format with nothing lost; run it again to finish. A format 4 pool only gets format 5 \
            written into its superblock (format 5 adds owners and modes to the records; any \
            commit by this snapfs does the same). A current pool is left as it is.
            """)
    @OptionGroup var options: ClientOptions

    func run() throws {
        if (try? ControlClient.send(ControlRequest(op: .poolStats), pool: options.pool)) != nil {
            throw fail("pool \(options.pool) is mounted: unmount it first (snapfs unmount MOUNTPOINT), then upgrade")
        }
        let started = Date()
        let report: UpgradeReport
        do { report = try Pool.upgrade(directory: options.pool) } catch {
            throw fail("\(error)")
        }
        let seconds = Date().timeIntervalSince(started)
        if options.json {
            return options.printJSON(.object([
                ("FromVersion", .int(Int64(report.fromVersion))), ("ToVersion", .int(Int64(report.toVersion))),
                ("SegmentFiles", .int(Int64(report.segmentFiles))), ("CopiedBytes", .int(Int64(report.copiedBytes))),
            ]))
        }
        if report.fromVersion == report.toVersion {
            Table.print("pool \(options.pool) is already format \(report.toVersion); nothing to do\n")
        } else if report.fromVersion == 4 {
            Table.print("pool \(options.pool): format 4 -> \(report.toVersion) (records gain owners and modes; no data copied)\n")
        } else {
            Table.print(String(format: "pool %@: format %u -> %u, %@ of data copied into %d segment files in %.1f s\n",
                               options.pool, report.fromVersion, report.toVersion, Table.size(report.copiedBytes),
                               report.segmentFiles, seconds))
        }
    }
}

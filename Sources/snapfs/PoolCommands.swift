import ArgumentParser
import Foundation
import SnapFS
import SnapStore

struct PoolCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool", abstract: "Pool-wide information.", subcommands: [PoolStats.self])
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

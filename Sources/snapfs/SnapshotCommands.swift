import ArgumentParser
import Foundation
import SnapFS
import SnapStore

struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Create, list, delete and compare snapshots.",
        subcommands: [SnapshotCreate.self, SnapshotList.self, SnapshotDelete.self, SnapshotDiff.self])
}

/// `--tag K=V` arguments as a dictionary; a repeated key or a bad tag fails the command.
func parseTags(_ tags: [String]) throws -> [String: String] {
    var out: [String: String] = [:]
    for t in tags {
        let (k, v): (String, String)
        do { (k, v) = try SnapshotMetadata.parseTag(t) } catch { throw fail("\(error)") }
        guard out[k] == nil else { throw fail("tag '\(k)' is given twice") }
        out[k] = v
    }
    return out
}

struct SnapshotCreate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Snapshot one disk, or several at one point in time (a group: RAID, spanned volumes).")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The disks to capture together.")
    var disks: [String]
    @Option(help: "Label of the snapshots (id DISK@LABEL); default: the UTC time, yyyyMMddTHHmmssZ.")
    var label: String?
    @Option(help: "Free text kept with the snapshot (up to 256 bytes).")
    var description: String?
    @Option(help: "A tag KEY=VALUE; repeat for more (up to 20).")
    var tag: [String] = []
    @Option(help: "Delete the snapshot automatically this many days after its creation.")
    var retentionDays: Int?

    func run() throws {
        var r = ControlRequest(op: .snapshotCreate)
        r.names = disks
        r.label = label
        r.description = description
        r.tags = try parseTags(tag)
        r.retentionDays = retentionDays
        options.printSnapshots(try options.send(r).snapshots ?? [])
    }
}

struct SnapshotList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List snapshots.")
    @OptionGroup var options: ClientOptions
    @Option(help: "Only snapshots of this disk.")
    var disk: String?
    @Option(help: "Only snapshots with this tag KEY=VALUE; repeat to require several.")
    var tag: [String] = []

    func run() throws {
        var r = ControlRequest(op: .snapshotList)
        r.disk = disk
        r.tags = try parseTags(tag)
        options.printSnapshots(try options.send(r).snapshots ?? [])
    }
}

struct SnapshotDelete: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete a snapshot (refused while its image is open); its exclusive chunks go back to the pool.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The snapshot id, DISK@LABEL.")
    var id: String

    func run() throws {
        try options.delete(.snapshotDelete, name: id, idKey: "SnapshotId")
    }
}

struct SnapshotDiff: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "The byte ranges (chunk-aligned) that differ between two snapshots, or between a snapshot and its disk now.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The older snapshot, DISK@LABEL.")
    var id: String
    @Argument(help: "The newer snapshot; omitted: the first snapshot's disk as it is now.")
    var id2: String?

    func run() throws {
        var r = ControlRequest(op: .snapshotDiff)
        r.name = id
        r.other = id2
        guard let diff = try options.send(r).diff else { throw fail("the daemon sent no diff") }
        if options.json { return options.printJSON(diff) }
        let total = diff.ChangedRanges.reduce(UInt64(0)) { $0 + $1.Length }
        var text = Table.render(["OFFSET", "LENGTH"], diff.ChangedRanges.map { ["\($0.Offset)", "\($0.Length)"] })
        text += "\(diff.ChangedRanges.count) ranges, \(Table.size(total)) changed (chunk size \(Table.size(UInt64(diff.ChunkSize))))\n"
        Table.print(text)
    }
}

import ArgumentParser
import Foundation
import SnapFS

/// `--pool` and `--json`, shared by every command that talks to a pool.
struct ClientOptions: ParsableArguments {
    @Option(help: "The pool directory (the one given to snapfs mount).")
    var pool = SnapfsCommand.defaultPool

    @Flag(help: "Print JSON (SPEC §4 shapes) instead of a table.")
    var json = false

    /// Sends `request` to the daemon serving the pool; any failure becomes "snapfs: ...".
    func send(_ request: ControlRequest) throws -> ControlResponse {
        do { return try ControlClient.require(request, pool: pool) } catch {
            throw fail("\(error)")
        }
    }

    /// Prints `value` as pretty JSON (keys in the SPEC's order) on stdout.
    func printJSON(_ value: JSONValue) {
        FileHandle.standardOutput.write(Data((value.render(pretty: true) + "\n").utf8))
    }
    func printJSON(_ value: some JSONRepresentable) { printJSON(value.json) }

    /// `{"Disks":[...]}` (SPEC §4) or the disk table.
    func printDisks(_ list: [DiskRecord]) {
        if json { return printJSON(.object([("Disks", .array(list.map(\.json)))])) }
        Table.print(Table.disks(list))
    }

    /// `{"Snapshots":[...]}` (SPEC §4) or the snapshot table.
    func printSnapshots(_ list: [SnapshotRecord]) {
        if json { return printJSON(.object([("Snapshots", .array(list.map(\.json)))])) }
        Table.print(Table.snapshots(list))
    }

    /// Sends a delete of `name`; prints `{"<idKey>": name}` or the daemon's message.
    func delete(_ op: ControlOp, name: String, idKey: String) throws {
        var r = ControlRequest(op: op)
        r.name = name
        let out = try send(r)
        if json { return printJSON(.object([(idKey, .string(name))])) }
        Table.print((out.message ?? "deleted") + "\n")
    }
}

/// Parses a size argument with truncate's suffixes, failing with "snapfs: invalid size ...".
func parseSize(_ text: String) throws -> UInt64 {
    do { return try SizeParser.parse(text) } catch { throw fail("\(error)") }
}

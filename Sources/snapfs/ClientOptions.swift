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
}

/// `{"Disks":[...]}` and `{"Snapshots":[...]}` (SPEC §4).
func disksJSON(_ list: [DiskRecord]) -> JSONValue { .object([("Disks", .array(list.map(\.json)))]) }
func snapshotsJSON(_ list: [SnapshotRecord]) -> JSONValue { .object([("Snapshots", .array(list.map(\.json)))]) }

/// Parses a size argument with truncate's suffixes, failing with "snapfs: invalid size ...".
func parseSize(_ text: String) throws -> UInt64 {
    do { return try SizeParser.parse(text) } catch { throw fail("\(error)") }
}

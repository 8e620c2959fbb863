import ArgumentParser
import Foundation

@main
struct SnapfsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapfs",
        abstract: "Cloud-disk-style virtual disks and snapshots, served through FUSE.",
        subcommands: [MountCommand.self, UnmountCommand.self])

    static let defaultPool = "/var/lib/snapfs/pool"
    static let defaultMountpoint = "/mnt/snapfs"
}

/// Prints "snapfs: <message>" as the first line on stderr and exits non-zero (SPEC §4).
func fail(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("snapfs: \(message)\n".utf8))
    return ExitCode.failure
}

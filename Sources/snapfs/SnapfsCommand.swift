import ArgumentParser
import Foundation
import SnapFS

@main
struct SnapfsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapfs",
        abstract: "Cloud-disk-style virtual disks and snapshots, served through FUSE.",
        discussion: """
            Every command but mount, unmount, check and pool stats talks to the daemon serving \
            the pool over the Unix socket POOL/control.sock. Shell completions: \
            snapfs --generate-completion-script bash|zsh|fish.
            """,
        subcommands: [MountCommand.self, UnmountCommand.self, DiskCommand.self, SnapshotCommand.self,
                      PoolCommand.self, CheckCommand.self, DebugCommand.self])

    static let defaultPool = "/var/lib/snapfs/pool"
    static let defaultMountpoint = "/mnt/snapfs"

    /// ArgumentParser's own runner, except that a malformed command line also starts its
    /// stderr with "snapfs: <what is wrong>" (SPEC §4), followed by the usage.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let code as ExitCode {
            exit(withError: code)
        } catch {
            let status = exitCode(for: error)
            if status == .success { exit(withError: error) }   // --help, completion scripts
            var text = fullMessage(for: error)
            if text.hasPrefix("Error: ") { text.removeFirst("Error: ".count) }
            FileHandle.standardError.write(Data("snapfs: \(text)\n".utf8))
            Foundation.exit(status.rawValue)
        }
    }
}

/// Prints "snapfs: <message>" as the first line on stderr and exits non-zero (SPEC §4).
func fail(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("snapfs: \(message)\n".utf8))
    return ExitCode.failure
}

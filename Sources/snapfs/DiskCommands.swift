import ArgumentParser
import Foundation
import SnapFS

struct DiskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disk", abstract: "Create, list, resize, roll back and delete disks.",
        subcommands: [DiskCreate.self, DiskList.self, DiskResize.self, DiskRollback.self, DiskDelete.self])
}

struct DiskCreate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a disk: empty and thin, or an instant, independent clone of a snapshot.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "Name of the new disk: [A-Za-z0-9][A-Za-z0-9._-]{0,63}.")
    var name: String
    @Option(help: "Size, in bytes or with truncate's suffixes (64M, 20G); a clone may only grow.")
    var size: String?
    @Option(help: "Clone this snapshot (DISK@LABEL): shares its chunks, copies nothing.")
    var fromSnapshot: String?

    func run() throws {
        var r = ControlRequest(op: .diskCreate)
        r.name = name
        r.size = try size.map(parseSize)
        r.fromSnapshot = fromSnapshot
        options.printDisks(try options.send(r).disks ?? [])
    }
}

struct DiskList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the disks.")
    @OptionGroup var options: ClientOptions

    func run() throws {
        options.printDisks(try options.send(ControlRequest(op: .diskList)).disks ?? [])
    }
}

struct DiskResize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resize", abstract: "Grow a disk (thin: no pool space is used until written). Shrinking is refused.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The disk to grow.")
    var name: String
    @Option(help: "The new size, at least the current one (bytes, or 64M, 20G, ...).")
    var size: String

    func run() throws {
        var r = ControlRequest(op: .diskResize)
        r.name = name
        r.size = try parseSize(size)
        options.printDisks(try options.send(r).disks ?? [])
    }
}

struct DiskRollback: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Give a disk the bytes and size of one of its snapshots (refused while its image is open).",
        discussion: "Unless --no-undo, the disk's current state is kept first as snapshot DISK@undo-<UTC time>; later snapshots stay.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The disk to roll back.")
    var name: String
    @Option(help: "The snapshot (DISK@LABEL, of this disk) to roll back to.")
    var to: String
    @Flag(help: "Do not keep the current state as an undo snapshot.")
    var noUndo = false

    func run() throws {
        var r = ControlRequest(op: .diskRollback)
        r.name = name
        r.other = to
        r.noUndo = noUndo
        let out = try options.send(r)
        if options.json {
            return options.printJSON(.object([("Disks", .array((out.disks ?? []).map(\.json))),
                                              ("Snapshots", .array((out.snapshots ?? []).map(\.json)))]))
        }
        Table.print((out.message ?? "rolled back") + "\n")
    }
}

struct DiskDelete: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete a disk (refused while its image is open); its snapshots stay.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The disk to delete.")
    var name: String

    func run() throws {
        try options.delete(.diskDelete, name: name, idKey: "DiskId")
    }
}

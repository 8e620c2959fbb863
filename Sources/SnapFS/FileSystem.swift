import Foundation
import Glibc
import SnapStore

/// Lets the core ask the kernel to drop what it cached, after a change the kernel did not
/// see (CLI resize, rollback, delete). Implemented by the FUSE bridge.
public protocol KernelCacheInvalidator: AnyObject, Sendable {
    /// Drops the attributes and cached data of `inode`.
    func invalidate(inode: UInt64)
    /// Drops the cached name `name` in directory `parent`.
    func invalidateEntry(parent: UInt64, name: String)
}

/// The filesystem of SPEC §1 over a pool: one method per FUSE operation, each returning its
/// result or throwing the errno to reply with. No libfuse types here, so it is unit-testable.
public final class FileSystem: @unchecked Sendable {
    public let pool: Pool
    /// Set by the bridge before the session loop runs; used by the control path.
    public weak var kernelCache: (any KernelCacheInvalidator)?

    let gates = WriteGates()
    let opens = OpenFiles()
    let directories = DirectoryHandles()
    let infoFiles = InfoFiles()
    /// Times of the fixed folders (`/`, `disks`, `snapshots`): when the daemon started.
    let startTime = Date()

    /// How long commands that need an image closed wait for pending releases (SPEC §1).
    public var releaseWait: TimeInterval = 2

    // Cache lifetimes handed to the kernel (seconds).
    /// Folders and names: a change made through the mount is seen by the kernel itself, a
    /// change made through the CLI is invalidated explicitly, so 1 s only bounds staleness
    /// if an invalidation is ever missed.
    static let folderTimeout = 1.0
    /// Disk images: 0. Size and st_blocks change with every write and with CLI resizes;
    /// with FUSE_CAP_AUTO_INVAL_DATA off (see the bridge) a timeout of 0 costs a GETATTR
    /// only on stat(), lseek(SEEK_END) and reads past the cached EOF, not on every read.
    static let diskImageTimeout = 0.0
    /// Snapshot images never change; a deleted one disappears with its inode number.
    static let snapshotImageTimeout = 60.0

    public init(pool: Pool) {
        self.pool = pool
    }

    /// Whether the image of a disk or snapshot is open (`in_use` in `disk list`).
    public func isOpen(object id: ObjectID) -> Bool { opens.isOpen(id) }

    // MARK: - Tree

    enum Node {
        case root, disks, snapshots
        case diskFolder(DiskInfo), diskImage(DiskInfo)
        case snapshotFolder(SnapshotInfo), snapshotImage(SnapshotInfo)
        case snapshotInfo(SnapshotInfo)   // info.json (Control/InfoFile.swift)
    }

    func resolve(_ ino: UInt64) throws(FSError) -> Node {
        switch Inode.decode(ino) {
        case .root: return .root
        case .disks: return .disks
        case .snapshots: return .snapshots
        case .folder(let id):
            if let d = pool.disk(id: id) { return .diskFolder(d) }
            if let s = pool.snapshot(id: id) { return .snapshotFolder(s) }
        case .image(let id):
            if let d = pool.disk(id: id) { return .diskImage(d) }
            if let s = pool.snapshot(id: id) { return .snapshotImage(s) }
        case .info(let id):
            if let s = pool.snapshot(id: id) { return .snapshotInfo(s) }
        case nil: break
        }
        throw FSError(ENOENT)
    }

    func attributes(_ node: Node) -> Attributes {
        func folder(_ ino: UInt64, _ time: Date) -> Attributes {
            let t = Timestamp(time)
            return Attributes(ino: ino, kind: .directory, permissions: 0o755, nlink: 2, size: 0,
                              blocks: 0, blockSize: 4096, atime: t, mtime: t, ctime: t)
        }
        switch node {
        case .root: return folder(Inode.root, startTime)
        case .disks: return folder(Inode.disks, startTime)
        case .snapshots: return folder(Inode.snapshots, startTime)
        case .diskFolder(let d): return folder(Inode.folder(d.id), d.creationTime)
        case .snapshotFolder(let s): return folder(Inode.folder(s.id), s.creationTime)
        case .diskImage(let d):
            let m = Timestamp(d.modificationTime)
            return Attributes(ino: Inode.image(d.id), kind: .regular, permissions: d.owner.mode, nlink: 1,
                              size: d.size, blocks: (d.mappedBytes + 511) / 512, blockSize: 4096,
                              uid: d.owner.uid, gid: d.owner.gid, atime: m, mtime: m, ctime: m)
        case .snapshotImage(let s):
            // A snapshot holds no space of its own until its disk diverges; report none
            // rather than double-count the shared chunks.
            let c = Timestamp(s.creationTime)
            return Attributes(ino: Inode.image(s.id), kind: .regular, permissions: s.owner.mode, nlink: 1,
                              size: s.size, blocks: 0, blockSize: 4096, uid: s.owner.uid, gid: s.owner.gid,
                              atime: c, mtime: c, ctime: c)
        case .snapshotInfo(let s): return infoAttributes(s)
        }
    }

    func entry(_ node: Node) -> Entry {
        let attributeTimeout: Double
        switch node {
        case .diskImage: attributeTimeout = Self.diskImageTimeout
        case .snapshotImage: attributeTimeout = Self.snapshotImageTimeout
        case .snapshotInfo: attributeTimeout = 0   // ExclusiveBytes changes as the disk diverges
        default: attributeTimeout = Self.folderTimeout
        }
        return Entry(attributes: attributes(node), entryTimeout: Self.folderTimeout,
                     attributeTimeout: attributeTimeout)
    }

    // MARK: - Names

    /// Needs search (x) permission on the folder, as a path walk does.
    public func lookup(as caller: Caller, parent: UInt64, name: String) throws(FSError) -> Entry {
        let node: Node?
        let folder = try resolve(parent)
        guard ownership(folder).directory else { throw FSError(ENOTDIR) }
        try require(caller, X_OK, on: folder)
        switch folder {
        case .root:
            node = name == "disks" ? .disks : name == "snapshots" ? .snapshots : nil
        case .disks:
            node = pool.disk(named: name).map { .diskFolder($0) }
        case .snapshots:
            node = pool.snapshot(named: name).map { .snapshotFolder($0) }
        case .diskFolder(let d):
            node = name == "image" ? .diskImage(d) : nil
        case .snapshotFolder(let s):
            node = name == "image" ? .snapshotImage(s) : name == InfoFiles.name ? .snapshotInfo(s) : nil
        case .diskImage, .snapshotImage, .snapshotInfo:
            throw FSError(ENOTDIR)
        }
        guard let node else { throw FSError(ENOENT) }
        return entry(node)
    }

    /// getattr: the attributes and how long the kernel may cache them.
    public func getattr(_ ino: UInt64) throws(FSError) -> Entry {
        entry(try resolve(ino))
    }

    /// access(2) and chdir (FUSE_ACCESS, sent because the mount has no default_permissions):
    /// EROFS for writing a snapshot (before any permission check, as Linux orders them),
    /// else EACCES unless owner, group and mode allow every bit asked for (Access.swift).
    public func access(as caller: Caller, _ ino: UInt64, mask: Int32) throws(FSError) {
        let node = try resolve(ino)
        if mask & W_OK != 0 {
            switch node {
            case .snapshotFolder, .snapshotImage, .snapshotInfo: throw FSError(EROFS)
            default: break
            }
        }
        try require(caller, mask, on: node)
    }

    // MARK: - Namespace changes

    public func mkdir(as caller: Caller, parent: UInt64, name: String) throws(FSError) -> Entry {
        switch try resolve(parent) {
        case .disks: return try createDisk(name, by: caller)
        case .snapshots: return entry(.snapshotFolder(try mkdirSnapshot(name, by: caller)))
        case .snapshotFolder: throw FSError(EROFS)
        default: throw FSError(EPERM)
        }
    }

    /// Root only (SPEC §6).
    private func createDisk(_ name: String, by caller: Caller) throws(FSError) -> Entry {
        guard Names.isValid(name) else { throw FSError(EINVAL) }  // a bad name wins (SPEC §1)
        guard pool.disk(named: name) == nil else { throw FSError(EEXIST) }
        guard caller.isRoot else { throw FSError(EACCES) }
        let disk = try store { try pool.createDisk(name: name) }
        try syncPool()
        return entry(.diskFolder(disk))
    }

    /// `mkdir snapshots/D@L`: EINVAL for a bad id, EEXIST, ENOENT for no disk, EACCES
    /// unless root or the disk's owner (SPEC §6), then capture.
    private func mkdirSnapshot(_ id: String, by caller: Caller) throws(FSError) -> SnapshotInfo {
        guard let (disk, label) = Names.splitSnapshotId(id) else { throw FSError(EINVAL) }
        guard pool.snapshot(named: id) == nil else { throw FSError(EEXIST) }
        guard let d = pool.disk(named: disk) else { throw FSError(ENOENT) }
        guard caller.isRoot || caller.uid == d.owner.uid else { throw FSError(EACCES) }
        return try capture([SnapshotRequest(disk: disk, label: label)])[0]
    }

    /// A disk: root only. A snapshot: root and the snapshot's owner (SPEC §6). EACCES
    /// for anyone else.
    public func rmdir(as caller: Caller, parent: UInt64, name: String) throws(FSError) {
        switch try resolve(parent) {
        case .disks:
            guard let d = pool.disk(named: name) else { throw FSError(ENOENT) }
            guard caller.isRoot else { throw FSError(EACCES) }
            try opens.whenClosed(d.id, timeout: releaseWait) { () throws(FSError) in
                // Same name, same disk? (It could have been deleted and re-created meanwhile.)
                guard pool.disk(named: name)?.id == d.id else { throw FSError(ENOENT) }
                try store { try pool.deleteDisk(name: name) }
            }
            gates.remove(d.id)
        case .snapshots:
            guard let s = pool.snapshot(named: name) else { throw FSError(ENOENT) }
            guard caller.isRoot || caller.uid == s.owner.uid else { throw FSError(EACCES) }
            try opens.whenClosed(s.id, timeout: releaseWait) { () throws(FSError) in
                guard pool.snapshot(named: name)?.id == s.id else { throw FSError(ENOENT) }
                try store { try pool.deleteSnapshot(name: name) }
            }
        case .snapshotFolder: throw FSError(EROFS)
        default: throw FSError(EPERM)
        }
        try syncPool()
    }

    /// The errno for creating a file, device, fifo, symlink or hard link in `parent`:
    /// the tree only ever holds what mkdir makes (SPEC §1).
    public func refuseNewEntry(parent: UInt64) -> FSError {
        do {
            if case .snapshotFolder = try resolve(parent) { return FSError(EROFS) }
            return FSError(EPERM)
        } catch {
            return error
        }
    }

    /// unlink: images go away only with their folder (rmdir).
    public func unlink(parent: UInt64, name: String) -> FSError {
        refuseNewEntry(parent: parent)
    }

    /// rename: names are ids; nothing may be renamed.
    public func rename(parent: UInt64, newParent: UInt64) -> FSError {
        let a = refuseNewEntry(parent: parent), b = refuseNewEntry(parent: newParent)
        if a.errno == ENOENT || b.errno == ENOENT { return FSError(ENOENT) }
        return a.errno == EROFS || b.errno == EROFS ? FSError(EROFS) : FSError(EPERM)
    }

    // MARK: - Attributes

    /// Every permission is checked before anything changes; a chmod or chown is committed
    /// before the reply, so it survives a crash once it returned (SPEC §6).
    public func setattr(as caller: Caller, _ ino: UInt64, _ changes: AttributeChanges) throws(FSError) -> Entry {
        let node = try resolve(ino)
        if changes.isEmpty { return entry(node) }
        switch node {
        case .snapshotFolder, .snapshotImage, .snapshotInfo:
            throw FSError(EROFS)
        case .diskImage(let d):
            let owner = try newOwnership(of: d.owner, changes, by: caller)
            if changes.size != nil { try require(caller, W_OK, on: node) }
            try requireTimeChange(changes, on: node, by: caller)
            if let owner, owner != d.owner {
                guard pool.canStoreOwnership else {
                    FileHandle.standardError.write(Data("snapfs: chmod/chown of \(d.name) refused: pool format 3 cannot store owners and modes; unmount and run snapfs pool upgrade\n".utf8))
                    throw FSError(EOPNOTSUPP)
                }
                try store { try pool.setOwnership(disk: d.id, owner) }
                try syncPool()
            }
            if let size = changes.size {
                try gates.gate(d.id).admit { () throws(FSError) in
                    try store { try pool.setDiskSize(id: d.id, size: size) }
                }
            }
            switch changes.mtime {
            case .now: pool.setDiskTimes(id: d.id, modification: Date())
            case .at(let date): pool.setDiskTimes(id: d.id, modification: date)
            case nil: break  // atime alone is accepted and not stored (like noatime)
            }
            return entry(try resolve(ino))
        default:
            throw FSError(EPERM)
        }
    }

    // MARK: - Folders

    /// Needs read permission on the folder.
    public func openDirectory(as caller: Caller, _ ino: UInt64) throws(FSError) -> UInt64 {
        let node = try resolve(ino)
        guard ownership(node).directory else { throw FSError(ENOTDIR) }
        try require(caller, R_OK, on: node)
        func dir(_ name: String, _ ino: UInt64) -> DirectoryEntry { DirectoryEntry(name: name, ino: ino, kind: .directory) }
        var list: [DirectoryEntry]
        switch node {
        case .root:
            list = [dir(".", Inode.root), dir("..", Inode.root), dir("disks", Inode.disks), dir("snapshots", Inode.snapshots)]
        case .disks:
            list = [dir(".", Inode.disks), dir("..", Inode.root)]
            list += pool.disks().map { dir($0.name, Inode.folder($0.id)) }
        case .snapshots:
            list = [dir(".", Inode.snapshots), dir("..", Inode.root)]
            list += pool.snapshots().map { dir($0.name, Inode.folder($0.id)) }
        case .diskFolder(let d):
            list = [dir(".", Inode.folder(d.id)), dir("..", Inode.disks),
                    DirectoryEntry(name: "image", ino: Inode.image(d.id), kind: .regular)]
        case .snapshotFolder(let s):
            list = [dir(".", Inode.folder(s.id)), dir("..", Inode.snapshots),
                    DirectoryEntry(name: "image", ino: Inode.image(s.id), kind: .regular),
                    DirectoryEntry(name: InfoFiles.name, ino: Inode.info(s.id), kind: .regular)]
        case .diskImage, .snapshotImage, .snapshotInfo:
            throw FSError(ENOTDIR)
        }
        return directories.open(list)
    }

    /// Entries from index `offset` on; the next offset of entry i is i + 1.
    public func readDirectory(_ handle: UInt64, from offset: Int) -> ArraySlice<DirectoryEntry> {
        directories.entries(handle, from: offset)
    }

    public func releaseDirectory(_ handle: UInt64) {
        directories.release(handle)
    }

    // MARK: - Space

    public func statfs() -> FileSystemStats {
        let s = pool.stats()
        let block: UInt64 = 4096
        let objects = UInt64(s.disks + s.snapshots)
        return FileSystemStats(blockSize: block, fragmentSize: block,
                               blocks: (s.usedBytes + s.availableBytes) / block,
                               blocksFree: s.availableBytes / block,
                               blocksAvailable: s.availableBytes / block,
                               files: objects + 1_000_000, filesFree: 1_000_000, nameMax: 255)
    }

    /// fsync/fdatasync/fsyncdir: everything written before is durable on return (one
    /// intent-log batch and one flush for plain writes; a commit otherwise).
    public func fsync() throws(FSError) {
        do { try pool.syncWrites() } catch { throw FSError(EIO) }
    }

    /// The pool's group commit; any failure to persist is EIO (SPEC §1).
    func syncPool() throws(FSError) {
        do { try pool.sync() } catch { throw FSError(EIO) }
    }
}

/// Snapshot listings of folders taken at opendir, so readdir pages through a stable list
/// in O(1) per call even with 10,000 snapshots.
final class DirectoryHandles: @unchecked Sendable {
    private let lock = NSLock()
    private var next: UInt64 = 1
    private var lists: [UInt64: [DirectoryEntry]] = [:]

    func open(_ list: [DirectoryEntry]) -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        let h = next
        next += 1
        lists[h] = list
        return h
    }

    func entries(_ handle: UInt64, from offset: Int) -> ArraySlice<DirectoryEntry> {
        lock.lock()
        defer { lock.unlock() }
        guard let list = lists[handle], offset >= 0, offset < list.count else { return [] }
        return list[offset...]
    }

    func release(_ handle: UInt64) {
        lock.lock()
        lists[handle] = nil
        lock.unlock()
    }
}

import Glibc
import SnapStore

// SPEC §6: the mount is shared by every user of the host (allow_other) and mounted
// without default_permissions, because the snapshot file view shows guest owners and
// modes that must not be applied to host users. So the kernel checks nothing but exec
// of a regular file (some x bit set); every other check is made here, with the
// credentials of the request: lookup (x on the folder), opendir (r), open (r and/or w
// by the flags), access(2) and chdir (FUSE_ACCESS), setattr, mkdir and rmdir.
// A lookup check alone guards nothing: the kernel shares cached names and attributes
// between users and asks again only when their timeouts end. So a folder whose contents
// are private must be checked again where its contents are used (open, opendir, access)
// or be served with timeouts of 0, so that every walk reaches the daemon.

/// Who makes a request: the fsuid, fsgid and supplementary groups the kernel names.
public struct Caller: Sendable {
    public var uid: UInt32
    public var gid: UInt32
    /// Supplementary groups, asked for only when a check gets to the group bits (the
    /// bridge reads them from /proc, which costs a file read).
    private let supplementaryGroups: @Sendable () -> [UInt32]

    public init(uid: UInt32, gid: UInt32, groups: @escaping @Sendable () -> [UInt32]) {
        self.uid = uid; self.gid = gid; supplementaryGroups = groups
    }

    public init(uid: UInt32, gid: UInt32, groups: [UInt32] = []) {
        self.init(uid: uid, gid: gid, groups: { groups })
    }

    /// The daemon itself and tests of behaviour other than access.
    public static let root = Caller(uid: 0, gid: 0)

    public var isRoot: Bool { uid == 0 }

    public func isMember(of group: UInt32) -> Bool {
        gid == group || supplementaryGroups().contains(group)
    }
}

/// access(2)'s mask bits, as FUSE_ACCESS and the checks here use them.
public enum AccessMask {
    public static let read = R_OK
    public static let write = W_OK
    public static let execute = X_OK
}

extension Ownership {
    /// POSIX's rule: the owner's bits if the caller owns the file, else the group's if the
    /// caller is in its group, else the others'. Root may read and write anything, and
    /// execute (search) folders and files with some x bit, as Linux allows root.
    public func permits(_ caller: Caller, _ mask: Int32, directory: Bool) -> Bool {
        let want = UInt32(mask) & 7
        if caller.isRoot {
            return want & UInt32(X_OK) == 0 || directory || mode & 0o111 != 0
        }
        let bits: UInt32
        if caller.uid == uid {
            bits = mode >> 6 & 7
        } else if caller.isMember(of: gid) {
            bits = mode >> 3 & 7
        } else {
            bits = mode & 7
        }
        return bits & want == want
    }
}

extension FileSystem {
    /// The fixed folders and the disk and snapshot folders: root's, open to all (names
    /// are not secret; the images are what is guarded).
    public static let folderOwnership = Ownership(uid: 0, gid: 0, mode: 0o755)

    /// Owner, group and mode of a node, and whether it is a folder.
    func ownership(_ node: Node) -> (owner: Ownership, directory: Bool) {
        switch node {
        case .root, .disks, .snapshots, .diskFolder, .snapshotFolder: return (Self.folderOwnership, true)
        case .diskImage(let d): return (d.owner, false)
        case .snapshotImage(let s), .snapshotInfo(let s): return (s.owner, false)
        }
    }

    /// EACCES unless the node's owner, group and mode give `caller` every bit of `mask`.
    func require(_ caller: Caller, _ mask: Int32, on node: Node) throws(FSError) {
        let (owner, directory) = ownership(node)
        guard owner.permits(caller, mask, directory: directory) else { throw FSError(EACCES) }
    }

    /// The bits open(2) flags ask for.
    static func accessMask(openFlags flags: Int32) -> Int32 {
        switch flags & O_ACCMODE {
        case O_WRONLY: return W_OK
        case O_RDWR: return R_OK | W_OK
        default: return flags & O_TRUNC != 0 ? R_OK | W_OK : R_OK
        }
    }

    /// chmod, chown and chgrp of a disk's image, as Linux allows them: root changes
    /// anything; the owner may chmod, and chgrp to a group they are in; nobody else
    /// changes anything (EPERM). Only permission bits: images are never setuid, setgid
    /// or sticky. Returns the new ownership, nil when the changes leave it alone.
    func newOwnership(of current: Ownership, _ changes: AttributeChanges, by caller: Caller) throws(FSError) -> Ownership? {
        guard changes.mode != nil || changes.uid != nil || changes.gid != nil else { return nil }
        let owns = caller.isRoot || caller.uid == current.uid
        var next = current
        if let mode = changes.mode {
            guard owns, mode & ~0o777 == 0 else { throw FSError(EPERM) }
            next.mode = mode
        }
        if let uid = changes.uid {
            guard caller.isRoot || (owns && uid == current.uid) else { throw FSError(EPERM) }
            next.uid = uid
        }
        if let gid = changes.gid {
            guard caller.isRoot || (owns && (gid == current.gid || caller.isMember(of: gid))) else { throw FSError(EPERM) }
            next.gid = gid
        }
        return next
    }

    /// utimensat's rule: setting times to now needs ownership or write permission
    /// (EACCES), setting them to given values needs ownership (EPERM).
    func requireTimeChange(_ changes: AttributeChanges, on node: Node, by caller: Caller) throws(FSError) {
        let (owner, _) = ownership(node)
        if caller.isRoot || caller.uid == owner.uid { return }
        let times = [changes.atime, changes.mtime].compactMap { $0 }
        if times.contains(where: { if case .at = $0 { return true } else { return false } }) { throw FSError(EPERM) }
        if !times.isEmpty { try require(caller, W_OK, on: node) }
    }
}

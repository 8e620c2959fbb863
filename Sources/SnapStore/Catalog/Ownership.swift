import Glibc

/// Who owns a disk or snapshot image and what its mode allows (SPEC §6): kept in the
/// object's record, enforced by the filesystem core against each caller.
public struct Ownership: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    /// Permission bits only (0o777): images are never setuid, setgid or sticky.
    public var mode: UInt32

    public init(uid: UInt32, gid: UInt32, mode: UInt32) {
        self.uid = uid; self.gid = gid; self.mode = mode & 0o777
    }

    /// A new disk, and a disk whose record predates format 5: `root:disk` 0660.
    public static var newDisk: Ownership { Ownership(uid: 0, gid: diskGroup, mode: 0o660) }
    /// A snapshot whose record predates format 5: its disk's defaults, read-only.
    public static var legacySnapshot: Ownership { newDisk.readOnly }

    /// The same owner and group with every write bit cleared: what a snapshot takes
    /// from its disk at capture.
    public var readOnly: Ownership { Ownership(uid: uid, gid: gid, mode: mode & ~0o222) }

    /// The host's group "disk" (the owner of block devices), looked up once; root's group
    /// (0) if the host has none, so that a missing group grants nobody anything.
    public static let diskGroup: UInt32 = groupID(named: "disk") ?? 0

    static func groupID(named name: String) -> UInt32? {
        var group = group()
        var found: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16384)
        let rc = getgrnam_r(name, &group, &buffer, buffer.count, &found)
        guard rc == 0, found != nil else { return nil }
        return group.gr_gid
    }
}

import SnapStore

/// Inode numbers are computed from pool object ids, never allocated, so the daemon keeps no
/// inode table and needs no `forget` bookkeeping. Object ids are never reused, so an inode
/// number can never come to mean a different object while the kernel still caches it.
///
///   1 = `/`, 2 = `/disks`, 3 = `/snapshots`, 4...15 reserved
///   16 + 4*N     the folder of object N (`disks/<d>` or `snapshots/<d>@<l>`)
///   16 + 4*N + 1 its `image`
///   16 + 4*N + 2 its `info.json` (snapshots only); +3 spare
public enum Inode {
    public static let root: UInt64 = 1
    public static let disks: UInt64 = 2
    public static let snapshots: UInt64 = 3
    static let objectBase: UInt64 = 16
    static let stride: UInt64 = 4

    public static func folder(_ id: ObjectID) -> UInt64 { objectBase + stride * id }
    public static func image(_ id: ObjectID) -> UInt64 { objectBase + stride * id + 1 }
    public static func info(_ id: ObjectID) -> UInt64 { objectBase + stride * id + 2 }

    public enum Decoded: Equatable, Sendable {
        case root, disks, snapshots
        case folder(ObjectID)
        case image(ObjectID)
        case info(ObjectID)
    }

    /// nil for numbers that name nothing (reserved slots, or ids too large to be ours).
    public static func decode(_ ino: UInt64) -> Decoded? {
        switch ino {
        case root: return .root
        case disks: return .disks
        case snapshots: return .snapshots
        case ..<objectBase: return nil
        default:
            let id = (ino - objectBase) / stride
            switch (ino - objectBase) % stride {
            case 0: return .folder(id)
            case 1: return .image(id)
            case 2: return .info(id)
            default: return nil
            }
        }
    }
}

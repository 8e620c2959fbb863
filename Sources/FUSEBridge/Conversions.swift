import CFuse3
import Foundation
import Glibc
import SnapFS

// The core's plain structs -> the C structs libfuse replies with.

extension Timestamp {
    var timespec: Glibc.timespec { Glibc.timespec(tv_sec: Int(seconds), tv_nsec: Int(nanoseconds)) }
}

extension Glibc.stat {
    init(_ a: Attributes) {
        self.init()
        st_ino = UInt(a.ino)  // st_ino is UInt, fuse_ino_t UInt64 (same width on x86_64/arm64)
        st_mode = (a.kind == .directory ? S_IFDIR : S_IFREG) | a.permissions
        st_nlink = UInt(a.nlink)
        st_uid = a.uid
        st_gid = a.gid
        st_size = Int(clamping: a.size)
        st_blocks = Int(clamping: a.blocks)
        st_blksize = Int(a.blockSize)
        st_atim = a.atime.timespec
        st_mtim = a.mtime.timespec
        st_ctim = a.ctime.timespec
    }

    /// The two fields readdir uses: inode number and file type.
    init(_ e: DirectoryEntry) {
        self.init()
        st_ino = UInt(e.ino)
        st_mode = e.kind == .directory ? S_IFDIR : S_IFREG
    }
}

extension statvfs {
    init(_ s: FileSystemStats) {
        self.init()
        f_bsize = UInt(s.blockSize)
        f_frsize = UInt(s.fragmentSize)
        f_blocks = UInt(s.blocks)
        f_bfree = UInt(s.blocksFree)
        f_bavail = UInt(s.blocksAvailable)
        f_files = UInt(s.files)
        f_ffree = UInt(s.filesFree)
        f_favail = UInt(s.filesFree)
        f_namemax = UInt(s.nameMax)
    }
}

extension fuse_entry_param {
    init(_ e: Entry) {
        self.init()
        ino = e.ino
        generation = 0  // inode numbers are never reused (object ids are not), so 0 is enough
        attr = Glibc.stat(e.attributes)
        attr_timeout = e.attributeTimeout
        entry_timeout = e.entryTimeout
    }
}

extension AttributeChanges {
    /// Decodes a setattr request (`to_set` is a mask of FUSE_SET_ATTR_*).
    init(_ attr: Glibc.stat, toSet: Int32) {
        self.init()
        func has(_ flag: Int32) -> Bool { toSet & flag != 0 }
        func date(_ t: Glibc.timespec) -> Date {
            Date(timeIntervalSince1970: Double(t.tv_sec) + Double(t.tv_nsec) / 1e9)
        }
        if has(FUSE_SET_ATTR_MODE) { mode = attr.st_mode & 0o7777 }
        if has(FUSE_SET_ATTR_UID) { uid = attr.st_uid }
        if has(FUSE_SET_ATTR_GID) { gid = attr.st_gid }
        if has(FUSE_SET_ATTR_SIZE) { size = UInt64(max(0, attr.st_size)) }
        if has(FUSE_SET_ATTR_ATIME_NOW) { atime = .now } else if has(FUSE_SET_ATTR_ATIME) { atime = .at(date(attr.st_atim)) }
        if has(FUSE_SET_ATTR_MTIME_NOW) { mtime = .now } else if has(FUSE_SET_ATTR_MTIME) { mtime = .at(date(attr.st_mtim)) }
    }
}

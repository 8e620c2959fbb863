import CFuse3
import Glibc
import SnapFS

extension Caller {
    /// The credentials of a request: fsuid and fsgid from the kernel's header, the
    /// supplementary groups read (by libfuse, from /proc) only if a check needs them.
    /// The core calls `groups` during the request, while `req` is still valid.
    init(_ req: fuse_req_t?) {
        let ctx = fuse_req_ctx(req)!.pointee
        let address = Int(bitPattern: req)
        self.init(uid: ctx.uid, gid: ctx.gid, groups: { Caller.supplementaryGroups(OpaquePointer(bitPattern: address)) })
    }

    /// None if they cannot be read (the caller exited, or /proc is missing): a check then
    /// falls through to the others' bits, never to more than the caller has.
    static func supplementaryGroups(_ req: fuse_req_t?) -> [UInt32] {
        var list = [gid_t](repeating: 0, count: 64)
        while true {
            let n = fuse_req_getgroups(req, Int32(list.count), &list)
            if n < 0 { return [] }
            if Int(n) <= list.count { return Array(list[0..<Int(n)]) }
            list = [gid_t](repeating: 0, count: Int(n))
        }
    }
}

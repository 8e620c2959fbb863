import Glibc

/// One page-aligned 1 MiB read buffer per FUSE worker thread: `pread`-style fill then
/// `fuse_reply_buf` was measured fastest here (GUIDE), and a per-thread buffer needs no lock
/// and no allocation per request. The thread-exit destructor frees it.
final class ReadBuffers: @unchecked Sendable {
    /// The kernel never asks for more than max_pages (1 MiB) per READ.
    static let capacity = 1 << 20
    private var key = pthread_key_t()

    init() {
        let rc = pthread_key_create(&key) { free($0) }
        precondition(rc == 0, "pthread_key_create failed: \(rc)")
    }

    deinit {
        // Destructors already ran for exited workers; a buffer of a thread still alive is
        // leaked (at most one, the caller's, in --single-threaded mode, at daemon exit).
        pthread_key_delete(key)
    }

    /// Runs `body` with a buffer of exactly `size` bytes: the thread's own buffer, or a
    /// temporary one should the kernel ever ask for more than `capacity`.
    func withBuffer<T>(size: Int, _ body: (UnsafeMutableRawBufferPointer) -> T) -> T {
        if size > Self.capacity {
            let p = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
            defer { p.deallocate() }
            return body(UnsafeMutableRawBufferPointer(start: p, count: size))
        }
        var p = pthread_getspecific(key)
        if p == nil {
            guard posix_memalign(&p, 4096, Self.capacity) == 0 else { fatalError("out of memory for a read buffer") }
            pthread_setspecific(key, p)
        }
        return body(UnsafeMutableRawBufferPointer(start: p, count: size))
    }
}

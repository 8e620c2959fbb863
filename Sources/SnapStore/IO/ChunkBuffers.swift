/// Reusable chunk-sized, page-aligned buffers for the read and write paths, so a 4 KiB
/// request does not allocate (and the allocator does not map and unmap) 64 KiB each time.
final class ChunkBuffers: @unchecked Sendable {
    private let size: Int
    private let lock = PthreadMutex()
    private var spare: [UnsafeMutableRawBufferPointer] = []
    private let keep = 32

    init(size: Int) { self.size = size }

    deinit { for b in spare { b.deallocate() } }

    func take() -> UnsafeMutableRawBufferPointer {
        lock.withLock { spare.popLast() } ?? .allocate(byteCount: size, alignment: 4096)
    }

    func give(_ b: UnsafeMutableRawBufferPointer) {
        let kept = lock.withLock { () -> Bool in
            guard spare.count < keep else { return false }
            spare.append(b)
            return true
        }
        if !kept { b.deallocate() }
    }
}

import CStoreSupport

/// CRC-32C of a byte range (the checksum of every chunk and metadata block).
@inline(__always)
func crc32c(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    snap_crc32c(0, bytes.baseAddress, bytes.count)
}

func crc32c(_ bytes: [UInt8]) -> UInt32 {
    bytes.withUnsafeBytes { crc32c($0) }
}

/// Little-endian field access into a metadata block.
extension UnsafeMutableRawBufferPointer {
    @inline(__always) func put<T: FixedWidthInteger>(_ v: T, at off: Int) {
        storeBytes(of: v.littleEndian, toByteOffset: off, as: T.self)
    }
}

extension UnsafeRawBufferPointer {
    @inline(__always) func get<T: FixedWidthInteger>(_: T.Type, at off: Int) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: off, as: T.self))
    }
}

/// Fixed sizes of the on-disk format (docs/FORMAT.md).
enum Layout {
    static let blockSize = 4096
    static let fanout = 256
    static let fanoutBits = 8
    static let entrySize = 16
    static let formatVersion: UInt32 = 5
    /// Format 3 pools (one `data` file) are read and written as format 3; format 4 pools
    /// become format 5 at their first commit (5 only adds fields to object records).
    static let oldestReadableVersion: UInt32 = 3
}

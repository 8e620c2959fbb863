import Foundation

/// The root of a pool's committed state. The file `superblock` holds two 4 KiB slots;
/// commit G writes slot G % 2 after everything it points to is flushed, so a torn
/// superblock write leaves the other slot (the previous commit) valid. Layout in
/// docs/FORMAT.md; every field little-endian; CRC-32C of bytes 0..<4092 at 4092.
struct Superblock: Equatable {
    static let magic: UInt64 = 0x4253_5346_5041_4E53   // "SNAPFSSB" read as LE bytes
    static let slotSize = Layout.blockSize

    var formatVersion: UInt32 = Layout.formatVersion
    var incompatFeatures: UInt64 = 0
    var poolUUID: UUID = UUID()
    var chunkSize: UInt32
    /// How the data chunks are split into segment files; fixed at creation.
    var segments: SegmentLayout = .standard
    var generation: UInt64
    var objectTree: MapRoot = MapRoot()
    var nextObjectId: UInt64 = 1
    var metaBlockCount: UInt64 = 1     // block 0 is never used: pointer 0 means "none"
    var dataChunkCount: UInt64 = 1     // chunk 0 likewise
    var createdMicros: Int64
    var commitMicros: Int64 = 0
    /// Length and CRC-32C of this commit's log (CommitLog), which recovery verifies.
    var commitLogLength: UInt32 = 0
    var commitLogCRC: UInt32 = 0

    func encode() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.slotSize)
        out.withUnsafeMutableBytes { b in
            b.put(Self.magic, at: 0)
            b.put(formatVersion, at: 8)
            b.put(UInt32(Self.slotSize), at: 12)
            b.put(incompatFeatures, at: 16)
            withUnsafeBytes(of: poolUUID.uuid) { u in
                (b.baseAddress! + 32).copyMemory(from: u.baseAddress!, byteCount: 16)
            }
            b.put(chunkSize, at: 48)
            b.put(UInt32(Layout.fanout), at: 52)
            b.put(generation, at: 56)
            b.put(objectTree.ptr, at: 64)
            b.put(objectTree.crc, at: 72)
            b.put(UInt32(objectTree.height), at: 76)
            b.put(nextObjectId, at: 80)
            b.put(metaBlockCount, at: 88)
            b.put(dataChunkCount, at: 96)
            b.put(createdMicros, at: 104)
            b.put(commitMicros, at: 112)
            b.put(commitLogLength, at: 120)
            b.put(commitLogCRC, at: 124)
            b.put(segments.first, at: 128)
            b.put(segments.largest, at: 136)
            let crc = crc32c(UnsafeRawBufferPointer(rebasing: b[0..<4092]))
            b.put(crc, at: 4092)
        }
        return out
    }

    enum DecodeResult { case valid(Superblock), invalid(String), unsupported(String) }

    static func decode(_ bytes: [UInt8]) -> DecodeResult {
        guard bytes.count == slotSize else { return .invalid("short superblock") }
        return bytes.withUnsafeBytes { b -> DecodeResult in
            guard b.get(UInt64.self, at: 0) == magic else { return .invalid("bad magic") }
            guard crc32c(UnsafeRawBufferPointer(rebasing: b[0..<4092])) == b.get(UInt32.self, at: 4092) else {
                return .invalid("checksum mismatch")
            }
            let version = b.get(UInt32.self, at: 8)
            guard version <= Layout.formatVersion else {
                return .unsupported("pool format version \(version) is newer than this snapfs supports (\(Layout.formatVersion))")
            }
            guard version >= Layout.oldestReadableVersion else {
                return .unsupported("pool format version \(version) is older than this snapfs supports (\(Layout.oldestReadableVersion)–\(Layout.formatVersion)); no converter exists")
            }
            let incompat = b.get(UInt64.self, at: 16)
            guard incompat == 0 else { return .unsupported("pool uses unknown features 0x\(String(incompat, radix: 16))") }
            guard b.get(UInt32.self, at: 52) == UInt32(Layout.fanout) else { return .unsupported("unsupported tree fanout") }
            var uuid = UUID().uuid
            withUnsafeMutableBytes(of: &uuid) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: b[32..<48])) }
            let chunk = b.get(UInt32.self, at: 48)
            guard chunk >= 4096, chunk <= 1 << 20, chunk & (chunk - 1) == 0 else { return .invalid("bad chunk size \(chunk)") }
            var sb = Superblock(chunkSize: chunk, generation: b.get(UInt64.self, at: 56), createdMicros: b.get(Int64.self, at: 104))
            sb.formatVersion = version
            sb.poolUUID = UUID(uuid: uuid)
            sb.objectTree = MapRoot(ptr: b.get(UInt64.self, at: 64), crc: b.get(UInt32.self, at: 72),
                                    height: Int(b.get(UInt32.self, at: 76)))
            sb.nextObjectId = b.get(UInt64.self, at: 80)
            sb.metaBlockCount = b.get(UInt64.self, at: 88)
            sb.dataChunkCount = b.get(UInt64.self, at: 96)
            sb.commitMicros = b.get(Int64.self, at: 112)
            sb.commitLogLength = b.get(UInt32.self, at: 120)
            sb.commitLogCRC = b.get(UInt32.self, at: 124)
            // Format 3 is format 4 with all data in one file (offsets 128 and 136 zero).
            sb.segments = SegmentLayout(first: b.get(UInt64.self, at: 128), largest: b.get(UInt64.self, at: 136))
            guard sb.segments.isSingleFile == (version == 3) else { return .invalid("data segment sizes do not match format \(version)") }
            if let why = sb.segments.problem(chunkSize: UInt64(chunk)) { return .invalid(why) }
            return .valid(sb)
        }
    }

    /// The valid slots, newest first. Recovery takes the first whose commit log verifies.
    static func loadCandidates(from file: StorageFile, path: String) throws -> [Superblock] {
        var found: [Superblock] = []
        var problems: [String] = []
        for slot in 0..<2 {
            var bytes = [UInt8](repeating: 0, count: slotSize)
            let n = try bytes.withUnsafeMutableBytes { try file.read(into: $0, at: UInt64(slot * slotSize)) }
            if n < slotSize { problems.append("slot \(slot): missing"); continue }
            switch decode(bytes) {
            case .valid(let sb): found.append(sb)
            case .invalid(let why): problems.append("slot \(slot): \(why)")
            case .unsupported(let why): throw StoreError.refused("cannot open pool \(path): \(why)")
            }
        }
        guard !found.isEmpty else {
            throw StoreError.refused("cannot open pool \(path): both superblocks are damaged (\(problems.joined(separator: "; ")))")
        }
        return found.sorted { $0.generation > $1.generation }
    }

    /// The newest valid slot, without verifying its commit (format tests).
    static func load(from file: StorageFile, path: String) throws -> Superblock {
        try loadCandidates(from: file, path: path)[0]
    }

    func write(to file: StorageFile) throws {
        let bytes = encode()
        try bytes.withUnsafeBytes { try file.write($0, at: UInt64(Int(generation % 2) * Self.slotSize)) }
    }
}

/// A block map's root: pointer and checksum of its top node, and the tree's height
/// (a tree of height h maps 256^h entries). ptr 0 is an empty map.
struct MapRoot: Equatable, Codable {
    var ptr: UInt64 = 0
    var crc: UInt32 = 0
    var height: Int = 1
}

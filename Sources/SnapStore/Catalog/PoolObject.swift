import Foundation

/// A disk or a snapshot as the pool keeps it in memory. The persistent form is an
/// `ObjectRecord` in a record block that the object table points to.
final class PoolObject {
    enum Kind: String, Codable { case disk, snapshot }

    let id: ObjectID
    let kind: Kind
    let name: String
    var size: UInt64
    var map: MapRoot
    var mappedChunks: UInt64
    let created: Date
    var modified: Date
    /// Owner, group and mode of the image (SPEC §6); a snapshot's are its disk's at capture.
    var owner: Ownership
    // Snapshots only.
    var sourceDisk: String = ""
    var sourceDiskId: ObjectID = 0
    var freezeMicros: UInt64 = 0
    var descriptionText: String = ""
    var tags: [String: String] = [:]
    var retentionDays: Int?
    /// Record block in the metadata space (0 until first committed).
    var recordBlock: UInt64 = 0
    var recordCRC: UInt32 = 0
    /// Deleted, its map being released a piece at a time (Pool+Deletion); its record says
    /// so, so a crash in between resumes the release instead of showing a partial map.
    var deleting = false
    /// Readers holding this snapshot's blocks (MapReader); a deletion waits for them.
    /// Guarded by the pool's lock.
    var holds = 0
    /// Serialises this object's data I/O: writes exclusive, reads shared (a read must
    /// never see a chunk and its checksum disagree while a write changes it).
    let io = RWLock()

    init(id: ObjectID, kind: Kind, name: String, size: UInt64, map: MapRoot, mappedChunks: UInt64, created: Date) {
        self.id = id; self.kind = kind; self.name = name; self.size = size
        self.map = map; self.mappedChunks = mappedChunks; self.created = created; self.modified = created
        owner = kind == .disk ? .newDisk : .legacySnapshot
    }
}

/// The persistent description of one object: JSON in a record block, preceded by its
/// length (u32 LE). JSON keeps the record easy to extend and to read with a hex dump.
struct ObjectRecord: Codable {
    var id: UInt64
    var kind: PoolObject.Kind
    var name: String
    var size: UInt64
    var root: UInt64
    var rootCRC: UInt32
    var height: Int
    var mappedChunks: UInt64
    var createdMicros: Int64
    var modifiedMicros: Int64
    var sourceDisk: String?
    var sourceDiskId: UInt64?
    var freezeMicros: UInt64?
    var description: String?
    var tags: [String: String]?
    var retentionDays: Int?
    // Format 5; absent in older records, which read as the defaults (Ownership.newDisk,
    // Ownership.legacySnapshot).
    var uid: UInt32?
    var gid: UInt32?
    var mode: UInt32?
    /// Format 5: present (true) only while the object's map is being released.
    var deleting: Bool?

    init(_ o: PoolObject) {
        id = o.id; kind = o.kind; name = o.name; size = o.size
        deleting = o.deleting ? true : nil
        root = o.map.ptr; rootCRC = o.map.crc; height = o.map.height
        mappedChunks = o.mappedChunks
        createdMicros = Int64(o.created.timeIntervalSince1970 * 1e6)
        modifiedMicros = Int64(o.modified.timeIntervalSince1970 * 1e6)
        uid = o.owner.uid; gid = o.owner.gid; mode = o.owner.mode
        if o.kind == .snapshot {
            sourceDisk = o.sourceDisk; sourceDiskId = o.sourceDiskId; freezeMicros = o.freezeMicros
            description = o.descriptionText; tags = o.tags; retentionDays = o.retentionDays
        }
    }

    func makeObject() -> PoolObject {
        let o = PoolObject(id: id, kind: kind, name: name, size: size,
                           map: MapRoot(ptr: root, crc: rootCRC, height: height),
                           mappedChunks: mappedChunks,
                           created: Date(timeIntervalSince1970: Double(createdMicros) / 1e6))
        o.modified = Date(timeIntervalSince1970: Double(modifiedMicros) / 1e6)
        o.sourceDisk = sourceDisk ?? ""
        o.sourceDiskId = sourceDiskId ?? 0
        o.freezeMicros = freezeMicros ?? 0
        o.descriptionText = description ?? ""
        o.tags = tags ?? [:]
        o.retentionDays = retentionDays
        o.deleting = deleting ?? false
        if let uid, let gid, let mode { o.owner = Ownership(uid: uid, gid: gid, mode: mode) }
        return o
    }

    /// Room for the JSON in a record block, after its u32 length.
    static let maxJSONBytes = Layout.blockSize - 4

    /// The one encoder of records: what `SnapshotMetadata.validate` measures is what is written.
    private static func encodeJSON(_ r: ObjectRecord) throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try enc.encode(r)
    }

    /// The size this record's JSON can grow to as its numbers change (size, root, counts,
    /// times, freeze length): each at its widest. Every numeric field belongs here.
    func largestEncodedSize() -> Int {
        var r = self
        r.id = .max; r.size = .max; r.root = .max; r.rootCRC = .max; r.height = Int.min
        r.mappedChunks = .max; r.createdMicros = .min; r.modifiedMicros = .min
        r.uid = .max; r.gid = .max; r.mode = .max; r.deleting = true
        if kind == .snapshot { r.sourceDiskId = .max; r.freezeMicros = .max }
        return (try? Self.encodeJSON(r).count) ?? Int.max
    }

    func encodeBlock() throws -> [UInt8] {
        let json = try Self.encodeJSON(self)
        guard json.count <= Self.maxJSONBytes else {
            throw StoreError.invalidArgument("metadata of \(name) is too large (\(json.count) bytes)")
        }
        var block = [UInt8](repeating: 0, count: Layout.blockSize)
        block.withUnsafeMutableBytes { b in
            b.put(UInt32(json.count), at: 0)
            json.withUnsafeBytes { (b.baseAddress! + 4).copyMemory(from: $0.baseAddress!, byteCount: json.count) }
        }
        return block
    }

    static func decodeBlock(_ block: [UInt8], at blockNo: UInt64) throws -> ObjectRecord {
        let len = block.withUnsafeBytes { Int($0.get(UInt32.self, at: 0)) }
        guard len > 0, len <= Layout.blockSize - 4 else { throw StoreError.corrupt("record block \(blockNo): bad length \(len)") }
        do {
            return try JSONDecoder().decode(ObjectRecord.self, from: Data(block[4..<(4 + len)]))
        } catch {
            throw StoreError.corrupt("record block \(blockNo): \(error)")
        }
    }
}

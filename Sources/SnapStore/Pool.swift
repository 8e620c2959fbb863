import Foundation

// TEMPORARY in-memory pool so the FUSE side can be built and tried while the persistent
// store is written. Replaced by the real implementation with the same API.
public final class Pool: @unchecked Sendable {
    public let directory: String
    public let chunkSize: Int
    private let lock = NSLock()
    private var nextId: ObjectID = 1
    private var diskData: [ObjectID: [UInt8]] = [:]
    private var diskInfo: [ObjectID: DiskInfo] = [:]
    private var snapData: [ObjectID: [UInt8]] = [:]
    private var snapInfo: [ObjectID: SnapshotInfo] = [:]

    private init(directory: String, chunkSize: Int) {
        self.directory = directory; self.chunkSize = chunkSize
    }

    public static func open(directory: String, options: PoolOptions = PoolOptions()) throws -> Pool {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return Pool(directory: directory, chunkSize: options.chunkSize)
    }

    public func close() throws {}

    private func locked<T>(_ body: () throws -> T) rethrows -> T { lock.lock(); defer { lock.unlock() }; return try body() }

    public func disks() -> [DiskInfo] { locked { diskInfo.values.sorted { $0.name < $1.name } } }
    public func snapshots() -> [SnapshotInfo] { locked { snapInfo.values.sorted { $0.name < $1.name } } }
    public func disk(named: String) -> DiskInfo? { locked { diskInfo.values.first { $0.name == named } } }
    public func snapshot(named: String) -> SnapshotInfo? { locked { snapInfo.values.first { $0.name == named } } }
    public func disk(id: ObjectID) -> DiskInfo? { locked { diskInfo[id] } }
    public func snapshot(id: ObjectID) -> SnapshotInfo? { locked { snapInfo[id] } }

    public func createDisk(name: String, size: UInt64 = 0, fromSnapshot: String? = nil) throws -> DiskInfo {
        try locked {
            guard Names.isValid(name) else { throw StoreError.invalidName("invalid disk name '\(name)'") }
            if diskInfo.values.contains(where: { $0.name == name }) { throw StoreError.exists("disk '\(name)' exists") }
            var bytes = [UInt8](repeating: 0, count: Int(size))
            if let s = fromSnapshot {
                guard let snap = snapInfo.values.first(where: { $0.name == s }) else { throw StoreError.notFound("no snapshot '\(s)'") }
                bytes = snapData[snap.id]!
            }
            let id = nextId; nextId += 1
            let info = DiskInfo(id: id, name: name, size: UInt64(bytes.count), mappedBytes: 0, creationTime: Date(), modificationTime: Date())
            diskInfo[id] = info; diskData[id] = bytes
            return info
        }
    }

    public func deleteDisk(name: String) throws {
        try locked {
            guard let d = diskInfo.values.first(where: { $0.name == name }) else { throw StoreError.notFound("no disk '\(name)'") }
            diskInfo[d.id] = nil; diskData[d.id] = nil
        }
    }

    public func setDiskSize(id: ObjectID, size: UInt64) throws {
        try locked {
            guard var bytes = diskData[id] else { throw StoreError.notFound("no disk") }
            if size < bytes.count { bytes.removeLast(bytes.count - Int(size)) } else { bytes += [UInt8](repeating: 0, count: Int(size) - bytes.count) }
            diskData[id] = bytes; diskInfo[id]!.size = size
        }
    }

    public func setDiskTimes(id: ObjectID, modification: Date) { locked { diskInfo[id]?.modificationTime = modification } }

    public func read(object: ObjectID, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try locked {
            guard let bytes = diskData[object] ?? snapData[object] else { throw StoreError.notFound("no object") }
            guard offset < bytes.count else { return 0 }
            let n = min(buffer.count, bytes.count - Int(offset))
            bytes.withUnsafeBytes { src in buffer.baseAddress!.copyMemory(from: src.baseAddress! + Int(offset), byteCount: n) }
            return n
        }
    }

    public func write(disk: ObjectID, offset: UInt64, data: UnsafeRawBufferPointer) throws {
        try locked {
            guard var bytes = diskData[disk] else { throw StoreError.notFound("no disk") }
            diskData[disk] = nil
            let end = Int(offset) + data.count
            if end > bytes.count { bytes += [UInt8](repeating: 0, count: end - bytes.count) }
            bytes.withUnsafeMutableBytes { dst in (dst.baseAddress! + Int(offset)).copyMemory(from: data.baseAddress!, byteCount: data.count) }
            diskData[disk] = bytes
            diskInfo[disk]!.size = UInt64(bytes.count)
            diskInfo[disk]!.mappedBytes = UInt64(bytes.count)
        }
    }

    public func punchHole(disk: ObjectID, offset: UInt64, length: UInt64) throws {
        try locked {
            guard var bytes = diskData[disk] else { throw StoreError.notFound("no disk") }
            let lo = min(Int(offset), bytes.count), hi = min(Int(offset + length), bytes.count)
            for i in lo..<hi { bytes[i] = 0 }
            diskData[disk] = bytes
        }
    }

    public func createSnapshots(_ requests: [SnapshotRequest]) throws -> [SnapshotInfo] {
        try locked {
            var out: [SnapshotInfo] = []
            for r in requests {
                guard Names.isValid(r.disk), Names.isValid(r.label) else { throw StoreError.invalidName("invalid snapshot id") }
                guard let d = diskInfo.values.first(where: { $0.name == r.disk }) else { throw StoreError.notFound("no disk '\(r.disk)'") }
                let name = "\(r.disk)@\(r.label)"
                if snapInfo.values.contains(where: { $0.name == name }) { throw StoreError.exists("snapshot '\(name)' exists") }
                let id = nextId; nextId += 1
                let s = SnapshotInfo(id: id, name: name, sourceDisk: d.name, sourceDiskId: d.id, size: d.size, creationTime: Date(), freezeMicros: 0, description: r.description, tags: r.tags, retentionDays: r.retentionDays)
                snapInfo[id] = s; snapData[id] = diskData[d.id]
                out.append(s)
            }
            return out
        }
    }

    public func setFreezeMicros(snapshot: ObjectID, micros: UInt64) { locked { snapInfo[snapshot]?.freezeMicros = micros } }

    public func deleteSnapshot(name: String) throws {
        try locked {
            guard let s = snapInfo.values.first(where: { $0.name == name }) else { throw StoreError.notFound("no snapshot '\(name)'") }
            snapInfo[s.id] = nil; snapData[s.id] = nil
        }
    }

    public func rollbackDisk(name: String, toSnapshot: String) throws {
        try locked {
            guard let d = diskInfo.values.first(where: { $0.name == name }) else { throw StoreError.notFound("no disk") }
            guard let s = snapInfo.values.first(where: { $0.name == toSnapshot }) else { throw StoreError.notFound("no snapshot") }
            diskData[d.id] = snapData[s.id]; diskInfo[d.id]!.size = s.size
        }
    }

    public func sync() throws {}

    public func stats() -> PoolStats {
        locked {
            let used = UInt64(diskData.values.reduce(0) { $0 + $1.count } + snapData.values.reduce(0) { $0 + $1.count })
            return PoolStats(chunkSize: chunkSize, usedBytes: used, availableBytes: 1 << 36, logicalBytes: used, disks: diskInfo.count, snapshots: snapInfo.count, dataChunksInUse: 0)
        }
    }
}

import Foundation

/// Recovery: the newest superblock counts only if every block its commit log names is
/// on disk with the right checksum; otherwise the commit was cut short by a crash and
/// the previous superblock (whose blocks that commit never overwrote) is the state.
/// Cost: the blocks of one commit, whatever the pool's size.
extension Pool {
    static func newestIntactCommit(sbFile: StorageFile, provider: StorageProvider, readOnly: Bool, path: String) throws -> Superblock {
        let candidates = try Superblock.loadCandidates(from: sbFile, path: path)
        for (i, sb) in candidates.enumerated() {
            if try commitIsIntact(sb, sbFile: sbFile, provider: provider) {
                if i > 0 && !readOnly {
                    FileHandle.standardError.write("snapfs: commit \(candidates[0].generation) was cut short by a crash; recovered generation \(sb.generation)\n".data(using: .utf8)!)
                }
                return sb
            }
        }
        throw StoreError.refused("cannot open pool \(path): no superblock belongs to a complete commit (generations \(candidates.map(\.generation)))")
    }

    static func commitIsIntact(_ sb: Superblock, sbFile: StorageFile, provider: StorageProvider) throws -> Bool {
        // A new pool's first superblock is written and flushed step by step by `format`.
        if sb.generation == 1 && sb.commitLogLength == 0 { return true }
        guard let log = try CommitLog.read(from: sbFile, length: sb.commitLogLength, crc: sb.commitLogCRC, generation: sb.generation) else {
            return false
        }
        let meta = try provider.open("meta", create: false, readOnly: true)
        let data = try SegmentedFile(provider: provider, layout: sb.segments, readOnly: true)
        let metaRefs = try provider.open("meta.refs", create: false, readOnly: true)
        let dataRefs = try provider.open("data.refs", create: false, readOnly: true)
        var block = [UInt8](repeating: 0, count: Layout.blockSize)
        var chunk = [UInt8](repeating: 0, count: Int(sb.chunkSize))
        for e in log.entries {
            switch e.kind {
            case .metaBlock:
                guard e.index < sb.metaBlockCount,
                      try readAll(meta, &block, at: e.index * UInt64(Layout.blockSize)), crc32c(block) == e.value else { return false }
            case .dataChunk:
                guard e.index < sb.dataChunkCount,
                      try readAll(data, &chunk, at: e.index * UInt64(sb.chunkSize)), crc32c(chunk) == e.value else { return false }
            case .metaRefsSlot, .dataRefsSlot:
                let file = e.kind == .metaRefsSlot ? metaRefs : dataRefs
                let off = (e.index * 2 + UInt64(e.value)) * UInt64(Layout.blockSize)
                guard try readAll(file, &block, at: off),
                      RefcountTable.slotIsValid(block, page: Int(e.index), generation: sb.generation) else { return false }
            }
        }
        return true
    }

    private static func readAll(_ f: StorageFile, _ buf: inout [UInt8], at off: UInt64) throws -> Bool {
        let n = try buf.withUnsafeMutableBytes { try f.read(into: $0, at: off) }
        return n == buf.count
    }
}

import Foundation

/// What `check` found. Clean when `problems` is empty.
public struct CheckReport: Sendable {
    public var problems: [String] = []
    /// Damaged byte ranges by disk or snapshot name.
    public var damaged: [String: [ClosedRange<UInt64>]] = [:]
    public var objectsChecked = 0
    public var metaBlocksChecked = 0
    public var chunksVerified = 0
    public var isClean: Bool { problems.isEmpty }
}

/// The pool checker (thin_check's job): walks every map once per shared node, recounts
/// every reference, verifies every checksum, and compares with the stored counts and
/// the free-space accounting.
extension Pool {
    public func check(verifyData: Bool = true, progress: ((String) -> Void)? = nil) -> CheckReport {
        // Holding the lock keeps the maps still; a commit in between would only add work.
        lock.withLock { checkLocked(verifyData: verifyData, progress: progress) }
    }

    private func checkLocked(verifyData: Bool, progress: ((String) -> Void)?) -> CheckReport {
        var r = CheckReport()
        var metaExpected = [UInt64: UInt32]()
        var dataExpected = [UInt64: UInt32]()
        var visited = Set<UInt64>()
        var verifiedChunks = Set<UInt64>()
        var badChunks = Set<UInt64>()
        let cs = UInt64(chunkSize)
        var chunk = [UInt8](repeating: 0, count: chunkSize)

        // Shared nodes are walked once; the damage found below one is remembered so
        // every disk and snapshot that shares it is named too.
        var path: [UInt64] = []
        var damageBelow: [UInt64: [(ClosedRange<UInt64>, String)]] = [:]
        func damage(_ name: String, _ range: ClosedRange<UInt64>, _ why: String) {
            r.problems.append("\(name): bytes \(range.lowerBound)-\(range.upperBound): \(why)")
            r.damaged[name, default: []].append(range)
            for p in path { damageBelow[p, default: []].append((range, why)) }
        }

        /// Walks a subtree; `leafIsData` says what level-1 entries point to.
        func walk(_ ptr: UInt64, crc: UInt32, level: Int, base: UInt64, owner: String, leafIsData: Bool) {
            metaExpected[ptr, default: 0] += 1
            guard visited.insert(ptr).inserted else {
                for (range, why) in damageBelow[ptr] ?? [] { damage(owner, range, why) }
                return
            }
            path.append(ptr)
            defer { path.removeLast() }
            r.metaBlocksChecked += 1
            let span = MapTree.capacity(height: level - 1)
            guard ptr < metaRefs.count else {
                damage(owner, (base * cs)...((base + span * 256) * cs - 1), "points past the metadata file (block \(ptr))")
                return
            }
            let node: Node
            do { node = try meta.node(ptr, crc: crc) } catch {
                damage(owner, (base * cs)...((base &+ span &* 256) &* cs &- 1), "\(error)")
                return
            }
            for s in 0..<Layout.fanout where node.ptr[s] != 0 {
                let childBase = base + UInt64(s) * span
                if level > 1 {
                    walk(node.ptr[s], crc: node.crc[s], level: level - 1, base: childBase, owner: owner, leafIsData: leafIsData)
                } else if leafIsData {
                    let c = node.ptr[s]
                    dataExpected[c, default: 0] += 1
                    guard c < dataRefs.count else {
                        damage(owner, (childBase * cs)...((childBase + 1) * cs - 1), "points past the data file (chunk \(c))")
                        continue
                    }
                    if badChunks.contains(c) {
                        damage(owner, (childBase * cs)...((childBase + 1) * cs - 1), "data chunk \(c): checksum mismatch")
                    } else if verifyData, verifiedChunks.insert(c).inserted {
                        r.chunksVerified += 1
                        let ok = (try? chunk.withUnsafeMutableBytes { b -> Bool in
                            let n = try dataFile.read(into: b, at: c * cs)
                            if n < b.count { UnsafeMutableRawBufferPointer(rebasing: b[n...]).initializeMemory(as: UInt8.self, repeating: 0) }
                            return crc32c(UnsafeRawBufferPointer(b)) == node.crc[s]
                        }) ?? false
                        if !ok { badChunks.insert(c); damage(owner, (childBase * cs)...((childBase + 1) * cs - 1), "data chunk \(c): checksum mismatch") }
                    }
                } else {
                    metaExpected[node.ptr[s], default: 0] += 1   // a record block
                }
            }
        }

        if objectTree.ptr != 0 {
            walk(objectTree.ptr, crc: objectTree.crc, level: objectTree.height, base: 0, owner: "object table", leafIsData: false)
        }
        // Every object in memory must be in the table (after a commit) and vice versa.
        var inTable = Set<ObjectID>()
        try? objectTable.forEach(objectTree) { id, _ in inTable.insert(id) }
        // Deleted objects still releasing their maps hold those references until done.
        let objs = (Array(objects.values) + Array(releasing.values)).sorted { $0.name < $1.name }
        for (i, o) in objs.enumerated() {
            if !inTable.contains(o.id) && !dirtyObjects.contains(o.id) { r.problems.append("\(o.name): missing from the object table") }
            if o.map.ptr != 0 {
                walk(o.map.ptr, crc: o.map.crc, level: o.map.height, base: 0, owner: o.name, leafIsData: true)
            }
            r.objectsChecked += 1
            if let progress, i % 100 == 99 { progress("checked \(i + 1) of \(objs.count) disks and snapshots") }
        }
        for id in inTable where objects[id] == nil && releasing[id] == nil { r.problems.append("object table: entry \(id) has no object") }

        func compare(_ table: RefcountTable, _ expected: [UInt64: UInt32], _ what: String) {
            var i: UInt64 = 1
            while i < table.count {
                let want = expected[i] ?? 0, have = table.value(i)
                if want != have {
                    r.problems.append("\(what) \(i): reference count \(have), but \(want) references found" + (want == 0 ? " (leaked)" : ""))
                }
                i += 1
            }
            for (k, _) in expected where k >= table.count {
                r.problems.append("\(what) \(k): referenced but beyond the end of the pool")
            }
            let deferred = UInt64(table === metaRefs ? deferredMetaFree.count : deferredDataFree.count)
            let free = UInt64(table.freeCount + table.pending.count) + deferred
            let zero = (1..<max(table.count, 1)).reduce(UInt64(0)) { $0 + (table.value($1) == 0 ? 1 : 0) }
            if free != zero { r.problems.append("\(what): \(zero) unreferenced entries but \(free) on the free lists") }
        }
        compare(metaRefs, metaExpected, "metadata block")
        compare(dataRefs, dataExpected, "data chunk")
        return r
    }
}

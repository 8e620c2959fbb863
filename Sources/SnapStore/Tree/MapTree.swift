/// Copy-on-write radix tree over 256-way nodes: entry index -> (pointer, crc).
/// Reference counting follows Rodeh / dm-thin: a node's count is the number of parents
/// (nodes or roots) pointing to it. Sharing a root is an O(1) snapshot; a change first
/// "shadows" the path from the root, copying every node that is shared or already
/// committed, so committed nodes never change.
struct MapTree {
    let meta: MetaStore
    /// Reference counts of what leaf entries point to (data chunks, or record blocks).
    let leafRefs: RefcountTable

    struct Entry: Equatable { var ptr: UInt64; var crc: UInt32 }

    static func capacity(height: Int) -> UInt64 {
        height >= 8 ? UInt64.max : UInt64(1) << UInt64(Layout.fanoutBits * height)
    }

    @inline(__always)
    static func slot(_ index: UInt64, level: Int) -> Int {
        Int((index >> UInt64(Layout.fanoutBits * (level - 1))) & UInt64(Layout.fanout - 1))
    }

    /// The last index held by the leaf that holds `index`.
    @inline(__always)
    static func lastIndexOfLeaf(_ index: UInt64) -> UInt64 { index | UInt64(Layout.fanout - 1) }

    /// The leaf holding `index`, or nil where the map has none (a hole).
    private func leaf(_ root: MapRoot, _ index: UInt64) throws -> Node? {
        guard root.ptr != 0, index < Self.capacity(height: root.height) else { return nil }
        var node = try meta.node(root.ptr, crc: root.crc)
        var level = root.height
        while level > 1 {
            let s = Self.slot(index, level: level)
            if node.ptr[s] == 0 { return nil }
            node = try meta.node(node.ptr[s], crc: node.crc[s])
            level -= 1
        }
        return node
    }

    func lookup(_ root: MapRoot, _ index: UInt64) throws -> Entry? {
        guard let node = try leaf(root, index) else { return nil }
        let s = Self.slot(index, level: 1)
        return node.ptr[s] == 0 ? nil : Entry(ptr: node.ptr[s], crc: node.crc[s])
    }

    /// The entries for indices first..<first+count, which must lie in one leaf: one walk
    /// down the tree instead of one per index (the read path of small chunks).
    func lookupLeafRange(_ root: MapRoot, first: UInt64, count: Int) throws -> [Entry?] {
        var out = [Entry?](repeating: nil, count: count)
        guard let node = try leaf(root, first) else { return out }
        let s0 = Self.slot(first, level: 1)
        precondition(s0 + count <= Layout.fanout, "lookupLeafRange crosses a leaf")
        for k in 0..<count where node.ptr[s0 + k] != 0 {
            out[k] = Entry(ptr: node.ptr[s0 + k], crc: node.crc[s0 + k])
        }
        return out
    }

    /// A node of the open transaction that only `parent` references, in place of the one
    /// at (ptr, crc): the node itself when it already is one, else a copy.
    private func shadow(_ ptr: UInt64, crc: UInt32, level: Int) throws -> Node {
        let n = try meta.node(ptr, crc: crc)
        let refs = meta.refs.value(ptr)
        if n.gen == meta.txn && refs == 1 { return n }
        let copy = meta.newNode(copying: n)
        if refs > 1 {
            // The copy is a new parent of every child.
            for c in n.ptr where c != 0 {
                if level > 1 { meta.refs.increment(c) } else { leafRefs.increment(c) }
            }
            meta.refs.decrement(ptr)
        } else {
            // Sole owner replaced: the copy inherits the children's references.
            meta.refs.decrement(ptr)
            meta.forget(ptr)
        }
        return copy
    }

    /// Grows the tree until it can hold `index`.
    private func grow(_ root: inout MapRoot, toHold index: UInt64) {
        while index >= Self.capacity(height: root.height) {
            if root.ptr != 0 {
                let top = meta.newNode()
                top.ptr[0] = root.ptr
                top.crc[0] = root.crc
                root.ptr = top.block
                root.crc = 0
            }
            root.height += 1
        }
    }

    /// Shadows the path to `index` and returns the (exclusive, open-transaction) leaf.
    func leafForUpdate(_ root: inout MapRoot, _ index: UInt64) throws -> Node {
        grow(&root, toHold: index)
        var node: Node
        if root.ptr == 0 {
            node = meta.newNode()
        } else {
            node = try shadow(root.ptr, crc: root.crc, level: root.height)
        }
        root.ptr = node.block
        root.crc = 0
        var level = root.height
        while level > 1 {
            let s = Self.slot(index, level: level)
            let child: Node
            if node.ptr[s] == 0 {
                child = meta.newNode()
            } else {
                child = try shadow(node.ptr[s], crc: node.crc[s], level: level - 1)
            }
            node.ptr[s] = child.block
            node.crc[s] = 0
            node = child
            level -= 1
        }
        return node
    }

    /// Drops one reference to the node at ptr; at zero frees it and its children.
    func release(_ ptr: UInt64, crc: UInt32, level: Int) throws {
        if meta.refs.value(ptr) > 1 {
            meta.refs.decrement(ptr)
            return
        }
        let n = try meta.node(ptr, crc: crc)
        for i in 0..<Layout.fanout where n.ptr[i] != 0 {
            if level > 1 { try release(n.ptr[i], crc: n.crc[i], level: level - 1) } else { leafRefs.decrement(n.ptr[i]) }
        }
        meta.refs.decrement(ptr)
        meta.forget(ptr)
    }

    func release(_ root: MapRoot) throws {
        if root.ptr != 0 { try release(root.ptr, crc: root.crc, level: root.height) }
    }

    /// Deletion a piece at a time: drops the first subtree that is shared (one count) or a
    /// leaf (its entries' counts), shadowing the path to it, or an empty node on that path.
    /// Returns false once the tree is empty. Every node is read before anything changes
    /// below it, so a piece cut short by `MetaStore.Uncached` leaves a valid tree.
    func releaseFirstPiece(_ root: inout MapRoot) throws -> Bool {
        guard root.ptr != 0 else { return false }
        if try root.height == 1 || meta.refs.value(root.ptr) > 1 || meta.node(root.ptr, crc: root.crc).isEmpty {
            try release(root)
            root = MapRoot()
            return true
        }
        var node = try shadow(root.ptr, crc: root.crc, level: root.height)
        root.ptr = node.block
        root.crc = 0
        var level = root.height
        while let s = node.ptr.firstIndex(where: { $0 != 0 }) {
            let (c, ccrc) = (node.ptr[s], node.crc[s])
            if try level == 2 || meta.refs.value(c) > 1 || meta.node(c, crc: ccrc).isEmpty {
                try release(c, crc: ccrc, level: level - 1)
                node.ptr[s] = 0
                node.crc[s] = 0
                return true
            }
            let child = try shadow(c, crc: ccrc, level: level - 1)
            node.ptr[s] = child.block
            node.crc[s] = 0
            node = child
            level -= 1
        }
        return true   // an empty node: the next piece drops it from its parent
    }

    /// Unmaps every entry in first...last. Returns how many mapped entries went away.
    func removeRange(_ root: inout MapRoot, first: UInt64, last: UInt64) throws -> UInt64 {
        guard root.ptr != 0 else { return 0 }
        let cap = Self.capacity(height: root.height)
        guard first < cap else { return 0 }
        let hi = min(last, cap - 1)
        let top = try shadow(root.ptr, crc: root.crc, level: root.height)
        root.ptr = top.block
        root.crc = 0
        let removed = try removeRange(in: top, level: root.height, base: 0, first: first, last: hi)
        // (hi, not last: the recursion indexes slots with it)
        if top.isEmpty {
            try release(top.block, crc: 0, level: root.height)
            root.ptr = 0
        }
        return removed
    }

    private func removeRange(in node: Node, level: Int, base: UInt64, first: UInt64, last: UInt64) throws -> UInt64 {
        let span = Self.capacity(height: level - 1)   // entries under one slot
        var removed: UInt64 = 0
        let lo = Int((max(first, base) - base) / span)
        let hi = Int((last - base) / span)
        for s in lo...min(hi, Layout.fanout - 1) where node.ptr[s] != 0 {
            if level == 1 {
                leafRefs.decrement(node.ptr[s])
                node.ptr[s] = 0; node.crc[s] = 0
                removed += 1
                continue
            }
            let childBase = base + UInt64(s) * span
            let childLast = childBase + span - 1
            if first <= childBase && last >= childLast && level == 2 {
                // A whole leaf goes: count it, then drop our reference without copying it.
                let leaf = try meta.node(node.ptr[s], crc: node.crc[s])
                removed += UInt64(leaf.ptr.reduce(0) { $0 + ($1 != 0 ? 1 : 0) })
                try release(node.ptr[s], crc: node.crc[s], level: 1)
                node.ptr[s] = 0; node.crc[s] = 0
                continue
            }
            let child = try shadow(node.ptr[s], crc: node.crc[s], level: level - 1)
            node.ptr[s] = child.block
            node.crc[s] = 0
            removed += try removeRange(in: child, level: level - 1, base: childBase, first: first, last: last)
            if child.isEmpty {
                try release(child.block, crc: 0, level: level - 1)
                node.ptr[s] = 0
            }
        }
        return removed
    }

    /// Computes the checksums of the open transaction's nodes below (and of) the node
    /// at ptr, bottom up, so parents record their children's final checksums. Returns
    /// the node's checksum. `encoded` notes each finished node's checksum once and
    /// `nodes` collects it (its bytes are made when the commit writes it); `leaf` sees
    /// each changed leaf once.
    func finalize(_ ptr: UInt64, crc: UInt32, level: Int, encoded: inout [UInt64: UInt32], nodes: inout [Node],
                  leaf: (Node) -> Void = { _ in }) -> UInt32 {
        if let done = encoded[ptr] { return done }
        guard meta.isDirty(ptr), let n = try? meta.node(ptr, crc: crc) else { return crc }
        if level > 1 {
            for i in 0..<Layout.fanout where n.ptr[i] != 0 && meta.isDirty(n.ptr[i]) {
                n.crc[i] = finalize(n.ptr[i], crc: n.crc[i], level: level - 1, encoded: &encoded, nodes: &nodes, leaf: leaf)
            }
        } else {
            leaf(n)
        }
        let c = n.checksum()
        encoded[ptr] = c
        nodes.append(n)
        return c
    }

    /// Calls body for every mapped entry, in index order.
    func forEach(_ root: MapRoot, _ body: (UInt64, Entry) throws -> Void) throws {
        guard root.ptr != 0 else { return }
        try forEach(root.ptr, crc: root.crc, level: root.height, base: 0, body)
    }

    private func forEach(_ ptr: UInt64, crc: UInt32, level: Int, base: UInt64, _ body: (UInt64, Entry) throws -> Void) throws {
        let n = try meta.node(ptr, crc: crc)
        let span = Self.capacity(height: level - 1)
        for s in 0..<Layout.fanout where n.ptr[s] != 0 {
            if level == 1 {
                try body(base + UInt64(s), Entry(ptr: n.ptr[s], crc: n.crc[s]))
            } else {
                try forEach(n.ptr[s], crc: n.crc[s], level: level - 1, base: base + UInt64(s) * span, body)
            }
        }
    }
}

import Foundation
import Glibc
import SnapFS
import SnapStore
import XCTest

/// Growing a disk (fallocate mode 0, `disk resize`) is one atomic max against writes past
/// the end: a grow that read the size before an extending write cannot cut that write off.
final class GrowRaceTests: XCTestCase {
    func testGrowingNeverShrinksADiskThatAWriteExtends() throws {
        var template = Array("/tmp/snapfs-core-XXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template)!)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var o = PoolOptions()
        o.chunkSize = 4096
        let pool = try Pool.open(directory: directory + "/pool", options: o)
        defer { try? pool.close() }
        let fs = FileSystem(pool: pool)
        let folder = try fs.mkdir(as: .root, parent: Inode.disks, name: "d").ino
        let image = try fs.lookup(as: .root, parent: folder, name: "image").ino
        let h = try fs.open(as: .root, image, flags: O_RDWR).handle
        let writes = 3000, block = 4096
        let done = NSLock()
        nonisolated(unsafe) var finished = false
        nonisolated(unsafe) var growFailures: [String] = []
        // The grower asks for a little more than it saw: the old read-then-set code set
        // exactly that, shrinking the disk when a write had extended it in between.
        let grower = Thread {
            while !done.withLock({ finished }) {
                do {
                    let size = try fs.getattr(image).attributes.size
                    try fs.fallocate(h, mode: 0, offset: 0, length: size + 100)
                } catch { done.withLock { growFailures.append("\(error)") } }
            }
        }
        grower.start()
        for i in 0..<writes {
            let bytes = [UInt8](repeating: UInt8(i % 251 + 1), count: block)
            _ = try bytes.withUnsafeBytes { b throws(FSError) in try fs.write(h, offset: UInt64(i * block), data: b) }
        }
        done.withLock { finished = true }
        while grower.isExecuting { usleep(1000) }
        XCTAssertEqual(growFailures, [])
        XCTAssertGreaterThanOrEqual(try fs.getattr(image).attributes.size, UInt64(writes * block))
        var lost: [Int] = []
        for i in 0..<writes {
            var b = [UInt8](repeating: 0, count: block)
            let n = try b.withUnsafeMutableBytes { p throws(FSError) in try fs.read(h, offset: UInt64(i * block), into: p) }
            if n != block || b[0] != UInt8(i % 251 + 1) || b[block - 1] != UInt8(i % 251 + 1) { lost.append(i) }
        }
        XCTAssertEqual(lost.count, 0, "writes cut off by a grow: \(lost.prefix(10))")
        fs.release(h)
    }
}

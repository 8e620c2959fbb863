import Foundation
import Glibc
import SnapFS
import SnapStore
import XCTest

/// The core against a real pool in a temp folder: no FUSE, exact errnos.
class CoreTestCase: XCTestCase {
    var directory: String!
    var pool: Pool!
    var fs: FileSystem!

    override func setUpWithError() throws {
        var template = Array("/tmp/snapfs-core-XXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template)!)
        pool = try Pool.open(directory: directory + "/pool")
        fs = FileSystem(pool: pool)
        fs.releaseWait = 0.2
    }

    override func tearDownWithError() throws {
        try pool?.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// 0 on success, the errno of an FSError, -1 for any other error.
    func errno(_ body: () throws -> Void) -> Int32 {
        do { try body(); return 0 } catch let e as FSError { return e.errno } catch { return -1 }
    }
}

import Foundation
import Glibc
import TestSupport
import XCTest

/// Deletion gives a map back a piece at a time under a record marked deleting: kill -9 at
/// any moment of an `rmdir` leaves the snapshot whole or gone (never partly released), its
/// disk and every other snapshot intact, and a pool `check` calls clean.
final class DeletionCrashTests: MountedTestCase {
    let MiB = 1 << 20

    func testKill9DuringTheDeletionOfALargeSnapshot() throws {
        let image = try makeDisk("D")
        let other = try makeDisk("E")
        try fill(other, MiB: 8)
        _ = try snapshot("E@keep")
        let keepSum = try Shell.sha256(m.image(snapshot: "E@keep"))
        for (round, delayMicros) in [0, 4_000, 30_000].enumerated() {
            try fill(image, MiB: 64)
            _ = try snapshot("D@big")
            let bigSum = try Shell.sha256(m.image(snapshot: "D@big"))
            try fill(image, MiB: 64)                  // D@big now holds 64 MiB of its own
            let diskSum = try Shell.sha256(image)
            let path = m.snapshots + "/D@big"
            let t = Thread { _ = Glibc.rmdir(path) }
            t.start()
            usleep(useconds_t(delayMicros))
            try m.kill9()
            while t.isExecuting { usleep(1000) }
            try m.mount()
            if FileManager.default.fileExists(atPath: path) {
                XCTAssertEqual(try Shell.sha256(m.image(snapshot: "D@big")), bigSum, "round \(round): a snapshot still there is whole")
                try Sys.rmdir(path)
            }
            XCTAssertEqual(try Shell.sha256(image), diskSum, "round \(round): the disk")
            XCTAssertEqual(try Shell.sha256(m.image(snapshot: "E@keep")), keepSum, "round \(round): another snapshot")
            let check = m.cli(["check"])
            XCTAssertEqual(check.status, 0, "round \(round): \(check)")
        }
    }

    private func fill(_ image: String, MiB count: Int) throws {
        let fd = try Sys.open(image, O_RDWR)
        defer { try? Sys.close(fd) }
        for i in 0..<count { try Sys.pwrite(fd, Bytes.random(MiB), i * MiB) }
        try Sys.fsync(fd)
    }
}

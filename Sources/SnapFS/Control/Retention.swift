import Foundation
import Glibc
import SnapStore

/// The daemon's clock for retention. Tests shift it: SNAPFS_TEST_CLOCK_OFFSET_SECONDS (read
/// only when set) is added to the wall clock; `debug.expire` may change the offset later.
public final class RetentionClock: @unchecked Sendable {
    private let lock = NSLock()
    private var _offset: Double
    public init(offset: Double = 0) { _offset = offset }
    public var offset: Double {
        get { lock.withLock { _offset } }
        set { lock.withLock { _offset = newValue } }
    }
    public func now() -> Date { Date().addingTimeInterval(offset) }

    /// The clock of a daemon started with `environment`.
    public static func fromEnvironment(_ environment: [String: String]) -> RetentionClock {
        RetentionClock(offset: environment["SNAPFS_TEST_CLOCK_OFFSET_SECONDS"].flatMap(Double.init) ?? 0)
    }
}

/// Deletes snapshots whose `--retention-days` have run out: once at mount and then every
/// `interval` seconds, so expiry also happens after a restart. A snapshot whose image is
/// open is kept until a later pass finds it closed.
public final class Retention: @unchecked Sendable {
    public let clock: RetentionClock
    private let fs: FileSystem
    private let interval: TimeInterval
    private let condition = NSCondition()
    private let passLock = NSLock()
    private var stopped = false
    private var thread: Thread?

    public init(fileSystem: FileSystem, clock: RetentionClock, interval: TimeInterval = 60) {
        fs = fileSystem
        self.clock = clock
        self.interval = interval
    }

    public func start() {
        let t = Thread { [self] in
            condition.lock()
            while !stopped {
                condition.unlock()
                _ = expireNow()
                condition.lock()
                _ = condition.wait(until: Date(timeIntervalSinceNow: interval))
            }
            condition.unlock()
        }
        t.name = "snapfs-retention"
        thread = t
        t.start()
    }

    public func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
        passLock.withLock {}   // a pass in progress finishes before the pool closes
    }

    /// When a snapshot created at `created` with `days` of retention expires.
    public static func expiry(created: Date, days: Int) -> Date {
        created.addingTimeInterval(Double(days) * 86_400)
    }

    /// One pass: deletes every expired snapshot; returns the ids deleted.
    @discardableResult
    public func expireNow() -> [String] {
        passLock.lock()
        defer { passLock.unlock() }
        if condition.withLock({ stopped }) { return [] }
        let now = clock.now()
        var deleted: [String] = []
        for s in fs.pool.snapshots() {
            guard let days = s.retentionDays, Self.expiry(created: s.creationTime, days: days) <= now else { continue }
            do {
                try fs.deleteSnapshot(id: s.name, objectId: s.id, wait: 0)
                deleted.append(s.name)
                log("retention: deleted \(s.name) (expired \(ControlTime.rfc3339(Self.expiry(created: s.creationTime, days: days))))")
            } catch {
                log("retention: \(s.name) expired but was not deleted: \(error)")
            }
        }
        return deleted
    }

    private func log(_ line: String) {
        FileHandle.standardError.write(Data("snapfs: \(line)\n".utf8))
    }
}

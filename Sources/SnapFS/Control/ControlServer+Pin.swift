import Foundation
import Glibc
import Synchronization

/// `pin`: commits, then keeps the blocks of that commit from being reused while the client
/// renews its lease, so it can read the commit from the pool files (`snapfs check` while
/// mounted). A client that stops renewing (stopped, stuck, gone) loses the pin after
/// `PinLease.seconds`, so no client keeps freed blocks forever.
extension ControlServer {
    enum PinEnd {
        case released, lapsed, stopping, gone
    }

    func pin(_ fd: Int32) {
        let admitted = state.withLock { s -> Bool in
            guard s.pins < Self.maxPins else { return false }
            s.pins += 1
            return true
        }
        guard admitted else {
            return reply(fd, .failure("\(Self.maxPins) checks of the mounted pool are running (each pins its blocks); retry when one ends"))
        }
        defer { state.withLock { $0.pins -= 1 } }
        do { try fs.pool.sync() } catch {
            return reply(fd, .failure("cannot commit the pool before checking: \(error)"))
        }
        fs.pool.pinReuse()
        var pinned = true
        func unpin() {
            if pinned { fs.pool.unpinReuse() }
            pinned = false
        }
        defer { unpin() }
        var r = ControlResponse()
        r.message = "pinned"
        reply(fd, r)
        switch hold(fd) {
        case .released:
            // Answered before unpinning: "released" means the pin lasted the whole read.
            var done = ControlResponse()
            done.message = PinLease.released
            reply(fd, done)
        case .lapsed:
            unpin()
            reply(fd, .failure("pin dropped: no renewal from the client within \(Int(PinLease.seconds)) s"))
        case .stopping:
            unpin()
            reply(fd, .failure(Self.stoppingMessage + "; pin dropped"))
        case .gone:
            break
        }
    }

    /// Reads renewals until the client releases the pin, hangs up or lets the lease lapse,
    /// or stop() shuts the connection's reads down.
    private func hold(_ fd: Int32) -> PinEnd {
        var lease = ControlDeadline(seconds: PinLease.seconds)
        var buf = [UInt8](repeating: 0, count: 256)
        while true {
            guard ControlSocket.waitReadable(fd, by: lease) else { return isStopping ? .stopping : .lapsed }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if n <= 0 { return isStopping ? .stopping : .gone }
            if buf[..<n].contains(PinLease.releaseByte) { return .released }
            lease = ControlDeadline(seconds: PinLease.seconds)
        }
    }
}

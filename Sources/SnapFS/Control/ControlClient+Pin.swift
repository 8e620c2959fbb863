import Foundation
import Glibc
import Synchronization

extension ControlClient {
    /// A pin held by the daemon for this process (see `PinLease`). A thread renews the lease
    /// until `finish()`, which also says whether the pin lasted: a check that read blocks the
    /// daemon was free to reuse must not report what it read.
    public final class Pin: Sendable {
        private let fd: Int32
        private let stopRenewing = DispatchSemaphore(value: 0)
        private let renewerDone = DispatchSemaphore(value: 0)
        private let finished = Mutex(false)

        init(fd: Int32) {
            self.fd = fd
            // Captures no `self`, so dropping the Pin without finish() still ends the thread.
            let stop = stopRenewing, done = renewerDone
            let t = Thread {
                defer { done.signal() }
                while stop.wait(timeout: .now() + PinLease.renewEvery) == .timedOut {
                    // Never blocks: one byte; a send that fails means the pin is gone, which
                    // finish() reports.
                    var byte = PinLease.renewByte
                    _ = Glibc.send(fd, &byte, 1, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                }
            }
            t.name = "snapfs-pin-renewal"
            t.start()
        }

        /// Releases the pin; throws unless the daemon held it until now.
        public func finish() throws {
            guard finished.withLock({ done in defer { done = true }; return !done }) else { return }
            stopRenewing.signal()
            renewerDone.wait()
            defer { Glibc.close(fd) }
            let why: String
            do {
                // If the daemon dropped the pin it has closed its end: the send fails, but its
                // answer saying why is still there to read.
                try? ControlSocket.send(fd, [PinLease.releaseByte], deadline: ControlDeadline(seconds: 10))
                let line = try ControlSocket.readLine(fd, limit: 1 << 16, deadline: ControlDeadline(seconds: 30))
                guard let line else { throw ControlFailure("it closed the connection") }
                let answer = try ControlJSON.decode(ControlResponse.self, line)
                if answer.message == PinLease.released && answer.error == nil { return }
                why = answer.error ?? "unexpected answer"
            } catch {
                why = "\(error)"
            }
            throw ControlFailure("the daemon dropped the check's pin; run again (\(why))")
        }

        deinit {
            if !finished.withLock({ $0 }) {
                stopRenewing.signal()
                renewerDone.wait()
                Glibc.close(fd)
            }
        }
    }
}

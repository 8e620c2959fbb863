import Glibc
import SnapStore

/// An errno for a FUSE reply. Every failure the core reports is one of these, so the
/// bridge only ever calls fuse_reply_err(req, error.errno).
public struct FSError: Error, Equatable, CustomStringConvertible, Sendable {
    public let errno: Int32

    public init(_ errno: Int32) { self.errno = errno }

    /// Maps store errors through `StoreError.errno`; anything else is an I/O error.
    public init(_ error: any Error) {
        if let e = error as? FSError { self = e }
        else if let e = error as? StoreError { errno = e.errno }
        else { errno = EIO }
    }

    public var description: String { "\(String(cString: strerror(errno))) (errno \(errno))" }
}

/// Runs a store call, turning its error into an errno.
func store<T>(_ body: () throws -> T) throws(FSError) -> T {
    do { return try body() } catch { throw FSError(error) }
}

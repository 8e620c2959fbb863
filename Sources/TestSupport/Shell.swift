import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a finished command left behind.
public struct ShellResult: Sendable, CustomStringConvertible {
    public let command: [String]
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public var ok: Bool { status == 0 }
    public var description: String {
        "`\(command.joined(separator: " "))` exited \(status)\nstdout: \(stdout)\nstderr: \(stderr)"
    }
}

public struct ShellError: Error, CustomStringConvertible {
    public let result: ShellResult
    public var description: String { result.description }
}

public enum Shell {
    /// Runs `args` (args[0] looked up on PATH, plus /sbin and /usr/sbin), waits for it, and
    /// returns its status and output. A command still running after `timeout` seconds is killed
    /// (status -9).
    public static func run(_ args: [String], timeout: Double = 120) -> ShellResult {
        let dir = NSTemporaryDirectory() + "snapfs-shell-\(getpid())-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: dir + ".out", contents: nil)
        _ = FileManager.default.createFile(atPath: dir + ".err", contents: nil)
        defer {
            unlink(dir + ".out")
            unlink(dir + ".err")
        }
        func text(_ suffix: String) -> String {
            (try? String(contentsOfFile: dir + suffix, encoding: .utf8)) ?? ""
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = (env["PATH"] ?? "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        p.environment = env
        p.standardInput = FileHandle.nullDevice
        guard let out = FileHandle(forWritingAtPath: dir + ".out"),
              let err = FileHandle(forWritingAtPath: dir + ".err") else {
            return ShellResult(command: args, status: -1, stdout: "", stderr: "cannot create temp files")
        }
        defer { try? out.close(); try? err.close() }
        p.standardOutput = out
        p.standardError = err
        do { try p.run() } catch {
            return ShellResult(command: args, status: -1, stdout: "", stderr: "\(error)")
        }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(2_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            return ShellResult(command: args, status: -9, stdout: text(".out"),
                               stderr: text(".err") + "\n(killed after \(timeout) s)")
        }
        p.waitUntilExit()
        return ShellResult(command: args, status: p.terminationStatus, stdout: text(".out"), stderr: text(".err"))
    }

    /// Like `run`, but throws `ShellError` unless the command exits 0.
    @discardableResult
    public static func check(_ args: [String], timeout: Double = 120) throws -> ShellResult {
        let r = run(args, timeout: timeout)
        guard r.ok else { throw ShellError(result: r) }
        return r
    }

    /// `sha256sum FILE` as a hex string.
    public static func sha256(_ path: String) throws -> String {
        let r = try check(["sha256sum", path], timeout: 300)
        return String(r.stdout.split(separator: " ").first ?? "")
    }
}

import Foundation

/// JSON for people and scripts with keys in the SPEC's order (Foundation's encoder on Linux
/// orders keys by hash, or alphabetically at best). The wire protocol keeps JSONEncoder.
public indirect enum JSONValue: Sendable, Equatable {
    case string(String), int(Int64), bool(Bool), null
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool { a.render() == b.render() }

    public static func uint(_ v: UInt64) -> JSONValue { .int(Int64(clamping: v)) }
    public static func optional(_ v: String?) -> JSONValue { v.map(JSONValue.string) ?? .null }
    public static func optional(_ v: Int?) -> JSONValue { v.map { .int(Int64($0)) } ?? .null }
    /// A string map with its keys sorted, so output is stable.
    public static func map(_ d: [String: String]) -> JSONValue {
        .object(d.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })
    }

    /// Two-space indented when `pretty`, else one line.
    public func render(pretty: Bool = false, indent: Int = 0) -> String {
        let pad = pretty ? String(repeating: "  ", count: indent + 1) : ""
        let end = pretty ? "\n" + String(repeating: "  ", count: indent) : ""
        let sep = pretty ? ",\n" : ","
        switch self {
        case .string(let s): return Self.quote(s)
        case .int(let i): return String(i)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .array(let a):
            if a.isEmpty { return "[]" }
            return "[" + (pretty ? "\n" : "") + a.map { pad + $0.render(pretty: pretty, indent: indent + 1) }.joined(separator: sep) + end + "]"
        case .object(let o):
            if o.isEmpty { return "{}" }
            let colon = pretty ? ": " : ":"
            return "{" + (pretty ? "\n" : "") + o.map { pad + Self.quote($0.0) + colon + $0.1.render(pretty: pretty, indent: indent + 1) }
                .joined(separator: sep) + end + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

public protocol JSONRepresentable { var json: JSONValue { get } }

extension DiskRecord: JSONRepresentable {
    public var json: JSONValue {
        .object([("DiskId", .string(DiskId)), ("Size", .uint(Size)), ("AllocatedBytes", .uint(AllocatedBytes)),
                 ("CreationTime", .string(CreationTime)), ("Status", .string(Status))])
    }
}

extension SnapshotRecord: JSONRepresentable {
    public var json: JSONValue {
        .object([("SnapshotId", .string(SnapshotId)), ("SourceDiskId", .string(SourceDiskId)),
                 ("SourceDiskSize", .uint(SourceDiskSize)), ("CreationTime", .string(CreationTime)),
                 ("Status", .string(Status)), ("Progress", .int(Int64(Progress))),
                 ("ExclusiveBytes", .uint(ExclusiveBytes)), ("FreezeMicros", .uint(FreezeMicros)),
                 ("Description", .string(Description)), ("Tags", .map(Tags)),
                 ("RetentionDays", .optional(RetentionDays)), ("ExpiresAt", .optional(ExpiresAt))])
    }
}

extension RangeRecord: JSONRepresentable {
    public var json: JSONValue { .object([("Offset", .uint(Offset)), ("Length", .uint(Length))]) }
}

extension DiffRecord: JSONRepresentable {
    public var json: JSONValue {
        .object([("ChunkSize", .int(Int64(ChunkSize))), ("ChangedRanges", .array(ChangedRanges.map(\.json)))])
    }
}

extension StatsRecord: JSONRepresentable {
    public var json: JSONValue {
        .object([("CapacityBytes", .uint(CapacityBytes)), ("UsedBytes", .uint(UsedBytes)),
                 ("LogicalBytes", .uint(LogicalBytes)), ("ChunkSize", .int(Int64(ChunkSize))),
                 ("Disks", .int(Int64(Disks))), ("Snapshots", .int(Int64(Snapshots)))])
    }
}

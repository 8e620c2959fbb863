import Foundation

/// What users may store beside a snapshot (SPEC §6), checked once, here, with the encoder
/// that writes the record: any input either fits its record block and is stored, or is
/// refused before anything changes. No input can make a commit fail.
public enum SnapshotMetadata {
    public static let maxTags = 20
    public static let maxKeyBytes = 128
    public static let maxValueBytes = 256
    public static let maxDescriptionBytes = 256
    public static let maxRetentionDays = 36_500

    /// Refuses metadata outside SPEC §6's limits, or too large for the record of snapshot
    /// `disk@label` once encoded (the record is one 4 KiB block, docs/FORMAT.md).
    public static func validate(disk: String, label: String, description: String,
                                tags: [String: String], retentionDays: Int?) throws {
        if description.utf8.count > maxDescriptionBytes {
            throw StoreError.invalidArgument("description is longer than \(maxDescriptionBytes) bytes (\(description.utf8.count))")
        }
        if hasControlCharacters(description) {
            throw StoreError.invalidArgument("description must not contain control characters")
        }
        if tags.count > maxTags { throw StoreError.invalidArgument("at most \(maxTags) tags (got \(tags.count))") }
        for (k, v) in tags.sorted(by: { $0.key < $1.key }) { try validateTag(key: k, value: v) }
        if let d = retentionDays, !(1...maxRetentionDays).contains(d) {
            throw StoreError.invalidArgument("retention days must be 1 to \(maxRetentionDays) (got \(d))")
        }
        let probe = PoolObject(id: 0, kind: .snapshot, name: "\(disk)@\(label)", size: 0, map: MapRoot(),
                               mappedChunks: 0, created: Date())
        probe.sourceDisk = disk
        probe.descriptionText = description
        probe.tags = tags
        probe.retentionDays = retentionDays
        let size = ObjectRecord(probe).largestEncodedSize()
        guard size <= ObjectRecord.maxJSONBytes else {
            throw StoreError.invalidArgument("description and tags are too large together: the snapshot's record would take \(size) bytes of JSON, at most \(ObjectRecord.maxJSONBytes) fit (one 4 KiB block)")
        }
    }

    /// Keys: 1-128 bytes of UTF-8, no '=', no control characters. Values: 0-256 bytes, no
    /// control characters. Any other Unicode is accepted and reads back exactly.
    public static func validateTag(key: String, value: String) throws {
        guard (1...maxKeyBytes).contains(key.utf8.count), !key.contains("="), !hasControlCharacters(key) else {
            throw StoreError.invalidArgument("invalid tag key '\(printable(key))': 1-\(maxKeyBytes) bytes, no '=', no control characters")
        }
        guard value.utf8.count <= maxValueBytes, !hasControlCharacters(value) else {
            throw StoreError.invalidArgument("invalid value for tag '\(printable(key))': at most \(maxValueBytes) bytes, no control characters")
        }
    }

    /// Parses `K=V` (the first '=' separates; V may be empty).
    public static func parseTag(_ text: String) throws -> (String, String) {
        guard let eq = text.firstIndex(of: "=") else {
            throw StoreError.invalidArgument("invalid tag '\(printable(text))': use KEY=VALUE")
        }
        let k = String(text[..<eq]), v = String(text[text.index(after: eq)...])
        try validateTag(key: k, value: v)
        return (k, v)
    }

    static func hasControlCharacters(_ s: String) -> Bool {
        s.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    /// An error message must stay one line: control characters are shown escaped.
    static func printable(_ s: String) -> String {
        String(s.unicodeScalars.flatMap { c -> [Character] in
            c.properties.generalCategory == .control ? Array(c.escaped(asASCII: true)) : [Character(c)]
        }.prefix(80))
    }
}

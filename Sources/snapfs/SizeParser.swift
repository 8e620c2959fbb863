/// Sizes as truncate(1) takes them: plain bytes, or a number with K, M, G, T, P, E
/// (powers of 1024; "KiB" etc. mean the same) or KB, MB, ... (powers of 1000).
enum SizeParser {
    struct Invalid: Error, CustomStringConvertible {
        let text: String
        var description: String { "invalid size '\(text)' (use bytes or a suffix K, M, G, T: 64M = 64 MiB)" }
    }

    static func parse(_ text: String) throws -> UInt64 {
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let number = UInt64(digits) else { throw Invalid(text: text) }
        let suffix = text.dropFirst(digits.count)
        guard let multiplier = multiplier(String(suffix)) else { throw Invalid(text: text) }
        let (value, overflow) = number.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { throw Invalid(text: text) }
        return value
    }

    private static func multiplier(_ suffix: String) -> UInt64? {
        if suffix.isEmpty { return 1 }
        guard let letter = suffix.first,
              let power = "KMGTPE".firstIndex(of: Character(letter.uppercased())) else { return nil }
        let exponent = "KMGTPE".distance(from: "KMGTPE".startIndex, to: power) + 1
        let base: UInt64
        switch suffix.dropFirst() {
        case "", "iB": base = 1024
        case "B": base = 1000
        default: return nil
        }
        var m: UInt64 = 1
        for _ in 0..<exponent { m *= base }
        return m
    }
}

import Foundation
import SnapFS

/// Human output: aligned columns and sizes in binary units.
enum Table {
    /// Left-aligned columns separated by two spaces; numbers (first char a digit) right-aligned.
    static func render(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
        return all.map { row in
            row.indices.map { i -> String in
                let cell = row[i], pad = String(repeating: " ", count: widths[i] - cell.count)
                let numeric = i > 0 && (cell.first?.isNumber ?? false)
                return numeric ? pad + cell : (i == row.count - 1 ? cell : cell + pad)
            }.joined(separator: "  ").replacingOccurrences(of: #"\s+$"#, with: "", options: .regularExpression)
        }.joined(separator: "\n") + "\n"
    }

    static func size(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var v = Double(bytes), u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        if u == 0 { return "\(bytes) B" }
        return v >= 100 || v == v.rounded() ? String(format: "%.0f %@", v, units[u]) : String(format: "%.1f %@", v, units[u])
    }

    static func print(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    static func disks(_ list: [DiskRecord]) -> String {
        if list.isEmpty { return "no disks\n" }
        return render(["DISK", "SIZE", "ALLOCATED", "CREATED", "STATUS"],
                      list.map { [$0.DiskId, size($0.Size), size($0.AllocatedBytes), $0.CreationTime, $0.Status] })
    }

    static func snapshots(_ list: [SnapshotRecord]) -> String {
        if list.isEmpty { return "no snapshots\n" }
        return render(["SNAPSHOT", "DISK", "SIZE", "EXCLUSIVE", "CREATED", "FREEZE", "EXPIRES", "TAGS", "DESCRIPTION"],
                      list.map { s in
                          [s.SnapshotId, s.SourceDiskId, size(s.SourceDiskSize), size(s.ExclusiveBytes), s.CreationTime,
                           "\(s.FreezeMicros) µs", s.ExpiresAt ?? "-",
                           s.Tags.isEmpty ? "-" : s.Tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","),
                           s.Description.isEmpty ? "-" : s.Description]
                      })
    }
}

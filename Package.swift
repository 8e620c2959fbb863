// swift-tools-version:6.0
import PackageDescription

// Layers (arrows point down only):
//   snapfs (CLI) -> FUSEBridge (only importer of CFuse3) -> SnapFS (core) -> SnapStore (pool)
let package = Package(
    name: "snapfs",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "snapfs", targets: ["snapfs"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CFuse3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .target(name: "CStoreSupport", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "SnapStore", dependencies: ["CStoreSupport"]),
        .target(name: "SnapFS", dependencies: ["SnapStore"]),
        .target(name: "FUSEBridge", dependencies: ["SnapFS", "CFuse3"]),
        .executableTarget(name: "snapfs", dependencies: [
            "SnapStore", "SnapFS", "FUSEBridge",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .target(name: "TestSupport", dependencies: ["SnapStore"]),
        .testTarget(name: "SnapStoreTests", dependencies: ["SnapStore", "TestSupport"]),
        .testTarget(name: "SnapFSTests", dependencies: ["SnapFS", "SnapStore", "TestSupport"]),
        .testTarget(name: "IntegrationTests", dependencies: ["TestSupport", "SnapStore", "FUSEBridge"]),
    ],
    swiftLanguageModes: [.v6]
)

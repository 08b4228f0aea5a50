// swift-tools-version: 6.2
import PackageDescription

/// The same strict settings for every target.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "sluice",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        .library(name: "SluiceLog", targets: ["SluiceLog"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // The system zlib (Debian: zlib1g-dev) for gzip record batches.
        .systemLibrary(
            name: "CZlib",
            providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]
        ),
        // The storage engine: record-batch codec, segments, indexes, recovery, retention. No HTTP.
        .target(
            name: "SluiceLog",
            dependencies: ["CZlib"]
        ),
        // The `sluice` executable: thin commands over the modules above.
        .executableTarget(
            name: "sluice",
            dependencies: [
                "SluiceLog",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "SluiceLogTests",
            dependencies: [
                "SluiceLog",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            exclude: ["Oracle"]  // kafka_oracle.py, run by the tests with python3
        ),
    ]
)

for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + strictSettings
}

// Swift entry point of vitalcore: a thin facade over the generated module `VitalcoreFFI`.
//
// Every use of a generated symbol is written module-qualified (`VitalcoreFFI.name`), so
// `make test-swift-gen` can check, without a Swift toolchain, that each one exists in the
// freshly generated bindings with the argument labels used here.

import Foundation
import VitalcoreFFI

public typealias Analysis = VitalcoreFFI.Analysis
public typealias CardiacSignal = VitalcoreFFI.CardiacSignal
public typealias FeatureInfo = VitalcoreFFI.FeatureInfo
public typealias KeyProvider = VitalcoreFFI.KeyProvider
public typealias VersionInfo = VitalcoreFFI.VersionInfo
/// Every failure: `.InvalidInput`, `.Storage`, `.Crypto`, `.Network`, `.ModelRejected`,
/// `.ConsentRequired`, `.Interrupted`, `.Closed`, `.NotFound`, `.Backpressure`,
/// `.NotConfigured`, `.Unauthorized`, `.Internal`.
public typealias VitalcoreError = VitalcoreFFI.VitalcoreError

public enum Vitalcore {
    /// Library and feature set versions.
    public static var version: VersionInfo { VitalcoreFFI.versionInfo() }

    /// Feature set v1, in model input order.
    public static var features: [FeatureInfo] { VitalcoreFFI.featuresV1() }

    /// One feature by name; throws `VitalcoreError.InvalidInput` if there is none.
    public static func feature(named name: String) throws -> FeatureInfo {
        try VitalcoreFFI.featureInfo(name: name)
    }

    /// Beats, NN intervals, features and quality of an ECG/PPG recording, computed off the
    /// caller's thread (safe to call from the main actor).
    public static func analyze(_ signal: CardiacSignal, samples: [Double], rateHz: Double) async throws -> Analysis {
        try await VitalcoreFFI.analyzeCardiacAsync(signal: signal, samples: samples, rateHz: rateHz)
    }

    /// Steps and activity features of a tri-axial accelerometer recording (axes in g).
    public static func analyzeMotion(x: [Double], y: [Double], z: [Double], rateHz: Double) throws -> Analysis {
        try VitalcoreFFI.analyzeAccel(x: x, y: y, z: z, rateHz: rateHz)
    }

    /// Fingerprint of the provider's root key (never the key itself); the provider is called
    /// on a worker thread, so a Keychain prompt does not block the caller.
    public static func keyFingerprint(_ provider: KeyProvider) async throws -> String {
        try await VitalcoreFFI.keyFingerprintAsync(provider: provider)
    }
}

/// A `KeyProvider` from a closure, typically reading the Keychain. Throw
/// `VitalcoreError.Crypto` when the key is unavailable; any other error arrives as `.Internal`.
public final class ClosureKeyProvider: VitalcoreFFI.KeyProvider, @unchecked Sendable {
    private let body: () throws -> Data

    public init(_ body: @escaping () throws -> Data) {
        self.body = body
    }

    public func rootKey() throws -> Data {
        try body()
    }
}

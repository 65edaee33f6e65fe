// The engine from Swift: async/await over the generated objects of `VitalcoreFFI`.
//
// Generated objects are held in properties typed `VitalcoreFFI.Type`, so `make test-swift-gen`
// checks every method called on them (name and argument labels) against the generated code.

import Foundation
import VitalcoreFFI

public typealias CheckKind = VitalcoreFFI.CheckKind
public typealias CheckResult = VitalcoreFFI.CheckResult
public typealias StoredCheck = VitalcoreFFI.StoredCheck
public typealias Label = VitalcoreFFI.Label
public typealias CaptureStats = VitalcoreFFI.CaptureStats
public typealias EngineConfig = VitalcoreFFI.EngineConfig
public typealias SyncOptions = VitalcoreFFI.SyncOptions
public typealias SyncOutcome = VitalcoreFFI.SyncOutcome
public typealias Consent = VitalcoreFFI.Consent
public typealias Consents = VitalcoreFFI.Consents
public typealias DeletionReport = VitalcoreFFI.DeletionReport
public typealias ServerErasure = VitalcoreFFI.ServerErasure
public typealias ModelInfo = VitalcoreFFI.ModelInfo
public typealias ModelRejection = VitalcoreFFI.ModelRejection

/// Consent purposes the engine uploads for.
public enum Purpose {
    /// The app's own research study (`SyncOptions.study`).
    public static let research = "research"
    /// Training the models the app ships.
    public static let modelTraining = "model_training"
    /// Sharing with partner apps through the partner API.
    public static let partnerSharing = "partner_sharing"
    /// A named research study (`[a-z0-9_]`).
    public static func research(study: String) -> String { "research_\(study)" }
}

/// The engine. Open once, share, `shutdown()` when done. Failures are `VitalcoreError`
/// (`.InvalidInput`, `.Crypto` for a wrong key, `.Closed`, `.NotFound`, `.Backpressure`, ...).
public final class VitalcoreEngine: @unchecked Sendable {
    let raw: VitalcoreFFI.Engine

    /// Opens (or creates) the encrypted store off the caller's thread.
    public static func open(_ config: EngineConfig, keys: KeyProvider) async throws -> VitalcoreEngine {
        VitalcoreEngine(try await VitalcoreFFI.openEngineAsync(config: config, keys: keys))
    }

    init(_ raw: VitalcoreFFI.Engine) {
        self.raw = raw
    }

    /// Starts a health check; nothing is stored until `finish()`.
    public func startCheck(_ kind: CheckKind) throws -> CheckSession {
        CheckSession(try raw.startCheck(kind: kind))
    }

    /// Starts a background capture; `stop()` (or releasing it) stops it.
    public func startCapture(_ kind: CheckKind, windowS: Double = 60, overlapS: Double = 30) throws -> CaptureStream {
        CaptureStream(try raw.startCapture(kind: kind, windowS: windowS, overlapS: overlapS))
    }

    /// Health checks started in `[fromMs, toMs)`, oldest first.
    public func checks(fromMs: Int64, toMs: Int64, kind: CheckKind? = nil) async throws -> [StoredCheck] {
        try await raw.checksAsync(fromMs: fromMs, toMs: toMs, kind: kind)
    }

    /// Background-capture windows started in `[fromMs, toMs)`.
    public func windows(fromMs: Int64, toMs: Int64, kind: CheckKind? = nil) throws -> [StoredCheck] {
        try raw.windows(fromMs: fromMs, toMs: toMs, kind: kind)
    }

    /// Records an outcome label; `.NotFound` if there is no such check.
    public func addLabel(_ label: Label, to checkId: String) throws {
        try raw.addLabel(checkId: checkId, label: label)
    }

    /// Labels of a check, in recording order.
    public func labels(of checkId: String) throws -> [Label] {
        try raw.labels(checkId: checkId)
    }

    /// Deletes a check with its labels and pending upload.
    public func deleteCheck(_ id: String) throws -> Bool {
        try raw.deleteCheck(id: id)
    }

    /// Sync settings (enrollment token, study, Wi-Fi / charging policy, batching, retries).
    public func setSyncOptions(_ options: SyncOptions) {
        raw.setSyncOptions(options: options)
    }

    /// Reports Wi-Fi and charging state for the Wi-Fi-only / charging-only options.
    public func setDeviceConditions(wifi: Bool, charging: Bool) {
        raw.setDeviceConditions(wifi: wifi, charging: charging)
    }

    /// Records consent to `purpose` (see `Purpose`); `.InvalidInput` for a purpose with no
    /// upload meaning.
    public func grantConsent(_ purpose: String, policyVersion: String) throws -> Consent {
        try raw.grantConsent(purpose: purpose, policyVersion: policyVersion)
    }

    /// Withdraws consent at once, locally: no more uploads for it, queued records erased,
    /// server erasure queued for the next sync.
    public func revokeConsent(_ purpose: String) throws -> Consent {
        try raw.revokeConsent(purpose: purpose)
    }

    /// Latest decision per purpose and the full history.
    public func consents() throws -> Consents {
        try raw.consents()
    }

    /// Delivers pending erasure requests, then uploads the consented outbox (each record
    /// once); enrolls on first use. `.NotConfigured`, `.Unauthorized`, `.Network` (retry later).
    public func syncNow() async throws -> SyncOutcome {
        try await raw.syncNow()
    }

    /// Every record of the user as JSON (format `vitalcore-export`, version 1).
    public func exportMyData() async throws -> String {
        try await raw.exportMyDataAsync()
    }

    /// Deletes all of the user's data locally (keys destroyed), then asks the server to erase it.
    public func deleteMyData() async throws -> DeletionReport {
        try await raw.deleteMyData()
    }

    /// The model serving rhythm checks (the bundled default until an update is installed).
    public func activeModel() -> ModelInfo? {
        raw.activeModel()
    }

    /// Asks the sync endpoint for a newer version of model `name`, downloads, verifies and
    /// installs it; `nil` when there is no new model. `.ModelRejected` (with its `kind`) when
    /// the bundle is refused, and the model already serving keeps serving.
    public func updateModel(_ name: String) async throws -> ModelInfo? {
        try await raw.updateModel(name: name)
    }

    /// Verifies and activates a signed bundle the app obtained itself (`envelopeJson`: the
    /// signed manifest, `artifact`: the ONNX bytes it pins). `.ModelRejected` with its `kind`.
    public func installModel(envelopeJson: Data, artifact: Data) async throws -> ModelInfo {
        try await raw.installModelAsync(envelopeJson: envelopeJson, artifact: artifact)
    }

    /// Stops operations in progress at their next step, committing nothing.
    public func interrupt() {
        raw.interrupt()
    }

    /// Waits for work in progress, checkpoints the store; later calls throw `.Closed`.
    public func shutdown() async throws {
        try await raw.shutdownAsync()
    }
}

/// One health check in progress.
public final class CheckSession: @unchecked Sendable {
    let raw: VitalcoreFFI.Session

    init(_ raw: VitalcoreFFI.Session) {
        self.raw = raw
    }

    /// Pushes samples at `rateHz`, the first at `startS` (Unix seconds), packed as
    /// little-endian f64 bytes (one copy across the FFI).
    public func push(_ channel: String, startS: Double, rateHz: Double, samples: [Double]) throws {
        let packed = samples.withUnsafeBufferPointer { Data(buffer: $0) }
        try raw.pushSamplesF64le(channel: channel, startS: startS, rateHz: rateHz, samples: packed)
    }

    /// Features, quality, prediction and one encrypted commit, off the caller's thread.
    public func finish() async throws -> CheckResult {
        try await raw.finishAsync()
    }

    /// Discards the samples.
    public func cancel() throws {
        try raw.cancel()
    }
}

/// A background capture; windows are stored as samples arrive.
public final class CaptureStream: @unchecked Sendable {
    let raw: VitalcoreFFI.Capture

    init(_ raw: VitalcoreFFI.Capture) {
        self.raw = raw
    }

    /// Pushes samples; throws `.Backpressure` when the capture is behind (push again later).
    public func push(_ channel: String, startS: Double, rateHz: Double, samples: [Double]) throws {
        let packed = samples.withUnsafeBufferPointer { Data(buffer: $0) }
        try raw.pushSamplesF64le(channel: channel, startS: startS, rateHz: rateHz, samples: packed)
    }

    /// Counters so far.
    public var stats: CaptureStats { raw.stats() }

    /// Stops after the queued windows are stored; final counters. Releasing the stream
    /// also stops it.
    public func stop() async throws -> CaptureStats {
        try await raw.stopAsync()
    }
}

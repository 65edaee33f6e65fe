// XCTest suite of the Swift facade (run with `swift test` on macOS after
// `./build-xcframework.sh`; not run on Linux CI, which has no Swift toolchain).

import CryptoKit
import Foundation
import XCTest
@testable import Vitalcore

final class VitalcoreTests: XCTestCase {
    private let key = Data((0..<32).map { UInt8(($0 * 7 + 1) % 256) })

    /// The documented fingerprint, computed with CryptoKit rather than vitalcore.
    private func expectedFingerprint(_ key: Data) -> String {
        var input = Data("vitalcore/key-fingerprint/v1".utf8)
        input.append(0)
        input.append(key)
        return SHA256.hash(data: input).prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    func testCatalogue() throws {
        XCTAssertEqual(Vitalcore.version.featureSetVersion, "v1")
        let rmssd = try Vitalcore.feature(named: "rmssd")
        XCTAssertEqual(rmssd.unit, "ms")
        XCTAssertTrue(Vitalcore.features.contains(rmssd))
    }

    func testUnknownFeatureIsInvalidInput() {
        XCTAssertThrowsError(try Vitalcore.feature(named: "nope")) { error in
            guard case VitalcoreError.InvalidInput = error else { return XCTFail("\(error)") }
        }
    }

    func testSwiftKeyProviderRoundTrip() async throws {
        let fp = try await Vitalcore.keyFingerprint(ClosureKeyProvider { self.key })
        XCTAssertEqual(fp, expectedFingerprint(key))
    }

    func testProviderErrorKeepsItsKind() async {
        do {
            _ = try await Vitalcore.keyFingerprint(ClosureKeyProvider {
                throw VitalcoreError.Network(reason: "offline", retryAfterMs: 1500)
            })
            XCTFail("expected an error")
        } catch VitalcoreError.Network(_, let retry) {
            XCTAssertEqual(retry, 1500)
        } catch {
            XCTFail("\(error)")
        }
    }

    func testAnalysisOfAGeneratedPulse() async throws {
        let rate = 100.0
        let x = (0..<6000).map { i -> Double in
            let ph = (Double(i) / rate * 1.2).truncatingRemainder(dividingBy: 1)
            return exp(-pow((ph - 0.2) / 0.08, 2))
        }
        let a = try await Vitalcore.analyze(.ppg, samples: x, rateHz: rate)
        let hr = a.features.first { $0.name == "hr_mean" }?.value
        XCTAssertEqual(hr ?? 0, 72, accuracy: 0.5)
    }
    func testSyncWithoutAnEndpointIsNotConfiguredAndAnUnknownPurposeIsInvalid() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        defer { try? FileManager.default.removeItem(at: dir) }
        let engine = try await VitalcoreEngine.open(EngineConfig(dataDir: dir.path), keys: ClosureKeyProvider { self.key })
        do {
            _ = try await engine.syncNow()
            XCTFail("expected NotConfigured")
        } catch VitalcoreError.NotConfigured {
        } catch {
            XCTFail("\(error)")
        }
        XCTAssertThrowsError(try engine.grantConsent("advertising", policyVersion: "v1")) { error in
            guard case VitalcoreError.InvalidInput = error else { return XCTFail("\(error)") }
        }
        let granted = try engine.grantConsent(Purpose.research, policyVersion: "v1")
        XCTAssertTrue(granted.granted)
        XCTAssertEqual(try engine.consents().current.map(\.purpose), [Purpose.research])
        try await engine.shutdown()
    }
    func testBundledModelServesAndJunkBundlesAreRejectedWithTheirKind() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        defer { try? FileManager.default.removeItem(at: dir) }
        let engine = try await VitalcoreEngine.open(EngineConfig(dataDir: dir.path), keys: ClosureKeyProvider { self.key })
        XCTAssertEqual(engine.activeModel()?.version, "1.0.0")
        do {
            _ = try await engine.installModel(envelopeJson: Data("{}".utf8), artifact: Data([1, 2, 3]))
            XCTFail("expected ModelRejected")
        } catch VitalcoreError.ModelRejected(_, let kind) {
            XCTAssertEqual(kind, ModelRejection.tampered)
        }
        do {
            _ = try await engine.updateModel("rhythm-ppg")
            XCTFail("expected NotConfigured")
        } catch VitalcoreError.NotConfigured {
        }
        XCTAssertEqual(engine.activeModel()?.version, "1.0.0")
        try await engine.shutdown()
    }
}

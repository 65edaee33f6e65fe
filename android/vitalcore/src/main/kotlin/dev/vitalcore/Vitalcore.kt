package dev.vitalcore

import dev.vitalcore.ffi.Analysis
import dev.vitalcore.ffi.BatchSummary
import dev.vitalcore.ffi.CardiacSignal
import dev.vitalcore.ffi.FeatureInfo
import dev.vitalcore.ffi.KeyProvider
import dev.vitalcore.ffi.VersionInfo
import dev.vitalcore.ffi.VitalcoreException
import dev.vitalcore.ffi.analyzeAccel
import dev.vitalcore.ffi.analyzeCardiacAsync
import dev.vitalcore.ffi.analyzeCardiacF64le
import dev.vitalcore.ffi.featureInfo
import dev.vitalcore.ffi.featuresV1
import dev.vitalcore.ffi.keyFingerprintAsync
import dev.vitalcore.ffi.validateBatchF64le
import dev.vitalcore.ffi.versionInfo

/**
 * Kotlin entry point of vitalcore. Thin: every member delegates to the generated bindings
 * (package `dev.vitalcore.ffi`), adding only Kotlin idiom (lambdas, `DoubleArray`, `suspend`).
 *
 * Every failure is a [VitalcoreException] subclass (`InvalidInput`, `Storage`, `Crypto`,
 * `Network`, `ModelRejected`, `ConsentRequired`, `Interrupted`, `Closed`, `NotFound`, `Backpressure`,
 * `NotConfigured`, `Unauthorized`, `Internal`); a bug inside the
 * native library arrives as `dev.vitalcore.ffi.InternalException`, never as a crash.
 */
object Vitalcore {
    /** Library and feature set versions. */
    val version: VersionInfo get() = versionInfo()

    /** Feature set v1, in model input order. */
    val features: List<FeatureInfo> get() = featuresV1()

    /** One feature by name. @throws VitalcoreException.InvalidInput if there is none. */
    fun feature(name: String): FeatureInfo = featureInfo(name)

    /** Checks a batch exactly as the engine checks every batch it is pushed. */
    fun checkBatch(samples: DoubleArray, rateHz: Double): BatchSummary =
        validateBatchF64le(packF64le(samples), rateHz)

    /** Beats, NN intervals, features and quality of an ECG/PPG recording (blocking). */
    fun analyze(signal: CardiacSignal, samples: DoubleArray, rateHz: Double): Analysis =
        analyzeCardiacF64le(signal, packF64le(samples), rateHz)

    /** [analyze] on a worker thread, for coroutines on the main thread. */
    suspend fun analyzeInBackground(signal: CardiacSignal, samples: DoubleArray, rateHz: Double): Analysis =
        analyzeCardiacAsync(signal, samples.asList(), rateHz)

    /** Steps and activity features of a tri-axial accelerometer recording (axes in g). */
    fun analyzeMotion(x: DoubleArray, y: DoubleArray, z: DoubleArray, rateHz: Double): Analysis =
        analyzeAccel(x.asList(), y.asList(), z.asList(), rateHz)

    /** Fingerprint of the provider's root key (never the key itself), blocking. */
    fun keyFingerprintBlocking(provider: KeyProvider): String = dev.vitalcore.ffi.keyFingerprint(provider)

    /** Fingerprint of the provider's root key; the provider runs off the caller's thread. */
    suspend fun keyFingerprint(provider: KeyProvider): String = keyFingerprintAsync(provider)
}

/**
 * A [KeyProvider] from a lambda, typically reading the Android Keystore:
 * `keyProvider { keystore.unwrapRootKey() }`. Throw [VitalcoreException.Crypto] when the
 * keystore is locked; any other exception reaches the caller as `Internal`.
 */
fun keyProvider(block: () -> ByteArray): KeyProvider = object : KeyProvider {
    override fun rootKey(): ByteArray = block()
}

/**
 * Samples as little-endian f64 bytes: one bulk copy here and one across the FFI, instead of
 * boxing and encoding every element of a `List<Double>` (about 10x cheaper per batch; see
 * BENCHMARKS.md).
 */
fun packF64le(samples: DoubleArray): ByteArray {
    val buf = java.nio.ByteBuffer.allocate(samples.size * 8).order(java.nio.ByteOrder.LITTLE_ENDIAN)
    buf.asDoubleBuffer().put(samples)
    return buf.array()
}

package dev.vitalcore

import dev.vitalcore.ffi.Capture
import dev.vitalcore.ffi.CaptureStats
import dev.vitalcore.ffi.CheckKind
import dev.vitalcore.ffi.CheckResult
import dev.vitalcore.ffi.Consent
import dev.vitalcore.ffi.Consents
import dev.vitalcore.ffi.DeletionReport
import dev.vitalcore.ffi.Engine
import dev.vitalcore.ffi.EngineConfig
import dev.vitalcore.ffi.KeyProvider
import dev.vitalcore.ffi.Label
import dev.vitalcore.ffi.ModelInfo
import dev.vitalcore.ffi.Session
import dev.vitalcore.ffi.StoredCheck
import dev.vitalcore.ffi.SyncOptions
import dev.vitalcore.ffi.SyncOutcome
import dev.vitalcore.ffi.VitalcoreException
import dev.vitalcore.ffi.openEngineAsync
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.flow

/**
 * The engine, Kotlin-style: `VitalcoreEngine.open(EngineConfig(dir), keys).use { ... }`.
 * Every member delegates to the generated object ([Engine]); `close()` is `shutdown()`.
 * Failures are [VitalcoreException] subclasses (`InvalidInput`, `Crypto`, `Closed`, ...).
 */
class VitalcoreEngine private constructor(val raw: Engine) : AutoCloseable {
    companion object {
        /** Opens (or creates) the encrypted store; blocking. A wrong key is `Crypto`. */
        fun open(config: EngineConfig, keys: KeyProvider): VitalcoreEngine = VitalcoreEngine(Engine.open(config, keys))

        /** [open] off the caller's thread (store migration and the keystore may take time). */
        suspend fun openAsync(config: EngineConfig, keys: KeyProvider): VitalcoreEngine =
            VitalcoreEngine(openEngineAsync(config, keys))
    }

    /** Starts a health check; use it with `use {}` so an unfinished check is cancelled. */
    fun startCheck(kind: CheckKind): CheckSession = CheckSession(raw.startCheck(kind))

    /** Starts a background capture; closing the handle (or leaving `use {}`) stops it. */
    fun startCapture(kind: CheckKind, windowS: Double = 60.0, overlapS: Double = 30.0): CaptureStream =
        CaptureStream(this, raw.startCapture(kind, windowS, overlapS))

    /** Health checks started in `[fromMs, toMs)`, oldest first. */
    fun checks(fromMs: Long, toMs: Long, kind: CheckKind? = null): List<StoredCheck> = raw.checks(fromMs, toMs, kind)

    /** [checks] off the caller's thread. */
    suspend fun checksAsync(fromMs: Long, toMs: Long, kind: CheckKind? = null): List<StoredCheck> =
        raw.checksAsync(fromMs, toMs, kind)

    /** Background-capture windows started in `[fromMs, toMs)`, oldest first. */
    fun windows(fromMs: Long, toMs: Long, kind: CheckKind? = null): List<StoredCheck> = raw.windows(fromMs, toMs, kind)

    /** One check by id, or null. */
    fun check(id: String): StoredCheck? = raw.check(id)

    /** Records an outcome label. @throws VitalcoreException.NotFound if there is no such check. */
    fun addLabel(checkId: String, label: Label) = raw.addLabel(checkId, label)

    /** Labels of a check, in recording order. */
    fun labels(checkId: String): List<Label> = raw.labels(checkId)

    /** Deletes a check with its labels and pending upload; whether it existed. */
    fun deleteCheck(id: String): Boolean = raw.deleteCheck(id)

    /** Sync settings (enrollment token, study, Wi-Fi / charging policy, batching, retries). */
    fun setSyncOptions(options: SyncOptions) = raw.setSyncOptions(options)

    /** Reports Wi-Fi and charging state for the Wi-Fi-only / charging-only options. */
    fun setDeviceConditions(wifi: Boolean, charging: Boolean) = raw.setDeviceConditions(wifi, charging)

    /**
     * Records consent to [purpose] (see [Purposes]) under consent text [policyVersion].
     * @throws VitalcoreException.InvalidInput for a purpose with no upload meaning.
     */
    fun grantConsent(purpose: String, policyVersion: String): Consent = raw.grantConsent(purpose, policyVersion)

    /** Withdraws consent at once, locally: no more uploads for it, queued records erased, server erasure queued. */
    fun revokeConsent(purpose: String): Consent = raw.revokeConsent(purpose)

    /** Latest decision per purpose and the full history. */
    val consents: Consents get() = raw.consents()

    /** Erasure requests not yet confirmed by the server. */
    val pendingErasures: Long get() = raw.pendingErasures().toLong()

    /**
     * Delivers pending erasure requests, then uploads the consented outbox (each record once);
     * enrolls the device on first use. Runs off the caller's thread.
     * @throws VitalcoreException.NotConfigured no endpoint/region or enrollment token, or an endpoint of another region.
     * @throws VitalcoreException.Unauthorized the server refused the enrollment token or credential.
     * @throws VitalcoreException.Network unreachable or overloaded server; retry later (`retryAfterMs` when known).
     */
    suspend fun syncNow(): SyncOutcome = raw.syncNow()

    /** Every record of the user as JSON (format `vitalcore-export`, version 1), off the caller's thread. */
    suspend fun exportMyData(): String = raw.exportMyDataAsync()

    /** [exportMyData], blocking. */
    fun exportMyDataBlocking(): String = raw.exportMyData()

    /** Deletes all of the user's data locally (keys destroyed), then asks the server to erase it. */
    suspend fun deleteMyData(): DeletionReport = raw.deleteMyData()

    /** The model serving rhythm checks (the bundled default until an update is installed), or null. */
    val activeModel: ModelInfo? get() = raw.activeModel()

    /**
     * Asks the sync endpoint for a newer version of model [name], downloads, verifies and
     * installs it; null when there is no new model. Runs off the caller's thread.
     * @throws VitalcoreException.ModelRejected the bundle was refused (`kind`: `TAMPERED`,
     *   `NOT_NEWER`, `EXPIRED`, ...); the model already serving keeps serving.
     * @throws VitalcoreException.NotFound the server has no model by this name.
     * @throws VitalcoreException.Network unreachable server; retry later.
     */
    suspend fun updateModel(name: String): ModelInfo? = raw.updateModel(name)

    /**
     * Verifies and activates a signed bundle the app obtained itself ([envelopeJson]: the
     * signed manifest, [artifact]: the ONNX bytes it pins), off the caller's thread.
     * @throws VitalcoreException.ModelRejected refused, with its `kind`; the old model keeps serving.
     */
    suspend fun installModel(envelopeJson: ByteArray, artifact: ByteArray): ModelInfo =
        raw.installModelAsync(envelopeJson, artifact)

    /** [installModel], blocking. */
    fun installModelBlocking(envelopeJson: ByteArray, artifact: ByteArray): ModelInfo =
        raw.installModel(envelopeJson, artifact)

    /** Stops operations in progress at their next step, committing nothing. */
    fun interrupt() = raw.interrupt()

    /** Waits for work in progress and checkpoints the store; later calls throw `Closed`. */
    suspend fun shutdown() = raw.shutdownAsync()

    /** Blocking shutdown (what `use {}` calls). Idempotent. */
    override fun close() {
        raw.shutdown()
        raw.close()
    }
}

/** Consent purposes the engine uploads for. */
object Purposes {
    /** The app's own research study (`SyncOptions.study`). */
    const val RESEARCH = "research"

    /** Training the models the app ships. */
    const val MODEL_TRAINING = "model_training"

    /** Sharing with partner apps through the partner API. */
    const val PARTNER_SHARING = "partner_sharing"

    /** A named research study (`[a-z0-9_]`). */
    fun research(study: String): String = "research_$study"
}

/** One health check in progress. `close()` cancels it unless it was finished. */
class CheckSession internal constructor(val raw: Session) : AutoCloseable {
    private var done = false

    /** Pushes samples taken at [rateHz], the first at [startS] (Unix seconds), packed (one copy). */
    fun push(channel: String, startS: Double, rateHz: Double, samples: DoubleArray) =
        raw.pushSamplesF64le(channel, startS, rateHz, packF64le(samples))

    /** Pushes a `List<Double>` (the generic, slower path: one encode per element). */
    fun push(channel: String, startS: Double, rateHz: Double, samples: List<Double>) =
        raw.pushSamples(channel, startS, rateHz, samples)

    /** Finishes the check: features, quality, prediction, one encrypted commit (blocking). */
    fun finishBlocking(): CheckResult = raw.finish().also { done = true }

    /** [finishBlocking] off the caller's thread. */
    suspend fun finish(): CheckResult = raw.finishAsync().also { done = true }

    /** Discards the samples. */
    fun cancel() = raw.cancel().also { done = true }

    override fun close() {
        if (!done) {
            try {
                raw.cancel()
            } catch (_: VitalcoreException.Closed) {
                // Finished or cancelled concurrently: nothing left to discard.
            }
        }
        raw.close()
    }
}

/**
 * A background capture. Windows are analysed and stored as samples arrive;
 * [windowResults] streams each stored window as a [Flow].
 */
class CaptureStream internal constructor(private val engine: VitalcoreEngine, val raw: Capture) : AutoCloseable {
    /**
     * Pushes samples; when the capture is behind (`Backpressure`), waits [retryMs] and
     * retries, so no batch is lost.
     */
    suspend fun push(channel: String, startS: Double, rateHz: Double, samples: DoubleArray, retryMs: Long = 5) {
        val packed = packF64le(samples)
        while (true) {
            try {
                raw.pushSamplesF64le(channel, startS, rateHz, packed)
                return
            } catch (_: VitalcoreException.Backpressure) {
                delay(retryMs)
            }
        }
    }

    /** Counters so far. */
    val stats: CaptureStats get() = raw.stats()

    /**
     * Stored windows of this capture's kind starting at or after [fromMs], as they appear
     * (the store is polled every [pollMs]); completes once the capture is stopped or closed
     * and every window it queued has been emitted. Cancelling the collector does not stop
     * the capture.
     */
    fun windowResults(kind: CheckKind, fromMs: Long, pollMs: Long = 50): Flow<StoredCheck> = flow {
        val seen = HashSet<String>()
        while (true) {
            // Read before listing: `stop()` sets it only after the queue is drained, so the
            // listing that follows holds every window; the handle itself is never touched
            // here, as it may already be released.
            val stopped = isStopped
            for (w in engine.windows(fromMs, Long.MAX_VALUE, kind)) {
                if (seen.add(w.id)) emit(w)
            }
            if (stopped) return@flow
            delay(pollMs)
        }
    }

    @Volatile
    private var isStopped = false

    /** Stops after the queued windows are stored; final counters. Idempotent. */
    fun stop(): CaptureStats = raw.stop().also { isStopped = true }

    /** Stops the capture (as [stop]) and releases the handle. Idempotent. */
    override fun close() {
        if (!isStopped) stop()
        raw.close()
    }
}

package dev.vitalcore.jvmtest

import dev.vitalcore.Vitalcore
import dev.vitalcore.VitalcoreEngine
import dev.vitalcore.keyProvider
import dev.vitalcore.ffi.CardiacSignal
import dev.vitalcore.ffi.CheckKind
import dev.vitalcore.ffi.EngineConfig
import dev.vitalcore.ffi.Label
import dev.vitalcore.ffi.PredictionOutcome
import dev.vitalcore.ffi.VitalcoreException
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import java.io.File

/** The engine from Kotlin on a real PPG recording (heartpy data1, 100 Hz), with a Kotlin KeyProvider. */
class EngineTest {
    private val recordings = File(System.getProperty("vitalcore.recordings.dir") ?: error("vitalcore.recordings.dir not set"))
    private val key = ByteArray(32) { (it * 7 + 1).toByte() }
    private val keys = keyProvider { key.copyOf() }
    private val t0 = 1_764_000_000.0

    private fun ppg(): DoubleArray {
        val csv = File(recordings, "heartpy_data1.csv")
        check(csv.exists()) { "$csv missing: run `make data` first" }
        return csv.readLines().filter { it.isNotBlank() }.map { it.trim().toDouble() }.toDoubleArray()
    }

    @Test
    fun checkOnARealRecordingHistoryLabelAndReopen(@TempDir dir: File) {
        val x = ppg()
        val id = VitalcoreEngine.open(EngineConfig(dir.path), keys).use { engine ->
            val result = engine.startCheck(CheckKind.PPG_RHYTHM).use { s ->
                for (i in x.indices step 100) {
                    s.push("ppg", t0 + i / 100.0, 100.0, x.copyOfRange(i, minOf(i + 100, x.size)))
                }
                runBlocking { s.finish() }
            }
            val c = result.check
            // The session (1 s batches) and the one-shot analysis (whole recording) agree.
            val oneShot = Vitalcore.analyze(CardiacSignal.PPG, x, 100.0).features.single { it.name == "hr_mean" }.value!!
            assertEquals(oneShot, c.features["hr_mean"]!!, 1e-9 * oneShot)
            // The bundled default model serves rhythm checks: predicted, or said why not.
            assertTrue(c.prediction !is PredictionOutcome.NoModel)
            val fromMs = (t0 * 1000).toLong()
            engine.addLabel(c.id, Label("afib", 0.0, "clinician", fromMs))
            val history = engine.checks(fromMs, fromMs + 3_600_000)
            assertEquals(listOf(c.id), history.map { it.id })
            assertEquals(c.features, history[0].features)
            c.id
        }
        // Same key again: the check and its label are there.
        VitalcoreEngine.open(EngineConfig(dir.path), keyProvider { key.copyOf() }).use { engine ->
            assertNotNull(engine.check(id))
            assertEquals(listOf("afib"), engine.labels(id).map { it.name })
            assertEquals(1, runBlocking { engine.checksAsync(0, Long.MAX_VALUE, CheckKind.PPG_RHYTHM) }.size)
        }
    }

    @Test
    fun errorsArriveAsTypedExceptions(@TempDir dir: File) {
        VitalcoreEngine.open(EngineConfig(dir.path), keys).use { engine ->
            engine.startCheck(CheckKind.PPG_RHYTHM).use { s ->
                assertThrows<VitalcoreException.InvalidInput> { s.push("ppg", t0, 100.0, doubleArrayOf(Double.NaN)) }
                assertThrows<VitalcoreException.InvalidInput> { s.push("ecg", t0, 100.0, doubleArrayOf(0.0)) }
                assertThrows<VitalcoreException.InvalidInput> { s.push("ppg", t0, 0.0, listOf(1.0)) }
                assertThrows<VitalcoreException.InvalidInput> { s.finishBlocking() }
            }
            assertThrows<VitalcoreException.NotFound> { engine.addLabel("0".repeat(32), Label("x", 1.0, "y", 0)) }
            assertThrows<VitalcoreException.InvalidInput> { engine.labels("nope") }
        }
        // A different key is refused with Crypto; the store is untouched and opens again.
        assertThrows<VitalcoreException.Crypto> { VitalcoreEngine.open(EngineConfig(dir.path), keyProvider { ByteArray(32) { 9 } }) }
        // A keystore failure thrown by the Kotlin provider reaches the caller unchanged.
        val locked = VitalcoreException.Crypto("keystore locked")
        val thrown = assertThrows<VitalcoreException.Crypto> { VitalcoreEngine.open(EngineConfig(dir.path), keyProvider { throw locked }) }
        assertEquals("keystore locked", thrown.reason)
        VitalcoreEngine.open(EngineConfig(dir.path), keys).close()
    }
}

package dev.vitalcore.jvmtest

import dev.vitalcore.Vitalcore
import dev.vitalcore.VitalcoreEngine
import dev.vitalcore.ffi.CardiacSignal
import dev.vitalcore.ffi.CheckKind
import dev.vitalcore.ffi.EngineConfig
import dev.vitalcore.ffi.StoredCheck
import dev.vitalcore.keyProvider
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.onEach
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import java.io.File

/**
 * Background capture results as a Kotlin [kotlinx.coroutines.flow.Flow], on a real PPG
 * recording (heartpy data3, 11 min): windows stream out while samples are still being
 * pushed, each one is what the one-shot analysis gives for the same samples, and the flow
 * completes when the capture is stopped.
 */
class CaptureFlowTest {
    private val recordings = File(System.getProperty("vitalcore.recordings.dir") ?: error("vitalcore.recordings.dir not set"))
    private val keys = keyProvider { ByteArray(32) { (it * 11 + 3).toByte() } }
    private val t0 = 1_764_000_000.0
    private val fromMs = (t0 * 1000).toLong()

    private fun recording(name: String): Pair<DoubleArray, Double> {
        val csv = File(recordings, "$name.csv")
        check(csv.exists()) { "$csv missing: run `make data` first" }
        val meta = File(recordings, "$name.json").readText()
        val rate = Regex("\"rate_hz\": ([0-9.eE+-]+)").find(meta)?.groupValues?.get(1)?.toDouble()
            ?: error("no rate_hz in $name.json")
        return csv.readLines().filter { it.isNotBlank() }.map { it.trim().toDouble() }.toDoubleArray() to rate
    }

    @Test
    fun windowsStreamWhileCapturingAndMatchTheOneShotAnalysis(@TempDir dir: File) = runBlocking {
        val (all, rate) = recording("heartpy_data3")
        val x = all.copyOf((150 * rate).toInt()) // 150 s: 30 s windows every 15 s -> 9 windows
        val windowS = 30.0
        val overlapS = 15.0
        val win = Math.round(windowS * rate).toInt()
        val hop = Math.round((windowS - overlapS) * rate).toInt()
        val expectedWindows = (x.size - win) / hop + 1
        val batch = Math.round(rate).toInt() // 1 s batches, as a sensor callback delivers them

        VitalcoreEngine.open(EngineConfig(dir.path), keys).use { engine ->
            val capture = engine.startCapture(CheckKind.PPG_RHYTHM, windowS, overlapS)
            val arrivals = Channel<Int>(Channel.UNLIMITED)
            val collected = async(Dispatchers.Default) {
                capture.windowResults(CheckKind.PPG_RHYTHM, fromMs, pollMs = 20)
                    .onEach { arrivals.send(1) }
                    .toList()
            }
            // First two windows' worth of signal (45 s), then wait for a result while the
            // capture is still open and the rest of the recording not pushed yet.
            var i = 0
            val firstPart = win + hop
            while (i < firstPart) {
                val end = minOf(i + batch, firstPart)
                capture.push("ppg", t0 + i / rate, rate, x.copyOfRange(i, end))
                i = end
            }
            withTimeout(60_000) { arrivals.receive() }
            assertTrue(capture.stats.windowsStored >= 1uL, "a window arrived before the capture was stopped")
            while (i < x.size) {
                val end = minOf(i + batch, x.size)
                capture.push("ppg", t0 + i / rate, rate, x.copyOfRange(i, end))
                i = end
            }
            val stats = capture.stop()
            val streamed: List<StoredCheck> = withTimeout(60_000) { collected.await() }
            capture.close()

            assertEquals(0uL, stats.windowsFailed)
            assertEquals(expectedWindows.toULong(), stats.windowsStored)
            assertEquals(expectedWindows, streamed.size)
            assertEquals(streamed.map { it.id }.toSet().size, streamed.size, "each window once")
            // The flow emitted exactly what history holds, in the same (start time) order.
            assertEquals(engine.windows(fromMs, Long.MAX_VALUE, CheckKind.PPG_RHYTHM).map { it.id }, streamed.map { it.id })
            for ((k, w) in streamed.withIndex()) {
                assertTrue(w.isWindow)
                assertEquals(CheckKind.PPG_RHYTHM, w.kind)
                assertEquals((fromMs + Math.round(k * hop / rate * 1000)).toDouble(), w.startedAtMs.toDouble(), 1.0)
                // The window's features are the one-shot analysis of the same samples.
                val oneShot = Vitalcore.analyze(CardiacSignal.PPG, x.copyOfRange(k * hop, k * hop + win), rate)
                val hr = oneShot.features.single { it.name == "hr_mean" }.value ?: error("no hr_mean in window $k")
                assertEquals(hr, w.features["hr_mean"] ?: error("window $k stored no hr_mean"), 1e-9 * hr)
                assertEquals(oneShot.sqi, w.quality.sqi, 1e-12)
            }
        }
    }

    @Test
    fun closingTheHandleCompletesTheFlowAndACancelledCollectorLeavesTheCaptureRunning(@TempDir dir: File) = runBlocking {
        val (all, rate) = recording("heartpy_data3")
        val win = Math.round(20.0 * rate).toInt()
        VitalcoreEngine.open(EngineConfig(dir.path), keys).use { engine ->
            val capture = engine.startCapture(CheckKind.PPG_RHYTHM, 20.0, 0.0)
            // A collector that takes one window and goes away (cancels its collection).
            val first = async(Dispatchers.Default) { capture.windowResults(CheckKind.PPG_RHYTHM, fromMs, pollMs = 20).first() }
            capture.push("ppg", t0, rate, all.copyOf(win))
            val one = withTimeout(60_000) { first.await() }
            // The capture still takes samples after its collector is gone.
            capture.push("ppg", t0 + win / rate, rate, all.copyOfRange(win, 2 * win))
            val rest = async(Dispatchers.Default) { capture.windowResults(CheckKind.PPG_RHYTHM, fromMs, pollMs = 20).toList() }
            capture.close() // stops, drains and releases: the flow must complete, not fail
            val ids = withTimeout(60_000) { rest.await() }.map { it.id }
            assertEquals(2, ids.size)
            assertEquals(one.id, ids[0])
            capture.close() // idempotent
        }
    }
}

package dev.vitalcore.jvmtest

import dev.vitalcore.Vitalcore
import dev.vitalcore.ffi.CardiacSignal
import dev.vitalcore.ffi.VitalcoreException
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import java.io.File

/** A check on a real recording (fetched by `make data`), through the Kotlin facade. */
class RecordingTest {
    private val dir = File(System.getProperty("vitalcore.recordings.dir") ?: error("vitalcore.recordings.dir not set"))

    /** The first uniform (not timestamped) ECG recording, as values + rate. */
    private fun ecg(): Pair<DoubleArray, Double> {
        val meta = dir.listFiles { f -> f.name.endsWith(".json") }.orEmpty().sortedBy { it.name }
            .map { it to it.readText() }
            .firstOrNull { (_, t) -> t.contains("\"signal\": \"ecg\"") && t.contains("\"timestamps\": false") }
            ?: error("no uniform ECG recording in $dir: run `make data` first")
        val rate = Regex("\"rate_hz\": ([0-9.eE+-]+)").find(meta.second)!!.groupValues[1].toDouble()
        val csv = File(meta.first.path.removeSuffix(".json") + ".csv")
        return csv.readLines().filter { it.isNotBlank() }.map { it.trim().toDouble() }.toDoubleArray() to rate
    }

    @Test
    fun ecgRecordingGivesBeatsFeaturesAndQuality() {
        val (x, rate) = ecg()
        val a = Vitalcore.analyze(CardiacSignal.ECG, x, rate)
        assertEquals(x.size.toULong(), a.samples)
        assertTrue(a.peaks.zipWithNext().all { (p, q) -> q > p }, "peaks strictly increasing")
        assertTrue(a.peaks.all { it < a.samples })
        val hr = a.features.single { it.name == "hr_mean" }.value!!
        val beatsPerMinute = a.peaks.size / (x.size / rate / 60.0)
        // hr_mean comes from corrected NN intervals, the beat count from raw peaks: close, not equal.
        assertEquals(beatsPerMinute, hr, beatsPerMinute * 0.15)
        assertTrue(a.sqi in 0.0..1.0)
        val async = runBlocking { Vitalcore.analyzeInBackground(CardiacSignal.ECG, x, rate) }
        assertEquals(a, async)
    }

    @Test
    fun tooShortRecordingIsInvalidInput() {
        val (x, rate) = ecg()
        assertThrows<VitalcoreException.InvalidInput> {
            Vitalcore.analyze(CardiacSignal.ECG, x.copyOf((rate * 2).toInt()), rate)
        }
    }
}

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

    /**
     * NeuroKit2's beats for a recording (`neurokit2.peaks` of the reference `make data` computed
     * into `.cache/reference/NAME.json`, next to `.cache/recordings`).
     */
    private fun neurokit2Peaks(name: String): List<Long> {
        val ref = File(dir.parentFile, "reference/$name.json")
        check(ref.isFile) { "no NeuroKit2 reference $ref: run `make data` first" }
        val text = ref.readText()
        val nk = text.indexOf("\"neurokit2\"")
        check(nk >= 0) { "$ref has no neurokit2 section" }
        val list = Regex("\"peaks\"\\s*:\\s*\\[([^\\]]*)]").find(text, nk) ?: error("$ref has no neurokit2 peaks")
        return list.groupValues[1].split(',').map { it.trim() }.filter { it.isNotEmpty() }.map { it.toLong() }
    }

    /** Beat F1 against a reference: a beat matches an unused reference beat within `tol` samples. */
    private fun beatF1(ours: List<Long>, reference: List<Long>, tol: Long): Double {
        val used = BooleanArray(reference.size)
        var hits = 0
        for (p in ours) {
            val j = reference.indices.firstOrNull { !used[it] && kotlin.math.abs(reference[it] - p) <= tol } ?: continue
            used[j] = true
            hits++
        }
        return 2.0 * hits / (ours.size + reference.size)
    }

    /** The first uniform (not timestamped) ECG recording: name, values and rate. */
    private fun ecgNamed(): Triple<String, DoubleArray, Double> {
        val meta = dir.listFiles { f -> f.name.endsWith(".json") }.orEmpty().sortedBy { it.name }
            .map { it to it.readText() }
            .firstOrNull { (_, t) -> t.contains("\"signal\": \"ecg\"") && t.contains("\"timestamps\": false") }
            ?: error("no uniform ECG recording in $dir: run `make data` first")
        val rate = Regex("\"rate_hz\": ([0-9.eE+-]+)").find(meta.second)!!.groupValues[1].toDouble()
        val csv = File(meta.first.path.removeSuffix(".json") + ".csv")
        val x = csv.readLines().filter { it.isNotBlank() }.map { it.trim().toDouble() }.toDoubleArray()
        return Triple(meta.first.name.removeSuffix(".json"), x, rate)
    }

    private fun ecg(): Pair<DoubleArray, Double> = ecgNamed().let { (_, x, rate) -> x to rate }

    @Test
    fun ecgRecordingGivesBeatsFeaturesAndQuality() {
        val (name, x, rate) = ecgNamed()
        val a = Vitalcore.analyze(CardiacSignal.ECG, x, rate)
        assertEquals(x.size.toULong(), a.samples)
        assertTrue(a.peaks.zipWithNext().all { (p, q) -> q > p }, "peaks strictly increasing")
        assertTrue(a.peaks.all { it < a.samples })
        // The beats are NeuroKit2's (independent reference): F1 >= 0.98 within 50 ms, the
        // acceptance rule of the Rust validation suite.
        val reference = neurokit2Peaks(name)
        val f1 = beatF1(a.peaks.map { it.toLong() }, reference, (0.05 * rate).toLong())
        assertTrue(f1 >= 0.98, "beat F1 against NeuroKit2 on $name: $f1 (${a.peaks.size} beats vs ${reference.size})")
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

package dev.vitalcore.jvmtest

import dev.vitalcore.Vitalcore
import dev.vitalcore.ffi.CheckKind
import dev.vitalcore.ffi.Engine
import dev.vitalcore.ffi.EngineConfig
import dev.vitalcore.ffi.debugNativePushNs
import dev.vitalcore.ffi.featureCount
import dev.vitalcore.keyProvider
import dev.vitalcore.ffi.validateBatch
import org.junit.jupiter.api.Test

/**
 * Per-call overhead from Kotlin through JNA (run by `make bench` only: surefire's default
 * includes skip `*Benchmark` classes). Warmed-up nanoTime loops; median of 15 rounds.
 * The baseline is the same batch check written in plain Kotlin, what an app would do
 * without the native library.
 */
class OverheadBenchmark {
    private fun median(xs: List<Double>) = xs.sorted()[xs.size / 2]

    private inline fun perCallNs(iterations: Int, rounds: Int = 15, body: () -> Unit): Double {
        repeat(iterations) { body() } // warm-up: JIT, JNA binding, allocation paths
        return median((0 until rounds).map {
            val t0 = System.nanoTime()
            repeat(iterations) { body() }
            (System.nanoTime() - t0).toDouble() / iterations
        })
    }

    private fun kotlinCheck(x: List<Double>, rate: Double): Long {
        require(rate.isFinite() && rate in 1.0..2000.0)
        require(x.isNotEmpty())
        for (v in x) require(v.isFinite() && Math.abs(v) <= 1e12)
        return x.size.toLong()
    }

    @Test
    fun overhead() {
        val samples = List(1000) { Math.sin(it / 10.0) }
        val primitive = DoubleArray(1000) { Math.sin(it / 10.0) }
        var sink = 0L
        val trivial = perCallNs(20_000) { sink += featureCount().toLong() }
        val batch = perCallNs(5_000) { sink += validateBatch(samples, 100.0).count.toLong() }
        val batchFromArray = perCallNs(5_000) { sink += validateBatch(primitive.asList(), 100.0).count.toLong() }
        val packed = perCallNs(20_000) { sink += Vitalcore.checkBatch(primitive, 100.0).count.toLong() }
        val kotlin = perCallNs(5_000) { sink += kotlinCheck(samples, 100.0) }
        println("BENCH kotlin trivial_call_us=%.3f".format(trivial / 1000))
        println("BENCH kotlin batch1000_call_us=%.3f".format(batch / 1000))
        println("BENCH kotlin batch1000_from_doublearray_us=%.3f".format(batchFromArray / 1000))
        println("BENCH kotlin batch1000_packed_doublearray_us=%.3f".format(packed / 1000))
        println("BENCH kotlin batch1000_pure_kotlin_us=%.3f".format(kotlin / 1000))
        println("BENCH kotlin batch1000_list_vs_pure_ratio=%.1f".format(batch / kotlin))
        println("BENCH kotlin batch1000_packed_vs_pure_ratio=%.1f".format(packed / kotlin))
        sessionPush(primitive)
        println("BENCH sink=$sink")
    }

    /**
     * `Session.push_samples` with 1,000 samples (1 s at 1 kHz, contiguous timestamps) on a
     * real engine. A session takes at most 600 s, so every 500 pushes the session is
     * cancelled and a new one started (amortised: one in 500 iterations).
     *
     * Where the time goes: a bare JNA direct-mapped call (libc `getpid`, no uniffi), the
     * same push with 1 sample (the fixed cost of the push path: a `String` and a
     * `ByteArray` lowered into two Rust-allocated buffers, i.e. three native calls), and
     * the native share measured inside the same library (`debugNativePushNs`).
     */
    private fun sessionPush(x: DoubleArray) {
        val dir = java.nio.file.Files.createTempDirectory("vc-bench").toFile()
        val engine = Engine.open(EngineConfig(dir.path), keyProvider { ByteArray(32) { 3 } })
        var session = engine.startCheck(CheckKind.ECG_RHYTHM)
        var k = 0
        fun next(): Double {
            if (k == 500) {
                session.cancel(); session.close()
                session = engine.startCheck(CheckKind.ECG_RHYTHM)
                k = 0
            }
            return (k++).toDouble()
        }
        val one = doubleArrayOf(0.5)
        // The start time first: next() may replace the session, and the push must go to the new one.
        val packed = perCallNs(5_000) { val t = next(); session.pushSamplesF64le("ecg", t, 1000.0, dev.vitalcore.packF64le(x)) }
        val prepacked = dev.vitalcore.packF64le(x)
        val packedOnly = perCallNs(5_000) { val t = next(); session.pushSamplesF64le("ecg", t, 1000.0, prepacked) }
        val list = perCallNs(2_000) { val t = next(); session.pushSamples("ecg", t, 1000.0, x.asList()) }
        // 1 sample per push, contiguous at 1 kHz: 80,000 pushes stay within one session.
        session.cancel(); session.close(); session = engine.startCheck(CheckKind.ECG_RHYTHM)
        val onePacked = dev.vitalcore.packF64le(one)
        var j = 0
        val push1 = perCallNs(5_000) { session.pushSamplesF64le("ecg", (j++) / 1000.0, 1000.0, onePacked) }
        // What the packed call costs before Rust runs: packing the DoubleArray into bytes.
        var sink = 0
        val packOnly = perCallNs(20_000) { sink += dev.vitalcore.packF64le(x).size }
        val jna = perCallNs(200_000) { sink += LibC.getpid() }
        session.cancel(); session.close()
        val native = median(debugNativePushNs(engine, CheckKind.ECG_RHYTHM, "ecg", 1000.0, prepacked, 15u, 500u))
        engine.shutdown(); engine.close()
        dir.deleteRecursively()
        println("BENCH kotlin jna_raw_call_us=%.3f".format(jna / 1000))
        println("BENCH kotlin session_push1000_packed_us=%.3f".format(packed / 1000))
        println("BENCH kotlin session_push1000_prepacked_us=%.3f".format(packedOnly / 1000))
        println("BENCH kotlin session_push1000_list_us=%.3f".format(list / 1000))
        println("BENCH kotlin session_push1_packed_us=%.3f".format(push1 / 1000))
        println("BENCH kotlin pack_f64le_1000_only_us=%.3f (sink $sink)".format(packOnly / 1000))
        println("BENCH kotlin native_push1000_us=%.3f".format(native / 1000))
        println("BENCH kotlin push1000_ffi_share_us=%.3f".format((packedOnly - native) / 1000))
    }
}

/** A bare JNA direct-mapped call into libc, the floor of any JNA call (uniffi adds to it). */
private object LibC {
    init {
        com.sun.jna.Native.register(LibC::class.java, "c")
    }

    external fun getpid(): Int
}

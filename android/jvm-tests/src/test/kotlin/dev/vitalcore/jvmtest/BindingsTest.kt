package dev.vitalcore.jvmtest

import dev.vitalcore.Vitalcore
import dev.vitalcore.ffi.FeatureSource
import dev.vitalcore.ffi.InternalException
import dev.vitalcore.ffi.KeyProvider
import dev.vitalcore.ffi.ModelRejection
import dev.vitalcore.ffi.VitalcoreException
import dev.vitalcore.ffi.debugPanic
import dev.vitalcore.ffi.debugPanicAsync
import dev.vitalcore.ffi.featureCount
import dev.vitalcore.keyProvider
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import java.security.MessageDigest

/** Key fingerprint as documented, computed here with the JDK, not with vitalcore. */
private fun expectedFingerprint(key: ByteArray): String {
    val md = MessageDigest.getInstance("SHA-256")
    md.update("vitalcore/key-fingerprint/v1".toByteArray(Charsets.US_ASCII))
    md.update(0)
    md.update(key)
    return md.digest().take(8).joinToString("") { "%02x".format(it) }
}

private val KEY = ByteArray(32) { (it * 7 + 1).toByte() }

class CatalogueTest {
    @Test
    fun versionInfoCrossesAsARecord() {
        val v = Vitalcore.version
        assertTrue(Regex("""\d+\.\d+\.\d+.*""").matches(v.sdkVersion), v.sdkVersion)
        assertEquals("v1", v.featureSetVersion)
    }

    @Test
    fun featureCatalogueCrossesWithEnumsAndStrings() {
        val features = Vitalcore.features
        assertEquals(featureCount().toInt(), features.size)
        assertEquals(features.size, features.map { it.name }.toSet().size, "names are unique")
        val rmssd = Vitalcore.feature("rmssd")
        assertEquals("ms", rmssd.unit)
        assertEquals(FeatureSource.CARDIAC, rmssd.source)
        assertEquals(rmssd, features.single { it.name == "rmssd" })
        assertEquals(FeatureSource.ACCEL, Vitalcore.feature("step_count").source)
        assertEquals(FeatureSource.QUALITY, Vitalcore.feature("sqi").source)
    }

    @Test
    fun packedAndListPathsAgree() {
        val x = DoubleArray(3000) { val ph = (it / 100.0 * 1.1) % 1.0; Math.exp(-Math.pow((ph - 0.2) / 0.08, 2.0)) }
        val viaList = dev.vitalcore.ffi.analyzeCardiac(dev.vitalcore.ffi.CardiacSignal.PPG, x.asList(), 100.0)
        assertEquals(viaList, Vitalcore.analyze(dev.vitalcore.ffi.CardiacSignal.PPG, x, 100.0))
        assertEquals(dev.vitalcore.ffi.validateBatch(x.asList(), 100.0), Vitalcore.checkBatch(x, 100.0))
        assertThrows<VitalcoreException.InvalidInput> { dev.vitalcore.ffi.validateBatchF64le(ByteArray(9), 100.0) }
    }

    @Test
    fun batchOfSamplesIsCheckedAndSummarised() {
        val s = Vitalcore.checkBatch(DoubleArray(1000) { Math.sin(it / 10.0) }, 100.0)
        assertEquals(1000UL, s.count)
        assertEquals(10.0, s.durationS, 1e-12)
    }
}

class ErrorMappingTest {
    @Test
    fun unknownFeatureIsInvalidInput() {
        val e = assertThrows<VitalcoreException.InvalidInput> { Vitalcore.feature("no-such-feature") }
        assertFalse(e.reason.contains("no-such-feature"), e.reason)
    }

    @Test
    fun nonFiniteSampleIsInvalidInputWithoutTheValue() {
        val e = assertThrows<VitalcoreException.InvalidInput> {
            Vitalcore.checkBatch(doubleArrayOf(98.6, Double.NaN), 50.0)
        }
        assertTrue(e.reason.contains("1"), e.reason)
        assertFalse(e.reason.contains("98.6"), e.reason)
    }

    @Test
    fun wrongKeyLengthAndZeroKeyAreTyped() {
        assertThrows<VitalcoreException.InvalidInput> {
            Vitalcore.keyFingerprintBlocking(keyProvider { ByteArray(16) { 1 } })
        }
        assertThrows<VitalcoreException.Crypto> {
            Vitalcore.keyFingerprintBlocking(keyProvider { ByteArray(32) })
        }
    }

    /** Every variant thrown by Kotlin code crosses into Rust and back with its kind and fields. */
    @Test
    fun everyVariantRoundTripsThroughRust() {
        val variants: List<VitalcoreException> = listOf(
            VitalcoreException.InvalidInput("a"),
            VitalcoreException.Storage("b"),
            VitalcoreException.Crypto("c"),
            VitalcoreException.Network("d", 1500UL),
            VitalcoreException.Network("e", null),
            VitalcoreException.ModelRejected("f", ModelRejection.NOT_NEWER),
            VitalcoreException.ConsentRequired("g"),
            VitalcoreException.Interrupted("h"),
            VitalcoreException.Internal("i"),
        )
        for (thrown in variants) {
            val caught = assertThrows<VitalcoreException> {
                Vitalcore.keyFingerprintBlocking(keyProvider { throw thrown })
            }
            assertEquals(thrown::class, caught::class)
            assertNotEquals(thrown, caught, "a new exception object built from Rust's error")
            assertEquals(thrown.message, caught.message)
        }
        val net = assertThrows<VitalcoreException.Network> {
            Vitalcore.keyFingerprintBlocking(keyProvider { throw VitalcoreException.Network("x", 42UL) })
        }
        assertEquals(42UL, net.retryAfterMs)
        val rejected = assertThrows<VitalcoreException.ModelRejected> {
            Vitalcore.keyFingerprintBlocking(keyProvider { throw VitalcoreException.ModelRejected("x", ModelRejection.EXPIRED) })
        }
        assertEquals(ModelRejection.EXPIRED, rejected.kind)
    }

    @Test
    fun foreignExceptionOfAnotherTypeBecomesInternalWithoutItsMessage() {
        val e = assertThrows<VitalcoreException.Internal> {
            Vitalcore.keyFingerprintBlocking(keyProvider { throw IllegalStateException("patient Jane Doe") })
        }
        assertFalse(e.reason.contains("Jane"), e.reason)
    }
}

class KeyProviderTest {
    @Test
    fun kotlinProviderRoundTrip() {
        var calls = 0
        val provider = object : KeyProvider {
            override fun rootKey(): ByteArray {
                calls++
                return KEY.copyOf()
            }
        }
        assertEquals(expectedFingerprint(KEY), Vitalcore.keyFingerprintBlocking(provider))
        assertEquals(1, calls)
        val other = KEY.copyOf().also { it[0] = (it[0] + 1).toByte() }
        assertNotEquals(
            Vitalcore.keyFingerprintBlocking(keyProvider { KEY }),
            Vitalcore.keyFingerprintBlocking(keyProvider { other }),
        )
    }
}

class AsyncTest {
    @Test
    fun suspendFunctionRunsTheProviderOffTheCallersThread() = runBlocking {
        val caller = Thread.currentThread()
        var providerThread: Thread? = null
        val fp = Vitalcore.keyFingerprint(keyProvider {
            providerThread = Thread.currentThread()
            KEY
        })
        assertEquals(expectedFingerprint(KEY), fp)
        assertNotEquals(caller, providerThread)
    }

    @Test
    fun manyConcurrentSuspendCallsAllComplete() = runBlocking(Dispatchers.Default) {
        val keys = (0 until 16).map { i -> ByteArray(32) { (it + i + 1).toByte() } }
        val fps = keys.map { k -> async { Vitalcore.keyFingerprint(keyProvider { k }) } }.awaitAll()
        assertEquals(keys.map(::expectedFingerprint), fps)
    }

    @Test
    fun errorsOfSuspendCallsAreTyped() = runBlocking {
        assertThrows<VitalcoreException.Crypto> {
            runBlocking { Vitalcore.keyFingerprint(keyProvider { ByteArray(32) }) }
        }
        Unit
    }
}

class PanicTest {
    @Test
    fun panicInRustIsAnExceptionAndTheLibraryKeepsWorking() {
        val e = assertThrows<InternalException> { debugPanic("deliberate test panic") }
        assertTrue(e.message.orEmpty().contains("deliberate test panic"), e.message)
        assertEquals(Vitalcore.features.size, featureCount().toInt())
    }

    @Test
    fun panicInAnAsyncWorkerIsInternal() = runBlocking {
        assertThrows<VitalcoreException.Internal> { runBlocking { debugPanicAsync("worker panic") } }
        assertEquals(expectedFingerprint(KEY), Vitalcore.keyFingerprint(keyProvider { KEY }))
    }
}

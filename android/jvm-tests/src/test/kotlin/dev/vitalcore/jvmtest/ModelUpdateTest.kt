package dev.vitalcore.jvmtest

import dev.vitalcore.VitalcoreEngine
import dev.vitalcore.ffi.CheckKind
import dev.vitalcore.ffi.EngineConfig
import dev.vitalcore.ffi.ModelInfo
import dev.vitalcore.ffi.ModelRejection
import dev.vitalcore.ffi.PredictionOutcome
import dev.vitalcore.ffi.SyncOptions
import dev.vitalcore.ffi.VitalcoreException
import dev.vitalcore.keyProvider
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import java.io.File
import java.util.Base64

/**
 * Model updates from Kotlin against the real `vitalcore-server` binary in dev mode (it signs
 * and publishes what its admin API receives): `updateModel` fetches, verifies and installs,
 * and a check's prediction then names the new version; refusals arrive as `ModelRejected`
 * with their kind and the old model keeps serving.
 */
class ModelUpdateTest {
    // A server per test: what one test publishes must not change what another is served.
    private val server = VitalcoreServer.start(dev = true)
    private val recordings = File(System.getProperty("vitalcore.recordings.dir") ?: error("vitalcore.recordings.dir not set"))
    private val models = File(System.getProperty("vitalcore.models.dir") ?: error("vitalcore.models.dir not set"))
    private val keys = keyProvider { ByteArray(32) { (it * 3 + 7).toByte() } }
    private val name = "rhythm-ppg"

    @AfterEach
    fun stop() = server.close()

    private fun engine(dir: File, pinned: List<String>): VitalcoreEngine {
        val config = EngineConfig(dir.path)
            .syncEndpoint(server.baseUrl)
            .syncRegion(VitalcoreServer.REGION)
            .modelPublicKeys(pinned)
        return VitalcoreEngine.open(config, keys).also {
            it.setSyncOptions(SyncOptions().enrollmentToken(server.enrollmentToken).maxAttempts(2u).timeoutMs(10_000u))
        }
    }

    /** Uploads the shipped model as [version] for the server to sign and publish. */
    private fun publish(version: String) {
        val manifest = File(models, "rhythm-ppg.manifest.json").readText()
            .replaceFirst("\"version\":\"1.0.0\"", "\"version\":\"$version\"")
        check(manifest.contains("\"version\":\"$version\"")) { "the shipped manifest's version field moved" }
        val artifact = Base64.getEncoder().encodeToString(File(models, "rhythm-ppg.onnx").readBytes())
        val r = server.postJson("/v1/admin/models", """{"manifest":$manifest,"artifact_base64":"$artifact"}""", admin = true)
        assertEquals(201, r.statusCode(), String(r.body()))
    }

    /** The signed envelope and artifact a device is served now. */
    private fun served(): Pair<ByteArray, ByteArray> {
        val enroll = server.postJson("/v1/enroll", """{"enrollment_token":"${server.enrollmentToken}"}""")
        assertEquals(201, enroll.statusCode(), String(enroll.body()))
        val cred = Regex("\"credential\":\"([^\"]+)\"").find(String(enroll.body()))?.groupValues?.get(1) ?: error("no credential")
        val envelope = server.get("/v1/models/$name/manifest", bearer = cred)
        assertEquals(200, envelope.statusCode(), String(envelope.body()))
        val version = Regex("\"version\":\"([^\"]+)\"").find(payload(envelope.body()))?.groupValues?.get(1) ?: error("no version")
        val artifact = server.get("/v1/models/$name/versions/$version/artifact", bearer = cred)
        assertEquals(200, artifact.statusCode())
        return envelope.body() to artifact.body()
    }

    private fun payload(envelope: ByteArray): String {
        val b64 = Regex("\"payload\":\"([^\"]+)\"").find(String(envelope))?.groupValues?.get(1) ?: error("no payload")
        return String(Base64.getDecoder().decode(b64))
    }

    /** The model version named by the prediction of a 60 s PPG check of a real recording. */
    private fun servedBy(engine: VitalcoreEngine): String {
        val csv = File(recordings, "heartpy_data3.csv")
        check(csv.exists()) { "$csv missing: run `make data` first" }
        val x = csv.readLines().filter { it.isNotBlank() }.take(6000).map { it.trim().toDouble() }.toDoubleArray()
        val p = engine.startCheck(CheckKind.PPG_RHYTHM).use { s ->
            s.push("ppg", 1_764_001_234.5, 100.0, x)
            s.finishBlocking().check.prediction
        }
        check(p is PredictionOutcome.Predicted) { "expected a prediction, got $p" }
        assertEquals(name, p.modelName)
        return p.modelVersion
    }

    @Test
    fun updateInstallsTheServersModelAndRefusalsKeepTheOldOne(@TempDir dir: File) = runBlocking {
        engine(dir, listOf(server.modelPublicKeyHex())).use { engine ->
            assertEquals(ModelInfo(name, "1.0.0"), engine.activeModel, "the bundled default serves first")
            assertEquals("1.0.0", servedBy(engine))
            assertThrows<VitalcoreException.NotFound> { runBlocking { engine.updateModel(name) } }

            publish("2.0.0")
            val installed = engine.updateModel(name)
            assertEquals(ModelInfo(name, "2.0.0"), installed)
            assertEquals(installed, engine.activeModel)
            assertEquals("2.0.0", servedBy(engine))
            assertNull(engine.updateModel(name), "the same version again is no new model")

            val (envelope, artifact) = served()
            // Tampered: the payload claims another version; the signature no longer matches.
            val forged = payload(envelope).replace("\"version\":\"2.0.0\"", "\"version\":\"9.0.0\"")
            val forgedEnvelope = String(envelope).replace(
                Regex("\"payload\":\"[^\"]+\""),
                "\"payload\":\"${Base64.getEncoder().encodeToString(forged.toByteArray())}\"",
            ).toByteArray()
            val tampered = assertThrows<VitalcoreException.ModelRejected> {
                runBlocking { engine.installModel(forgedEnvelope, artifact) }
            }
            assertEquals(ModelRejection.TAMPERED, tampered.kind)
            // A tampered artifact under the genuine envelope.
            val flipped = artifact.copyOf().also { it[0] = (it[0].toInt() xor 1).toByte() }
            val hash = assertThrows<VitalcoreException.ModelRejected> { engine.installModelBlocking(envelope, flipped) }
            assertEquals(ModelRejection.TAMPERED, hash.kind)
            // The genuine bundle again: not newer than what the device trusts (a replay).
            val replay = assertThrows<VitalcoreException.ModelRejected> { runBlocking { engine.installModel(envelope, artifact) } }
            assertEquals(ModelRejection.NOT_NEWER, replay.kind)
            assertEquals(installed, engine.activeModel)
            assertEquals("2.0.0", servedBy(engine))
        }
    }

    @Test
    fun aDeviceThatDoesNotPinTheServersKeyRefusesItsBundle(@TempDir dir: File) = runBlocking {
        publish("5.0.0")
        val (envelope, artifact) = served()
        engine(File(dir, "unpinned"), emptyList()).use { engine ->
            val e = assertThrows<VitalcoreException.ModelRejected> { runBlocking { engine.updateModel(name) } }
            assertEquals(ModelRejection.UNTRUSTED_PUBLISHER, e.kind)
            assertEquals(ModelInfo(name, "1.0.0"), engine.activeModel)
        }
        engine(File(dir, "pinned"), listOf(server.modelPublicKeyHex())).use { engine ->
            assertEquals(ModelInfo(name, "5.0.0"), engine.installModel(envelope, artifact))
            assertEquals("5.0.0", servedBy(engine))
        }
    }
}

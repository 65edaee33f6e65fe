package dev.vitalcore.jvmtest

import dev.vitalcore.Purposes
import dev.vitalcore.VitalcoreEngine
import dev.vitalcore.ffi.CheckKind
import dev.vitalcore.ffi.EngineConfig
import dev.vitalcore.ffi.ServerErasure
import dev.vitalcore.ffi.SyncOptions
import dev.vitalcore.ffi.VitalcoreException
import dev.vitalcore.keyProvider
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.extension.ExtendWith
import org.junit.jupiter.api.io.TempDir
import java.io.File
import java.net.ServerSocket

/**
 * Consent, `syncNow`, export and deletion from Kotlin against the real `vitalcore-server`
 * binary ([ServerExtension]), on checks of a real recording. What arrived is read back
 * through the server's partner API, as a partner app would read it.
 */
@ExtendWith(ServerExtension::class)
class SyncTest {
    private val recordings = File(System.getProperty("vitalcore.recordings.dir") ?: error("vitalcore.recordings.dir not set"))
    private val keys = keyProvider { ByteArray(32) { (it * 5 + 9).toByte() } }
    private val t0 = 1_764_001_234.5

    private fun ppg(): DoubleArray {
        val csv = File(recordings, "heartpy_data3.csv")
        check(csv.exists()) { "$csv missing: run `make data` first" }
        return csv.readLines().filter { it.isNotBlank() }.map { it.trim().toDouble() }.toDoubleArray()
    }

    /** Runs [n] 60 s PPG checks, an hour apart, on consecutive minutes of the recording; their hr_mean values. */
    private fun checks(engine: VitalcoreEngine, n: Int, firstHour: Int): List<Double> {
        val x = ppg()
        return (0 until n).map { i ->
            engine.startCheck(CheckKind.PPG_RHYTHM).use { s ->
                s.push("ppg", t0 + (firstHour + i) * 3600.0, 100.0, x.copyOfRange(i * 6000, (i + 1) * 6000))
                s.finishBlocking().check.features["hr_mean"] ?: error("no hr_mean in check $i")
            }
        }
    }

    private fun config(dir: File, server: VitalcoreServer) = EngineConfig(dir.path)
        .syncEndpoint(server.baseUrl)
        .syncRegion(VitalcoreServer.REGION)
        .outboxPurpose(Purposes.PARTNER_SHARING)

    private fun options(server: VitalcoreServer, study: String) = SyncOptions()
        .enrollmentToken(server.enrollmentToken)
        .study(study)
        .maxAttempts(2u)
        .backoffMs(10u, 100u)
        .timeoutMs(5_000u)

    /** hr_mean of every record of [study] the partner API returns (one page is plenty here). */
    private fun partnerHrMeans(server: VitalcoreServer, study: String): List<Double> {
        val created = server.postJson(
            "/v1/admin/partner-keys",
            """{"studies":["$study"],"features":["hr_mean","rmssd"],"records":true}""",
            admin = true,
        )
        assertEquals(201, created.statusCode(), String(created.body()))
        val apiKey = Regex("\"api_key\":\"([^\"]+)\"").find(String(created.body()))?.groupValues?.get(1)
            ?: error("no api_key in the partner key response")
        val page = server.get("/v1/partner/records?study=$study&limit=500", bearer = apiKey)
        assertEquals(200, page.statusCode(), String(page.body()))
        val body = String(page.body())
        assertTrue(body.contains("\"next_cursor\":null"), "a single page")
        return Regex("\"hr_mean\":([-0-9.eE+]+)").findAll(body).map { it.groupValues[1].toDouble() }.toList()
    }

    private fun hrMeans(json: String): List<Double> =
        Regex("\"hr_mean\"\\s*:\\s*([-0-9.eE+]+)").findAll(json).map { it.groupValues[1].toDouble() }.toList()

    @Test
    fun consentGatesUploadsAndRecordsArriveOnceWithTheDevicesValues(@TempDir dir: File, server: VitalcoreServer) = runBlocking {
        val study = "kotlin_sync"
        VitalcoreEngine.open(config(dir, server), keys).use { engine ->
            engine.setSyncOptions(options(server, study))
            val hr = checks(engine, 3, firstHour = 0)

            // No consent yet: the device enrolls, nothing leaves it.
            val before = engine.syncNow()
            assertTrue(before.enrolled)
            assertEquals(0uL, before.uploads.recordsAcked)
            assertEquals(emptyList<Double>(), partnerHrMeans(server, study))

            val granted = engine.grantConsent(Purposes.PARTNER_SHARING, "policy-2026-11")
            assertTrue(granted.granted)
            assertEquals(listOf(Purposes.PARTNER_SHARING to true), engine.consents.current.map { it.purpose to it.granted })

            val first = engine.syncNow()
            assertFalse(first.enrolled, "credential kept from the first run")
            assertEquals(3uL, first.uploads.recordsAcked)
            assertTrue(first.uploads.bytesSent > 0uL)
            // The server holds exactly what the device computed (bit for bit).
            assertEquals(hr.sorted(), partnerHrMeans(server, study).sorted())

            // Exactly once: a second run has nothing left to send.
            val again = engine.syncNow()
            assertEquals(0uL, again.uploads.recordsAcked)
            assertEquals(3, partnerHrMeans(server, study).size)

            // Withdrawal: the next check is not uploaded and the server erases what it holds.
            engine.revokeConsent(Purposes.PARTNER_SHARING)
            assertEquals(1L, engine.pendingErasures)
            checks(engine, 1, firstHour = 10)
            val after = engine.syncNow()
            assertEquals(1uL, after.erasuresDelivered)
            assertEquals(0uL, after.uploads.recordsAcked)
            assertEquals(0L, engine.pendingErasures)
            assertEquals(emptyList<Double>(), partnerHrMeans(server, study))
            assertEquals(
                listOf(true, false),
                engine.consents.history.filter { it.purpose == Purposes.PARTNER_SHARING }.map { it.granted },
            )
        }
    }

    @Test
    fun exportHoldsEveryCheckAndDeletionReachesTheServer(@TempDir dir: File, server: VitalcoreServer) = runBlocking {
        val study = "kotlin_rights"
        VitalcoreEngine.open(config(dir, server), keys).use { engine ->
            engine.setSyncOptions(options(server, study))
            engine.grantConsent(Purposes.PARTNER_SHARING, "policy-2026-11")
            val hr = checks(engine, 2, firstHour = 0)
            assertEquals(2uL, engine.syncNow().uploads.recordsAcked)
            assertEquals(2, partnerHrMeans(server, study).size)

            val export = engine.exportMyData()
            assertTrue(Regex("\"format\"\\s*:\\s*\"vitalcore-export\"").containsMatchIn(export), export.take(200))
            assertEquals(hr.sorted(), hrMeans(export).sorted(), "the export holds every check with its values")
            assertEquals(hr.sorted(), hrMeans(engine.exportMyDataBlocking()).sorted())
            assertTrue(Regex("\"purpose\"\\s*:\\s*\"partner_sharing\"").containsMatchIn(export))

            val report = engine.deleteMyData()
            assertTrue(report.keysDestroyed > 0uL)
            assertTrue(report.server is ServerErasure.Confirmed, "server erasure confirmed: ${report.server}")
            assertEquals(emptyList<Double>(), partnerHrMeans(server, study))
            assertEquals(0, engine.checks(0, Long.MAX_VALUE).size)
            assertEquals(emptyList<Double>(), hrMeans(engine.exportMyData()))
        }
    }

    @Test
    fun syncErrorsArriveAsActionableExceptions(@TempDir dir: File, server: VitalcoreServer) = runBlocking {
        // No endpoint configured.
        VitalcoreEngine.open(EngineConfig(File(dir, "a").path), keys).use { engine ->
            val e = assertThrows<VitalcoreException.NotConfigured> { runBlocking { engine.syncNow() } }
            assertTrue(e.reason.contains("endpoint"), e.reason)
            assertThrows<VitalcoreException.InvalidInput> { engine.grantConsent("advertising", "v1") }
        }
        // Endpoint, but no enrollment token and no credential yet.
        VitalcoreEngine.open(config(File(dir, "b"), server), keys).use { engine ->
            assertThrows<VitalcoreException.NotConfigured> { runBlocking { engine.syncNow() } }
            // A token the server does not know.
            engine.setSyncOptions(SyncOptions().enrollmentToken("not-this-server"))
            assertThrows<VitalcoreException.Unauthorized> { runBlocking { engine.syncNow() } }
        }
        // Nothing listens at the endpoint: Network, retry later.
        VitalcoreEngine.open(offlineConfig(File(dir, "c")), keys).use { engine ->
            engine.setSyncOptions(options(server, "kotlin_dead"))
            engine.grantConsent(Purposes.PARTNER_SHARING, "v1")
            checks(engine, 1, firstHour = 0)
            val e = assertThrows<VitalcoreException.Network> { runBlocking { engine.syncNow() } }
            assertNull(e.retryAfterMs, "no server said when")
            // Never enrolled: no server holds anything, deletion is local only.
            assertEquals(ServerErasure.NotNeeded, engine.deleteMyData().server)
            assertEquals(0, engine.checks(0, Long.MAX_VALUE).size)
        }
    }

    private fun offlineConfig(dir: File): EngineConfig {
        val dead = ServerSocket(0).use { "http://127.0.0.1:${it.localPort}" }
        return EngineConfig(dir.path).syncEndpoint(dead).syncRegion(VitalcoreServer.REGION)
            .outboxPurpose(Purposes.PARTNER_SHARING)
    }

    @Test
    fun aDeletionMadeOfflineIsDeliveredByTheNextSync(@TempDir dir: File, server: VitalcoreServer) = runBlocking {
        val study = "kotlin_offline_delete"
        VitalcoreEngine.open(config(dir, server), keys).use { engine ->
            engine.setSyncOptions(options(server, study))
            engine.grantConsent(Purposes.PARTNER_SHARING, "v1")
            checks(engine, 2, firstHour = 0)
            assertEquals(2uL, engine.syncNow().uploads.recordsAcked)
        }
        assertEquals(2, partnerHrMeans(server, study).size)
        // The same store, opened while the server is unreachable.
        VitalcoreEngine.open(offlineConfig(dir), keys).use { engine ->
            engine.setSyncOptions(options(server, study))
            val report = engine.deleteMyData()
            val pending = report.server as? ServerErasure.Pending ?: error("expected Pending, got ${report.server}")
            assertTrue(pending.requests >= 1uL)
            assertEquals(0, engine.checks(0, Long.MAX_VALUE).size, "local data gone at once")
            assertEquals(pending.requests.toLong(), engine.pendingErasures)
        }
        assertEquals(2, partnerHrMeans(server, study).size, "the server still holds them")
        VitalcoreEngine.open(config(dir, server), keys).use { engine ->
            engine.setSyncOptions(options(server, study))
            val out = engine.syncNow()
            assertTrue(out.erasuresDelivered >= 1uL)
            assertEquals(0L, engine.pendingErasures)
        }
        assertEquals(emptyList<Double>(), partnerHrMeans(server, study))
    }
}

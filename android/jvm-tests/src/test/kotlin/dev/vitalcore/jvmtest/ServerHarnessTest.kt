package dev.vitalcore.jvmtest

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.extension.ExtendWith

/**
 * The harness itself: the real binary is up on the port it reported, answers on its public
 * routes, honours this run's tokens only, and stops on SIGTERM with a clean exit.
 */
@ExtendWith(ServerExtension::class)
class ServerHarnessTest {
    @Test
    fun theServerRunsOnTheReportedPortWithThisRunsTokens(server: VitalcoreServer) {
        assertTrue(Regex("""http://127\.0\.0\.1:\d+""").matches(server.baseUrl), server.baseUrl)
        assertTrue(!server.baseUrl.endsWith(":0"), "the bound port, not the requested 0")
        assertEquals(200, server.get("/healthz").statusCode())
        val openapi = String(server.get("/v1/openapi.json").body())
        assertTrue(openapi.contains("/v1/batches"), "serves its OpenAPI document")

        val enrolled = server.postJson("/v1/enroll", """{"enrollment_token":"${server.enrollmentToken}"}""")
        assertEquals(201, enrolled.statusCode(), String(enrolled.body()))
        assertTrue(String(enrolled.body()).contains("\"credential\":\"vcd_"))
        assertEquals(401, server.postJson("/v1/enroll", """{"enrollment_token":"not-this-run"}""").statusCode())

        assertEquals(401, server.get("/v1/admin/erasure-audit").statusCode(), "admin routes need the token")
        assertEquals(200, server.get("/v1/admin/erasure-audit", admin = true).statusCode())
    }

    @Test
    fun aSecondServerStartsOnAnotherPortAndStopsCleanlyOnSigterm() {
        VitalcoreServer.start().use { other ->
            assertEquals(200, other.get("/healthz").statusCode())
            // The server installs its SIGTERM handler just after it logs `listening`; a
            // SIGTERM inside that window takes the default action (exit 143, no graceful
            // shutdown). Nothing observable marks the end of the window, hence the pause.
            Thread.sleep(500)
            other.close()
            assertTrue(!other.isAlive, "stopped")
            assertEquals(0, other.exitValue) { "clean exit on SIGTERM; log:\n${other.logText}" }
            assertTrue(other.logText.contains("\"stopped\""), "graceful shutdown logged:\n${other.logText}")
        }
    }
}

package dev.vitalcore.jvmtest

import org.junit.jupiter.api.extension.BeforeAllCallback
import org.junit.jupiter.api.extension.ExtensionContext
import org.junit.jupiter.api.extension.ParameterContext
import org.junit.jupiter.api.extension.ParameterResolver
import java.io.File
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.security.SecureRandom
import java.time.Duration
import java.util.concurrent.TimeUnit

/**
 * The real `vitalcore-server` binary (built by cargo from `backend/`; the Makefile builds it
 * before the JVM tests), started on `127.0.0.1:0` with the embedded SQLite store and local
 * archive in a temporary data dir. The port is the one the server reports in its `listening`
 * log line, so parallel runs never collide. Enrollment and admin tokens are random per run.
 */
class VitalcoreServer private constructor(
    private val process: Process,
    private val dataDir: File,
    /** Base URL of the API, `http://127.0.0.1:<port>`. */
    val baseUrl: String,
    /** Base URL of the admin listener (the `/v1/admin/...` routes are served only there). */
    val adminUrl: String,
    /** Accepted by `POST /v1/enroll`. */
    val enrollmentToken: String,
    /** Bearer token of the admin routes (`/v1/admin/...`). */
    val adminToken: String,
    private val logFile: File,
) : ExtensionContext.Store.CloseableResource, AutoCloseable {
    companion object {
        /** Data region the server serves (its default). */
        const val REGION = "eu"

        private val STARTUP: Duration = Duration.ofSeconds(60)

        private fun token(): String {
            val b = ByteArray(24)
            SecureRandom().nextBytes(b)
            return b.joinToString("") { "%02x".format(it) }
        }

        /** The binary from `vitalcore.server.bin`; a missing binary fails with what to run. */
        fun binary(): File {
            val path = System.getProperty("vitalcore.server.bin")
                ?: error("system property vitalcore.server.bin is not set (run the JVM tests with `make test-kotlin`)")
            val bin = File(path)
            check(bin.canExecute()) { "$bin is missing or not executable: run `cargo build -p vitalcore-server` (or `make test-kotlin`)" }
            return bin
        }

        /**
         * Starts the server and waits until it reports its address and answers `/readyz`.
         * [dev]: development mode, in which the server makes a model-signing key in its data
         * dir (see [modelPublicKeyHex]), so uploaded models are signed and published.
         */
        fun start(dev: Boolean = false): VitalcoreServer {
            val dataDir = Files.createTempDirectory("vitalcore-server-").toFile()
            val enrollment = token()
            val admin = token()
            val pb = ProcessBuilder(
                binary().path, "serve",
                "--listen", "127.0.0.1:0",
                "--metrics-listen", "127.0.0.1:0",
                "--admin-listen", "127.0.0.1:0",
                "--data-dir", dataDir.path,
                "--region", REGION,
                *(if (dev) arrayOf("--dev") else emptyArray()),
            ).redirectErrorStream(true)
            // To a file, not a pipe: the JDK drains and closes a child's pipe when the child
            // exits, racing a reader thread ("Stream closed"), and a server whose stdout
            // breaks mid-shutdown exits with a panic instead of its last log lines.
            val logFile = File(dataDir, "server.log")
            pb.redirectOutput(logFile)
            val env = pb.environment()
            // Only this run's settings: nothing inherited may point it at another database,
            // bucket or key.
            env.keys.filter { it.startsWith("VITALCORE_") }.forEach { env.remove(it) }
            env["VITALCORE_ENROLLMENT_TOKENS"] = enrollment
            env["VITALCORE_ADMIN_TOKEN"] = admin
            // Every test device enrolls from 127.0.0.1: the per-IP enrollment limit is not
            // what these tests are about.
            env["VITALCORE_ENROLL_BURST"] = "10000"
            env["RUST_LOG"] = "info"
            val process = pb.start()
            val listening = Regex("\"message\":\"listening\".*\"api\":\"([^\"]+)\"")
            val adminListening = Regex("\"message\":\"listening\".*\"admin\":\"([^\"]+)\"")
            val deadline = System.nanoTime() + STARTUP.toNanos()
            var api: String? = null
            var adminAddr: String? = null
            while (api == null && System.nanoTime() < deadline && process.isAlive) {
                val text = logFile.readText()
                api = listening.find(text)?.groupValues?.get(1)
                adminAddr = adminListening.find(text)?.groupValues?.get(1)
                if (api == null) Thread.sleep(20)
            }
            if (api == null || adminAddr == null) {
                process.destroyForcibly()
                process.waitFor(10, TimeUnit.SECONDS)
                error("vitalcore-server did not report a listening address within $STARTUP; log:\n${logFile.readText()}")
            }
            val server = VitalcoreServer(process, dataDir, "http://$api", "http://$adminAddr", enrollment, admin, logFile)
            server.awaitReady()
            return server
        }
    }

    private val http: HttpClient = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build()

    private fun awaitReady() {
        val deadline = System.nanoTime() + STARTUP.toNanos()
        while (System.nanoTime() < deadline) {
            check(process.isAlive) { "vitalcore-server exited with ${process.exitValue()}; log:\n$logText" }
            val ok = runCatching { get("/readyz").statusCode() == 200 }.getOrDefault(false)
            if (ok) return
            Thread.sleep(50)
        }
        close()
        error("vitalcore-server at $baseUrl was not ready within $STARTUP; log:\n$logText")
    }

    /** Admin routes go to the admin listener, everything else to the API one. */
    private fun urlOf(path: String): String = (if (path.startsWith("/v1/admin/")) adminUrl else baseUrl) + path

    /** `GET path`, with the admin token when [admin]. */
    fun get(path: String, admin: Boolean = false, bearer: String? = null): HttpResponse<ByteArray> {
        val req = HttpRequest.newBuilder(URI.create(urlOf(path))).timeout(Duration.ofSeconds(30)).GET()
        (bearer ?: adminToken.takeIf { admin })?.let { req.header("Authorization", "Bearer $it") }
        return http.send(req.build(), HttpResponse.BodyHandlers.ofByteArray())
    }

    /** `POST path` with a JSON body, with the admin token when [admin]. */
    fun postJson(path: String, json: String, admin: Boolean = false): HttpResponse<ByteArray> {
        val req = HttpRequest.newBuilder(URI.create(urlOf(path))).timeout(Duration.ofSeconds(30))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(json))
        if (admin) req.header("Authorization", "Bearer $adminToken")
        return http.send(req.build(), HttpResponse.BodyHandlers.ofByteArray())
    }

    /**
     * The Ed25519 public key a dev-mode server signs models with, as devices pin it. Dev
     * mode writes its key as a PKCS#8 v2 (RFC 5958) document, which ends with the public key
     * as `[1] IMPLICIT BIT STRING`: `81 21 00` then the 32 key bytes.
     */
    fun modelPublicKeyHex(): String {
        val der = File(dataDir, "dev-signing-key.pk8").readBytes()
        val marker = byteArrayOf(0x81.toByte(), 0x21, 0x00)
        check(der.size >= 35 && der.copyOfRange(der.size - 35, der.size - 32).contentEquals(marker)) {
            "the server's dev signing key is not a PKCS#8 v2 Ed25519 document (was it started with dev = true?)"
        }
        return der.copyOfRange(der.size - 32, der.size).joinToString("") { "%02x".format(it) }
    }

    /** What the server logged so far (stdout and stderr; for assertions and failure messages). */
    val logText: String get() = finalLog ?: logFile.readText()

    @Volatile
    private var finalLog: String? = null

    /** Exit status of the stopped process. */
    val exitValue: Int get() = process.exitValue()

    /** Whether the process is still running. */
    val isAlive: Boolean get() = process.isAlive

    /** SIGTERM (graceful shutdown), then SIGKILL after 10 s; removes the data dir (the log is kept in memory). */
    override fun close() {
        if (process.isAlive) {
            process.destroy()
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                process.destroyForcibly()
                process.waitFor(10, TimeUnit.SECONDS)
            }
        }
        if (finalLog == null) finalLog = logFile.readText()
        dataDir.deleteRecursively()
    }
}

/**
 * JUnit extension: one server for the whole test run (started by the first class that uses
 * it, stopped by JUnit after the last test), injected as a [VitalcoreServer] parameter.
 */
class ServerExtension : BeforeAllCallback, ParameterResolver {
    private fun server(context: ExtensionContext): VitalcoreServer =
        context.root.getStore(ExtensionContext.Namespace.GLOBAL)
            .getOrComputeIfAbsent(VitalcoreServer::class.java.name, { VitalcoreServer.start() }, VitalcoreServer::class.java)

    override fun beforeAll(context: ExtensionContext) {
        server(context)
    }

    override fun supportsParameter(p: ParameterContext, e: ExtensionContext): Boolean =
        p.parameter.type == VitalcoreServer::class.java

    override fun resolveParameter(p: ParameterContext, e: ExtensionContext): Any = server(e)
}

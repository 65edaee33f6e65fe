package dev.vitalcore.sample

import android.os.Bundle
import android.widget.TextView
import androidx.activity.ComponentActivity
import androidx.lifecycle.lifecycleScope
import dev.vitalcore.Vitalcore
import dev.vitalcore.ffi.VitalcoreException
import dev.vitalcore.keyProvider
import kotlinx.coroutines.launch
import java.security.SecureRandom

/** Lists feature set v1 and the fingerprint of a (demo, in-memory) root key. */
class MainActivity : ComponentActivity() {
    // A real app unwraps this key with the Android Keystore; the sample keeps it in memory.
    private val demoKey = ByteArray(32).also { SecureRandom().nextBytes(it) }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val text = TextView(this)
        setContentView(text)
        val v = Vitalcore.version
        text.text = "vitalcore ${v.sdkVersion}, feature set ${v.featureSetVersion}\n" +
            Vitalcore.features.joinToString("\n") { "${it.name} [${it.unit}]" }
        lifecycleScope.launch {
            val line = try {
                "key fingerprint: " + Vitalcore.keyFingerprint(keyProvider { demoKey.copyOf() })
            } catch (e: VitalcoreException) {
                "key unavailable: ${e::class.simpleName}"
            }
            text.append("\n\n$line")
        }
    }
}

// The vitalcore AAR: Rust libraries for four ABIs (cargo-ndk), the uniffi-generated Kotlin,
// and the facade in src/main/kotlin. `./gradlew :vitalcore:assembleRelease` -> build/outputs/aar.
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

val repoRoot = rootDir.parentFile
val rustJniLibs = layout.buildDirectory.dir("rustJniLibs")
val generatedKotlin = layout.buildDirectory.dir("generated/uniffi/kotlin")

android {
    namespace = "dev.vitalcore"
    compileSdk = 35
    defaultConfig {
        minSdk = 24
        consumerProguardFiles("consumer-rules.pro")
    }
    sourceSets["main"].apply {
        java.srcDir(generatedKotlin)
        jniLibs.srcDir(rustJniLibs)
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
}

// Cross-compiles libvitalcore_ffi.so for the four ABIs and generates the Kotlin bindings.
val buildRust by tasks.registering(Exec::class) {
    workingDir = repoRoot
    commandLine(
        "bash", "android/scripts/build-rust.sh",
        rustJniLibs.get().asFile.absolutePath,
        generatedKotlin.get().asFile.absolutePath,
    )
    inputs.dir(File(repoRoot, "bindings/src"))
    inputs.dir(File(repoRoot, "core"))
    outputs.dir(rustJniLibs)
    outputs.dir(generatedKotlin)
}
tasks.named("preBuild") { dependsOn(buildRust) }

dependencies {
    // The generated bindings load the library through JNA (the AAR variant bundles its .so files).
    implementation("net.java.dev.jna:jna:5.17.0@aar")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.10.2")
}

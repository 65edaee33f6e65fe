// Android build of vitalcore: the `vitalcore` library module (AAR) and a minimal sample app.
// Needs the Android SDK + NDK, `cargo install cargo-ndk`, and the four Rust Android targets
// (see README.md). Not built on the Linux CI machine, which has no Android toolchain.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "vitalcore-android"
include(":vitalcore", ":sample")

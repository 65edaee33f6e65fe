//! `vitalcore` developer CLI.
fn main() {
    eprintln!("vitalcore: no commands yet");
    std::process::exit(2);
}

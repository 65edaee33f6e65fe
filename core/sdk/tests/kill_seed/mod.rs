//! The seed of a SIGKILL harness's random schedule: `VITALCORE_KILL_SEED` replays a run, else
//! the clock. Printed with the line that replays it, before anything can fail.

/// The seed (odd, as the harnesses' xorshift needs a non-zero state), printed for `harness`.
pub fn kill_seed(harness: &str) -> u64 {
    let seed = match std::env::var("VITALCORE_KILL_SEED") {
        Ok(s) => {
            s.trim()
                .parse::<u64>()
                .expect("VITALCORE_KILL_SEED is a u64")
                | 1
        }
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
                | 1
        }
    };
    println!("{harness}: rng seed {seed} (replay: VITALCORE_KILL_SEED={seed})");
    seed
}

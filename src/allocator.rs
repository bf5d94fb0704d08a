//! How the C allocator (glibc's malloc, which Rust's global allocator and
//! the C codecs share) treats the crunch's big, short-lived buffers.
//!
//! A crunch allocates tens of megabytes per image and frees them all: a
//! progressive JPEG's whole-image coefficient array (libjpeg, 2 bytes per
//! sample), full-size rasters. With glibc's defaults those pages went back to
//! the kernel after one image and were faulted in and zeroed again by the
//! next: 99k minor faults and 14 % of the CPU time (system time) for 21
//! progressive JPEGs. Keeping freed memory for reuse took that to 13k faults
//! and 3 %, 10 % faster, at the same peak RSS (bench/RESULTS.md, issue 17).
//!
//! glibc also gives each thread that contends for the allocator an arena of
//! its own, up to 8 per core, and every arena keeps what its thread's
//! crunches freed: `serve` peaked at ~500 MiB under 8 uploaders. Two arenas,
//! as imgproxy ships for libvips, held it to ~320 MiB with no loss of
//! throughput; the per-thread caches in front of the arenas still serve the
//! small allocations without a lock.
//!
//! An operator's own settings (`MALLOC_*` variables, `glibc.malloc.*`
//! tunables) win: then nothing is changed.

/// Allocations up to this size come from the heap and are reused after
/// `free`; above it (a 20 MP progressive JPEG's luma coefficients) glibc
/// maps them one by one. 32 MiB is the most glibc accepts on 64-bit.
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// Free memory at the top of a heap kept rather than handed back: room for
/// one large image's buffers per arena.
pub const TRIM_THRESHOLD: usize = 64 << 20;

/// Arenas for the whole process.
pub const ARENA_MAX: usize = 2;

/// What [`tune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// The thresholds and the arena cap are set.
    Applied,
    /// The operator set malloc options of their own; left as they are.
    LeftToOperator,
    /// Not glibc (musl, another OS), or glibc refused a value.
    Unavailable,
}

/// Sets the thresholds and arena cap. Call it first thing in `main`, before
/// threads start: the arena cap only binds threads that have not yet
/// allocated.
pub fn tune() -> Tuning {
    if operator_tuned(std::env::vars_os().map(|(k, v)| (k.to_string_lossy().into_owned(), v))) {
        return Tuning::LeftToOperator;
    }
    apply()
}

/// Whether the environment carries malloc settings of the operator's own.
fn operator_tuned(vars: impl Iterator<Item = (String, std::ffi::OsString)>) -> bool {
    vars.into_iter().any(|(key, value)| {
        key.starts_with("MALLOC_") || (key == "GLIBC_TUNABLES" && value.to_string_lossy().contains("glibc.malloc."))
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> Tuning {
    let set = |param: libc::c_int, value: usize| {
        let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only updates glibc's own allocator parameters; it
        // takes the allocator's lock, so it is sound even with other threads.
        unsafe { libc::mallopt(param, value) == 1 }
    };
    let all = set(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        & set(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        & set(libc::M_ARENA_MAX, ARENA_MAX);
    if all { Tuning::Applied } else { Tuning::Unavailable }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> Tuning {
    Tuning::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, std::ffi::OsString)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.into())).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn the_operators_malloc_settings_win() {
        assert!(operator_tuned(vars(&[("PATH", "/bin"), ("MALLOC_ARENA_MAX", "4")])));
        assert!(operator_tuned(vars(&[("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")])));
        assert!(!operator_tuned(vars(&[("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX512F")])));
        assert!(!operator_tuned(vars(&[("PATH", "/bin"), ("HOME", "/root")])));
    }

    /// What the settings are for, shown on a real allocator: only glibc has
    /// them.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    mod faults {
        use super::super::*;

        /// Minor page faults this thread has taken so far.
        fn minor_faults() -> i64 {
            // SAFETY: an all-zero rusage is a valid value; getrusage only writes it.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: `usage` is a valid, exclusive out-pointer for the call.
            assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) }, 0);
            usage.ru_minflt
        }

        /// The point of it all: a big buffer freed and asked for again comes
        /// back without the kernel faulting in and zeroing its pages again.
        /// Each case runs in a fresh copy of this test binary, since the
        /// allocator's state is per process and other tests leave theirs; the
        /// untuned control shows that glibc's defaults fault every page in again.
        #[test]
        fn a_freed_big_buffer_is_reused_without_page_faults() {
            let pages = (BUFFER / 4096) as i64;
            let (first, second) = fault_rounds_in_child("tuned");
            assert!(first >= pages / 2, "the first buffer should be faulted in: {first} faults for {pages} pages");
            assert!(second < pages / 10, "tuned: the second buffer faulted {second} times for {pages} pages");
            let (_, second) = fault_rounds_in_child("default");
            assert!(second >= pages / 2, "untuned: the second buffer faulted only {second} times for {pages} pages");
        }

        const BUFFER: usize = 24 << 20;

        fn fault_rounds_in_child(mode: &str) -> (i64, i64) {
            let exe = std::env::current_exe().expect("test binary path");
            let out = std::process::Command::new(exe)
                .args([
                    "--ignored",
                    "--exact",
                    "allocator::tests::faults::fault_rounds",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("CRUNCHBOX_FAULT_ROUNDS", mode)
                .env_remove("GLIBC_TUNABLES")
                .output()
                .expect("run the test binary");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "child failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
            // The harness prints the test's name on the same line first.
            let (_, rest) = stdout.split_once("fault rounds: ").expect("child printed its rounds");
            let mut n = rest.split_whitespace().map(|n| n.parse::<i64>().expect("a number"));
            (n.next().expect("first"), n.next().expect("second"))
        }

        /// One buffer allocated, touched and freed, twice; prints each round's
        /// minor faults. Only meaningful in a fresh process.
        #[test]
        #[ignore = "a helper: a_freed_big_buffer_is_reused_without_page_faults runs it in a fresh process"]
        fn fault_rounds() {
            let Ok(mode) = std::env::var("CRUNCHBOX_FAULT_ROUNDS") else { return };
            if mode == "tuned" {
                assert_eq!(apply(), Tuning::Applied);
            }
            let round = || {
                let before = minor_faults();
                drop(std::hint::black_box(vec![1u8; BUFFER]));
                minor_faults() - before
            };
            let first = round();
            let second = round();
            println!("fault rounds: {first} {second}");
        }
    }
}

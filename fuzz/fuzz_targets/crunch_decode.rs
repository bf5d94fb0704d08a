//! The crunch library on arbitrary bytes under a small pixel limit: it must
//! answer with variants or a typed error, never panic, hang or blow memory.
#![no_main]

use crunchbox::crunch::{self, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small enough that a decode stays cheap, large enough for real images.
    let limits = Limits { max_pixels: 1 << 20 };
    if let Ok(variants) = crunch::crunch(data, &limits) {
        for v in variants {
            assert!(v.width <= 600 && v.height <= 600 && v.width > 0 && v.height > 0);
            assert!(v.content_type == "image/jpeg" || v.content_type == "image/png");
        }
    }
});

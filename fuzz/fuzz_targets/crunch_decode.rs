//! The crunch library on arbitrary bytes under a small pixel limit, as the
//! worker calls it (every variant with its WebP twin): it must answer with
//! variants or a typed error, never panic, hang or blow memory, whatever
//! the decoders (libjpeg-turbo, libwebp, the image crate) and the encoders
//! are handed.
#![no_main]

use crunchbox::crunch::{self, Limits, Outputs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small enough that a decode stays cheap, large enough for real images.
    let limits = Limits { max_pixels: 1 << 20 };
    if let Ok(variants) = crunch::crunch_with(data, &limits, Outputs { webp: true }) {
        for v in variants {
            assert!(v.width <= 600 && v.height <= 600 && v.width > 0 && v.height > 0);
            assert!(v.content_type == "image/jpeg" || v.content_type == "image/png");
            let twin = v.webp.expect("a twin for every variant");
            assert!(twin.len() > 12 && &twin[..4] == b"RIFF" && &twin[8..12] == b"WEBP");
        }
    }
});

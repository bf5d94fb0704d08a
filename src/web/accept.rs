//! `Accept` for `/a/`: does the client take the WebP twin?
//!
//! Only an explicit `image/webp` with q > 0 counts. `*/*` and `image/*`
//! are what clients send that cannot decode WebP (curl, libraries, old
//! Safari), so a wildcard alone gets the JPEG/PNG that every client decodes:
//! the rule imgproxy-class servers follow, and SPEC's.

/// Whether any of the request's `Accept` values names `image/webp` with a
/// weight above zero. A range with a malformed weight is ignored, as is a
/// quoted comma inside a parameter.
pub fn accepts_webp<'a>(values: impl IntoIterator<Item = &'a str>) -> bool {
    values.into_iter().flat_map(ranges).filter_map(webp_weight).max().is_some_and(|q| q > 0)
}

/// Splits a header value at the commas outside quoted strings.
fn ranges(value: &str) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    let mut out = Vec::new();
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out.into_iter()
}

/// The weight (in thousandths) of a media range that is `image/webp`;
/// `None` for any other range or a malformed weight.
fn webp_weight(range: &str) -> Option<u16> {
    let mut parts = range.split(';');
    let media = parts.next()?.trim();
    if !media.eq_ignore_ascii_case("image/webp") {
        return None;
    }
    for param in parts {
        let Some((name, value)) = param.split_once('=') else { continue };
        if name.trim().eq_ignore_ascii_case("q") {
            return qvalue(value.trim());
        }
    }
    Some(1000)
}

/// RFC 9110 12.4.2: `0[.ddd]` or `1[.000]`, in thousandths.
fn qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webp(accept: &str) -> bool {
        accepts_webp([accept])
    }

    #[test]
    fn browsers_that_name_webp_get_it() {
        // Chromium's and Firefox's image Accept headers.
        assert!(webp("image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"));
        assert!(webp("image/avif,image/webp,*/*"));
        assert!(webp("IMAGE/WebP"));
        assert!(webp("image/png, image/webp ;q=0.001"));
        assert!(webp("image/webp;Q=1.000"));
        assert!(webp("image/webp;level=2;q=0.5;ext=x"));
    }

    #[test]
    fn wildcards_alone_do_not_name_webp() {
        for accept in ["*/*", "image/*", "", "image/jpeg,image/png", "image/webpx", "image/web", "image/*;q=1, */*"] {
            assert!(!webp(accept), "{accept}");
        }
    }

    #[test]
    fn zero_or_malformed_weights_refuse() {
        for accept in [
            "image/webp;q=0",
            "image/webp; q=0.000",
            "image/webp;q=0, */*",
            "image/webp;q=1.5",
            "image/webp;q=2",
            "image/webp;q=0.0001",
            "image/webp;q=abc",
            "image/webp;q=",
            "image/webp;q=-1",
            "image/webp;q=.5",
        ] {
            assert!(!webp(accept), "{accept}");
        }
    }

    #[test]
    fn every_header_line_counts_and_quotes_hide_commas() {
        assert!(accepts_webp(["text/html", "image/webp;q=0.2"]));
        assert!(!accepts_webp(["text/html", "image/webp;q=0"]));
        assert!(!webp(r#"text/plain;note="a, image/webp, b""#));
        assert!(!webp(r#"text/plain;note="a\", image/webp, b""#));
        assert!(webp(r#"text/plain;note="a, b", image/webp"#));
    }
}

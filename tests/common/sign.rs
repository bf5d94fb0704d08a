//! A minimal SigV4 signer for hand-made S3 requests (header auth, signed
//! payload, any date), shared by the test crates that send raw requests.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::common::{ACCESS_KEY, SECRET_KEY};

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// Headers (`host`, `x-amz-date`, `x-amz-content-sha256`, `authorization`)
/// for `method host path?query` with `body`, dated `at` (not necessarily
/// now), signed with the test key pair. `query` must be in canonical form.
pub fn headers(
    method: &str,
    host: &str,
    path: &str,
    query: &str,
    body: &[u8],
    at: time::OffsetDateTime,
) -> Vec<(String, String)> {
    let date = format!("{:04}{:02}{:02}", at.year(), u8::from(at.month()), at.day());
    let amz_date = format!("{date}T{:02}{:02}{:02}Z", at.hour(), at.minute(), at.second());
    let payload = hex::encode(Sha256::digest(body));
    let canonical_headers = format!("host:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n");
    let signed = "host;x-amz-content-sha256;x-amz-date";
    let canonical = format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{payload}");
    let scope = format!("{date}/us-east-1/s3/aws4_request");
    let to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let mut key = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), &date);
    for part in ["us-east-1", "s3", "aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex::encode(hmac(&key, &to_sign));
    vec![
        ("host".into(), host.into()),
        ("x-amz-date".into(), amz_date),
        ("x-amz-content-sha256".into(), payload),
        (
            "authorization".into(),
            format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={signed}, Signature={signature}"),
        ),
    ]
}

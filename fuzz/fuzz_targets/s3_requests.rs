//! S3 requests from fuzz bytes, correctly signed (so they get past SigV4
//! into the operations), through the s3s service into the real store on a
//! temp dir. Layout: `method-byte | path?query \n header-lines \n\n body`.
//! A bucket `fz` holding an object `k` exists from the start.
#![no_main]

use std::sync::OnceLock;
use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;

const HOST: &str = "127.0.0.1:4566";

struct World {
    rt: tokio::runtime::Runtime,
    s3: crunchbox::s3compat::S3Front,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = crunchbox::config::Config { data_dir: dir.path().to_owned(), ..Default::default() };
        let s3 = crunchbox::s3compat::service(&config).expect("s3 service");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let w = World { rt, s3, _dir: dir };
        w.call("PUT", "/fz", &[], b"");
        let ct = (http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
        w.call("PUT", "/fz/k", &[ct], b"hello fuzz");
        w
    })
}

impl World {
    fn call(&self, method: &str, path: &str, headers: &[(http::HeaderName, http::HeaderValue)], body: &[u8]) {
        let url = format!("http://{HOST}{path}");
        let Ok(mut req) = http::Request::builder().method(method).uri(&url).body(()) else { return };
        req.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static(HOST));
        for (k, v) in headers {
            req.headers_mut().append(k.clone(), v.clone());
        }
        let Ok(strs) =
            req.headers().iter().map(|(k, v)| v.to_str().map(|v| (k.as_str(), v))).collect::<Result<Vec<_>, _>>()
        else {
            return;
        };
        let identity =
            aws_credential_types::Credentials::new("crunchbox", "crunchbox-secret", None, None, "fuzz").into();
        let Ok(params) = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
        else {
            return;
        };
        let Ok(signable) = SignableRequest::new(method, &url, strs.into_iter(), SignableBody::Bytes(body)) else {
            return;
        };
        let Ok(signed) = sign(signable, &params.into()) else { return };
        let (instructions, _) = signed.into_parts();
        instructions.apply_to_request_http1x(&mut req);
        if !req.headers().contains_key("x-amz-content-sha256") {
            return;
        }
        let req = req.map(|()| s3s::Body::from(bytes::Bytes::copy_from_slice(body)));
        self.rt.block_on(async {
            let resp = self.s3.call(req).await;
            let _ = resp.into_body().collect().await;
        });
    }
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let Some((&m, rest)) = data.split_first() else { return };
    let method = ["GET", "PUT", "POST", "HEAD", "DELETE"][usize::from(m) % 5];
    let (head, body) = match rest.windows(2).position(|win| win == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let Some(path) = lines.next().and_then(|p| std::str::from_utf8(p).ok()) else { return };
    if !path.starts_with('/') {
        return;
    }
    let mut headers = Vec::new();
    for line in lines {
        if let Some(i) = line.iter().position(|&b| b == b':')
            && let (Ok(k), Ok(v)) =
                (http::HeaderName::from_bytes(&line[..i]), http::HeaderValue::from_bytes(line[i + 1..].trim_ascii()))
        {
            // Signing and framing headers are the harness's job.
            if !matches!(k.as_str(), "host" | "authorization" | "x-amz-date" | "x-amz-content-sha256") {
                headers.push((k, v));
            }
        }
    }
    w.call(method, path, &headers, body);
});

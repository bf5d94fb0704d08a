//! A PUT sent with `Transfer-Encoding: chunked` and no `Content-Length`
//! (curl -T -, ceph's s3-tests, streaming SDK uploads). s3s needs the
//! length before it reads the body (to check the signed payload hash) and
//! refuses such a request with `MissingContentLength`; AWS's peers (Ceph
//! RGW) store it. So the body is first spooled to a temp file in the
//! store's `tmp/`, memory-bounded however large it is, then handed to s3s
//! with the `Content-Length` it turned out to have. The temp file is
//! unlinked before s3s reads it: nothing is left behind by any ending.

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, StreamBody};
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
use tokio_util::io::ReaderStream;

use super::front::xml_error;
use super::ingest::MAX_UPLOAD;
use super::store::Store;

/// Batches the small frames of a chunked body into few writes.
const WRITE_BUFFER: usize = 128 * 1024;

/// Whether `req` is a PUT whose body length only its end will tell. An
/// aws-chunked body names its length in `x-amz-decoded-content-length`,
/// which s3s reads instead, so it is not spooled.
pub fn needs_spool<B>(req: &Request<B>) -> bool {
    let headers = req.headers();
    req.method() == http::Method::PUT
        && !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key("x-amz-decoded-content-length")
        && headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("chunked")))
}

/// The same request, its body now read from a spooled file of known length;
/// or the S3 error to answer instead (too large, cut off, disk trouble).
pub async fn spool(store: &Store, req: Request<s3s::Body>) -> Result<Request<s3s::Body>, Response<s3s::Body>> {
    let (mut parts, mut body) = req.into_parts();
    let internal = |e: std::io::Error| {
        tracing::error!(error = %e, "spooling a chunked PUT body failed");
        xml_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "We encountered an internal error.")
    };
    let tmp = store.create_spool().map_err(internal)?;
    let file = tmp.file.try_clone().map_err(internal)?;
    let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(file));
    let mut len: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            tracing::debug!(error = %e, "chunked PUT body ended early");
            xml_error(
                StatusCode::BAD_REQUEST,
                "IncompleteBody",
                "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            )
        })?;
        let Ok(data) = frame.into_data() else { continue };
        len += data.len() as u64;
        if len > MAX_UPLOAD {
            return Err(xml_error(
                StatusCode::BAD_REQUEST,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed object size.",
            ));
        }
        out.write_all(&data).await.map_err(internal)?;
    }
    out.flush().await.map_err(internal)?;
    let mut file = out.into_inner();
    file.seek(std::io::SeekFrom::Start(0)).await.map_err(internal)?;
    drop(tmp); // unlinks the name; the open handle still reads the bytes
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let frames = ReaderStream::new(file).map_ok(http_body::Frame::<Bytes>::data);
    Ok(Request::from_parts(parts, s3s::Body::http_body(StreamBody::new(frames))))
}

//! Bucket operations: create, head, list, delete, location.
//!
//! The endpoint has one owner (every configured key pair is the same
//! account), so creating an existing bucket is `BucketAlreadyOwnedByYou`,
//! except in us-east-1, where AWS keeps its legacy answer: 200, as if created.
//! Bucket names are validated by s3s before they get here.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::api::S3Api;
use super::meta;
use super::store::BucketDelete;

pub async fn create(api: &S3Api, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
    let bucket = req.input.bucket;
    if !api.store.create_bucket(&bucket).await? && api.region != "us-east-1" {
        return Err(s3_error!(
            BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it."
        ));
    }
    Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{bucket}")) }))
}

pub async fn head(api: &S3Api, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
    api.require_bucket(&req.input.bucket)?;
    Ok(S3Response::new(HeadBucketOutput { bucket_region: Some(api.region.clone()), ..Default::default() }))
}

pub async fn location(
    api: &S3Api,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    api.require_bucket(&req.input.bucket)?;
    // AWS answers an empty constraint for us-east-1.
    let location_constraint = (api.region != "us-east-1").then(|| BucketLocationConstraint::from(api.region.clone()));
    Ok(S3Response::new(GetBucketLocationOutput { location_constraint }))
}

pub async fn delete(api: &S3Api, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
    match api.store.delete_bucket(&req.input.bucket).await? {
        BucketDelete::Deleted => Ok(S3Response::new(DeleteBucketOutput {})),
        BucketDelete::Missing => Err(s3_error!(NoSuchBucket, "The specified bucket does not exist")),
        BucketDelete::NotEmpty => Err(s3_error!(BucketNotEmpty, "The bucket you tried to delete is not empty")),
    }
}

pub async fn list(api: &S3Api, _req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
    let buckets = api
        .store
        .list_buckets()?
        .into_iter()
        .map(|(name, b)| Bucket {
            name: Some(name),
            creation_date: Some(meta::timestamp(b.created_ms)),
            bucket_region: Some(api.region.clone()),
        })
        .collect();
    Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), owner: Some(api.owner()), ..Default::default() }))
}

//! The bucket sub-resources tools read right after creating a bucket
//! (Terraform's `aws_s3_bucket`, s3fs, rclone, SDK helpers), answered the
//! way AWS answers for a bucket nobody configured: versioning without a
//! status, an owner-only ACL, and each "not configured" error with its own
//! code. Only what needs no enforcement is accepted on put (the canned
//! `private` ACL); the rest stays `NotImplemented`, naming the operation.

use http::StatusCode;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::api::S3Api;

/// A "this bucket has no such configuration" error, with AWS's 404.
fn not_configured(code: &'static str, message: &'static str) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom(code.into()), message);
    e.set_status_code(StatusCode::NOT_FOUND);
    e
}

/// Answers a bucket sub-resource that is never configured here: the bucket
/// must exist (`NoSuchBucket` first, as AWS checks), then the fixed error.
macro_rules! unconfigured {
    ($fn:ident, $input:ident, $output:ident, $code:literal, $message:literal) => {
        pub async fn $fn(api: &S3Api, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
            api.require_bucket(&req.input.bucket)?;
            Err(not_configured($code, $message))
        }
    };
}

unconfigured!(
    policy,
    GetBucketPolicyInput,
    GetBucketPolicyOutput,
    "NoSuchBucketPolicy",
    "The bucket policy does not exist"
);
unconfigured!(
    encryption,
    GetBucketEncryptionInput,
    GetBucketEncryptionOutput,
    "ServerSideEncryptionConfigurationNotFoundError",
    "The server side encryption configuration was not found"
);
unconfigured!(
    lifecycle,
    GetBucketLifecycleConfigurationInput,
    GetBucketLifecycleConfigurationOutput,
    "NoSuchLifecycleConfiguration",
    "The lifecycle configuration does not exist"
);
unconfigured!(
    website,
    GetBucketWebsiteInput,
    GetBucketWebsiteOutput,
    "NoSuchWebsiteConfiguration",
    "The specified bucket does not have a website configuration"
);
unconfigured!(
    object_lock,
    GetObjectLockConfigurationInput,
    GetObjectLockConfigurationOutput,
    "ObjectLockConfigurationNotFoundError",
    "Object Lock configuration does not exist for this bucket"
);
unconfigured!(
    public_access_block,
    GetPublicAccessBlockInput,
    GetPublicAccessBlockOutput,
    "NoSuchPublicAccessBlockConfiguration",
    "The public access block configuration was not found"
);
unconfigured!(
    ownership_controls,
    GetBucketOwnershipControlsInput,
    GetBucketOwnershipControlsOutput,
    "OwnershipControlsNotFoundError",
    "The bucket ownership controls were not found"
);
unconfigured!(
    replication,
    GetBucketReplicationInput,
    GetBucketReplicationOutput,
    "ReplicationConfigurationNotFoundError",
    "The replication configuration was not found"
);

/// Unversioned: AWS omits `Status` until versioning was ever enabled.
pub async fn versioning(
    api: &S3Api,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    api.require_bucket(&req.input.bucket)?;
    Ok(S3Response::new(GetBucketVersioningOutput::default()))
}

pub async fn logging(
    api: &S3Api,
    req: S3Request<GetBucketLoggingInput>,
) -> S3Result<S3Response<GetBucketLoggingOutput>> {
    api.require_bucket(&req.input.bucket)?;
    Ok(S3Response::new(GetBucketLoggingOutput::default()))
}

pub async fn accelerate(
    api: &S3Api,
    req: S3Request<GetBucketAccelerateConfigurationInput>,
) -> S3Result<S3Response<GetBucketAccelerateConfigurationOutput>> {
    api.require_bucket(&req.input.bucket)?;
    Ok(S3Response::new(GetBucketAccelerateConfigurationOutput::default()))
}

pub async fn request_payment(
    api: &S3Api,
    req: S3Request<GetBucketRequestPaymentInput>,
) -> S3Result<S3Response<GetBucketRequestPaymentOutput>> {
    api.require_bucket(&req.input.bucket)?;
    Ok(S3Response::new(GetBucketRequestPaymentOutput { payer: Some(Payer::from_static(Payer::BUCKET_OWNER)) }))
}

/// The one grant every bucket and object has: the owner, FULL_CONTROL.
fn owner_grants(api: &S3Api) -> Grants {
    let owner = api.owner();
    vec![Grant {
        grantee: Some(Grantee {
            display_name: owner.display_name,
            email_address: None,
            id: owner.id,
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    }]
}

pub async fn bucket_acl(api: &S3Api, req: S3Request<GetBucketAclInput>) -> S3Result<S3Response<GetBucketAclOutput>> {
    api.require_bucket(&req.input.bucket)?;
    Ok(S3Response::new(GetBucketAclOutput { grants: Some(owner_grants(api)), owner: Some(api.owner()) }))
}

pub async fn object_acl(api: &S3Api, req: S3Request<GetObjectAclInput>) -> S3Result<S3Response<GetObjectAclOutput>> {
    api.load_object(&req.input.bucket, &req.input.key)?;
    Ok(S3Response::new(GetObjectAclOutput {
        grants: Some(owner_grants(api)),
        owner: Some(api.owner()),
        request_charged: None,
    }))
}

/// Whether a put ACL asks for nothing beyond the owner's own full control
/// (the canned `private`, or a policy granting only that).
fn only_private(canned: Option<&str>, policy: Option<&AccessControlPolicy>, grant_headers: bool, api: &S3Api) -> bool {
    let canned_ok = canned.is_none_or(|c| c == BucketCannedACL::PRIVATE);
    let policy_ok = policy.is_none_or(|p| {
        p.grants.as_ref().is_none_or(|grants| {
            grants.iter().all(|g| {
                g.permission.as_ref().is_some_and(|p| p.as_str() == Permission::FULL_CONTROL)
                    && g.grantee.as_ref().is_some_and(|e| e.id == api.owner().id)
            })
        })
    });
    canned_ok && policy_ok && !grant_headers
}

/// Whether a PutBucketAcl / PutObjectAcl input carries any `x-amz-grant-*`
/// header (the two s3s types share the field names).
macro_rules! names_grants {
    ($input:ident) => {
        $input.grant_full_control.is_some()
            || $input.grant_read.is_some()
            || $input.grant_read_acp.is_some()
            || $input.grant_write.is_some()
            || $input.grant_write_acp.is_some()
    };
}

fn acl_not_implemented(op: &str) -> S3Error {
    s3_error!(NotImplemented, "{op} supports only the canned ACL private (ACLs are not enforced here)")
}

pub async fn put_bucket_acl(
    api: &S3Api,
    req: S3Request<PutBucketAclInput>,
) -> S3Result<S3Response<PutBucketAclOutput>> {
    let i = req.input;
    api.require_bucket(&i.bucket)?;
    let grants = names_grants!(i);
    if !only_private(i.acl.as_ref().map(BucketCannedACL::as_str), i.access_control_policy.as_ref(), grants, api) {
        return Err(acl_not_implemented("PutBucketAcl"));
    }
    Ok(S3Response::new(PutBucketAclOutput {}))
}

pub async fn put_object_acl(
    api: &S3Api,
    req: S3Request<PutObjectAclInput>,
) -> S3Result<S3Response<PutObjectAclOutput>> {
    let i = req.input;
    api.load_object(&i.bucket, &i.key)?;
    let grants = names_grants!(i);
    if !only_private(i.acl.as_ref().map(ObjectCannedACL::as_str), i.access_control_policy.as_ref(), grants, api) {
        return Err(acl_not_implemented("PutObjectAcl"));
    }
    Ok(S3Response::new(PutObjectAclOutput::default()))
}

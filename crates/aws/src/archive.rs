//! The archive on S3: one JSON Lines object per batch and class, at the deterministic key the
//! engine gives (`<prefix>/<class>/<yyyy>/<mm>/<dd>/<batch-id>.jsonl`), server-side encrypted.
//! A retried store writes the same key again, so it overwrites instead of duplicating.

use crate::retry::port_error;
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use dlq_healer_core::ports::{Archive, PortError};
use dlq_healer_core::records::{ArchiveBatch, ArchiveRecord, ArchiveRef};

/// The content type of archive objects.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

/// How archive objects are encrypted at rest.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Encryption {
    /// S3-managed keys (SSE-S3, `AES256`).
    S3Managed,
    /// A KMS key (SSE-KMS, `aws:kms`), by id, ARN or alias.
    Kms(String),
}

/// The [`Archive`] on one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Archive {
    client: Client,
    bucket: String,
    encryption: Encryption,
}

impl S3Archive {
    /// Archive objects in `bucket`, encrypted with S3-managed keys (`AES256`).
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Archive {
            client,
            bucket: bucket.into(),
            encryption: Encryption::S3Managed,
        }
    }

    /// Encrypt with a KMS key (`aws:kms`) instead, by key id, ARN or alias.
    pub fn with_kms_key(mut self, key_id: impl Into<String>) -> Self {
        self.encryption = Encryption::Kms(key_id.into());
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn target(&self, object: &str) -> String {
        format!("s3://{}/{object}", self.bucket)
    }
}

/// The JSON Lines text of a batch: one record per line, each line ending in `\n`.
fn json_lines(batch: &ArchiveBatch) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    for record in &batch.records {
        serde_json::to_writer(&mut out, record)?;
        out.push(b'\n');
    }
    Ok(out)
}

#[async_trait]
impl Archive for S3Archive {
    async fn store(&self, batch: &ArchiveBatch) -> Result<(), PortError> {
        const OPERATION: &str = "store archive";
        let target = self.target(&batch.object);
        let body = json_lines(batch).map_err(|e| {
            PortError::permanent(
                OPERATION,
                &target,
                format!("the batch cannot be written as JSON: {e}"),
            )
        })?;
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&batch.object)
            .content_type(CONTENT_TYPE)
            .body(ByteStream::from(body));
        request = match &self.encryption {
            Encryption::S3Managed => request.server_side_encryption(ServerSideEncryption::Aes256),
            Encryption::Kms(key_id) => request
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(key_id),
        };
        request
            .send()
            .await
            .map_err(|e| port_error(OPERATION, &target, &e))?;
        Ok(())
    }

    async fn fetch(&self, reference: &ArchiveRef) -> Result<ArchiveRecord, PortError> {
        const OPERATION: &str = "fetch archived message";
        let target = format!("{}#{}", self.target(&reference.object), reference.line);
        if reference.line == 0 {
            return Err(PortError::permanent(
                OPERATION,
                &target,
                "line numbers start at 1; the reference is corrupt",
            ));
        }
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&reference.object)
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Err(PortError::permanent(
                    OPERATION,
                    &target,
                    format!(
                        "object {} does not exist in bucket {}; the reference is stale or the object was deleted",
                        reference.object, self.bucket
                    ),
                ));
            }
            Err(error) => return Err(port_error(OPERATION, &target, &error)),
        };
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| {
                PortError::retryable(
                    OPERATION,
                    &target,
                    format!("reading the object failed: {e}"),
                )
            })?
            .into_bytes();
        let line = bytes
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .nth(reference.line as usize - 1)
            .ok_or_else(|| {
                PortError::permanent(
                    OPERATION,
                    &target,
                    format!(
                        "object {} in bucket {} has no line {}; the reference is stale",
                        reference.object, self.bucket, reference.line
                    ),
                )
            })?;
        serde_json::from_slice(line).map_err(|e| {
            PortError::permanent(
                OPERATION,
                &target,
                format!(
                    "line {} of object {} in bucket {} is not an archive record: {e}",
                    reference.line, reference.object, self.bucket
                ),
            )
        })
    }
}

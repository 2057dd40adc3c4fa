//! Whether an AWS failure may go away by itself, decided from the SDK error, and its translation
//! into a core [`PortError`]. Shared by every adapter of this crate.
//!
//! Retryable: throttling, server errors (5xx), timeouts, dispatch failures (connection refused or
//! reset), unreadable responses. Permanent: everything the caller must fix — a queue, bucket or
//! table that does not exist, invalid parameters, access denied — and any other 4xx. The engine
//! leaves a message in the DLQ after a retryable error and archives it after a permanent one.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use dlq_healer_core::ports::PortError;

/// Error codes (as the services spell them, any AWS service) that are worth retrying.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "SlowDown",
    "OverLimit",
    "KmsThrottled",
    "KMS.ThrottlingException",
    "PriorRequestNotComplete",
    "TransactionInProgressException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "IDPCommunicationError",
    "EC2ThrottledException",
];

/// Strip the prefixes some protocols put before a code: `AWS.SimpleQueueService.` (SQS's
/// query-compatible errors) and `namespace#` (JSON protocols).
pub fn bare_code(code: &str) -> &str {
    let code = code.rsplit('#').next().unwrap_or(code);
    code.strip_prefix("AWS.SimpleQueueService.").unwrap_or(code)
}

/// Whether an error with this code and HTTP status may succeed when tried again.
pub fn is_retryable(code: Option<&str>, status: Option<u16>) -> bool {
    if let Some(code) = code.map(bare_code)
        && RETRYABLE_CODES.contains(&code)
    {
        return true;
    }
    match status {
        Some(429 | 408) => true,
        Some(status) => status >= 500,
        // No status and no retryable code: the service did not answer in a way we understand.
        None => code.is_none(),
    }
}

/// Whether a code says that the queue, bucket, table, topic or key does not exist.
pub fn is_not_found(code: &str) -> bool {
    matches!(
        bare_code(code),
        "QueueDoesNotExist"
            | "NonExistentQueue"
            | "NoSuchBucket"
            | "NoSuchKey"
            | "NotFound"
            | "ResourceNotFoundException"
            | "NotFoundException"
    )
}

/// Whether an SDK error may go away when the call is tried again later.
pub fn sdk_error_is_retryable<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    match error {
        SdkError::ConstructionFailure(_) => false,
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        SdkError::ServiceError(service) => {
            is_retryable(service.err().code(), Some(service.raw().status().as_u16()))
        }
        _ => true,
    }
}

/// The error code of an SDK error, when the service sent one.
pub fn sdk_error_code<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> Option<&str> {
    match error {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// The HTTP status of a service's answer, if the call got one.
pub fn http_status<E>(error: &SdkError<E, HttpResponse>) -> Option<u16> {
    match error {
        SdkError::ServiceError(service) => Some(service.raw().status().as_u16()),
        _ => None,
    }
}

/// An error and its sources, `: `-separated, each once: the SDK's `DisplayErrorContext` adds the
/// whole error's `Debug` form, a dump of internal structures, which is no message for a person.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let text = error.to_string();
        // A wrapper often repeats its source's text; keep the words once.
        if !text.is_empty() && !parts.last().is_some_and(|last| last.ends_with(&text)) {
            parts.push(text);
        }
        next = error.source();
    }
    parts.join(": ")
}

/// Translate an SDK error from `operation` on `target` into a [`PortError`], retryable or not,
/// with the whole error chain in its message.
pub fn port_error<E>(operation: &str, target: &str, error: &SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let retryable = sdk_error_is_retryable(error);
    let mut message = match error {
        SdkError::ServiceError(service) => {
            let err = service.err();
            format!(
                "{} (HTTP {}): {}",
                err.code().unwrap_or("no error code"),
                service.raw().status().as_u16(),
                err.message().unwrap_or("no message")
            )
        }
        other => error_chain(other),
    };
    if sdk_error_code(error).is_some_and(is_not_found) {
        message.push_str("; check that it exists in this account and region");
    } else {
        if http_status(error) == Some(403) {
            message.push_str(
                "; access was denied: check the credentials, and what their policy allows",
            );
        }
        if !retryable {
            message.push_str("; this will not succeed by retrying");
        }
    }
    PortError {
        operation: operation.to_string(),
        target: target.to_string(),
        message,
        retryable,
    }
}

/// The [`PortError`] of one failed entry of a batch call (SQS `BatchResultErrorEntry`).
/// `sender_fault` entries are permanent unless their code says throttling.
pub fn entry_error(
    operation: &str,
    target: &str,
    code: &str,
    message: Option<&str>,
    sender_fault: bool,
) -> PortError {
    let retryable = if sender_fault {
        RETRYABLE_CODES.contains(&bare_code(code))
    } else {
        true
    };
    PortError {
        operation: operation.to_string(),
        target: target.to_string(),
        message: format!("{code}: {}", message.unwrap_or("no message")),
        retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dispatch_failure_reads_as_its_causes_without_a_debug_dump() {
        use aws_smithy_runtime_api::client::result::ConnectorError;
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "tcp connect error");
        let error: SdkError<
            aws_sdk_sqs::operation::receive_message::ReceiveMessageError,
            HttpResponse,
        > = SdkError::dispatch_failure(ConnectorError::io(refused.into()));
        let port = port_error("receive", "q", &error);
        assert!(
            port.message.contains("tcp connect error"),
            "{}",
            port.message
        );
        for dump in ["DispatchFailure(", "ConnectorError {", "kind:"] {
            assert!(!port.message.contains(dump), "{}", port.message);
        }
        assert!(port.retryable);
    }

    #[test]
    fn a_refusal_of_access_says_to_check_the_credentials_and_their_policy() {
        use aws_smithy_runtime_api::http::StatusCode;
        use aws_smithy_types::body::SdkBody;
        let denied = aws_sdk_sqs::operation::receive_message::ReceiveMessageError::generic(
            aws_smithy_types::error::ErrorMetadata::builder()
                .code("AccessDenied")
                .message("not authorized to perform sqs:ReceiveMessage")
                .build(),
        );
        let raw = HttpResponse::new(StatusCode::try_from(403).unwrap(), SdkBody::empty());
        let error = SdkError::service_error(denied, raw);
        let port = port_error("receive", "q", &error);
        assert!(!port.retryable);
        assert!(
            port.message.contains("AccessDenied (HTTP 403)")
                && port.message.contains("check the credentials"),
            "{}",
            port.message
        );
    }

    #[test]
    fn codes_decide_before_statuses() {
        assert!(is_retryable(Some("ThrottlingException"), Some(400)));
        assert!(is_retryable(
            Some("AWS.SimpleQueueService.RequestThrottled"),
            Some(403)
        ));
        assert!(is_retryable(
            Some("com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"),
            Some(400)
        ));
        assert!(is_retryable(Some("SlowDown"), Some(503)));
        assert!(is_retryable(None, Some(502)));
        assert!(is_retryable(None, Some(429)));
        assert!(is_retryable(None, None));
        assert!(!is_retryable(Some("QueueDoesNotExist"), Some(400)));
        assert!(!is_retryable(
            Some("AWS.SimpleQueueService.NonExistentQueue"),
            Some(400)
        ));
        assert!(!is_retryable(Some("InvalidParameterValue"), Some(400)));
        assert!(!is_retryable(Some("AccessDenied"), Some(403)));
        assert!(!is_retryable(Some("AccessDeniedException"), Some(400)));
        assert!(!is_retryable(Some("Whatever"), None));
    }

    #[test]
    fn not_found_codes_are_recognised_with_prefixes() {
        assert!(is_not_found("AWS.SimpleQueueService.NonExistentQueue"));
        assert!(is_not_found("com.amazonaws.sqs#QueueDoesNotExist"));
        assert!(is_not_found("NoSuchKey"));
        assert!(!is_not_found("InvalidParameterValue"));
    }

    fn service_error(
        code: &str,
        status: u16,
    ) -> SdkError<aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError, HttpResponse>
    {
        use aws_smithy_runtime_api::http::StatusCode;
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;
        let error = aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError::generic(
            ErrorMetadata::builder()
                .code(code)
                .message("said the service")
                .build(),
        );
        let status = StatusCode::try_from(status).expect("a valid status");
        SdkError::service_error(error, HttpResponse::new(status, SdkBody::empty()))
    }

    #[test]
    fn sdk_errors_are_classified_by_kind_code_and_status() {
        let throttled = port_error("send", "q", &service_error("RequestThrottled", 400));
        assert!(throttled.retryable, "{throttled}");
        let unavailable = port_error("send", "q", &service_error("Whatever", 503));
        assert!(unavailable.retryable, "{unavailable}");
        let missing = port_error(
            "send",
            "q",
            &service_error("AWS.SimpleQueueService.NonExistentQueue", 400),
        );
        assert!(!missing.retryable);
        assert!(
            missing
                .message
                .contains("NonExistentQueue (HTTP 400): said the service")
                && missing.message.contains("check that it exists"),
            "{missing}"
        );
        let denied = port_error("send", "q", &service_error("AccessDenied", 403));
        assert!(!denied.retryable && denied.message.contains("will not succeed by retrying"));
        let timeout: SdkError<
            aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError,
            HttpResponse,
        > = SdkError::timeout_error("too slow");
        assert!(port_error("send", "q", &timeout).retryable);
        let construction: SdkError<
            aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError,
            HttpResponse,
        > = SdkError::construction_failure("bad input");
        assert!(!port_error("send", "q", &construction).retryable);
    }

    #[test]
    fn entry_errors_are_permanent_when_the_sender_is_at_fault() {
        let bad = entry_error("delete", "q", "ReceiptHandleIsInvalid", Some("bad"), true);
        assert!(!bad.retryable);
        assert!(bad.message.contains("ReceiptHandleIsInvalid"));
        assert!(entry_error("send", "q", "InternalError", None, false).retryable);
        assert!(entry_error("send", "q", "RequestThrottled", None, true).retryable);
    }
}

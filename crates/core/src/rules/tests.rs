use super::*;
use crate::class::FailureClass::{self, *};
use crate::context::ContextReading;
use crate::message::Attribute;
use proptest::prelude::*;
use std::sync::OnceLock;

/// A valid JSON body, as most corpus messages carry.
const BODY: &[u8] =
    br#"{"order_id":14013,"customer":{"id":77,"email":"a@example.com"},"amount":12.5}"#;
const QUEUE_URL: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/orders";

static NO_ATTRIBUTES: Attributes = Attributes::new();

fn defaults() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(RuleSet::defaults)
}

fn facts<'a>(
    body: &'a [u8],
    error_type: Option<&'a str>,
    message: &'a str,
    status: Option<u16>,
) -> Facts<'a> {
    Facts {
        body,
        error_type,
        error_message: message,
        status,
        attributes: &NO_ATTRIBUTES,
        source: Some(QUEUE_URL),
        receive_count: 1,
        context: ContextState::Valid,
    }
}

/// `(error.type, error.message, error.status, expected class)`, as consumers write them.
type Row = (
    Option<&'static str>,
    &'static str,
    Option<u16>,
    FailureClass,
);

#[rustfmt::skip]
const CORPUS: &[Row] = &[
    // ---- Python: botocore / boto3 ----
    (Some("ClientError"), "An error occurred (ExpiredTokenException) when calling the ReceiveMessage operation: The security token included in the request is expired", None, Auth),
    (None, "botocore.exceptions.ClientError: An error occurred (AccessDenied) when calling the PutObject operation: Access Denied", None, Auth),
    (Some("ClientError"), "An error occurred (InvalidClientTokenId) when calling the SendMessage operation: The security token included in the request is invalid.", Some(403), Auth),
    (Some("ClientError"), "An error occurred (SignatureDoesNotMatch) when calling the GetObject operation: The request signature we calculated does not match the signature you provided. Check your key and signing method.", None, Auth),
    (Some("NoCredentialsError"), "Unable to locate credentials", None, Auth),
    (None, "botocore.exceptions.NoCredentialsError: Unable to locate credentials", None, Auth),
    (Some("ClientError"), "An error occurred (AccessDeniedException) when calling the Decrypt operation: User: arn:aws:sts::123456789012:assumed-role/orders-consumer/i-0abc is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:123456789012:key/1234abcd", None, Auth),
    (Some("ClientError"), "An error occurred (RequestTimeTooSkewed) when calling the PutObject operation: The difference between the request time and the current time is too large.", None, Auth),
    (Some("ClientError"), "An error occurred (UnrecognizedClientException) when calling the Query operation: The security token included in the request is invalid.", None, Auth),
    (Some("ClientError"), "An error occurred (ThrottlingException) when calling the PutItem operation (reached max retries: 4): Rate exceeded", None, Dependency),
    (Some("ProvisionedThroughputExceededException"), "An error occurred (ProvisionedThroughputExceededException) when calling the PutItem operation (reached max retries: 9): The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.", Some(400), Dependency),
    (Some("ClientError"), "An error occurred (RequestLimitExceeded) when calling the DescribeInstances operation (reached max retries: 4): Request limit exceeded.", None, Dependency),
    (Some("ClientError"), "An error occurred (SlowDown) when calling the PutObject operation (reached max retries: 4): Please reduce your request rate.", Some(503), Dependency),
    (Some("ClientError"), "An error occurred (ServiceUnavailable) when calling the SendMessage operation (reached max retries: 4): Service is unable to handle request.", None, Dependency),
    (Some("ClientError"), "An error occurred (InternalError) when calling the PutObject operation (reached max retries: 4): We encountered an internal error. Please try again.", None, Dependency),
    (Some("ClientError"), "An error occurred (ValidationException) when calling the PutItem operation: One or more parameter values were invalid: Missing the key order_id in the item", Some(400), Validation),
    (Some("ConditionalCheckFailedException"), "An error occurred (ConditionalCheckFailedException) when calling the PutItem operation: The conditional request failed", None, Validation),
    (Some("ClientError"), "An error occurred (ResourceNotFoundException) when calling the GetItem operation: Requested resource not found", None, Validation),
    (Some("ClientError"), "An error occurred (InvalidParameterValue) when calling the SendMessage operation: Value for parameter MessageGroupId is invalid. Reason: The request include parameter that is not valid for this queue type.", None, Validation),
    (Some("ReadTimeoutError"), r#"Read timeout on endpoint URL: "https://dynamodb.us-east-1.amazonaws.com/""#, None, Timeout),
    (Some("ConnectTimeoutError"), r#"Connect timeout on endpoint URL: "https://sqs.eu-west-1.amazonaws.com/""#, None, Timeout),
    (Some("EndpointConnectionError"), r#"Could not connect to the endpoint URL: "https://sqs.us-east-1.amazonaws.com/""#, None, Dependency),
    // ---- Python: requests / urllib3 / urllib / httpx / aiohttp ----
    (Some("requests.exceptions.ConnectionError"), "HTTPSConnectionPool(host='api.example.com', port=443): Max retries exceeded with url: /v1/orders (Caused by NewConnectionError('<urllib3.connection.HTTPSConnection object at 0x7f3a2c1d5e50>: Failed to establish a new connection: [Errno 111] Connection refused'))", None, Dependency),
    (Some("requests.exceptions.ReadTimeout"), "HTTPSConnectionPool(host='api.example.com', port=443): Read timed out. (read timeout=10)", None, Timeout),
    (Some("requests.exceptions.ConnectTimeout"), "HTTPSConnectionPool(host='10.0.0.12', port=8443): Max retries exceeded with url: /charge (Caused by ConnectTimeoutError(<urllib3.connection.HTTPSConnection object at 0x7f3a2c1d5e50>, 'Connection to 10.0.0.12 timed out. (connect timeout=5)'))", None, Timeout),
    (Some("requests.exceptions.HTTPError"), "401 Client Error: Unauthorized for url: https://api.example.com/v1/orders", Some(401), Auth),
    (Some("HTTPError"), "403 Client Error: Forbidden for url: https://api.example.com/v1/orders/14013", None, Auth),
    (None, "requests.exceptions.HTTPError: 500 Server Error: Internal Server Error for url: https://api.example.com/v1/orders", None, Dependency),
    (Some("HTTPError"), "404 Client Error: Not Found for url: https://api.example.com/v1/customers/77", None, Validation),
    (Some("HTTPError"), "422 Client Error: Unprocessable Entity for url: https://api.example.com/v1/orders", None, Validation),
    (Some("HTTPError"), "429 Client Error: Too Many Requests for url: https://api.example.com/v1/orders", None, Dependency),
    (Some("HTTPError"), "502 Server Error: Bad Gateway for url: https://api.example.com/v1/orders", None, Dependency),
    (Some("HTTPError"), "504 Server Error: Gateway Time-out for url: https://api.example.com/v1/orders", None, Timeout),
    (Some("urllib3.exceptions.ProtocolError"), "('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))", None, Dependency),
    (Some("ConnectionResetError"), "[Errno 104] Connection reset by peer", None, Dependency),
    (Some("requests.exceptions.SSLError"), "HTTPSConnectionPool(host='api.example.com', port=443): Max retries exceeded with url: / (Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired (_ssl.c:1129)')))", None, Unknown),
    (Some("urllib.error.HTTPError"), "HTTP Error 503: Service Unavailable", None, Dependency),
    (Some("urllib.error.URLError"), "<urlopen error [Errno -2] Name or service not known>", None, Dependency),
    (Some("socket.timeout"), "timed out", None, Timeout),
    (Some("httpx.ReadTimeout"), "The read operation timed out", None, Timeout),
    (Some("httpx.ConnectError"), "[Errno 111] Connection refused", None, Dependency),
    (Some("httpx.HTTPStatusError"), "Client error '401 Unauthorized' for url 'https://api.example.com/v1/me'\nFor more information check: https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/401", None, Auth),
    (Some("httpx.HTTPStatusError"), "Server error '503 Service Unavailable' for url 'https://api.example.com/v1/stock'", None, Dependency),
    (Some("aiohttp.client_exceptions.ClientConnectorError"), "Cannot connect to host api.example.com:443 ssl:default [Connect call failed ('10.0.0.7', 443)]", None, Dependency),
    (Some("aiohttp.client_exceptions.ClientResponseError"), "429, message='Too Many Requests', url=URL('https://api.example.com/v1/orders')", None, Dependency),
    (Some("asyncio.exceptions.TimeoutError"), "", None, Timeout),
    // ---- Python: psycopg2 / asyncpg / SQLAlchemy / redis ----
    (Some("psycopg2.OperationalError"), "could not connect to server: Connection refused\n\tIs the server running on host \"db\" (10.0.0.3) and accepting\n\tTCP/IP connections on port 5432?", None, Dependency),
    (Some("psycopg2.OperationalError"), "FATAL:  password authentication failed for user \"app\"", None, Auth),
    (Some("psycopg2.errors.UniqueViolation"), "duplicate key value violates unique constraint \"orders_pkey\"\nDETAIL:  Key (id)=(14013) already exists.", None, Validation),
    (Some("psycopg2.errors.NotNullViolation"), "null value in column \"user_id\" of relation \"orders\" violates not-null constraint\nDETAIL:  Failing row contains (1, null, 2024-01-01).", None, Validation),
    (Some("psycopg2.errors.ForeignKeyViolation"), "insert or update on table \"order_items\" violates foreign key constraint \"order_items_order_id_fkey\"\nDETAIL:  Key (order_id)=(503) is not present in table \"orders\".", None, Validation),
    (Some("psycopg2.errors.QueryCanceled"), "canceling statement due to statement timeout", None, Timeout),
    (Some("psycopg2.errors.DeadlockDetected"), "deadlock detected\nDETAIL:  Process 4242 waits for ShareLock on transaction 9001; blocked by process 4243.", None, Dependency),
    (Some("psycopg2.errors.SerializationFailure"), "could not serialize access due to concurrent update", None, Dependency),
    (Some("psycopg2.OperationalError"), "FATAL:  remaining connection slots are reserved for non-replication superuser connections", None, Dependency),
    (Some("psycopg2.OperationalError"), "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n\tbefore or while processing the request.", None, Dependency),
    (Some("psycopg2.errors.InsufficientPrivilege"), "permission denied for table orders", None, Auth),
    (Some("psycopg2.errors.InvalidTextRepresentation"), "invalid input syntax for type uuid: \"not-a-uuid\"\nLINE 1: SELECT * FROM orders WHERE id = 'not-a-uuid'", None, Validation),
    (Some("psycopg2.errors.StringDataRightTruncation"), "value too long for type character varying(255)", None, Validation),
    (Some("psycopg2.errors.NumericValueOutOfRange"), "numeric field overflow\nDETAIL:  A field with precision 10, scale 2 must round to an absolute value less than 10^8.", None, Validation),
    (Some("psycopg2.OperationalError"), "FATAL:  sorry, too many clients already", None, Dependency),
    (Some("psycopg2.OperationalError"), "FATAL:  the database system is starting up", None, Dependency),
    (Some("psycopg2.errors.AdminShutdown"), "terminating connection due to administrator command\nSSL connection has been closed unexpectedly", None, Dependency),
    (Some("psycopg2.errors.LockNotAvailable"), "canceling statement due to lock timeout", None, Timeout),
    (Some("asyncpg.exceptions.UniqueViolationError"), "duplicate key value violates unique constraint \"users_email_key\"", None, Validation),
    (Some("asyncpg.exceptions.TooManyConnectionsError"), "sorry, too many clients already", None, Dependency),
    (Some("asyncpg.exceptions.ConnectionDoesNotExistError"), "connection was closed in the middle of operation", None, Dependency),
    (Some("asyncpg.exceptions.InvalidPasswordError"), "password authentication failed for user \"app\"", None, Auth),
    (Some("asyncpg.exceptions.QueryCanceledError"), "canceling statement due to statement timeout", None, Timeout),
    (Some("sqlalchemy.exc.OperationalError"), "(psycopg2.OperationalError) connection to server at \"db.internal\" (10.0.0.3), port 5432 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?\n(Background on this error at: https://sqlalche.me/e/20/e3q8)", None, Dependency),
    (Some("sqlalchemy.exc.TimeoutError"), "QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00 (Background on this error at: https://sqlalche.me/e/20/3o7r)", None, Timeout),
    (Some("sqlalchemy.exc.IntegrityError"), "(psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint \"orders_pkey\"", None, Validation),
    (Some("sqlalchemy.orm.exc.NoResultFound"), "No row was found when one was required", None, Validation),
    (Some("redis.exceptions.ConnectionError"), "Error 111 connecting to redis:6379. Connection refused.", None, Dependency),
    (Some("redis.exceptions.TimeoutError"), "Timeout reading from socket", None, Timeout),
    // ---- Python: pydantic v1 / v2, jsonschema, json, codecs ----
    (Some("pydantic.error_wrappers.ValidationError"), "1 validation error for Order\namount\n  field required (type=value_error.missing)", None, Validation),
    (Some("ValidationError"), "2 validation errors for Order\nemail\n  value is not a valid email address (type=value_error.email)\nquantity\n  ensure this value is greater than 0 (type=value_error.number.not_gt; limit_value=0)", None, Validation),
    (Some("pydantic_core._pydantic_core.ValidationError"), "1 validation error for Order\ncustomer_id\n  Field required [type=missing, input_value={'id': 14013, 'amount': 12.5}, input_type=dict]\n    For further information visit https://errors.pydantic.dev/2.5/v/missing", None, Validation),
    (Some("ValidationError"), "1 validation error for Order\nquantity\n  Input should be less than or equal to 100 [type=less_than_equal, input_value=401, input_type=int]", None, Validation),
    (Some("ValidationError"), "1 validation error for Order\n  Invalid JSON: expected value at line 1 column 1 [type=json_invalid, input_value='not json', input_type=str]", None, BadPayload),
    (None, "pydantic_core._pydantic_core.ValidationError: 1 validation error for Event\ntype\n  Input should be 'created' or 'updated' [type=literal_error, input_value='deleted', input_type=str]", None, Validation),
    (Some("jsonschema.exceptions.ValidationError"), "'email' is a required property\n\nFailed validating 'required' in schema:\n    {'type': 'object', 'required': ['email']}\n\nOn instance:\n    {'id': 1}", None, Validation),
    (None, "jsonschema.exceptions.ValidationError: 'abc' is not of type 'integer'", None, Validation),
    (Some("SchemaValidationError"), "Additional properties are not allowed ('colour' was unexpected)", None, Validation),
    (Some("SchemaValidationError"), "-5 is less than the minimum of 0", None, Validation),
    (Some("SchemaValidationError"), "'purple' is not one of ['red', 'green', 'blue']", None, Validation),
    (Some("json.decoder.JSONDecodeError"), "Expecting value: line 1 column 1 (char 0)", None, BadPayload),
    (Some("JSONDecodeError"), "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)", None, BadPayload),
    (Some("JSONDecodeError"), "Unterminated string starting at: line 1 column 14 (char 13)", None, BadPayload),
    (None, "json.decoder.JSONDecodeError: Extra data: line 1 column 5 (char 4)", None, BadPayload),
    (Some("UnicodeDecodeError"), "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte", None, BadPayload),
    (Some("binascii.Error"), "Incorrect padding", None, BadPayload),
    // ---- Python: plain exceptions and SDKs ----
    (Some("KeyError"), "'customer_id'", None, Validation),
    (Some("ValueError"), "invalid literal for int() with base 10: 'abc'", None, Validation),
    (Some("ValueError"), "TimeoutConfig(read=-1) rejected: read must be positive", None, Validation),
    (Some("RuntimeError"), "failed to load TimeoutConfig from environment", None, Unknown),
    (Some("stripe.error.AuthenticationError"), "Invalid API Key provided: sk_live_****************1234", None, Auth),
    (Some("stripe.error.CardError"), "Your card was declined.", Some(402), Validation),
    (Some("stripe.error.RateLimitError"), "Request rate limit exceeded. You have sent too many requests in a short period.", Some(429), Dependency),
    (Some("openai.RateLimitError"), "Error code: 429 - {'error': {'message': 'Rate limit reached for requests', 'type': 'requests', 'code': 'rate_limit_exceeded'}}", None, Dependency),
    (Some("openai.AuthenticationError"), "Error code: 401 - {'error': {'message': 'Incorrect API key provided: sk-proj-****', 'type': 'invalid_request_error', 'code': 'invalid_api_key'}}", None, Auth),
    (Some("openai.APIConnectionError"), "Connection error.", None, Dependency),
    (Some("openai.APITimeoutError"), "Request timed out.", None, Timeout),
    (Some("openai.InternalServerError"), "Error code: 500 - {'error': {'message': 'The server had an error while processing your request.'}}", None, Dependency),
    (Some("kombu.exceptions.OperationalError"), "[Errno 111] Connection refused", None, Dependency),
    (Some("jwt.exceptions.InvalidSignatureError"), "Signature verification failed", None, Auth),
    (Some("jwt.exceptions.ExpiredSignatureError"), "Signature has expired", None, Auth),
    (Some("jwt.exceptions.DecodeError"), "Signature verification failed", None, Auth),
    (Some("MemoryError"), "", None, Unknown),
    // ---- Node ----
    (Some("AxiosError"), "Request failed with status code 401", Some(401), Auth),
    (Some("AxiosError"), "Request failed with status code 403", None, Auth),
    (Some("AxiosError"), "Request failed with status code 500", None, Dependency),
    (Some("AxiosError"), "Request failed with status code 503", None, Dependency),
    (Some("AxiosError"), "Request failed with status code 400", None, Validation),
    (Some("AxiosError"), "Request failed with status code 404", None, Validation),
    (Some("AxiosError"), "timeout of 5000ms exceeded", None, Timeout),
    (Some("ECONNREFUSED"), "connect ECONNREFUSED 127.0.0.1:5432", None, Dependency),
    (None, "Error: connect ECONNREFUSED 10.0.3.7:6379", None, Dependency),
    (None, "Error: connect ETIMEDOUT 10.0.0.1:443", None, Timeout),
    (Some("Error"), "read ECONNRESET", None, Dependency),
    (Some("Error"), "socket hang up", None, Dependency),
    (Some("Error"), "getaddrinfo ENOTFOUND api.example.com", None, Dependency),
    (Some("Error"), "getaddrinfo EAI_AGAIN orders-db", None, Dependency),
    (Some("TypeError"), "fetch failed", None, Dependency),
    (Some("SyntaxError"), "Unexpected token < in JSON at position 0", None, BadPayload),
    (Some("SyntaxError"), "Unexpected end of JSON input", None, BadPayload),
    (None, "SyntaxError: \"undefined\" is not valid JSON", None, BadPayload),
    (Some("SyntaxError"), "Unexpected token 'o', \"[object Object]\" is not valid JSON", None, BadPayload),
    (Some("TimeoutError"), "The operation was aborted due to timeout", None, Timeout),
    (Some("AbortError"), "This operation was aborted", None, Timeout),
    (Some("Error"), "Client network socket disconnected before secure TLS connection was established", None, Dependency),
    (Some("FetchError"), "request to https://api.example.com/v1/orders failed, reason: connect ECONNREFUSED 10.0.0.9:443", None, Dependency),
    (Some("MongoServerSelectionError"), "connect ECONNREFUSED 127.0.0.1:27017", None, Dependency),
    (Some("MongoServerError"), "E11000 duplicate key error collection: shop.orders index: _id_ dup key: { _id: 14013 }", None, Validation),
    (Some("ZodError"), "[\n  {\n    \"code\": \"invalid_type\",\n    \"expected\": \"string\",\n    \"received\": \"undefined\",\n    \"path\": [\"email\"],\n    \"message\": \"Required\"\n  }\n]", None, Validation),
    (Some("TokenExpiredError"), "jwt expired", None, Auth),
    (Some("JsonWebTokenError"), "invalid signature", None, Auth),
    (Some("Error"), "ER_DUP_ENTRY: Duplicate entry '14013' for key 'orders.PRIMARY'", None, Validation),
    (Some("Error"), "ER_LOCK_DEADLOCK: Deadlock found when trying to get lock; try restarting transaction", None, Dependency),
    (Some("Error"), "ER_LOCK_WAIT_TIMEOUT: Lock wait timeout exceeded; try restarting transaction", None, Timeout),
    (Some("Error"), "ER_ACCESS_DENIED_ERROR: Access denied for user 'app'@'10.0.0.4' (using password: YES)", None, Auth),
    (Some("CredentialsProviderError"), "Could not load credentials from any providers", None, Auth),
    (Some("ExpiredTokenException"), "The security token included in the request is expired", Some(400), Auth),
    (Some("ThrottlingException"), "Rate exceeded", Some(400), Dependency),
    (Some("TypeError"), "Cannot read properties of undefined (reading 'email')", None, Validation),
    (Some("Error"), "Redis connection to 127.0.0.1:6379 failed - connect ECONNREFUSED 127.0.0.1:6379", None, Dependency),
    (Some("Error"), "Unexpected server response: 401", None, Auth),
    // ---- Java ----
    (Some("java.net.SocketTimeoutException"), "Read timed out", None, Timeout),
    (Some("java.net.ConnectException"), "Connection refused", None, Dependency),
    (None, "java.net.ConnectException: Connection refused (Connection refused)", None, Dependency),
    (Some("java.net.UnknownHostException"), "payments.internal: Name or service not known", None, Dependency),
    (Some("java.net.SocketException"), "Connection reset", None, Dependency),
    (Some("org.apache.http.conn.ConnectTimeoutException"), "Connect to api.example.com:443 [api.example.com/10.0.0.1] failed: connect timed out", None, Timeout),
    (Some("java.net.http.HttpTimeoutException"), "request timed out", None, Timeout),
    (Some("java.util.concurrent.TimeoutException"), "", None, Timeout),
    (Some("com.fasterxml.jackson.core.JsonParseException"), "Unexpected character ('<' (code 60)): expected a valid value (JSON String, Number, Array, Object or token 'null', 'true' or 'false')\n at [Source: (String)\"<html>\"; line: 1, column: 2]", None, BadPayload),
    (Some("com.fasterxml.jackson.core.io.JsonEOFException"), "Unexpected end-of-input: expected close marker for Object (start marker at [Source: (byte[])\"{\"id\":1\"; line: 1, column: 1])", None, BadPayload),
    (Some("com.fasterxml.jackson.databind.exc.MismatchedInputException"), "Cannot deserialize value of type `java.lang.Integer` from String \"abc\": not a valid `java.lang.Integer` value", None, Validation),
    (Some("com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException"), "Unrecognized field \"colour\" (class com.example.Order), not marked as ignorable (2 known properties: \"id\", \"color\"])", None, Validation),
    (Some("jakarta.validation.ConstraintViolationException"), "createOrder.arg0.amount: must be greater than 0, createOrder.arg0.email: must not be blank", None, Validation),
    (Some("org.springframework.web.client.HttpClientErrorException$Unauthorized"), "401 Unauthorized: [no body]", None, Auth),
    (Some("org.springframework.web.client.HttpClientErrorException$Forbidden"), "403 Forbidden: \"{\"error\":\"insufficient_scope\"}\"", None, Auth),
    (Some("org.springframework.web.client.HttpClientErrorException$TooManyRequests"), "429 Too Many Requests: [no body]", None, Dependency),
    (Some("org.springframework.web.client.HttpServerErrorException$ServiceUnavailable"), "503 Service Unavailable: [no body]", None, Dependency),
    (Some("org.springframework.web.client.HttpServerErrorException$GatewayTimeout"), "504 Gateway Timeout: [no body]", None, Timeout),
    (Some("org.springframework.web.client.HttpClientErrorException$NotFound"), "404 Not Found: [no body]", None, Validation),
    (Some("org.springframework.web.client.HttpClientErrorException$BadRequest"), "400 Bad Request: \"{\"message\":\"amount must be positive\"}\"", None, Validation),
    (Some("org.springframework.web.client.ResourceAccessException"), "I/O error on POST request for \"https://api.example.com/v1/orders\": Read timed out", None, Timeout),
    (Some("software.amazon.awssdk.services.sqs.model.SqsException"), "Access to the resource https://sqs.us-east-1.amazonaws.com/123456789012/orders is denied. (Service: Sqs, Status Code: 403, Request ID: 6f1c2a7e-9b0d-5e55-8e0b-1d2c3b4a5f60)", None, Auth),
    (Some("software.amazon.awssdk.services.sqs.model.SqsException"), "The security token included in the request is expired (Service: Sqs, Status Code: 403, Request ID: 0f2a7c1e-1b2c-5d3e-9f40-aa11bb22cc33)", None, Auth),
    (Some("software.amazon.awssdk.services.dynamodb.model.DynamoDbException"), "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your table or index so please try again shortly. (Service: DynamoDb, Status Code: 400, Request ID: ABCDEFGHIJ)", None, Dependency),
    (Some("software.amazon.awssdk.services.s3.model.NoSuchKeyException"), "The specified key does not exist. (Service: S3, Status Code: 404, Request ID: 8XZJ4TQ2)", None, Validation),
    (Some("software.amazon.awssdk.services.sqs.model.SqsException"), "We encountered an internal error. Please try again. (Service: Sqs, Status Code: 500, Request ID: 1b2c3d4e)", None, Dependency),
    (Some("software.amazon.awssdk.services.lambda.model.TooManyRequestsException"), "Rate Exceeded. (Service: Lambda, Status Code: 429, Request ID: 9c8b7a6d)", None, Dependency),
    (Some("software.amazon.awssdk.services.sqs.model.SqsException"), "Request failed. (Service: Sqs, Status Code: 502, Request ID: 77aa88bb)", None, Dependency),
    (Some("software.amazon.awssdk.core.exception.SdkClientException"), "Unable to execute HTTP request: Connect to sqs.us-east-1.amazonaws.com:443 [sqs.us-east-1.amazonaws.com/52.46.1.2] failed: Connection refused", None, Dependency),
    (Some("software.amazon.awssdk.core.exception.ApiCallTimeoutException"), "Client execution did not complete before the specified timeout configuration: 30000 millis", None, Timeout),
    (None, "com.amazonaws.services.sqs.model.AmazonSQSException: Access to the resource https://sqs.us-east-1.amazonaws.com/ is denied. (Service: AmazonSQS; Status Code: 403; Error Code: AccessDenied; Request ID: 5e4b3a2c)", None, Auth),
    (Some("org.postgresql.util.PSQLException"), "ERROR: duplicate key value violates unique constraint \"orders_pkey\"\n  Detail: Key (id)=(42) already exists.", None, Validation),
    (Some("org.postgresql.util.PSQLException"), "Connection to db.internal:5432 refused. Check that the hostname and port are correct and that the postmaster is accepting TCP/IP connections.", None, Dependency),
    (Some("org.postgresql.util.PSQLException"), "FATAL: password authentication failed for user \"app\"", None, Auth),
    (Some("java.sql.SQLTransientConnectionException"), "HikariPool-1 - Connection is not available, request timed out after 30000ms.", None, Timeout),
    (Some("org.springframework.dao.DataIntegrityViolationException"), "could not execute statement; SQL [n/a]; constraint [orders_pkey]", None, Validation),
    (Some("java.lang.IllegalArgumentException"), "Invalid UUID string: 14013", None, Validation),
    (Some("java.lang.NumberFormatException"), "For input string: \"12a\"", None, Validation),
    (Some("java.time.format.DateTimeParseException"), "Text '2024-13-01' could not be parsed: Invalid value for MonthOfYear (valid values 1 - 12): 13", None, Validation),
    (Some("java.lang.OutOfMemoryError"), "Java heap space", None, Unknown),
    (Some("java.lang.NullPointerException"), "Cannot invoke \"String.length()\" because \"<local1>\" is null", None, Unknown),
    // ---- gRPC (Java, Go, Python) ----
    (Some("io.grpc.StatusRuntimeException"), "UNAVAILABLE: io exception", None, Dependency),
    (Some("io.grpc.StatusRuntimeException"), "DEADLINE_EXCEEDED: deadline exceeded after 4.999870000s. [closed=[], open=[[remote_addr=payments/10.0.0.5:50051]]]", None, Timeout),
    (Some("io.grpc.StatusRuntimeException"), "UNAUTHENTICATED: Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", None, Auth),
    (Some("io.grpc.StatusRuntimeException"), "PERMISSION_DENIED: The caller does not have permission", None, Auth),
    (Some("io.grpc.StatusRuntimeException"), "INVALID_ARGUMENT: order.amount must be positive", None, Validation),
    (Some("io.grpc.StatusRuntimeException"), "RESOURCE_EXHAUSTED: Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute'", None, Dependency),
    (None, "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp 10.0.0.8:50051: connect: connection refused\"", None, Dependency),
    (None, "rpc error: code = DeadlineExceeded desc = context deadline exceeded", None, Timeout),
    (None, "rpc error: code = Unauthenticated desc = invalid token", None, Auth),
    (None, "rpc error: code = PermissionDenied desc = caller lacks orders.write", None, Auth),
    (None, "rpc error: code = InvalidArgument desc = amount must be positive", None, Validation),
    (None, "rpc error: code = ResourceExhausted desc = quota exceeded", None, Dependency),
    (None, "rpc error: code = NotFound desc = customer 77 not found", None, Validation),
    (None, "rpc error: code = AlreadyExists desc = order 14013 already exists", None, Validation),
    (None, "rpc error: code = Internal desc = stream terminated by RST_STREAM with error code: INTERNAL_ERROR", None, Dependency),
    (Some("grpc._channel._InactiveRpcError"), "<_InactiveRpcError of RPC that terminated with:\n\tstatus = StatusCode.UNAVAILABLE\n\tdetails = \"failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.5:50051: Failed to connect to remote host: Connection refused\"\n>", None, Dependency),
    (Some("grpc._channel._InactiveRpcError"), "<_InactiveRpcError of RPC that terminated with:\n\tstatus = StatusCode.DEADLINE_EXCEEDED\n\tdetails = \"Deadline Exceeded\"\n>", None, Timeout),
    (None, "status = StatusCode.PERMISSION_DENIED details = \"Permission denied on resource project orders.\"", None, Auth),
    // ---- Go ----
    (None, "context deadline exceeded", None, Timeout),
    (None, "Post \"https://payments.internal/v1/charge\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)", None, Timeout),
    (None, "dial tcp 10.0.0.1:443: i/o timeout", None, Timeout),
    (None, "dial tcp 10.0.0.5:5432: connect: connection refused", None, Dependency),
    (None, "read tcp 10.0.1.15:52344->10.0.2.20:443: read: connection reset by peer", None, Dependency),
    (None, "Get \"https://api.example.com/v1/orders\": dial tcp: lookup api.example.com on 10.0.0.2:53: no such host", None, Dependency),
    (None, "write tcp 10.0.1.15:40112->10.0.2.20:6379: write: broken pipe", None, Dependency),
    (None, "Post \"https://api.example.com/v1/orders\": EOF", None, Dependency),
    (None, "unexpected EOF", None, Dependency),
    (None, "json: cannot unmarshal string into Go struct field Order.amount of type int64", None, Validation),
    (None, "invalid character 'x' looking for beginning of value", None, BadPayload),
    (None, "invalid character '}' after object key:value pair", None, BadPayload),
    (None, "unexpected end of JSON input", None, BadPayload),
    (None, "json: unknown field \"colour\"", None, Validation),
    (None, "strconv.ParseInt: parsing \"12a\": invalid syntax", None, Validation),
    (None, "http2: server sent GOAWAY and closed the connection; LastStreamID=1999, ErrCode=NO_ERROR, debug=\"\"", None, Dependency),
    (None, "net/http: TLS handshake timeout", None, Timeout),
    (None, "net/http: request canceled while waiting for connection (Client.Timeout exceeded while awaiting headers)", None, Timeout),
    (None, "pq: duplicate key value violates unique constraint \"orders_pkey\"", None, Validation),
    (None, "pq: password authentication failed for user \"app\"", None, Auth),
    (None, "pq: sorry, too many clients already", None, Dependency),
    (None, "sql: no rows in result set", None, Validation),
    (None, "redis: connection pool timeout", None, Timeout),
    (None, "dial tcp: lookup redis on 10.96.0.10:53: server misbehaving", None, Dependency),
    (None, "context canceled", None, Timeout),
    // ---- Rust: reqwest / serde_json / sqlx / tokio-postgres / tokio ----
    (Some("reqwest::Error"), "error sending request for url (https://api.example.com/v1/orders): operation timed out", None, Timeout),
    (None, "HTTP status client error (401 Unauthorized) for url (https://api.example.com/v1/orders)", None, Auth),
    (None, "HTTP status server error (503 Service Unavailable) for url (https://api.example.com/v1/orders)", None, Dependency),
    (None, "HTTP status client error (422 Unprocessable Entity) for url (https://api.example.com/v1/orders)", None, Validation),
    (None, "HTTP status client error (429 Too Many Requests) for url (https://api.example.com/v1/orders)", None, Dependency),
    (None, "error sending request for url (https://api.example.com/v1/orders): error trying to connect: tcp connect error: Connection refused (os error 111)", None, Dependency),
    (None, "error sending request for url (https://api.example.com/): error trying to connect: dns error: failed to lookup address information: Name or service not known", None, Dependency),
    (Some("serde_json::Error"), "expected value at line 1 column 1", None, BadPayload),
    (None, "EOF while parsing an object at line 1 column 23", None, BadPayload),
    (None, "missing field `customer_id` at line 1 column 45", None, Validation),
    (None, "invalid type: string \"12\", expected u64 at line 1 column 15", None, Validation),
    (None, "unknown variant `refunded`, expected one of `created`, `paid` at line 1 column 30", None, Validation),
    (None, "trailing characters at line 1 column 12", None, BadPayload),
    (None, "error returned from database: duplicate key value violates unique constraint \"orders_pkey\"", None, Validation),
    (None, "pool timed out while waiting for an open connection", None, Timeout),
    (None, "error communicating with database: Connection refused (os error 111)", None, Dependency),
    (None, "error returned from database: password authentication failed for user \"app\"", None, Auth),
    (None, "db error: ERROR: deadlock detected", None, Dependency),
    (None, "error connecting to server: Connection refused (os error 111)", None, Dependency),
    (Some("tokio_postgres::Error"), "connection closed", None, Dependency),
    (Some("tokio::time::error::Elapsed"), "deadline has elapsed", None, Timeout),
    (Some("tokio::time::error::Elapsed"), "", None, Timeout),
    // ---- AWS Lambda ----
    (Some("Sandbox.Timedout"), "Task timed out after 30.00 seconds", None, Timeout),
    (None, "2024-05-01T10:00:00.000Z 3f1c9e2a Task timed out after 900.10 seconds", None, Timeout),
    (Some("Runtime.ExitError"), "Runtime exited with error: signal: killed", None, Unknown),
    (Some("Runtime.ExitError"), "RequestId: 3f1c9e2a Error: Runtime exited with error: exit status 1", None, Unknown),
    (Some("Lambda.TooManyRequestsException"), "Rate Exceeded.", Some(429), Dependency),
    (Some("EC2ThrottledException"), "Lambda was throttled by Amazon EC2.", None, Dependency),
    (Some("KMSAccessDeniedException"), "Lambda was unable to decrypt the environment variables because KMS access was denied. Please check the function's KMS key settings. KMS Exception: AccessDeniedException", None, Auth),
    (Some("ServiceException"), "Lambda is unable to complete the request because of an internal error.", None, Dependency),
    (Some("Runtime.ImportModuleError"), "Unable to import module 'handler': No module named 'requests'", None, Unknown),
    // ---- .NET ----
    (Some("System.Net.Http.HttpRequestException"), "No connection could be made because the target machine actively refused it. (api.example.com:443)", None, Dependency),
    (Some("System.Threading.Tasks.TaskCanceledException"), "The request was canceled due to the configured HttpClient.Timeout of 100 seconds elapsing.", None, Timeout),
    (Some("Npgsql.PostgresException"), "23505: duplicate key value violates unique constraint \"orders_pkey\"", None, Validation),
    (Some("Microsoft.Data.SqlClient.SqlException"), "Login failed for user 'app'.", None, Auth),
    // ---- HTTP status lines and bare statuses ----
    (None, "429 Too Many Requests", None, Dependency),
    (None, "HTTP/1.1 503 Service Unavailable", None, Dependency),
    (None, "502 Bad Gateway", None, Dependency),
    (None, "504 Gateway Timeout", None, Timeout),
    (None, "HTTP/2 500", None, Dependency),
    (None, "401 Unauthorized", None, Auth),
    (None, "403 Forbidden", None, Auth),
    (None, "400 Bad Request", None, Validation),
    (None, "413 Payload Too Large", None, Validation),
    (None, "408 Request Timeout", None, Timeout),
    (None, "upstream returned status=502", None, Dependency),
    (None, "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>", None, Dependency),
    (None, "upstream connect error or disconnect/reset before headers. reset reason: connection failure", Some(503), Dependency),
    (None, r#"{"error":{"code":503,"message":"backend down"}}"#, None, Dependency),
    (None, "", Some(401), Auth),
    (None, "", Some(403), Auth),
    (None, "", Some(503), Dependency),
    (None, "", Some(504), Timeout),
    (None, "", Some(422), Validation),
    (None, "", Some(429), Dependency),
    (None, "", Some(200), Unknown),
    (None, "", None, Unknown),
    // ---- Throttling ----
    (Some("TooManyRequestsException"), "Too Many Requests", Some(429), Dependency),
    (None, "LimitExceededException: Rate exceeded for shard shardId-000000000001 in stream orders under account 123456789012.", None, Dependency),
    // ---- Tricky negatives: numbers that are ids, words inside identifiers ----
    (None, "order 14013 failed", None, Unknown),
    (None, "processing order 401 of 500", None, Unknown),
    (None, "user id 503 not eligible for promotion", None, Unknown),
    (None, "user 401 not found", None, Validation),
    (None, "503 messages were skipped during import", None, Unknown),
    (None, "retrying after 503ms backoff", None, Unknown),
    (None, "handler took 401.7 ms and returned no result", None, Unknown),
    (None, "promo code 401 has expired", None, Unknown),
    (None, "amount 500.00 exceeds the daily limit", None, Unknown),
    (None, "failed to apply TimeoutConfig to worker pool", None, Unknown),
    (Some("UnauthorizedAccessHandlerError"), "handler crashed", None, Unknown),
    (None, "open /etc/app/config.yaml: no such file or directory", None, Unknown),
    (None, "invoice INV-401 rejected by downstream rules engine", None, Unknown),
    (None, r#"{"status":"failed","order_id":401}"#, None, Unknown),
    (None, "worker 3 of 500 finished with exit code 137", None, Unknown),
    (None, "v2.401.3 handler failed", None, Unknown),
    (Some("RuntimeError"), "unexpected state: expected PAID, got SHIPPED", None, Unknown),
    (None, "Elapsed time for batch 42: 12s; 3 items failed", None, Unknown),
    // ---- a word that goes on as a name is not that word ----
    (None, "HTTPError: 422 Client Error: Unprocessable Entity (requests.post(url, json=order, timeout=10))", None, Validation),
    (None, "WebClientResponseException$UnprocessableEntity: 422 from POST /orders\n\tat io.netty.handler.timeout.IdleStateHandler.channelRead(IdleStateHandler.java:286)", None, Validation),
    (None, "Request failed: connection timeout.", None, Timeout),
    (None, "java.net.SocketTimeoutException.<init>: Read timed out", None, Timeout),
    (None, "pydantic_core._pydantic_core.ValidationError: 1 validation error for RetryPolicy\ntimeout\n  Field required [type=missing, input_value={'retries': 3}, input_type=dict]", None, Validation),
    (None, "handler rejected payload {\"order_id\": 401, \"state\": \"NEW\"}", None, Unknown),
];

#[test]
fn default_rules_classify_the_corpus() {
    let rules = defaults();
    let mut wrong = Vec::new();
    for (error_type, message, status, want) in CORPUS {
        let got = rules.classify(&facts(BODY, *error_type, message, *status));
        // The body is valid, so a bad payload must come from the error, and "unknown" must be
        // the honest "nothing recognisable", not some rule that guessed.
        let expected_rule = match want {
            BadPayload => Some("decode-error"),
            Unknown => Some("unmatched"),
            _ => None,
        };
        if got.class != *want || expected_rule.is_some_and(|rule| rule != &*got.rule) {
            wrong.push(format!(
                "  {error_type:?} {message:?} {status:?}: want {want}, got {} ({})",
                got.class,
                got.reason()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} corpus rows misclassified:\n{}",
        wrong.len(),
        CORPUS.len(),
        wrong.join("\n")
    );
}

#[test]
fn corpus_is_large_and_covers_every_class() {
    assert!(CORPUS.len() >= 150, "only {} rows", CORPUS.len());
    for class in FailureClass::ALL {
        let rows = CORPUS.iter().filter(|row| row.3 == class).count();
        assert!(rows >= 10, "only {rows} rows of class {class}");
    }
    let mut seen = std::collections::HashSet::new();
    for (error_type, message, status, _) in CORPUS {
        assert!(
            seen.insert((error_type, message, status)),
            "duplicate row {message:?}"
        );
    }
}

#[test]
fn the_error_type_alone_is_enough_when_the_message_is_empty() {
    let cases = [
        ("java.net.SocketTimeoutException", Timeout),
        ("ECONNREFUSED", Dependency),
        ("ExpiredTokenException", Auth),
        ("pydantic_core._pydantic_core.ValidationError", Validation),
        ("json.decoder.JSONDecodeError", BadPayload),
        ("com.example.SomethingWentWrong", Unknown),
    ];
    for (error_type, want) in cases {
        let got = defaults().classify(&facts(BODY, Some(error_type), "", None));
        assert_eq!(got.class, want, "{error_type}: {}", got.reason());
    }
}

#[test]
fn signals_name_what_matched() {
    let rules = defaults();
    let got = rules.classify(&facts(
        BODY,
        Some("java.net.SocketTimeoutException"),
        "",
        None,
    ));
    assert_eq!(&*got.rule, "timeout");
    assert_eq!(
        got.signal,
        Some(Signal::ErrorType("SocketTimeoutException".into()))
    );
    let got = rules.classify(&facts(
        BODY,
        None,
        "Request failed with status code 401",
        None,
    ));
    assert_eq!(got.signal, Some(Signal::Status(401)));
    assert_eq!(got.reason(), "rule auth: HTTP status 401");
    let got = rules.classify(&facts(BODY, None, "", Some(503)));
    assert_eq!(
        (&*got.rule, got.signal),
        ("dependency", Some(Signal::Status(503)))
    );
    let got = rules.classify(&facts(BODY, None, "the export TOOK TOO LONG", None));
    assert_eq!(got.signal, Some(Signal::Text("took too long".into())));
}

// ---------------------------------------------------------------------------------------------
// Bodies

fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut body = vec![b'['; depth];
    body.extend(std::iter::repeat_n(b']', depth));
    body
}

fn nested_objects(depth: usize) -> Vec<u8> {
    let mut body = b"{\"a\":".repeat(depth);
    body.extend_from_slice(b"1");
    body.extend(std::iter::repeat_n(b'}', depth));
    body
}

/// Bodies that are not valid JSON, each still valid UTF-8 text.
fn non_json_text_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut truncated = br#"{"order_id":14013,"items":["#.to_vec();
    truncated.extend(std::iter::repeat_n(b'1', 10));
    vec![
        ("plain text", b"order 14013 for customer 77".to_vec()),
        ("empty", Vec::new()),
        ("whitespace", b"  \n".to_vec()),
        ("truncated json", truncated),
        ("single quotes", b"{'order_id': 14013}".to_vec()),
        ("xml", b"<order id=\"14013\"/>".to_vec()),
        ("1 MiB of text", vec![b'x'; 1 << 20]),
        ("100k nested arrays", nested_arrays(100_000)),
        ("100k nested objects", nested_objects(100_000)),
        (
            "just past the depth limit",
            nested_arrays(MAX_JSON_DEPTH + 1),
        ),
    ]
}

fn non_utf8_bodies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("latin-1", b"caf\xe9".to_vec()),
        ("binary", vec![0xff, 0xfe, 0x00, 0x01, 0x80]),
        ("gzip magic", vec![0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad]),
        ("json with a bad byte", b"{\"name\":\"\xff\"}".to_vec()),
    ]
}

const LOUD_ERRORS: [(Option<&str>, &str, Option<u16>); 4] = [
    (
        Some("ExpiredTokenException"),
        "The security token included in the request is expired",
        Some(403),
    ),
    (None, "connect ECONNREFUSED 127.0.0.1:5432", None),
    (
        Some("TimeoutError"),
        "Task timed out after 30.00 seconds",
        Some(504),
    ),
    (None, "", None),
];

#[test]
fn unreadable_bodies_on_a_json_queue_are_bad_payloads_whatever_the_error_says() {
    // Run on a small stack: deep nesting must never reach a recursive parser.
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let rules = defaults();
            let bodies = non_json_text_bodies().into_iter().chain(non_utf8_bodies());
            for (name, body) in bodies {
                for (error_type, message, status) in LOUD_ERRORS {
                    let got = rules.classify(&facts(&body, error_type, message, status));
                    assert_eq!(got.class, BadPayload, "{name} with {message:?}");
                    assert_eq!(&*got.rule, "unreadable-body", "{name}");
                    assert_eq!(got.signal, Some(Signal::BodyInvalid(BodyFormat::Json)));
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn valid_json_bodies_are_not_bad_payloads() {
    let mut big = b"[".to_vec();
    for i in 0..100_000 {
        big.extend_from_slice(format!("{{\"id\":{i}}},").as_bytes());
    }
    big.extend_from_slice(b"null]");
    assert!(big.len() > 1 << 20);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("object", BODY.to_vec()),
        (
            "string with brackets",
            br#"{"note":"[[[[{{{{ \" ]]"}"#.to_vec(),
        ),
        ("scalar", b"42".to_vec()),
        ("over 1 MiB", big),
        ("at the depth limit", nested_arrays(MAX_JSON_DEPTH)),
    ];
    for (name, body) in bodies {
        let got = defaults().classify(&facts(&body, None, "", None));
        assert_eq!((got.class, &*got.rule), (Unknown, "unmatched"), "{name}");
        let got = defaults().classify(&facts(&body, None, "connection reset by peer", None));
        assert_eq!(got.class, Dependency, "{name}");
    }
}

#[test]
fn the_depth_limit_is_serde_json_s() {
    for depth in MAX_JSON_DEPTH - 3..=MAX_JSON_DEPTH + 3 {
        for body in [nested_arrays(depth), nested_objects(depth)] {
            let parses = serde_json::from_slice::<Value>(&body).is_ok();
            assert_eq!(
                body_is_valid(&body, BodyFormat::Json),
                parses,
                "depth {depth}"
            );
        }
    }
    assert!(body_is_valid(
        &nested_arrays(MAX_JSON_DEPTH),
        BodyFormat::Json
    ));
    assert!(!body_is_valid(
        &nested_arrays(MAX_JSON_DEPTH + 1),
        BodyFormat::Json
    ));
    // Brackets inside strings, escaped quotes included, do not count.
    let mut deep_string = b"[\"".to_vec();
    deep_string.extend(std::iter::repeat_n(b'[', 1000));
    deep_string.extend_from_slice(b"\\\"\"]");
    assert!(body_is_valid(&deep_string, BodyFormat::Json));
}

fn rules_with_body_formats() -> RuleSet {
    let text = format!(
        "{DEFAULT_RULES_TOML}\n[[body_format]]\nsource = \"audit-*\"\nformat = \"text\"\n\n[[body_format]]\nsource = \"blobs-*\"\nformat = \"binary\"\n"
    );
    RuleSet::from_toml(&text, "rules.toml").unwrap()
}

fn formatted_rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(rules_with_body_formats)
}

#[test]
fn text_and_binary_queues_do_not_judge_bodies_as_json() {
    let rules = rules_with_body_formats();
    let text_queue = "arn:aws:sqs:us-east-1:123456789012:audit-log";
    let binary_queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/blobs-images";
    assert_eq!(rules.body_format(Some(text_queue)), BodyFormat::Text);
    assert_eq!(rules.body_format(Some(binary_queue)), BodyFormat::Binary);
    assert_eq!(rules.body_format(Some(QUEUE_URL)), BodyFormat::Json);
    assert_eq!(rules.body_format(None), BodyFormat::Json);
    let classify = |source: &str, body: &[u8], message: &str| {
        let mut f = facts(body, None, message, None);
        f.source = Some(source);
        rules.classify(&f)
    };
    for (name, body) in non_json_text_bodies() {
        for queue in [text_queue, binary_queue] {
            let got = classify(queue, &body, "");
            assert_eq!(
                (got.class, &*got.rule),
                (Unknown, "unmatched"),
                "{name} on {queue}"
            );
            let got = classify(queue, &body, "connect ECONNREFUSED 127.0.0.1:5432");
            assert_eq!(got.class, Dependency, "{name} on {queue}");
        }
    }
    for (name, body) in non_utf8_bodies() {
        // Not text: a bad payload on a text queue, but any bytes go on a binary queue.
        let got = classify(text_queue, &body, "connect ECONNREFUSED 127.0.0.1:5432");
        assert_eq!(got.class, BadPayload, "{name}");
        assert_eq!(got.signal, Some(Signal::BodyInvalid(BodyFormat::Text)));
        let got = classify(binary_queue, &body, "connect ECONNREFUSED 127.0.0.1:5432");
        assert_eq!(got.class, Dependency, "{name}");
    }
    // A decoding error the consumer reports still makes a bad payload on a text queue.
    let got = classify(
        text_queue,
        b"a,b,c",
        "Expecting value: line 1 column 1 (char 0)",
    );
    assert_eq!((got.class, &*got.rule), (BadPayload, "decode-error"));
}

// ---------------------------------------------------------------------------------------------
// Context state

fn context_facts<'a>(body: &'a [u8], context: ContextState) -> Facts<'a> {
    // Without a readable context there is no error type, message or status.
    Facts {
        context,
        ..facts(body, None, "", None)
    }
}

#[test]
fn unreadable_contexts_are_unknown_with_a_reason() {
    let readings = [
        ContextReading::parse("{\"v\":1,\"error\":{\"message\":\"trunc"),
        ContextReading::parse("not json at all"),
        ContextReading::parse(r#"{"v":2,"error":{"kind":"timeout"}}"#),
    ];
    let states: Vec<ContextState> = readings.iter().map(ContextReading::state).collect();
    assert_eq!(
        states,
        [
            ContextState::Corrupt,
            ContextState::Corrupt,
            ContextState::UnsupportedVersion
        ]
    );
    for state in states {
        let got = defaults().classify(&context_facts(BODY, state));
        assert_eq!(got.class, Unknown);
        assert_eq!(&*got.rule, "unreadable-context");
        assert_eq!(got.signal, Some(Signal::Context(state)));
        assert!(
            got.reason()
                .starts_with("rule unreadable-context: dlq-context is ")
        );
        // A body that cannot be read is still the stronger fact.
        let got = defaults().classify(&context_facts(b"{oops", state));
        assert_eq!((got.class, &*got.rule), (BadPayload, "unreadable-body"));
    }
}

#[test]
fn a_missing_context_with_a_valid_body_is_unmatched() {
    let got = defaults().classify(&context_facts(BODY, ContextState::Missing));
    assert_eq!(got.class, Unknown);
    assert_eq!(&*got.rule, "unmatched");
    assert_eq!(got.signal, Some(Signal::Always));
    let got = defaults().classify(&context_facts(b"", ContextState::Missing));
    assert_eq!(got.class, BadPayload);
}

// ---------------------------------------------------------------------------------------------
// Rules-file errors

fn rules_error(text: &str) -> RulesError {
    match RuleSet::from_toml(text, "rules/custom.toml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

/// The 1-based line of the `occurrence`-th (1-based) line that contains `needle`.
fn line_of(text: &str, needle: &str, occurrence: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.contains(needle))
        .nth(occurrence - 1)
        .map(|(i, _)| i + 1)
        .unwrap()
}

const GOOD_RULE: &str = "[[rule]]\nname = \"ok\"\nclass = \"timeout\"\ntext = [\"slow\"]\n";

#[test]
fn rules_file_errors_name_the_file_the_place_and_the_fix() {
    // (file text, words the reason must contain, the line the error must point at: for a
    // value of a rule or a policy's number, the value or key at fault)
    let cases: Vec<(String, &[&str], Option<usize>)> = vec![
        (
            "[[rule]\nname = \"x\"\nclass = \"auth\"\n".into(),
            &["invalid table header"],
            Some(1),
        ),
        (
            format!(
                "{GOOD_RULE}\n[[rule]]\nname = \"x\"\nclass = \"auth\"\ntexts = [\"denied\"]\n"
            ),
            &["unknown field `texts`", "expected one of", "`text`"],
            Some(9),
        ),
        (
            format!("{GOOD_RULE}\n[[rule]]\nname = \"x\"\nclass = \"transient\"\n"),
            &["unknown variant `transient`", "`dependency`"],
            Some(8),
        ),
        (
            format!(
                "{GOOD_RULE}\n[[rule]]\nname = \"ok\"\nclass = \"auth\"\ntext = [\"denied\"]\n"
            ),
            &["\"ok\" is used twice", "must be unique"],
            Some(7),
        ),
        (
            format!(
                "{GOOD_RULE}\n[[rule]]\nname = \"re\"\nclass = \"auth\"\nregex = [\"(unclosed\"]\n"
            ),
            &[
                "rule \"re\"",
                "invalid regex \"(unclosed\"",
                "fix the pattern",
            ],
            Some(9),
        ),
        (
            format!("{GOOD_RULE}\n[[rule]]\nname = \"s\"\nclass = \"auth\"\nstatus = [401, 600]\n"),
            &["status 600", "100-599"],
            Some(9),
        ),
        (
            format!("{GOOD_RULE}\n[[rule]]\nname = \"s\"\nclass = \"auth\"\nstatus = [99]\n"),
            &["status 99", "100-599"],
            Some(9),
        ),
        (
            format!(
                "{GOOD_RULE}\n[[rule]]\nname = \"j\"\nclass = \"validation\"\njson_missing = [\"user/id\"]\n"
            ),
            &["\"user/id\" is not a JSON pointer", "\"/user/id\""],
            Some(9),
        ),
        (
            format!("{GOOD_RULE}\n[[rule]]\nname = \"\"\nclass = \"auth\"\n"),
            &["rule #2 has an empty name"],
            Some(7),
        ),
        (
            format!("{GOOD_RULE}\n[[rule]]\nname = \"t\"\nclass = \"auth\"\ntext = [\"  \"]\n"),
            &["empty text"],
            Some(9),
        ),
        (
            "[settings]\ndefault_body = \"json\"\n".into(),
            &["no [[rule]] entries", "add at least one"],
            None,
        ),
        (
            format!("[settings]\ndefault_body = \"yaml\"\n\n{GOOD_RULE}"),
            &["unknown variant `yaml`", "`text`"],
            Some(2),
        ),
        (
            format!("{GOOD_RULE}\n[policy.timeout]\naction = \"requeue\"\nmax_attempts = 0\n"),
            &["policy for timeout", "max_attempts must be at least 1"],
            Some(8),
        ),
        (
            format!(
                "{GOOD_RULE}\n[policy.dependency]\naction = \"requeue\"\nbase_delay_seconds = 60\nmax_delay_seconds = 10\n"
            ),
            &["base_delay_seconds 60 is more than max_delay_seconds 10"],
            Some(8),
        ),
        (
            format!(
                "{GOOD_RULE}\n[policy.auth]\naction = \"requeue\"\nmax_delay_seconds = 100000\n"
            ),
            &["12 hours"],
            Some(8),
        ),
        (
            format!("{GOOD_RULE}\n[policy.auth]\naction = \"retry\"\n"),
            &["unknown variant `retry`", "`requeue`"],
            Some(7),
        ),
        (
            format!("{GOOD_RULE}\n[policy.flaky]\naction = \"archive\"\n"),
            &["unknown variant `flaky`", "bad_payload"],
            Some(6),
        ),
    ];
    for (text, words, line) in cases {
        let error = rules_error(&text);
        let shown = error.to_string();
        assert!(shown.starts_with("rules/custom.toml"), "{shown}");
        for word in words {
            assert!(shown.contains(word), "{shown:?} lacks {word:?}");
        }
        assert!(!error.reason.is_empty());
        if let Some(line) = line {
            let prefix = format!(":{line}:");
            assert!(
                error.location.starts_with(&prefix),
                "{shown:?} should point at line {line}"
            );
            let column: usize = error.location[prefix.len()..].parse().unwrap();
            assert!(column >= 1, "{shown}");
            assert!(shown.starts_with(&format!("rules/custom.toml{prefix}{column}: ")));
        }
    }
}

#[test]
fn rule_errors_point_at_the_offending_rule_not_an_earlier_mention_of_its_name() {
    // The name "dup" appears first inside a text list, then as two rule names; the duplicate is
    // the third mention.
    let text = "[[rule]]\nname = \"first\"\nclass = \"auth\"\ntext = [\"dup\"]\n\n[[rule]]\nname = \"dup\"\nclass = \"auth\"\n\n[[rule]]\nname = \"dup\"\nclass = \"timeout\"\n";
    let error = rules_error(text);
    assert_eq!(
        error.location,
        format!(":{}:8", line_of(text, "name = \"dup\"", 2))
    );
    assert_eq!(error.location, ":11:8");
    let text = "[[rule]]\nname = \"a\"\nclass = \"auth\"\ntext = [\"s\"]\n\n[[rule]]\nname = \"s\"\nclass = \"auth\"\nstatus = [700]\n";
    let error = rules_error(text);
    assert_eq!(
        error.location,
        format!(":{}:11", line_of(text, "status = [700]", 1)),
        "at the value"
    );
    // Unknown field: toml points at the key itself.
    let text = "[[rule]]\nname = \"a\"\nclass = \"auth\"\n  colour = \"red\"\n";
    assert_eq!(rules_error(text).location, ":4:3");
}

#[test]
fn the_default_rules_are_valid_and_in_the_documented_order() {
    let names: Vec<&str> = defaults().rule_names().collect();
    assert_eq!(
        names,
        [
            "unreadable-body",
            "unreadable-context",
            "auth",
            "decode-error",
            "validation-report",
            "timeout",
            "dependency",
            "validation",
            "unmatched"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Custom rules

fn custom(text: &str) -> RuleSet {
    RuleSet::from_toml(text, "custom.toml").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn json_missing_matches_missing_or_null_pointers_only() {
    let rules = custom(
        "[[rule]]\nname = \"needs-customer\"\nclass = \"validation\"\njson_missing = [\"/customer/id\", \"/items/0/sku\"]\n\n[[rule]]\nname = \"rest\"\nclass = \"unknown\"\n",
    );
    let cases: [(&[u8], Option<&str>); 7] = [
        (br#"{"customer":{"id":7},"items":[{"sku":"A"}]}"#, None),
        (br#"{"customer":{"id":0},"items":[{"sku":""}]}"#, None),
        (
            br#"{"customer":{},"items":[{"sku":"A"}]}"#,
            Some("/customer/id"),
        ),
        (
            br#"{"customer":{"id":null},"items":[{"sku":"A"}]}"#,
            Some("/customer/id"),
        ),
        (br#"{"customer":{"id":7},"items":[]}"#, Some("/items/0/sku")),
        (br#"{"customer":{"id":7}}"#, Some("/items/0/sku")),
        (br#"[1,2,3]"#, Some("/customer/id")),
    ];
    for (body, missing) in cases {
        let got = rules.classify(&facts(body, None, "", None));
        let body = String::from_utf8_lossy(body);
        match missing {
            Some(pointer) => {
                assert_eq!(&*got.rule, "needs-customer", "{body}");
                assert_eq!(
                    got.signal,
                    Some(Signal::JsonMissing(pointer.into())),
                    "{body}"
                );
                assert_eq!(
                    got.reason(),
                    format!("rule needs-customer: body has no value at {pointer}")
                );
            }
            None => assert_eq!(&*got.rule, "rest", "{body}"),
        }
    }
    // A body that is not JSON at all has no pointers to judge: that is body_invalid's job.
    let got = rules.classify(&facts(b"not json", None, "", None));
    assert_eq!(&*got.rule, "rest");
}

#[test]
fn attributes_must_all_match() {
    let rules = custom(
        "[[rule]]\nname = \"acme-orders\"\nclass = \"validation\"\nattributes = { tenant = \"acme\", kind = \"order\" }\n\n[[rule]]\nname = \"rest\"\nclass = \"unknown\"\n",
    );
    let attrs = |pairs: &[(&str, &str)]| -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Attribute::string(*v)))
            .collect()
    };
    let cases = [
        (
            attrs(&[("tenant", "acme"), ("kind", "order"), ("x", "y")]),
            "acme-orders",
        ),
        (attrs(&[("tenant", "acme"), ("kind", "refund")]), "rest"),
        (attrs(&[("tenant", "acme")]), "rest"),
        (attrs(&[("tenant", "ACME"), ("kind", "order")]), "rest"),
        (attrs(&[]), "rest"),
    ];
    for (attributes, want) in cases {
        let mut f = facts(BODY, None, "", None);
        f.attributes = &attributes;
        let got = rules.classify(&f);
        assert_eq!(&*got.rule, want, "{attributes:?}");
        if want == "acme-orders" {
            assert_eq!(got.signal, Some(Signal::Attributes));
        }
    }
}

#[test]
fn source_globs_match_names_arns_and_urls() {
    let rules = custom(
        r#"
[[rule]]
name = "orders-by-name"
class = "validation"
source = ["orders-*"]

[[rule]]
name = "eu-by-arn"
class = "timeout"
source = ["arn:aws:sqs:eu-west-1:*"]

[[rule]]
name = "by-url"
class = "dependency"
source = ["https://sqs.us-west-2.amazonaws.com/*/payments"]

[[rule]]
name = "rest"
class = "unknown"
"#,
    );
    let cases = [
        ("orders-eu", "orders-by-name"),
        (
            "https://sqs.us-east-1.amazonaws.com/123456789012/orders-eu",
            "orders-by-name",
        ),
        (
            "arn:aws:sqs:us-east-1:123456789012:orders-us",
            "orders-by-name",
        ),
        ("orders", "rest"),
        ("legacy-orders-eu", "rest"),
        ("arn:aws:sqs:eu-west-1:123456789012:payments", "eu-by-arn"),
        (
            "https://sqs.eu-west-1.amazonaws.com/123456789012/payments",
            "rest",
        ),
        (
            "https://sqs.us-west-2.amazonaws.com/123456789012/payments",
            "by-url",
        ),
        (
            "https://sqs.us-west-2.amazonaws.com/123456789012/payments-dlq",
            "rest",
        ),
        ("payments", "rest"),
    ];
    for (source, want) in cases {
        let mut f = facts(BODY, None, "", None);
        f.source = Some(source);
        let got = rules.classify(&f);
        assert_eq!(&*got.rule, want, "{source}");
        assert_eq!(got.signal, Some(Signal::Always));
    }
    let mut f = facts(BODY, None, "", None);
    f.source = None;
    assert_eq!(&*rules.classify(&f).rule, "rest");
}

#[test]
fn min_receive_count_is_a_guard() {
    let rules = custom(
        "[[rule]]\nname = \"stuck\"\nclass = \"unknown\"\nmin_receive_count = 3\ntext = [\"boom\"]\n\n[[rule]]\nname = \"boom\"\nclass = \"dependency\"\ntext = [\"boom\"]\n",
    );
    for (count, want) in [(0, "boom"), (2, "boom"), (3, "stuck"), (50, "stuck")] {
        let mut f = facts(BODY, None, "it went boom", None);
        f.receive_count = count;
        assert_eq!(&*rules.classify(&f).rule, want, "receive count {count}");
    }
    let mut f = facts(BODY, None, "quiet", None);
    f.receive_count = 9;
    assert_eq!(
        &*rules.classify(&f).rule,
        "(none)",
        "the guard is not a signal"
    );
    assert_eq!(rules.classify(&f).class, Unknown);
    assert_eq!(rules.classify(&f).reason(), "no rule matched");
}

#[test]
fn regex_signals_are_case_insensitive() {
    let rules = custom(
        r#"
[[rule]]
name = "order-state"
class = "validation"
regex = ['order \d+ is (?:closed|cancel+ed)', '^fatal:']
"#,
    );
    for (message, matched) in [
        (
            "Order 14013 is CLOSED",
            Some(r"order \d+ is (?:closed|cancel+ed)"),
        ),
        (
            "why: order 7 is cancelled",
            Some(r"order \d+ is (?:closed|cancel+ed)"),
        ),
        ("FATAL: disk", Some("^fatal:")),
        ("order x is closed", None),
        ("not fatal: disk", None),
    ] {
        let got = rules.classify(&facts(BODY, None, message, None));
        assert_eq!(
            got.signal,
            matched.map(|r| Signal::Regex(r.into())),
            "{message}"
        );
    }
}

#[test]
fn the_first_matching_rule_wins() {
    let a_then_b = "[[rule]]\nname = \"a\"\nclass = \"auth\"\ntext = [\"boom\"]\n\n[[rule]]\nname = \"b\"\nclass = \"timeout\"\nerror_type = [\"BoomError\"]\n";
    let b_then_a = "[[rule]]\nname = \"b\"\nclass = \"timeout\"\nerror_type = [\"BoomError\"]\n\n[[rule]]\nname = \"a\"\nclass = \"auth\"\ntext = [\"boom\"]\n";
    let f = facts(BODY, Some("app.BoomError"), "boom", None);
    let got = custom(a_then_b).classify(&f);
    assert_eq!((got.class, &*got.rule), (Auth, "a"));
    assert_eq!(got.signal, Some(Signal::Text("boom".into())));
    let got = custom(b_then_a).classify(&f);
    assert_eq!((got.class, &*got.rule), (Timeout, "b"));
    assert_eq!(got.signal, Some(Signal::ErrorType("BoomError".into())));
}

#[test]
fn rule_sets_larger_than_the_inline_hits_still_find_each_rules_text() {
    // More rules than `INLINE_RULES`, so the per-message hits spill to the heap; each text must
    // still decide for its own rule, and an earlier rule still win.
    let count = INLINE_RULES + 4;
    let toml: String = (0..count)
        .map(|i| {
            format!("[[rule]]\nname = \"r{i}\"\nclass = \"timeout\"\ntext = [\"marker{i}\"]\n\n")
        })
        .collect();
    let rules = custom(&toml);
    for i in [0, INLINE_RULES - 1, INLINE_RULES, count - 1] {
        let message = format!("failed: marker{i}");
        let got = rules.classify(&facts(BODY, None, &message, None));
        assert_eq!(&*got.rule, format!("r{i}"), "{message}");
        assert_eq!(got.signal, Some(Signal::Text(format!("marker{i}").into())));
    }
    let both = format!("marker{} then marker3", count - 1);
    assert_eq!(&*rules.classify(&facts(BODY, None, &both, None)).rule, "r3");
}

#[test]
fn a_rule_without_signals_is_a_catch_all_within_its_guards() {
    let rules = custom(
        "[[rule]]\nname = \"audit\"\nclass = \"bad_payload\"\nsource = [\"audit-*\"]\nmin_receive_count = 2\n\n[[rule]]\nname = \"specific\"\nclass = \"timeout\"\ntext = [\"slow\"]\n",
    );
    let classify = |source: &'static str, count: u32, message: &'static str| {
        let mut f = facts(BODY, None, message, None);
        f.source = Some(source);
        f.receive_count = count;
        rules.classify(&f)
    };
    let got = classify("audit-log", 2, "");
    assert_eq!((&*got.rule, got.signal), ("audit", Some(Signal::Always)));
    assert_eq!(&*classify("audit-log", 2, "slow").rule, "audit");
    assert_eq!(&*classify("audit-log", 1, "slow").rule, "specific");
    assert_eq!(&*classify("orders", 5, "slow").rule, "specific");
    assert_eq!(&*classify("orders", 5, "fine").rule, "(none)");
}

#[test]
fn explain_tries_every_rule_and_says_why() {
    let rules = custom(
        r#"
[[rule]]
name = "guarded"
class = "auth"
source = ["payments"]
text = ["denied"]

[[rule]]
name = "patient"
class = "unknown"
min_receive_count = 3

[[rule]]
name = "quiet"
class = "validation"
text = ["never said"]

[[rule]]
name = "status"
class = "dependency"
status = [503]

[[rule]]
name = "denied"
class = "auth"
text = ["access denied"]

[[rule]]
name = "rest"
class = "unknown"
"#,
    );
    let f = facts(BODY, None, "Access Denied (HTTP 503)", None);
    let trials = rules.explain(&f);
    let names: Vec<&str> = trials.iter().map(|t| &*t.rule).collect();
    assert_eq!(names, rules.rule_names().collect::<Vec<_>>());
    assert_eq!(trials.len(), 6);
    let outcome = |name: &str| {
        trials
            .iter()
            .find(|t| t.rule == name)
            .unwrap()
            .outcome
            .clone()
    };
    let guarded = outcome("guarded").unwrap_err();
    assert!(
        guarded.contains("is not one of") && guarded.contains("payments"),
        "{guarded}"
    );
    assert_eq!(outcome("patient"), Err("receive count 1 is below 3".into()));
    assert_eq!(outcome("quiet"), Err("no signal matched".into()));
    assert_eq!(outcome("status"), Ok(Signal::Status(503)));
    assert_eq!(outcome("denied"), Ok(Signal::Text("access denied".into())));
    assert_eq!(outcome("rest"), Ok(Signal::Always));
    assert_eq!(trials[4].class, Auth);
    // classify agrees with the first Ok trial.
    let got = rules.classify(&f);
    assert_eq!((&*got.rule, got.class), ("status", Dependency));
    // The default rules explain themselves too.
    let trials = defaults().explain(&facts(BODY, None, "socket hang up", None));
    assert_eq!(trials.len(), defaults().rule_names().count());
    let first_ok = trials.iter().find(|t| t.outcome.is_ok()).unwrap();
    assert_eq!(&*first_ok.rule, "dependency");
    assert_eq!(trials.last().unwrap().outcome, Ok(Signal::Always));
}

#[test]
fn error_types_match_qualified_names_and_mentions_in_the_text() {
    let rules = custom(
        "[[rule]]\nname = \"t\"\nclass = \"timeout\"\nerror_type = [\"SocketTimeoutException\"]\n",
    );
    for (error_type, message, hit) in [
        (Some("java.net.SocketTimeoutException"), "", true),
        (Some("sockettimeoutexception"), "", true),
        (Some("Foo::SocketTimeoutException"), "", true),
        (
            None,
            "Caused by: java.net.SocketTimeoutException: Read timed out",
            true,
        ),
        (Some("java.net.SocketTimeoutExceptionWrapper"), "", false),
        (None, "MySocketTimeoutException", false),
    ] {
        let got = rules.classify(&facts(BODY, error_type, message, None));
        assert_eq!(&*got.rule == "t", hit, "{error_type:?} {message:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Statuses in text

#[test]
fn statuses_written_as_statuses_are_found() {
    let cases: &[(&str, &[u16])] = &[
        ("429 Too Many Requests", &[429]),
        ("HTTP/1.1 503 Service Unavailable", &[503]),
        ("HTTP/2 500", &[500]),
        ("Request failed with status code 401", &[401]),
        ("(Service: Sqs, Status Code: 403, Request ID: 1)", &[403]),
        ("status=500", &[500]),
        ("statusCode: 429", &[429]),
        ("HTTP Error 503: Service Unavailable", &[503]),
        ("Error code: 429 - {'error': {}}", &[429]),
        (r#"{"code":503,"message":"down"}"#, &[503]),
        (r#"{"$metadata":{"httpStatusCode":503}}"#, &[503]),
        (
            "HTTP status client error (401 Unauthorized) for url",
            &[401],
        ),
        ("401 Client Error: Unauthorized for url", &[401]),
        ("upstream returned 502", &[502]),
        ("got 504 from upstream", &[504]),
        ("status: 503.", &[503]),
        ("→401 Unauthorized", &[401]),
        ("«HTTP 502» then 504 Gateway Timeout", &[502, 504]),
    ];
    for (text, want) in cases {
        assert_eq!(statuses_in_text(text), *want, "{text}");
    }
}

#[test]
fn numbers_that_are_not_statuses_are_ignored() {
    for text in [
        "order 14013 failed",
        "processing order 401 of 500",
        "user id 503",
        "user id 503 not eligible",
        "user 401 not found",
        "503 messages were skipped",
        "retry in 503ms",
        "took 401.5 ms",
        "v1.401.2",
        "id-401x",
        "ORD-503",
        "promo code 401",
        "exit code 137",
        "error_401",
        "status 401abc",
        "é401 Unauthorized",
        "status 600",
        "status 099",
        "status 4011",
        "query returned 500 rows",
        "search got 404 results in 2 ms",
        "",
    ] {
        assert_eq!(statuses_in_text(text), Vec::<u16>::new(), "{text}");
    }
}

/// Whether `status` occurs in `text` as a standalone three-digit token.
fn is_standalone_token(text: &str, status: u16) -> bool {
    let needle = status.to_string();
    text.match_indices(&needle).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let mut after = text[at + 3..].chars();
        let before_ok = before.is_none_or(|c| !(c.is_alphanumeric() || "_-.".contains(c)));
        let after_ok = match after.next() {
            None => true,
            Some('.') => !after.next().is_some_and(|c| c.is_ascii_digit()),
            Some(c) => !(c.is_alphanumeric() || "_-".contains(c)),
        };
        before_ok && after_ok
    })
}

const STATUS_VOCABULARY: &[&str] = &[
    "401",
    "403",
    "429",
    "500",
    "503",
    "504",
    "14013",
    "12",
    "7",
    "status",
    "code",
    "HTTP/1.1",
    "http",
    "Error",
    "order",
    "promo",
    "Unauthorized",
    "Service",
    "Too",
    "not",
    "found",
    "ms",
    " ",
    " ",
    " ",
    ":",
    "=",
    ".",
    "-",
    "_",
    "(",
    ")",
    "\"",
    "'",
    "é",
    "→",
    "٣",
    "\u{0301}",
    "\n",
];

proptest! {
    #[test]
    fn statuses_in_text_only_returns_standalone_three_digit_tokens(
        parts in prop::collection::vec(prop::sample::select(STATUS_VOCABULARY), 0..24)
    ) {
        let text: String = parts.concat();
        for status in statuses_in_text(&text) {
            prop_assert!((100..=599).contains(&status));
            prop_assert!(is_standalone_token(&text, status), "{status} in {text:?}");
        }
    }

    #[test]
    fn error_types_match_the_whole_type_or_its_last_part(
        rule_type in prop::sample::select(vec!["SocketTimeoutException", "ECONNRESET", "Timeout", "x_1", "Err.Timeout"]),
        prefix in prop::sample::select(vec!["", "java.net.", "Foo::", "a/", "a\\", "pkg.Sub:", "My", "é"]),
        body in prop::sample::select(vec!["SocketTimeoutException", "sockettimeoutexception", "ECONNRESET", "timeout", "TIMEOUT", "x_1", "Err.Timeout", "err.timeout"]),
        suffix in prop::sample::select(vec!["", "Wrapper", "_2", ".", "é"]),
    ) {
        let error_type = format!("{prefix}{body}{suffix}");
        let last = error_type
            .rsplit(['.', ':', '/', '\\'])
            .next()
            .unwrap_or(&error_type);
        let named = error_type.eq_ignore_ascii_case(rule_type) || last.eq_ignore_ascii_case(rule_type);
        let rules = custom(&format!(
            "[[rule]]\nname = \"t\"\nclass = \"timeout\"\nerror_type = [{rule_type:?}]\n"
        ));
        let got = rules.classify(&facts(BODY, Some(&error_type), "", None));
        if named {
            prop_assert_eq!(&*got.rule, "t", "{} names {}", error_type, rule_type);
            prop_assert_eq!(got.signal, Some(Signal::ErrorType(rule_type.into())));
        }
    }

    #[test]
    fn words_around_a_number_are_read_as_by_characters(
        text in "[a-zA-Z0-9_/. :=#(\\[\t\"'é→-]{0,24}",
        at in any::<prop::sample::Index>(),
    ) {
        let boundaries: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
        let index = *at.get(&boundaries);
        // The definitions by characters that the byte walks must agree with.
        let head = text[..index].trim_end_matches([' ', ':', '=', '#', '(', '[', '\t', '"', '\'']);
        let start = head
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '/' || c == '.'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let before = (start < head.len()).then(|| (&head[start..], start));
        prop_assert_eq!(word_before(&text, index), before);
        let tail = text[index..].trim_start_matches([' ', '\t', ':', '-', '(', '\'', '"']);
        let end = tail.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(tail.len());
        prop_assert_eq!(word_after(&text, index), (end > 0).then(|| &tail[..end]));
    }

    #[test]
    fn next_digit_finds_the_first_digit(
        bytes in prop::collection::vec(prop::sample::select(b"ab09/:\x80\xff\x2f\x3a ".to_vec()), 0..40),
        from in 0usize..40,
    ) {
        let from = from.min(bytes.len());
        let expected = bytes[from..]
            .iter()
            .position(u8::is_ascii_digit)
            .map_or(bytes.len(), |at| from + at);
        prop_assert_eq!(next_digit(&bytes, from), expected);
    }

    #[test]
    fn statuses_in_arbitrary_text_never_panic_and_are_tokens(text in any::<String>()) {
        for status in statuses_in_text(&text) {
            prop_assert!(is_standalone_token(&text, status), "{status} in {text:?}");
        }
    }

    #[test]
    fn classify_never_panics(
        body in prop::collection::vec(any::<u8>(), 0..256),
        message in any::<String>(),
        error_type in prop::option::of(any::<String>()),
        status in any::<Option<u16>>(),
        source in prop::option::of("[a-z:/.*-]{0,30}"),
        receive_count in any::<u32>(),
        state in prop::sample::select(vec![
            ContextState::Missing,
            ContextState::Valid,
            ContextState::Corrupt,
            ContextState::UnsupportedVersion,
        ]),
    ) {
        for rules in [defaults(), formatted_rules()] {
            let f = Facts {
                body: &body,
                error_type: error_type.as_deref(),
                error_message: &message,
                status,
                attributes: &NO_ATTRIBUTES,
                source: source.as_deref(),
                receive_count,
                context: state,
            };
            let got = rules.classify(&f);
            // The defaults end in a catch-all, so some rule always decides.
            prop_assert!(rules.rule_names().any(|name| name == &*got.rule));
            prop_assert!(got.signal.is_some());
            let trials = rules.explain(&f);
            prop_assert_eq!(trials.len(), rules.rule_names().count());
            let first = trials.iter().find(|t| t.outcome.is_ok()).unwrap();
            prop_assert_eq!(first.rule.as_str(), &*got.rule);
        }
    }

    #[test]
    fn classify_never_panics_on_text_built_from_rule_words(
        parts in prop::collection::vec(prop::sample::select(STATUS_VOCABULARY), 0..24),
        body in prop::collection::vec(prop::sample::select(vec![b'[', b']', b'{', b'}', b'"', b'\\', b'1', b':', b',', 0xff]), 0..64),
    ) {
        let message = parts.concat();
        let got = defaults().classify(&facts(&body, Some(&message), &message, None));
        prop_assert_eq!(
            got.class == BadPayload && &*got.rule == "unreadable-body",
            !body_is_valid(&body, BodyFormat::Json)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Writing your own rules: traps refused, policies merged, the defaults extended

#[test]
fn a_rule_after_one_that_matches_everything_is_refused() {
    let text = "[[rule]]\nname = \"rest\"\nclass = \"unknown\"\n\n[[rule]]\nname = \"card-velocity\"\nclass = \"validation\"\ntext = [\"card velocity exceeded\"]\n";
    let error = rules_error(text);
    assert_eq!(error.location, ":6:8", "{error}");
    assert!(
        error.reason.contains("\"card-velocity\" can never match"),
        "{error}"
    );
    assert!(
        error.reason.contains("rule \"rest\" before it (line 2)"),
        "{error}"
    );
    // A guard is enough for the rules after it to be reachable.
    custom(
        "[[rule]]\nname = \"pay\"\nclass = \"dependency\"\nsource = [\"pay*\"]\n\n[[rule]]\nname = \"rest\"\nclass = \"unknown\"\n",
    );
}

#[test]
fn keys_that_hold_nothing_are_refused_not_taken_for_a_catch_all() {
    for (key, value) in [
        ("text", "[]"),
        ("error_type", "[]"),
        ("status", "[]"),
        ("regex", "[]"),
        ("body_invalid", "false"),
        ("json_missing", "[]"),
        ("attributes", "{}"),
        ("context", "[]"),
        ("source", "[]"),
    ] {
        let text = format!("[[rule]]\nname = \"r\"\nclass = \"auth\"\n{key} = {value}\n");
        let error = rules_error(&text);
        assert!(
            error.reason.contains(&format!("{key} holds nothing")),
            "{key}: {error}"
        );
    }
    let error = rules_error("[[rule]]\nname = \"r\"\nclass = \"auth\"\nregex = [\"\"]\n");
    assert!(error.reason.contains("empty regex"), "{error}");
}

#[test]
fn a_policy_keeps_the_class_defaults_for_the_keys_it_leaves_out() {
    let rule = "[[rule]]\nname = \"rest\"\nclass = \"unknown\"\n";
    let auth = custom(&format!("[policy.auth]\naction = \"archive\"\n\n{rule}"));
    assert!(auth.policy(Auth).alert, "auth still alerts");
    let dependency = custom(&format!("[policy.dependency]\nmax_attempts = 2\n\n{rule}"));
    let policy = dependency.policy(Dependency);
    assert_eq!(
        (
            policy.action,
            policy.max_attempts,
            policy.base_delay_seconds,
            policy.max_delay_seconds,
            policy.alert_when_exhausted
        ),
        (BaseAction::Requeue, 2, 10, 3600, true)
    );
    let requeued = custom(&format!(
        "[policy.validation]\naction = \"requeue\"\n\n{rule}"
    ));
    assert_eq!(
        requeued.policy(Validation).max_attempts,
        DEFAULT_MAX_ATTEMPTS
    );
    let text = format!("[policy.validation]\nalert = true\nmax_attempts = 3\n\n{rule}");
    let error = rules_error(&text);
    assert_eq!(error.location, ":3:1", "{error}");
    assert!(
        error
            .reason
            .contains("max_attempts is for action = \"requeue\""),
        "{error}"
    );
}

#[test]
fn the_shipped_policies_are_the_design_table() {
    assert_eq!(defaults().policies(), &PolicyTable::default());
}

#[test]
fn extend_defaults_tries_the_file_s_rules_first_then_the_shipped_ones() {
    let text = "[settings]\nextend_defaults = true\n\n[policy.validation]\nalert = true\n\n[[rule]]\nname = \"card-velocity\"\nclass = \"validation\"\ntext = [\"card velocity exceeded\"]\n";
    let rules = custom(text);
    let classify = |message: &str| {
        let got = rules.classify(&facts(BODY, None, message, None));
        (got.class, got.rule.to_string())
    };
    assert_eq!(
        classify("card velocity exceeded for order 42"),
        (Validation, "card-velocity".to_string())
    );
    assert_eq!(
        classify("503 Service Unavailable"),
        (Dependency, "dependency".to_string())
    );
    assert_eq!(
        classify("nothing known"),
        (Unknown, "unmatched".to_string())
    );
    assert!(rules.policy(Validation).alert);
    assert_eq!(rules.policy(Timeout), defaults().policy(Timeout));
    assert_eq!(
        rules.rule_names().count(),
        defaults().rule_names().count() + 1
    );

    let error = rules_error(
        "[settings]\nextend_defaults = true\n\n[[rule]]\nname = \"auth\"\nclass = \"auth\"\ntext = [\"nope\"]\n",
    );
    assert!(error.reason.contains("is a default rule's"), "{error}");
    let error = rules_error(
        "[settings]\nextend_defaults = true\n\n[[rule]]\nname = \"mine\"\nclass = \"unknown\"\n",
    );
    assert!(
        error.reason.contains("extend_defaults adds after it"),
        "{error}"
    );
    assert_eq!(error.location, ":5:8", "{error}");
    // The defaults alone.
    let only_defaults = custom("[settings]\nextend_defaults = true\n");
    assert_eq!(
        only_defaults.rule_names().collect::<Vec<_>>(),
        defaults().rule_names().collect::<Vec<_>>()
    );
}

#[test]
fn an_empty_text_in_a_long_list_is_pointed_at_where_it_is() {
    let text = "[[rule]]\nname = \"deps\"\nclass = \"dependency\"\ntext = [\n  \"connection refused\",\n  \"\",\n  \"broken pipe\",\n]\n";
    let error = rules_error(text);
    assert_eq!(error.location, ":6:3", "{error}");
    assert!(error.reason.contains("empty text"), "{error}");
}

#[test]
fn two_hundred_rules_with_unicode_regexes_compile() {
    let rules_with = |count: usize| -> String {
        (0..count)
            .map(|i| {
                format!(
                    "[[rule]]\nname = \"r{i}\"\nclass = \"validation\"\nregex = ['order \\w+ failed with code{i} \\w+']\n"
                )
            })
            .collect()
    };
    let rules = custom(&rules_with(200));
    let got = rules.classify(&facts(
        BODY,
        None,
        "order ab12 failed with code150 now",
        None,
    ));
    assert_eq!(&*got.rule, "r150");
}

#[test]
fn rule_names_that_would_break_logs_or_mislead_are_refused() {
    for (name, problem) in [
        ("\" padded \"", "starts or ends with spaces"),
        ("\"two\\nlines\"", "control character"),
        ("\"(none)\"", "when no rule matched"),
        (&format!("\"{}\"", "n".repeat(101)), "longer than 100"),
    ] {
        let error = rules_error(&format!("[[rule]]\nname = {name}\nclass = \"auth\"\n"));
        assert!(error.reason.contains(problem), "{name}: {error}");
    }
    custom(&format!(
        "[[rule]]\nname = \"{}\"\nclass = \"auth\"\n",
        "n".repeat(100)
    ));
}

#[test]
fn a_pointer_escape_that_is_not_one_and_a_body_format_given_twice_are_refused() {
    let error =
        rules_error("[[rule]]\nname = \"j\"\nclass = \"validation\"\njson_missing = [\"/a~2b\"]\n");
    assert!(error.reason.contains("`~0`"), "{error}");
    custom("[[rule]]\nname = \"j\"\nclass = \"validation\"\njson_missing = [\"/a~1b/c~0d\"]\n");
    let error = rules_error(
        "[[body_format]]\nsource = \"audit*\"\nformat = \"text\"\n\n[[body_format]]\nsource = \"audit*\"\nformat = \"binary\"\n\n[[rule]]\nname = \"r\"\nclass = \"unknown\"\n",
    );
    assert!(error.reason.contains("given twice"), "{error}");
}

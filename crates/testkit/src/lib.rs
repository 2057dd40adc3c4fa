//! Test harness shared by the crates' integration tests: the AWS API emulator (`moto_server` on a
//! free loopback port, started once per test binary and stopped when the test process exits),
//! names no other test uses, the dummy credentials of processes that talk to the emulator, and a
//! DynamoDB table with the ledger's layout.
//!
//! A dev-dependency only, and without dlq-healer-aws: a second copy of its types would not match
//! the caller's. What names them is a macro expanded in the caller (`aws_settings!`,
//! `ledger_layout!`), or stays with the caller (building `AwsClients`).

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The region everything runs in.
pub const REGION: &str = "us-east-1";

/// The environment of a process that talks to the emulator: the region and dummy credentials, and
/// no lookups of the instance metadata service. The endpoint is the caller's to add
/// (`AWS_ENDPOINT_URL`).
pub fn aws_env() -> [(&'static str, &'static str); 4] {
    [
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
}

/// A running emulator.
pub struct Emulator {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    _process: Child,
}

static EMULATOR: OnceLock<Emulator> = OnceLock::new();

/// The emulator of this test binary, started on first use. Starting it also gives this process
/// the environment of [`aws_env`] (and no `AWS_PROFILE` or `AWS_ENDPOINT_URL`), for the SDK
/// clients the tests build.
pub fn emulator() -> &'static Emulator {
    EMULATOR.get_or_init(start)
}

fn start() -> Emulator {
    // SAFETY: runs once, inside OnceLock initialisation, before any SDK client of this test
    // binary exists; every test calls `emulator()` before it builds clients.
    unsafe {
        for (name, value) in aws_env() {
            std::env::set_var(name, value);
        }
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_ENDPOINT_URL");
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    // moto_server's own application, with DynamoDB requests one at a time (see the script).
    let server =
        std::env::temp_dir().join(format!("dlq-healer-moto-{}-{port}.py", std::process::id()));
    std::fs::write(
        &server,
        include_str!("moto_one_dynamodb_request_at_a_time.py"),
    )
    .expect("write the emulator's start script to the temporary directory");
    // The shell keeps the emulator alive while our stdin pipe is open, and kills it when the
    // test process exits and the pipe closes.
    let script = format!(
        "python3 '{0}' {port} >/dev/null 2>&1 & m=$!; echo started; cat >/dev/null; kill $m; rm -f '{0}'",
        server.display()
    );
    let mut process = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start the shell that runs the emulator (sh)");
    let mut line = String::new();
    BufReader::new(process.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the output of the shell that runs the emulator");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the emulator (moto_server's application, run by python3) did not listen on port {port} within 30 s: \
             does `python3 -c 'import moto.server'` work? scripts/test.sh installs moto[server]"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Emulator {
        endpoint: format!("http://127.0.0.1:{port}"),
        _process: process,
    }
}

/// `dlq_healer_aws::AwsSettings` pointing at the emulator (started if need be), named where the
/// macro is used: the caller depends on dlq-healer-aws, this crate does not.
#[macro_export]
macro_rules! aws_settings {
    () => {
        ::dlq_healer_aws::AwsSettings {
            region: Some($crate::REGION.into()),
            endpoint_url: Some($crate::emulator().endpoint.clone()),
            call_timeout: None,
            long_polls: true,
        }
    };
}

/// A name no other test uses: keeps the emulator's queues shallow and fresh per test.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// The attribute and index names of the ledger table: `dlq_healer_aws::ledger_schema`'s, passed
/// in by the caller (see [`ledger_layout!`]).
#[derive(Debug, Clone, Copy)]
pub struct LedgerLayout {
    /// The partition key (String).
    pub partition_key: &'static str,
    /// The sort key (Number).
    pub sort_key: &'static str,
    /// The global secondary index by class and time.
    pub class_time_index: &'static str,
    /// The index's partition key (String).
    pub class_attribute: &'static str,
    /// The index's sort key (String).
    pub time_attribute: &'static str,
}

/// The [`LedgerLayout`] of `dlq_healer_aws::ledger_schema`, named where the macro is used: the
/// caller depends on dlq-healer-aws, this crate does not.
#[macro_export]
macro_rules! ledger_layout {
    () => {
        $crate::LedgerLayout {
            partition_key: ::dlq_healer_aws::ledger_schema::PARTITION_KEY,
            sort_key: ::dlq_healer_aws::ledger_schema::SORT_KEY,
            class_time_index: ::dlq_healer_aws::ledger_schema::CLASS_TIME_INDEX,
            class_attribute: ::dlq_healer_aws::ledger_schema::CLASS_ATTRIBUTE,
            time_attribute: ::dlq_healer_aws::ledger_schema::TIME_ATTRIBUTE,
        }
    };
}

/// Create the table `name` with the ledger's layout, as the SAM template makes it: on demand,
/// key (partition String, sort Number), and the class and time index with every attribute
/// projected.
pub async fn create_ledger_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    layout: &LedgerLayout,
) {
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .unwrap()
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .unwrap()
    };
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(layout.partition_key, ScalarAttributeType::S))
        .attribute_definitions(attribute(layout.sort_key, ScalarAttributeType::N))
        .attribute_definitions(attribute(layout.class_attribute, ScalarAttributeType::S))
        .attribute_definitions(attribute(layout.time_attribute, ScalarAttributeType::S))
        .key_schema(key(layout.partition_key, KeyType::Hash))
        .key_schema(key(layout.sort_key, KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(layout.class_time_index)
                .key_schema(key(layout.class_attribute, KeyType::Hash))
                .key_schema(key(layout.time_attribute, KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

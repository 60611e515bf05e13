//! Shared helpers of the integration tests: server endpoints from the
//! environment, unique table names, and a request-counting SDK client.
#![allow(dead_code)]

use lynk_dynamo::{AwsOptions, CreateOptions, DynamoBackend, TableAdmin, TableLayout};

/// A local DynamoDB-compatible server started by `scripts/test-servers.sh`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Moto,
    Dynalite,
}

impl Server {
    pub fn env_var(self) -> &'static str {
        match self {
            Server::Moto => "LYNK_TEST_MOTO_ENDPOINT",
            Server::Dynalite => "LYNK_TEST_DYNALITE_ENDPOINT",
        }
    }

    /// The endpoint, or `None` after printing a SKIP line (a failure under CI).
    pub fn endpoint(self, test: &str) -> Option<String> {
        match std::env::var(self.env_var()) {
            Ok(v) if !v.is_empty() => Some(v),
            _ => {
                let msg = format!(
                    "SKIP {test}: {} is not set; run `scripts/install-test-servers.sh && scripts/test-servers.sh start && eval \"$(scripts/test-servers.sh env)\"`",
                    self.env_var()
                );
                if std::env::var_os("CI").is_some() {
                    panic!("{msg} (CI is set, so a missing server is a failure)");
                }
                eprintln!("{msg}");
                None
            }
        }
    }

    /// What the server supports.
    pub fn has_transactions(self) -> bool {
        self == Server::Moto
    }

    /// Whether a failed condition returns the stored item.
    pub fn returns_current(self) -> bool {
        self == Server::Moto
    }
}

/// A unique, valid table name.
pub fn unique_table(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("lynk-test-{prefix}-{}", &id[..12])
}

/// The socket address of a local server's `http://IP:PORT` endpoint.
pub fn socket_addr(endpoint: &str) -> std::net::SocketAddr {
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("a local endpoint is http://IP:PORT")
}

/// Connection options for `endpoint`, with the region the test env sets (or us-east-1).
pub fn options(endpoint: &str) -> AwsOptions {
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    AwsOptions::new().region(region).endpoint_url(endpoint)
}

/// Counts requests by operation (every attempt, retries included).
pub use lynk_dynamo::RequestCounter;

/// An SDK client for `endpoint` that counts its requests.
pub async fn counting_client(endpoint: &str) -> (aws_sdk_dynamodb::Client, RequestCounter) {
    let counter = RequestCounter::default();
    let config = options(endpoint).load_config().await.expect("config");
    let conf = aws_sdk_dynamodb::config::Builder::from(&config)
        .interceptor(counter.clone())
        .build();
    (aws_sdk_dynamodb::Client::from_conf(conf), counter)
}

/// A backend for `table` on `server`, declaring the server's capabilities.
pub async fn backend(server: Server, endpoint: &str, table: &str) -> DynamoBackend {
    backend_with(server, endpoint, table, TableLayout::default()).await
}

/// A backend for `table` on `server` with `layout`.
pub async fn backend_with(
    server: Server,
    endpoint: &str,
    table: &str,
    layout: TableLayout,
) -> DynamoBackend {
    DynamoBackend::builder(table)
        .options(options(endpoint))
        .returns_current_on_conflict(server.returns_current())
        .transactions(server.has_transactions())
        .layout(layout)
        .build()
        .await
        .expect("backend")
}

/// Creates lock table `table` on `endpoint` (TTL where supported).
pub async fn create_table(endpoint: &str, table: &str) -> TableAdmin {
    create_table_with(endpoint, table, TableLayout::default()).await
}

/// Creates table `table` with `layout`'s keys on `endpoint`; the admin
/// returned uses `layout`.
pub async fn create_table_with(endpoint: &str, table: &str, layout: TableLayout) -> TableAdmin {
    let admin = TableAdmin::connect(&options(endpoint))
        .await
        .expect("admin")
        .with_layout(layout)
        .expect("a valid layout");
    admin
        .create_table(table, &CreateOptions::new())
        .await
        .expect("create table");
    admin
}

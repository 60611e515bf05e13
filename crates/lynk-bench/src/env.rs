//! Where a measurement runs: the in-memory backend, or a DynamoDB emulator.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use lynk_core::{LockBackend, LockClient, LockClientBuilder, WakeUps};
use lynk_dynamo::{AwsOptions, CreateOptions, DynamoBackend, TableAdmin};
use lynk_testkit::{CountingBackend, MemoryBackend};

use crate::counting::Counter;

/// The store under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Server {
    /// lynk-testkit's in-memory backend (pure client cost).
    Memory,
    /// moto (Python) DynamoDB emulator.
    Moto,
    /// dynalite (Node) DynamoDB emulator.
    Dynalite,
}

impl Server {
    pub fn label(self) -> &'static str {
        match self {
            Server::Memory => "memory",
            Server::Moto => "moto",
            Server::Dynalite => "dynalite",
        }
    }
}

/// A server plus, for emulators, an SDK configuration and a fresh lock table.
#[derive(Clone, Debug)]
pub struct Env {
    pub server: Server,
    pub table: String,
    memory: MemoryBackend,
    sdk: Option<aws_config::SdkConfig>,
    /// Wake-ups for every client built here: listen on this UDP address,
    /// scoped to the table (the cross-process workers' `--wake-listen`).
    pub wake_listen: Option<std::net::SocketAddr>,
}

pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..10])
}

pub fn region() -> String {
    std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())
}

pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    AwsOptions::new()
        .region(region())
        .endpoint_url(endpoint)
        .load_config()
        .await
        .expect("AWS configuration for the emulator (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
}

/// An SDK client that counts its requests.
pub fn counting_sdk(config: &aws_config::SdkConfig) -> (aws_sdk_dynamodb::Client, Counter) {
    let counter = lynk_dynamo::RequestCounter::default();
    let conf = aws_sdk_dynamodb::config::Builder::from(config)
        .interceptor(counter.clone())
        .build();
    (
        aws_sdk_dynamodb::Client::from_conf(conf),
        Counter::Sdk(counter),
    )
}

impl Env {
    /// Sets up `server`; for an emulator, creates a lynk lock table at `endpoint`.
    pub async fn new(server: Server, endpoint: Option<&str>) -> Env {
        let table = unique("lynk-bench");
        let sdk = match server {
            Server::Memory => None,
            _ => {
                let endpoint = endpoint.expect("--endpoint is required for an emulator");
                let config = sdk_config(endpoint).await;
                let admin = TableAdmin::new(aws_sdk_dynamodb::Client::new(&config));
                admin
                    .create_table(&table, &CreateOptions::new())
                    .await
                    .expect("create lock table");
                Some(config)
            }
        };
        Env {
            server,
            table,
            memory: MemoryBackend::new(),
            sdk,
            wake_listen: None,
        }
    }

    /// An emulator with an existing lock table.
    pub async fn new_existing(server: Server, endpoint: &str, table: &str) -> Env {
        Env {
            server,
            table: table.to_owned(),
            memory: MemoryBackend::new(),
            sdk: Some(sdk_config(endpoint).await),
            wake_listen: None,
        }
    }

    /// A backend of its own (own SDK client) with its own request counter.
    pub async fn backend(&self) -> (Arc<dyn LockBackend>, Counter) {
        match &self.sdk {
            None => {
                let memory: Arc<dyn LockBackend> = Arc::new(self.memory.clone());
                let counted = CountingBackend::new(memory);
                (Arc::new(counted.clone()), Counter::Backend(counted))
            }
            Some(config) => {
                let (client, counter) = counting_sdk(config);
                let dynalite = self.server == Server::Dynalite;
                let backend = DynamoBackend::builder(&self.table)
                    .client(client)
                    .returns_current_on_conflict(!dynalite)
                    .transactions(!dynalite)
                    .build()
                    .await
                    .expect("backend");
                (Arc::new(backend), counter)
            }
        }
    }

    /// A client builder over a counted backend of its own.
    pub async fn builder(&self) -> (LockClientBuilder, Counter) {
        let (backend, counter) = self.backend().await;
        let mut b = LockClient::builder_shared(backend).host_identifier("bench");
        if let Some(listen) = self.wake_listen {
            b = b.wake_ups(WakeUps::new(listen).scope(self.table.clone()));
        }
        (b, counter)
    }

    /// A client with default settings (except `lease`, when given).
    pub async fn client(&self, lease: Option<Duration>) -> (LockClient, Counter) {
        let (mut b, c) = self.builder().await;
        if let Some(l) = lease {
            b = b.default_lease(l);
        }
        (b.build().expect("client"), c)
    }
}

/// Creates a table in dynamodb-lease's schema (hash key `key`, TTL on `lease_expiry`).
pub async fn create_peer_table(client: &aws_sdk_dynamodb::Client, table: &str) {
    create_peer_table_without_ttl(client, table).await;
    enable_peer_ttl(client, table).await;
}

/// Creates a table in dynamodb-lease's schema (hash key `key`) without TTL:
/// enough for its requests (the floor sends them on dynalite, which has no
/// TTL API), not for its client, which checks TTL at start.
pub async fn create_peer_table_without_ttl(client: &aws_sdk_dynamodb::Client, table: &str) {
    client
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("key")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("key")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create dynamodb-lease table");
}

/// Enables TTL on dynamodb-lease's `lease_expiry`.
async fn enable_peer_ttl(client: &aws_sdk_dynamodb::Client, table: &str) {
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("lease_expiry")
                .build()
                .expect("ttl"),
        )
        .send()
        .await
        .expect("enable TTL on lease_expiry (dynamodb-lease needs it; dynalite lacks it)");
}

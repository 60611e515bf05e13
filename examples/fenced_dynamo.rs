//! A fenced DynamoDB write: your own write, on any table, applied only while
//! you still hold the lock, as one transaction with a condition check on the
//! lock record. After a takeover it is refused, and nothing is written.
//!
//! Needs a DynamoDB endpoint with transactions (DynamoDB itself, or moto):
//!
//! ```text
//! scripts/install-test-servers.sh && scripts/test-servers.sh start && eval "$(scripts/test-servers.sh env)"
//! LYNK_EXAMPLE_ENDPOINT="$LYNK_TEST_MOTO_ENDPOINT" cargo run -p lynk-examples --example fenced_dynamo
//! ```

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType,
};
use lynk_core::{Condition, LockBackend, LockClient, TokenUpdate, Version, WriteRequest};
use lynk_dynamo::{AwsOptions, CreateOptions, DynamoBackend, Error, TableAdmin};

fn put(table: &str, value: &str) -> Put {
    Put::builder()
        .table_name(table)
        .item("id", AttributeValue::S("balance-42".into()))
        .item("value", AttributeValue::S(value.into()))
        .build()
        .expect("a complete Put")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(endpoint) = std::env::var("LYNK_EXAMPLE_ENDPOINT")
        .or_else(|_| std::env::var("LYNK_TEST_MOTO_ENDPOINT"))
        .ok()
    else {
        println!("skipped: set LYNK_EXAMPLE_ENDPOINT to a DynamoDB endpoint with transactions (see the file's header)");
        return Ok(());
    };
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let options = AwsOptions::new().region(region).endpoint_url(&endpoint);
    let id = Version::random();
    let suffix = &id.as_str()[..8];
    let (locks, data) = (
        format!("example-locks-{suffix}"),
        format!("example-data-{suffix}"),
    );

    let admin = TableAdmin::connect(&options).await?;
    admin.create_table(&locks, &CreateOptions::new()).await?;
    admin
        .client()
        .create_table()
        .table_name(&data)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await?;

    let backend = DynamoBackend::builder(&locks)
        .options(options.clone())
        .build()
        .await?;
    let client = LockClient::builder(backend.clone())
        .default_lease(Duration::from_secs(20))
        .build()?;
    let guard = client.create_lock("account-42").acquire().await?;

    backend.fenced_write(&guard, put(&data, "100")).await?;
    println!(
        "while held: write applied (token {})",
        guard.fencing_token()
    );

    // Someone takes the lock over, as after this holder's lease ran out.
    let current = backend.read("account-42").await?.expect("the lock record");
    backend
        .write(WriteRequest {
            key: "account-42".into(),
            condition: Condition::VersionIs(current.version),
            version: Version::random(),
            lease_duration: Duration::from_secs(20),
            host: "another-host".into(),
            token: TokenUpdate::Next { initial: 1 },
            payload: None,
            released: false,
            queue: Default::default(),
            granted_to: None,
            holder_detail: None,
        })
        .await?;

    match backend.fenced_write(&guard, put(&data, "-999")).await {
        Err(e @ Error::LockLost { .. }) => println!("after a takeover: refused: {e}"),
        other => panic!("a stale holder's write must be refused, got {other:?}"),
    }

    drop(guard);
    client.shutdown().await;
    admin.delete_table(&locks, true, true).await?;
    admin.delete_table(&data, true, true).await?;
    Ok(())
}

//! # lynk-dynamo
//!
//! lynk's lock backend on Amazon DynamoDB, and lock-table administration.
//!
//! * [`DynamoBackend`] implements [`lynk_core::LockBackend`] with one
//!   conditional `UpdateItem` per acquire, heartbeat and release, in an item
//!   format the original Python lynk (0.3.1) shares (see [`item`]).
//! * [`TableAdmin`] creates, lists, checks and deletes lock tables, and lists
//!   the locks in one (or in one lock group, and releases a group).
//! * [`TableLayout`] puts the locks in a table of your own design (key
//!   names, a key prefix, a sort key, lock groups, renamed attributes),
//!   next to your items, which lynk never writes; the default is the
//!   original's `lockKey` table.
//! * [`DynamoBackend::fenced_write`] makes your own DynamoDB write
//!   conditional on still holding a lock, in one transaction.
//! * [`lock_client`] and [`get_lock_factory`] are the one-line starts, the
//!   latter mirroring the original's `lynk.get_lock_factory('table')`.
//!
//! Configuration comes from the standard AWS chain (environment, profiles,
//! SSO, instance roles); `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_DYNAMODB`
//! are honoured, and [`AwsOptions`] / [`DynamoBackend::builder`] override
//! region, endpoint and profile. Every request has [time limits](Timeouts),
//! so an endpoint that stops answering fails a call instead of hanging it.
//!
//! ```no_run
//! # async fn f() -> Result<(), lynk_dynamo::Error> {
//! let client = lynk_dynamo::lock_client("my-locks").await?;
//! let guard = client.create_lock("nightly-job").acquire().await?;
//! println!("fencing token {}", guard.fencing_token());
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! See `docs/dynamodb.md` in the repository for the item format, costs,
//! and the fencing-token assumption.

mod admin;
mod backend;
mod classify;
mod connect;
mod create;
mod error;
mod expression;
mod fenced;
pub mod item;
pub mod layout;
mod locks;
mod request_counter;
mod table_info;

pub use admin::{TableAdmin, LYNK_TAG_KEY, LYNK_TAG_VALUE};
pub use backend::{DynamoBackend, DynamoBackendBuilder, DEFAULT_RETENTION};
pub use connect::{AwsOptions, Timeouts};
pub use create::{Billing, CreateOptions, CreateOutcome};
pub use error::Error;
pub use fenced::UserWrite;
pub use layout::{LynkAttribute, SortKey, TableLayout};
pub use locks::{GroupRelease, LockEntry, LockListing, ReleaseOutcome};
pub use request_counter::RequestCounter;
pub use table_info::{TableBilling, TableInfo, TableStatus, Ttl, TtlStatus};

pub use aws_sdk_dynamodb;
pub use lynk_core;

/// A [`LockClient`](lynk_core::LockClient) with default settings over
/// `table`, configured from the standard AWS chain.
///
/// Must be called inside a tokio runtime.
pub async fn lock_client(table: impl Into<String>) -> Result<lynk_core::LockClient, Error> {
    let backend = DynamoBackend::builder(table).build().await?;
    Ok(lynk_core::LockClient::new(backend)?)
}

/// A blocking lock factory over `table`, configured from the standard AWS
/// chain: the original lynk's `lynk.get_lock_factory('table')`.
///
/// Must not be called from async code (it starts its own runtime).
///
/// ```no_run
/// let factory = lynk_dynamo::get_lock_factory("my-locks")?;
/// let guard = factory.create_lock("my lock").acquire()?;
/// // ... work ...
/// guard.release()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn get_lock_factory(table: &str) -> Result<lynk_core::blocking::LockFactory, Error> {
    get_lock_factory_with(DynamoBackend::builder(table))
}

/// Like [`get_lock_factory`], with a configured builder.
pub fn get_lock_factory_with(
    builder: DynamoBackendBuilder,
) -> Result<lynk_core::blocking::LockFactory, Error> {
    get_lock_factory_configured(builder, lynk_core::ClientConfig::default())
}

/// Like [`get_lock_factory_with`], with the lock client's settings too (lease,
/// polling, [`ReleaseMode`](lynk_core::ReleaseMode), ...).
///
/// ```no_run
/// use lynk_core::{ClientConfig, ReleaseMode};
/// use lynk_dynamo::{get_lock_factory_configured, DynamoBackend};
///
/// // Delete records on release, as the original Python lynk does, while
/// // both clients share a table.
/// let config = ClientConfig { release_mode: ReleaseMode::Delete, ..ClientConfig::default() };
/// let factory = get_lock_factory_configured(DynamoBackend::builder("my-locks"), config)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn get_lock_factory_configured(
    builder: DynamoBackendBuilder,
    config: lynk_core::ClientConfig,
) -> Result<lynk_core::blocking::LockFactory, Error> {
    // Load the AWS configuration first, on a runtime of its own on a helper
    // thread (so this works whether or not the caller is inside a runtime);
    // the SDK client spawns its connection tasks on whichever runtime sends
    // a request, so it then serves the factory's runtime.
    let backend = std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| lynk_core::LockError::InvalidInput {
                    what: "runtime",
                    problem: format!("could not start one to load the AWS configuration: {e}"),
                })?;
            rt.block_on(builder.build())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })?;
    Ok(lynk_core::blocking::LockFactory::new(|| {
        lynk_core::LockClient::builder(backend)
            .config(config)
            .build()
    })?)
}

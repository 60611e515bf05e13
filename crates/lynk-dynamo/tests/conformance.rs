//! The lynk-testkit conformance suite against moto and dynalite, on every
//! kind of table layout: the default (the original's `lockKey` table), a
//! renamed partition key with a key prefix, a fixed sort key, lock groups
//! (a grouped sort key), and every lynk attribute renamed.
//!
//! The suite's cases are the same on each layout. Two options fit its names
//! to a layout (`conformance::Options`): on the grouped layout every name is
//! put in the group `conformance` (`conformance/conf-…`), since names there
//! are `GROUP/NAME`; and the long-key case writes the longest name the
//! layout's keys hold (`TableLayout::max_name_bytes`: a prefix takes room
//! from the partition key's 2048 bytes, a sort key holds 1024).

mod common;

use std::sync::Arc;

use common::Server;
use lynk_core::{Condition, LockBackend, TokenUpdate, Version, WriteRequest};
use lynk_dynamo::{LynkAttribute, TableLayout};
use lynk_testkit::conformance::{self, Options};

/// The group every name is put in on the grouped layout.
const GROUP: &str = "conformance";

fn layout(kind: &str) -> TableLayout {
    match kind {
        "default" => TableLayout::default(),
        "prefixed" => TableLayout::new().partition_key("pk").key_prefix("LOCK#"),
        "fixed_sort_key" => TableLayout::new()
            .partition_key("PK")
            .sort_key_fixed("SK", "LOCK"),
        "grouped" => TableLayout::new()
            .partition_key("PK")
            .key_prefix("LOCK#")
            .sort_key_grouped("SK"),
        // Names a placeholder cannot spell (`-`, `.`), so the expressions'
        // `#nN` placeholders are exercised too.
        "renamed" => LynkAttribute::ALL
            .into_iter()
            .fold(TableLayout::new().partition_key("lock.id"), |l, a| {
                l.attribute(a, format!("lynk-{a}"))
            }),
        other => unreachable!("no layout {other}"),
    }
}

fn request(name: &str) -> WriteRequest {
    WriteRequest {
        key: name.to_owned(),
        condition: Condition::Absent,
        version: Version::random(),
        lease_duration: std::time::Duration::from_secs(20),
        host: "conformance".to_owned(),
        token: TokenUpdate::Next { initial: 1 },
        payload: None,
        released: false,
        queue: Default::default(),
        granted_to: None,
        holder_detail: None,
    }
}

async fn run(server: Server, kind: &str) {
    let test = format!("conformance_{kind}_on_{server:?}");
    let Some(endpoint) = server.endpoint(&test) else {
        return;
    };
    let layout = layout(kind);
    let options = if layout.has_groups() {
        Options::default()
            .name_prefix(format!("{GROUP}/"))
            .max_name_bytes(layout.max_name_bytes(GROUP.len()))
    } else {
        Options::default().max_name_bytes(layout.max_name_bytes(0).min(lynk_core::MAX_NAME_BYTES))
    };
    let table = common::unique_table("conf");
    let admin = common::create_table_with(&endpoint, &table, layout.clone()).await;
    admin
        .check_table(&table)
        .await
        .expect("the table fits its layout");
    let backend = common::backend_with(server, &endpoint, &table, layout.clone()).await;
    // A record reads back under its lock name, not the key values it is
    // stored under (prefixed, split into group and sort key): checked by
    // plain backend calls first, so a mix-up fails here instead of hanging
    // the suite's clients.
    let name = format!("{}check/x", options.name_prefix);
    let written = backend.write(request(&name)).await.expect("write a record");
    assert_eq!(written.key, name, "the written record's name");
    let read = backend.read(&name).await.expect("read").expect("a record");
    assert_eq!(read.key, name, "the read record's name");
    let report = conformance::run_all_with(Arc::new(backend.clone()), options.clone()).await;
    println!("{server:?}, layout {kind} ({layout}), table {table}:\n{report}");
    // Every item the suite left is a lock item under the layout.
    let listing = admin.list_locks(&table).await.expect("list");
    admin
        .delete_table(&table, false, true)
        .await
        .expect("delete");
    report.assert_ok();
    assert_eq!(listing.skipped, 0, "{kind}: items that are not lock items");
    assert!(
        listing.malformed.is_empty(),
        "{kind}: {:?}",
        listing.malformed
    );
    assert!(listing.locks.iter().any(|l| l.record.key == name));
    for lock in &listing.locks {
        assert!(
            lock.record.key.starts_with(&options.name_prefix),
            "{kind}: listed as {:?}",
            lock.record.key
        );
    }
}

macro_rules! on_both {
    ($($kind:ident),*) => {
        mod on_moto {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $kind() {
                    run(Server::Moto, stringify!($kind)).await;
                }
            )*
        }
        mod on_dynalite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $kind() {
                    run(Server::Dynalite, stringify!($kind)).await;
                }
            )*
        }
    };
}

on_both!(default, prefixed, fixed_sort_key, grouped, renamed);

//! The lynk-testkit conformance suite against moto and dynalite.

mod common;

use std::sync::Arc;

use common::Server;

async fn run(server: Server, test: &str) {
    let Some(endpoint) = server.endpoint(test) else {
        return;
    };
    let table = common::unique_table("conf");
    let admin = common::create_table(&endpoint, &table).await;
    let backend = common::backend(server, &endpoint, &table).await;
    let report = lynk_testkit::conformance::run_all(Arc::new(backend)).await;
    println!("{server:?} ({table}):\n{report}");
    admin
        .delete_table(&table, false, true)
        .await
        .expect("delete");
    report.assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_moto() {
    run(Server::Moto, "conformance_on_moto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_dynalite() {
    run(Server::Dynalite, "conformance_on_dynalite").await;
}

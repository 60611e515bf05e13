//! Table layouts through the CLI (issue 15): create-table and check-table
//! with custom keys, lock commands on a grouped layout with the user's own
//! items in the same table, `lynk locks --group`, the group release, the
//! environment variables and the layout file, and bad layout input.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use lynk_dynamo::aws_sdk_dynamodb::types::AttributeValue;

/// The layout of the grouped tests, as flags.
const GROUPED: [&str; 7] = [
    "--partition-key",
    "PK",
    "--key-prefix",
    "LOCK#",
    "--sort-key",
    "SK",
    "--grouped",
];

/// `lynk --endpoint-url E ARGS... LAYOUT...`.
fn with(e: &str, args: &[&str], layout: &[&str]) -> std::process::Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend_from_slice(layout);
    at(e, &all)
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// The raw item at PK/SK, if any.
async fn raw(e: &str, t: &str, pk: &str, sk: &str) -> Option<HashMap<String, AttributeValue>> {
    sdk(e)
        .await
        .get_item()
        .table_name(t)
        .key("PK", s(pk))
        .key("SK", s(sk))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item()
        .cloned()
}

/// Puts one of the user's own items.
async fn put_user_item(e: &str, t: &str, pk: &str, sk: &str, data: &str) {
    sdk(e)
        .await
        .put_item()
        .table_name(t)
        .item("PK", s(pk))
        .item("SK", s(sk))
        .item("data", s(data))
        .send()
        .await
        .expect("PutItem");
}

/// The table's key schema: (attribute, HASH|RANGE).
async fn key_schema(e: &str, t: &str) -> Vec<(String, String)> {
    let out = sdk(e)
        .await
        .describe_table()
        .table_name(t)
        .send()
        .await
        .expect("DescribeTable");
    out.table()
        .unwrap()
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect()
}

fn lock_names(listing: &serde_json::Value) -> Vec<String> {
    listing["locks"]
        .as_array()
        .expect("locks")
        .iter()
        .map(|l| l["lock"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_table_with_custom_keys_and_check_table() {
    let Some(e) = moto("create_table_with_custom_keys_and_check_table") else {
        return;
    };
    let t = unique_table("layout-create");
    let out = with(&e, &["create-table", &t], &GROUPED);
    assert_eq!(ok(&out), format!("Creating table {t}\nCreated\n"));
    assert_eq!(
        key_schema(&e, &t).await,
        [
            ("PK".to_owned(), "HASH".to_owned()),
            ("SK".to_owned(), "RANGE".to_owned())
        ]
    );
    // Green against the same layout, in text and JSON.
    let text = ok(&with(&e, &["check-table", &t], &GROUPED));
    assert!(
        text.starts_with(&format!("Table {t} can hold lynk locks\n")),
        "{text}"
    );
    assert!(text.contains("PK") && text.contains("SK"), "{text}");
    let j = json(&with(
        &e,
        &["check-table", &t, "--output", "json"],
        &GROUPED,
    ));
    assert_eq!(j["usable"], true);
    assert_eq!(j["partition_key"], "PK");
    assert_eq!(j["sort_key"], "SK");

    // Against the default layout: exit 7 naming the attribute that differs.
    let out = at(&e, &["check-table", &t]);
    assert_fails(&out, 7, &["`PK`", "lockKey", "--partition-key PK"]);
    // Another sort key name: the sort key is named.
    let out = with(
        &e,
        &["check-table", &t],
        &["--partition-key", "PK", "--sort-key", "sk2", "--grouped"],
    );
    assert_fails(&out, 7, &["`SK`", "`sk2`"]);
    // A layout without the sort key.
    let out = with(&e, &["check-table", &t], &["--partition-key", "PK"]);
    assert_fails(&out, 7, &["sort key `SK`"]);
    // Every lock command checks the table against the layout first.
    let out = at(&e, &["locks", &t]);
    assert_fails(&out, 7, &["`PK`"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn check_table_on_a_table_whose_hash_key_differs() {
    let Some(e) = moto("check_table_on_a_table_whose_hash_key_differs") else {
        return;
    };
    let t = unique_table("layout-diff");
    create_plain_table(&e, &t, "id").await;
    let out = with(&e, &["check-table", &t], &["--partition-key", "pk"]);
    assert_fails(
        &out,
        7,
        &["its hash key is `id`, not `pk`", "--partition-key id"],
    );
    // With the right name it is usable.
    ok(&with(&e, &["check-table", &t], &["--partition-key", "id"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_on_a_grouped_layout_is_where_the_layout_says() {
    let Some(e) = moto("a_lock_on_a_grouped_layout_is_where_the_layout_says") else {
        return;
    };
    let t = unique_table("layout-lock");
    ok(&with(&e, &["create-table", &t], &GROUPED));
    let acquired = json(&with(
        &e,
        &[
            "acquire",
            &t,
            "orders/42",
            "--lease",
            "5m",
            "--payload",
            "p",
            "--output",
            "json",
        ],
        &GROUPED,
    ));
    let version = acquired["version"].as_str().unwrap().to_owned();
    // The printed release command names the layout given as flags.
    let release = acquired["release_command"].as_str().unwrap();
    assert!(
        release.contains("--partition-key PK") && release.contains("--grouped"),
        "{release}"
    );
    // The raw item: PK "LOCK#orders", SK "42".
    let item = raw(&e, &t, "LOCK#orders", "42")
        .await
        .expect("the lock item");
    assert_eq!(item["versionNumber"], s(&version));
    assert!(raw(&e, &t, "orders/42", "42").await.is_none());
    // describe reads it back under the name.
    let d = json(&with(
        &e,
        &["describe", &t, "orders/42", "--output", "json"],
        &GROUPED,
    ));
    assert_eq!(d["exists"], true);
    assert_eq!(d["state"], "held");
    assert_eq!(d["payload"], "p");
    // Released with the printed command's flags.
    let out = with(
        &e,
        &["release", &t, "orders/42", "--version", &version],
        &GROUPED,
    );
    assert!(ok(&out).starts_with("Released lock \"orders/42\""));
    let item = raw(&e, &t, "LOCK#orders", "42").await.unwrap();
    assert_eq!(item["released"], AttributeValue::Bool(true));
    // `lynk run` on the layout: the command runs under the lock.
    let mut args = vec!["run", &t, "orders/7"];
    args.extend(GROUPED);
    args.extend(["--", "sh", "-c", "echo $LYNK_LOCK_NAME"]);
    let out = at(&e, &args);
    assert_eq!(ok(&out), "orders/7\n");
    assert!(raw(&e, &t, "LOCK#orders", "7").await.is_some());
    // Several locks at once, and a semaphore's permit, on the layout.
    let mut args = vec!["run", &t, "orders/8", "billing/8"];
    args.extend(GROUPED);
    args.extend(["--", "sh", "-c", "echo $LYNK_LOCK_NAMES"]);
    assert_eq!(ok(&at(&e, &args)), "orders/8,billing/8\n");
    assert!(raw(&e, &t, "LOCK#orders", "8").await.is_some());
    assert!(raw(&e, &t, "LOCK#billing", "8").await.is_some());
    let mut args = vec!["run", &t, "encoders/pool", "--permits", "2"];
    args.extend(GROUPED);
    args.extend(["--", "sh", "-c", "echo $LYNK_PERMITS"]);
    assert_eq!(ok(&at(&e, &args)), "2\n");
    assert!(raw(&e, &t, "LOCK#encoders", "pool").await.is_some());
    let mut args = vec!["run", &t, "orders/9", "nogroup"];
    args.extend(GROUPED);
    args.extend(["--", "true"]);
    assert_fails(&at(&e, &args), 2, &["\"nogroup\""]);
    // A name without a group does not fit: exit 2, nothing sent.
    let out = with(&e, &["acquire", &t, "nogroup", "--lease", "1m"], &GROUPED);
    assert_fails(&out, 2, &["\"nogroup\"", "no `/`"]);
    // Leader commands take the layout too.
    let out = with(&e, &["leader", "show", &t, "elections/main"], &GROUPED);
    assert!(ok(&out).contains("has no leader"));
}

/// The table of the group tests on `e`: grouped locks `orders/1`,
/// `orders/2` (acquired) and `billing/1`, and two items of the user's own:
/// one in the `orders` partition, one elsewhere.
async fn group_fixture(e: &str, prefix: &str) -> String {
    let t = unique_table(prefix);
    ok(&with(e, &["create-table", &t], &GROUPED));
    put_user_item(e, &t, "LOCK#orders", "note", "the user's").await;
    put_user_item(e, &t, "USER#1", "profile", "the user's too").await;
    for name in ["orders/1", "orders/2", "billing/1"] {
        ok(&with(e, &["acquire", &t, name, "--lease", "10m"], &GROUPED));
    }
    t
}

fn locks_group_lists_exactly_the_group(e: &str, t: &str) {
    let listing = json(&with(
        e,
        &["locks", t, "--group", "orders", "--output", "json"],
        &GROUPED,
    ));
    assert_eq!(lock_names(&listing), ["orders/1", "orders/2"]);
    assert_eq!(listing["group"], "orders");
    assert_eq!(listing["malformed"], serde_json::json!([]));
    assert_eq!(listing["skipped"], 1, "the user's item in the partition");
    let out = with(e, &["locks", t, "--group", "orders"], &GROUPED);
    let text = ok(&out);
    assert!(text.starts_with("LOCK "), "{text}");
    assert!(
        text.contains("orders/1") && text.contains("orders/2"),
        "{text}"
    );
    assert!(
        !text.contains("billing") && !text.contains("note"),
        "{text}"
    );
    assert_eq!(stderr(&out), "", "no warning about the user's items");
    // The whole table: every lock, none of the user's items.
    let all = json(&with(e, &["locks", t, "--output", "json"], &GROUPED));
    assert_eq!(lock_names(&all), ["billing/1", "orders/1", "orders/2"]);
    // An empty group.
    let out = with(e, &["locks", t, "--group", "none"], &GROUPED);
    assert_eq!(
        ok(&out),
        format!("No locks in group \"none\" of table {t}.\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn locks_group_on_moto() {
    let Some(e) = moto("locks_group_on_moto") else {
        return;
    };
    let t = group_fixture(&e, "layout-group").await;
    locks_group_lists_exactly_the_group(&e, &t);
}

#[tokio::test(flavor = "multi_thread")]
async fn locks_group_on_dynalite() {
    let Ok(e) = std::env::var("LYNK_TEST_DYNALITE_ENDPOINT") else {
        eprintln!("SKIP locks_group_on_dynalite: LYNK_TEST_DYNALITE_ENDPOINT is not set");
        assert!(std::env::var_os("CI").is_none(), "CI needs dynalite");
        return;
    };
    let t = group_fixture(&e, "layout-group-dl").await;
    locks_group_lists_exactly_the_group(&e, &t);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_release_releases_every_lock_of_the_group_and_stops_a_run() {
    let Some(e) = moto("a_group_release_releases_every_lock_of_the_group_and_stops_a_run") else {
        return;
    };
    let t = group_fixture(&e, "layout-release").await;
    // orders/3 held by a running `lynk run`, whose command waits.
    let scratch = Scratch::new("layout-release");
    let started = scratch.path("started");
    let mut run = lynk_std();
    run.arg("--endpoint-url")
        .arg(&e)
        .args(["run", &t, "orders/3", "--lease", "3s", "--grace", "1s"])
        .args(GROUPED)
        .arg("--")
        .arg("sh")
        .arg("-c")
        .arg(format!("touch {}; exec sleep 60", started.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut run = Group::spawn(run);
    wait_for_file(&started, Duration::from_secs(20)).expect("the command started");
    let before_user_items = (
        raw(&e, &t, "LOCK#orders", "note").await,
        raw(&e, &t, "USER#1", "profile").await,
    );

    // Without --force: usage; without a terminal or --yes: refused.
    let out = with(&e, &["release", &t, "--group", "orders"], &GROUPED);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = with(
        &e,
        &["release", &t, "--group", "orders", "--force"],
        &GROUPED,
    );
    assert_fails(&out, 2, &["--yes"]);
    // A layout without groups: exit 2 saying what is needed.
    let out = at(
        &e,
        &["release", &t, "--group", "orders", "--force", "--yes"],
    );
    assert_fails(&out, 2, &["--grouped"]);

    let out = with(
        &e,
        &["release", &t, "--group", "orders", "--force", "--yes"],
        &GROUPED,
    );
    let text = ok(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, name) in lines.iter().zip(["orders/1", "orders/2", "orders/3"]) {
        assert!(
            line.starts_with(&format!("Released lock \"{name}\" (held by ")),
            "{text}"
        );
    }
    // The run's command is stopped: its lease was lost (exit 4).
    let status = run
        .wait_for(Duration::from_secs(20))
        .expect("lynk run stopped");
    assert_eq!(status.code(), Some(4));
    let mut err = String::new();
    std::io::Read::read_to_string(run.child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("orders/3"), "{err}");

    // Every lock of the group is released; the other group's is held, and
    // the user's items are untouched.
    let listing = json(&with(
        &e,
        &["locks", &t, "--group", "orders", "--output", "json"],
        &GROUPED,
    ));
    assert_eq!(lock_names(&listing), ["orders/1", "orders/2", "orders/3"]);
    assert!(listing["locks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["state"] == "released"));
    let d = json(&with(
        &e,
        &["describe", &t, "billing/1", "--output", "json"],
        &GROUPED,
    ));
    assert_eq!(d["state"], "held");
    assert_eq!(
        (
            raw(&e, &t, "LOCK#orders", "note").await,
            raw(&e, &t, "USER#1", "profile").await
        ),
        before_user_items
    );
    assert!(before_user_items.0.is_some() && before_user_items.1.is_some());

    // Again: nothing held, one line per lock, exit 0; JSON says so too.
    let j = json(&with(
        &e,
        &[
            "release", &t, "--group", "orders", "--force", "--yes", "--output", "json",
        ],
        &GROUPED,
    ));
    assert_eq!(j["released"], 0);
    assert_eq!(j["not_released"], 0);
    let outcomes: Vec<&str> = j["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["not_held", "not_held", "not_held"]);
}

/// Writes `text` to a layout file in `scratch`.
fn layout_file(scratch: &Scratch, text: &str) -> String {
    let path = scratch.path("layout.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_and_layout_file_give_what_the_flags_give() {
    let Some(e) = moto("environment_and_layout_file_give_what_the_flags_give") else {
        return;
    };
    let t = group_fixture(&e, "layout-env").await;
    let by_flags = json(&with(
        &e,
        &["locks", &t, "--group", "orders", "--output", "json"],
        &GROUPED,
    ));
    // The environment.
    let env = [
        ("LYNK_PARTITION_KEY", "PK"),
        ("LYNK_KEY_PREFIX", "LOCK#"),
        ("LYNK_SORT_KEY", "SK"),
        ("LYNK_GROUPED", "true"),
    ];
    let by_env = lynk()
        .envs(env)
        .args(["--endpoint-url", &e, "locks", &t, "--group", "orders"])
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert_eq!(json(&by_env), by_flags);
    // A lock taken with the environment is where the flags look.
    let out = lynk()
        .envs(env)
        .args([
            "--endpoint-url",
            &e,
            "acquire",
            &t,
            "orders/9",
            "--lease",
            "1m",
        ])
        .output()
        .unwrap();
    ok(&out);
    assert!(raw(&e, &t, "LOCK#orders", "9").await.is_some());
    // The layout file (LYNK_LAYOUT_FILE and --layout-file).
    let scratch = Scratch::new("layout-file");
    let file = layout_file(
        &scratch,
        "# the app table\npartition_key = \"PK\"\nkey_prefix = \"LOCK#\"  # lock items\nsort_key = \"SK\"\ngrouped = true\n",
    );
    let by_file = json(
        &lynk()
            .env("LYNK_LAYOUT_FILE", &file)
            .args(["--endpoint-url", &e, "locks", &t, "--group", "orders"])
            .args(["--output", "json"])
            .output()
            .unwrap(),
    );
    let by_flag_file = json(&at(
        &e,
        &[
            "locks",
            &t,
            "--group",
            "orders",
            "--output",
            "json",
            "--layout-file",
            &file,
        ],
    ));
    assert_eq!(by_file, by_flag_file);
    assert_eq!(
        lock_names(&by_file),
        ["orders/1", "orders/2", "orders/9"],
        "the file's layout"
    );
    // create-table and check-table from the file alone.
    let t2 = unique_table("layout-file-create");
    ok(&at(&e, &["create-table", &t2, "--layout-file", &file]));
    assert_eq!(
        key_schema(&e, &t2).await,
        [
            ("PK".to_owned(), "HASH".to_owned()),
            ("SK".to_owned(), "RANGE".to_owned())
        ]
    );
    ok(&at(&e, &["check-table", &t2, "--layout-file", &file]));

    // Precedence: a flag over the variable over the file.
    let wrong_file = layout_file(
        &scratch,
        "partition_key = nope\nsort_key = SK\ngrouped = true\nkey_prefix = \"LOCK#\"\n",
    );
    let out = lynk()
        .env("LYNK_LAYOUT_FILE", &wrong_file)
        .env("LYNK_PARTITION_KEY", "alsonope")
        .args([
            "--endpoint-url",
            &e,
            "check-table",
            &t,
            "--partition-key",
            "PK",
        ])
        .output()
        .unwrap();
    ok(&out);
    let out = lynk()
        .env("LYNK_LAYOUT_FILE", &wrong_file)
        .env("LYNK_PARTITION_KEY", "alsonope")
        .args(["--endpoint-url", &e, "check-table", &t])
        .output()
        .unwrap();
    assert_fails(&out, 7, &["`alsonope`"]);
    let out = lynk()
        .env("LYNK_LAYOUT_FILE", &wrong_file)
        .args(["--endpoint-url", &e, "check-table", &t])
        .output()
        .unwrap();
    assert_fails(&out, 7, &["`nope`"]);
}

#[test]
fn bad_layout_input_is_exit_2_before_anything_is_sent() {
    // A closed port: exit 2 shows nothing was sent (it would be exit 5).
    let e = format!("http://127.0.0.1:{}", closed_port());
    let scratch = Scratch::new("layout-bad");
    let file = layout_file(
        &scratch,
        "partition_key = \"PK\"\nsort_key = \"SK\"\ngroupd = true\n",
    );
    for args in [
        vec!["locks", "lynk-t", "--layout-file", file.as_str()],
        vec!["run", "lynk-t", "a/b", "--layout-file", &file, "--", "true"],
        vec!["create-table", "lynk-t", "--layout-file", &file],
    ] {
        let out = at(&e, &args);
        assert_fails(&out, 2, &["line 3", "unknown setting `groupd`"]);
    }
    let out = lynk()
        .env("LYNK_LAYOUT_FILE", &file)
        .args(["--endpoint-url", &e, "describe", "lynk-t", "a/b"])
        .output()
        .unwrap();
    assert_fails(&out, 2, &["line 3"]);
    // list-tables and delete-table do not use the layout: a bad one does
    // not stop them (here they fail on the closed port instead).
    for args in [
        ["list-tables", "--prefix", "x"],
        ["delete-table", "lynk-t", "--no-wait"],
    ] {
        let out = lynk()
            .env("LYNK_LAYOUT_FILE", &file)
            .args(["--endpoint-url", &e])
            .args(args)
            .output()
            .unwrap();
        assert_fails(&out, 5, &["could not reach DynamoDB"]);
    }
    let missing = scratch.path("missing.toml").display().to_string();
    let out = at(&e, &["locks", "lynk-t", "--layout-file", &missing]);
    assert_fails(&out, 2, &["cannot read the layout file", "missing.toml"]);
    for (layout, needles) in [
        (
            vec!["--sort-key", "SK"],
            vec!["--sort-key", "--sort-key-value", "--grouped"],
        ),
        (vec!["--grouped"], vec!["--grouped", "--sort-key NAME"]),
        (
            vec![
                "--sort-key",
                "SK",
                "--sort-key-value",
                "L",
                "--group-separator",
                ":",
            ],
            vec!["--group-separator", "--grouped"],
        ),
        (
            vec!["--attribute", "bogus=x"],
            vec!["`bogus`", "fencingToken"],
        ),
        (
            vec!["--partition-key", "payload"],
            vec!["`payload`", "invalid table layout"],
        ),
        (vec!["--attribute", "payload"], vec!["lynkName=theirName"]),
    ] {
        let mut args = vec!["locks", "lynk-t"];
        args.extend(layout.iter().copied());
        let out = at(&e, &args);
        let n: Vec<&str> = needles.to_vec();
        assert_fails(&out, 2, &n);
    }
    let out = lynk()
        .env("LYNK_SORT_KEY", "SK")
        .env("LYNK_SORT_KEY_VALUE", "L")
        .env("LYNK_GROUPED", "1")
        .args(["--endpoint-url", &e, "locks", "lynk-t"])
        .output()
        .unwrap();
    assert_fails(&out, 2, &["LYNK_SORT_KEY_VALUE", "LYNK_GROUPED"]);
    // Both ways on the command line: clap refuses.
    let out = at(
        &e,
        &[
            "locks",
            "lynk-t",
            "--sort-key",
            "SK",
            "--sort-key-value",
            "L",
            "--grouped",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    // --group without a grouped layout.
    let out = at(&e, &["locks", "lynk-t", "--group", "g"]);
    assert_fails(&out, 2, &["--group needs", "--grouped"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_sort_key_and_renamed_attributes_from_a_layout_file() {
    let Some(e) = moto("a_fixed_sort_key_and_renamed_attributes_from_a_layout_file") else {
        return;
    };
    let scratch = Scratch::new("layout-fixed");
    let file = layout_file(
        &scratch,
        "partition_key = PK\nsort_key = SK\nsort_key_value = \"LOCK\"\n\n[attributes]\npayload = \"lockPayload\"\nexpiresAt = ttl\n",
    );
    let t = unique_table("layout-fixed");
    let created = json(&at(
        &e,
        &[
            "create-table",
            &t,
            "--layout-file",
            &file,
            "--output",
            "json",
        ],
    ));
    assert_eq!(created["ttl_enabled"], true);
    // The user's item under the same partition key, another sort key.
    put_user_item(&e, &t, "job", "profile", "the user's").await;
    ok(&at(
        &e,
        &[
            "acquire",
            &t,
            "job",
            "--lease",
            "1m",
            "--payload",
            "x",
            "--layout-file",
            &file,
        ],
    ));
    let item = raw(&e, &t, "job", "LOCK").await.expect("the lock item");
    assert_eq!(
        item.get("lockPayload"),
        Some(&AttributeValue::B("x".as_bytes().into()))
    );
    assert!(item.contains_key("ttl") && !item.contains_key("expiresAt"));
    assert!(!item.contains_key("payload"));
    let user = raw(&e, &t, "job", "profile").await.unwrap();
    assert_eq!(user.len(), 3, "the user's item untouched: {user:?}");
    let listing = json(&at(
        &e,
        &["locks", &t, "--output", "json", "--layout-file", &file],
    ));
    assert_eq!(lock_names(&listing), ["job"]);
    assert_eq!(listing["locks"][0]["payload"], "x");
    assert_eq!(listing["skipped"], 1);
    // The same layout as flags.
    let d = json(&at(
        &e,
        &[
            "describe",
            &t,
            "job",
            "--output",
            "json",
            "--partition-key",
            "PK",
            "--sort-key",
            "SK",
            "--sort-key-value",
            "LOCK",
            "--attribute",
            "payload=lockPayload",
            "--attribute",
            "expiresAt=ttl",
        ],
    ));
    assert_eq!(d["payload"], "x");
    // --group needs groups.
    let out = at(&e, &["locks", &t, "--group", "job", "--layout-file", &file]);
    assert_fails(&out, 2, &["--group needs"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_release_on_a_terminal_lists_the_held_locks_and_asks_once() {
    let Some(e) = moto("a_group_release_on_a_terminal_lists_the_held_locks_and_asks_once") else {
        return;
    };
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(std::env::var_os("CI").is_none(), "`script` is needed");
        eprintln!("SKIP: no `script` command to give lynk a terminal");
        return;
    }
    let t = group_fixture(&e, "layout-tty").await;
    let command = format!(
        "{} --endpoint-url {e} release {t} --group orders --force {}",
        assert_cmd::cargo::cargo_bin("lynk").display(),
        GROUPED.join(" ").replace("LOCK#", "'LOCK#'")
    );
    let on_a_terminal = |answer: &str| {
        let mut child = std::process::Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("script runs");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).replace('\r', ""),
        )
    };
    // Declined: exit 8, nothing released; the question named both held locks.
    let (code, screen) = on_a_terminal("n\n");
    assert_eq!(code, Some(8), "{screen}");
    assert!(
        screen.contains("Force-release the 2 held lock(s) of group \"orders\"")
            && screen.contains("  orders/1: held by")
            && screen.contains("  orders/2: held by")
            && !screen.contains("billing"),
        "{screen}"
    );
    let held = json(&with(
        &e,
        &["locks", &t, "--group", "orders", "--output", "json"],
        &GROUPED,
    ));
    assert!(held["locks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["state"] == "held"));
    // Accepted: both released, one line each.
    let (code, screen) = on_a_terminal("y\n");
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("Released lock \"orders/1\"")
            && screen.contains("Released lock \"orders/2\""),
        "{screen}"
    );
}

/// The commands not covered above follow the layout too: `demo --table`
/// (its lock where the layout says, a name without a group refused before
/// anything is sent), `leader run` and `leader show`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_and_leader_commands_follow_the_layout() {
    let Some(e) = moto("demo_and_leader_commands_follow_the_layout") else {
        return;
    };
    let t = unique_table("layout-more");
    ok(&with(&e, &["create-table", &t], &GROUPED));

    // demo on the table: two workers hand "jobs/demo" over.
    let demo = [
        "demo",
        "--table",
        &t,
        "--lock",
        "jobs/demo",
        "--workers",
        "2",
        "--hold",
        "100ms",
        "--lease",
        "5s",
    ];
    let out = ok(&with(&e, &demo, &GROUPED));
    assert!(
        out.contains("Thread-1") && out.contains("Thread-2"),
        "{out}"
    );
    let item = raw(&e, &t, "LOCK#jobs", "demo")
        .await
        .expect("the demo's lock item under the layout");
    assert_eq!(item["released"], AttributeValue::Bool(true));
    assert!(raw(&e, &t, "jobs/demo", "jobs/demo").await.is_none());
    let no_group = ["demo", "--table", &t, "--lock", "demo", "--hold", "10ms"];
    let out = with(&e, &no_group, &GROUPED);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // leader run: the command gets its term; the record is where the layout says.
    // (The layout flags go before `--`: after it they are the command's.)
    let mut run = vec!["leader", "run", &t, "sched/primary"];
    run.extend_from_slice(&GROUPED);
    run.extend_from_slice(&["--", "sh", "-c", "echo $LYNK_TERM"]);
    let term: u64 = ok(&at(&e, &run)).trim().parse().unwrap();
    let item = raw(&e, &t, "LOCK#sched", "primary")
        .await
        .expect("the election's record under the layout");
    assert_eq!(item["fencingToken"], AttributeValue::N(term.to_string()));
    assert_eq!(
        ok(&with(
            &e,
            &["leader", "show", &t, "sched/primary"],
            &GROUPED
        )),
        format!("Election \"sched/primary\" in table {t} has no leader.\n")
    );
    // Without the layout, the same name is another key: nothing there.
    let out = at(&e, &["leader", "show", &t, "sched/primary"]);
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
}

//! The table commands end to end against moto: the original quickstart
//! transcript, JSON output, and the errors of bad tables.

mod common;

use common::*;

/// The original README's transcript, line for line, on a moto server of
/// its own (so other tests' tables cannot show up in `list-tables`).
#[test]
fn the_original_quickstart_transcript_exactly() {
    let Some(_shared) = moto("the_original_quickstart_transcript_exactly") else {
        return;
    };
    let moto = PrivateMoto::start()
        .expect("moto (scripts/install-test-servers.sh) started by scripts/moto_linearizable.py");
    let e = moto.endpoint.as_str();
    let transcript = [
        (
            vec!["create-table", "lynk-quickstart"],
            "Creating table lynk-quickstart\nCreated\n",
        ),
        (vec!["list-tables"], "lynk-quickstart\n"),
        (
            vec!["delete-table", "lynk-quickstart"],
            "Deleting table lynk-quickstart\nDeleted\n",
        ),
        (vec!["list-tables"], ""),
        // and the original's answers when there is nothing to do
        (
            vec!["delete-table", "lynk-quickstart"],
            "Table lynk-quickstart does not exist.\n",
        ),
    ];
    for (args, expected) in transcript {
        let out = at(e, &args);
        assert_eq!(ok(&out), expected, "lynk {args:?}");
        assert_eq!(stderr(&out), "", "lynk {args:?} printed on stderr");
    }
    assert_eq!(
        ok(&at(e, &["create-table", "lynk-quickstart"])),
        "Creating table lynk-quickstart\nCreated\n"
    );
    assert_eq!(
        ok(&at(e, &["create-table", "lynk-quickstart"])),
        "Table lynk-quickstart already exists.\n"
    );
}

/// The same commands on the shared server, filtered to this test's tables.
#[test]
fn table_commands_on_the_shared_server_with_json() {
    let Some(e) = moto("table_commands_on_the_shared_server_with_json") else {
        return;
    };
    let e = e.as_str();
    let t = unique_table("json");
    let created = json(&at(
        e,
        &[
            "--output",
            "json",
            "create-table",
            &t,
            "--billing",
            "provisioned",
        ],
    ));
    assert_eq!(created["table"], t.as_str());
    assert_eq!(created["created"], true);
    assert_eq!(created["active"], true);
    let again = json(&at(e, &["create-table", &t, "--output", "json"]));
    assert_eq!(again["already_existed"], true);

    let listed = json(&at(e, &["list-tables", "--output", "json"]));
    let names: Vec<&str> = listed["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(names.contains(&t.as_str()), "{names:?}");
    assert_eq!(
        ok(&at(e, &["list-tables", "--prefix", &t])),
        format!("{t}\n")
    );

    let info = json(&at(e, &["check-table", &t, "--output", "json"]));
    assert_eq!(info["usable"], true);
    assert_eq!(info["status"], "ACTIVE");
    assert_eq!(info["billing"], "PROVISIONED");
    assert_eq!(info["tagged"], true);
    let text = ok(&at(e, &["check-table", &t]));
    assert!(
        text.starts_with(&format!("Table {t} can hold lynk locks\n")),
        "{text}"
    );

    let deleted = json(&at(e, &["delete-table", &t, "--output", "json"]));
    assert_eq!(deleted["deleted"], true);
    let gone = json(&at(e, &["delete-table", &t, "--output", "json"]));
    assert_eq!(gone["existed"], false);
    assert_eq!(ok(&at(e, &["list-tables", "--prefix", &t])), "");
}

#[test]
fn capacity_without_provisioned_billing_is_a_usage_error() {
    let out = lynk()
        .args(["create-table", "some-table", "--read-capacity", "5"])
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert_fails(&out, 2, &["--billing provisioned"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_with_the_wrong_key_schema_is_refused() {
    let Some(e) = moto("a_table_with_the_wrong_key_schema_is_refused") else {
        return;
    };
    let t = unique_table("schema");
    create_plain_table(&e, &t, "id").await;
    let out = at(&e, &["check-table", &t]);
    assert_fails(
        &out,
        7,
        &["cannot be used as a lock table", "hash key is `id`"],
    );
    let out = at(&e, &["run", &t, "job", "--", "true"]);
    assert_fails(&out, 7, &["hash key is `id`"]);
    let out = at(&e, &["locks", &t]);
    assert_fails(&out, 7, &["hash key is `id`"]);
    // Not tagged either: deleting it needs --force.
    let out = at(&e, &["delete-table", &t]);
    assert_fails(
        &out,
        7,
        &[
            "refusing to delete",
            &format!("lynk delete-table {t} --force"),
        ],
    );
    assert_eq!(
        ok(&at(&e, &["delete-table", &t, "--force"])),
        format!("Deleting table {t}\nDeleted\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_untagged_table_needs_force() {
    let Some(e) = moto("deleting_an_untagged_table_needs_force") else {
        return;
    };
    let t = unique_table("untagged");
    create_plain_table(&e, &t, "lockKey").await;
    let out = at(&e, &["delete-table", &t]);
    assert_fails(
        &out,
        7,
        &["does not carry the tag lynk=lock-table", "--force"],
    );
    assert_eq!(stdout(&out), "", "nothing deleted, nothing announced");
    // It still works as a lock table, and is not listed as lynk's.
    ok(&at(&e, &["check-table", &t]));
    assert_eq!(ok(&at(&e, &["list-tables", "--prefix", &t])), "");
    assert_eq!(
        ok(&at(&e, &["delete-table", &t, "--force"])),
        format!("Deleting table {t}\nDeleted\n")
    );
}

#[test]
fn a_missing_table_says_how_to_create_it() {
    let Some(e) = moto("a_missing_table_says_how_to_create_it") else {
        return;
    };
    let t = unique_table("missing");
    for args in [
        vec!["check-table", t.as_str()],
        vec!["locks", t.as_str()],
        vec!["describe", t.as_str(), "x"],
        vec!["run", t.as_str(), "x", "--", "true"],
        vec!["acquire", t.as_str(), "x", "--lease", "1m"],
    ] {
        let out = at(&e, &args);
        assert_fails(
            &out,
            7,
            &["does not exist", &format!("lynk create-table {t}")],
        );
    }
}

#[test]
fn invalid_table_names_are_usage_errors() {
    for name in ["ab", "has space", "semi;colon", &"a".repeat(256)] {
        for args in [
            vec!["create-table", name],
            vec!["delete-table", name],
            vec!["locks", name],
            vec!["run", name, "lock", "--", "true"],
        ] {
            let out = lynk().args(&args).output().unwrap();
            assert_fails(&out, 2, &["invalid table name", "3 to 255 characters"]);
        }
    }
}

#[test]
fn an_unreachable_endpoint_is_an_aws_error() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    for args in [
        vec!["list-tables"],
        vec!["create-table", "lynk-unreachable"],
        vec!["run", "lynk-unreachable", "job", "--", "true"],
    ] {
        let out = lynk()
            .arg("--endpoint-url")
            .arg(&endpoint)
            .args(&args)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .unwrap();
        assert_fails(&out, 5, &["could not reach DynamoDB", "--endpoint-url"]);
    }
}

/// A `lynk` with no AWS configuration at all in its environment.
fn bare_aws_env() -> assert_cmd::Command {
    let mut cmd = lynk();
    for var in [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_CONFIG_FILE", "/nonexistent/lynk-test/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/lynk-test/credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

#[test]
fn a_missing_region_says_how_to_set_one() {
    let out = bare_aws_env()
        .args(["list-tables"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    assert_fails(&out, 6, &["no AWS region", "--region"]);
}

#[test]
fn missing_credentials_say_how_to_provide_them() {
    let out = bare_aws_env()
        .args(["--region", "us-east-1", "list-tables"])
        .output()
        .unwrap();
    assert_fails(&out, 6, &["no AWS credentials", "AWS_ACCESS_KEY_ID"]);
}

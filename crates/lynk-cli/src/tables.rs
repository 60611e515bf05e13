//! The table commands: `create-table`, `list-tables`, `delete-table` and
//! `check-table`, with the original lynk's output lines in text mode.

use lynk_dynamo::{Billing, CreateOptions, Error as DynamoError, TableAdmin};
use serde_json::json;

use crate::cli::{
    BillingArg, CreateTableArgs, DeleteTableArgs, Global, ListTablesArgs, OutputFormat,
};
use crate::connect::{admin, plain_admin};
use crate::exit::{self, Failure};
use crate::output::{print_json, say, Printer};

/// Whether `table` exists (a table with a wrong key schema exists too).
async fn exists(admin: &TableAdmin, table: &str) -> Result<bool, Failure> {
    match admin.check_table(table).await {
        Ok(_) | Err(DynamoError::TableMisconfigured { .. }) => Ok(true),
        Err(DynamoError::TableMissing { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `lynk create-table`.
pub async fn create(global: &Global, args: CreateTableArgs) -> Result<i32, Failure> {
    let billing = match (args.billing, args.read_capacity, args.write_capacity) {
        (BillingArg::OnDemand, None, None) => Billing::OnDemand,
        (BillingArg::OnDemand, _, _) => {
            return Err(Failure::new(
                exit::USAGE,
                "--read-capacity and --write-capacity need --billing provisioned",
            ))
        }
        (BillingArg::Provisioned, r, w) => Billing::Provisioned {
            read: r.unwrap_or(5),
            write: w.unwrap_or(5),
        },
    };
    let text = global.output == OutputFormat::Text;
    let table = args.table.as_str();
    let admin = admin(global).await?;
    let already = |admin_text: bool| {
        if admin_text {
            say(format!("Table {table} already exists."));
        } else {
            print_json(&json!({"table": table, "created": false, "already_existed": true}));
        }
        Ok(exit::OK)
    };
    if exists(&admin, table).await? {
        return already(text);
    }
    if text {
        say(format!("Creating table {table}"));
    }
    let options = CreateOptions::new()
        .billing(billing)
        .wait(!args.no_wait)
        .ttl(!args.no_ttl);
    let outcome = match admin.create_table(table, &options).await {
        Ok(o) => o,
        Err(DynamoError::TableExists { .. }) => return already(text),
        Err(e) => return Err(e.into()),
    };
    for w in &outcome.warnings {
        Printer::new(global).warn(w);
    }
    if text {
        if args.no_wait {
            say(format!(
                "Requested; the table becomes usable once ACTIVE (see `lynk check-table {table}`)"
            ));
        } else {
            say("Created");
        }
    } else {
        print_json(&json!({
            "table": table,
            "created": true,
            "already_existed": false,
            "active": outcome.active,
            "ttl_enabled": outcome.ttl_enabled,
            "warnings": outcome.warnings,
            "partition_key": admin.layout().partition_key_attribute(),
            "sort_key": admin.layout().sort_key_attribute(),
        }));
    }
    Ok(exit::OK)
}

/// `lynk list-tables`.
pub async fn list(global: &Global, args: ListTablesArgs) -> Result<i32, Failure> {
    let admin = plain_admin(global).await?;
    let tables: Vec<String> = admin
        .list_tables()
        .await?
        .into_iter()
        .filter(|t| args.prefix.as_deref().is_none_or(|p| t.starts_with(p)))
        .collect();
    match global.output {
        OutputFormat::Text => tables.iter().for_each(say),
        OutputFormat::Json => print_json(&json!({ "tables": tables })),
    }
    Ok(exit::OK)
}

/// `lynk delete-table`.
pub async fn delete(global: &Global, args: DeleteTableArgs) -> Result<i32, Failure> {
    let text = global.output == OutputFormat::Text;
    let table = args.table.as_str();
    let admin = plain_admin(global).await?;
    let absent = || {
        if text {
            say(format!("Table {table} does not exist."));
        } else {
            print_json(&json!({"table": table, "deleted": false, "existed": false}));
        }
        Ok(exit::OK)
    };
    match admin.check_table(table).await {
        Err(DynamoError::TableMissing { .. }) => return absent(),
        Ok(info) if info.tagged == Some(false) && !args.force => {
            return Err(DynamoError::NotALockTable {
                table: table.to_owned(),
            }
            .into())
        }
        Ok(_) | Err(DynamoError::TableMisconfigured { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    if text {
        say(format!("Deleting table {table}"));
    }
    match admin.delete_table(table, args.force, !args.no_wait).await {
        Ok(()) => {}
        Err(DynamoError::TableMissing { .. }) => return absent(),
        Err(e) => return Err(e.into()),
    }
    if text {
        say(if args.no_wait {
            "Delete requested"
        } else {
            "Deleted"
        });
    } else {
        print_json(&json!({
            "table": table,
            "deleted": true,
            "existed": true,
            "waited": !args.no_wait,
        }));
    }
    Ok(exit::OK)
}

/// `lynk check-table`.
pub async fn check(global: &Global, table: &str) -> Result<i32, Failure> {
    let admin = admin(global).await?;
    let info = match admin.check_table(table).await {
        Ok(info) => info,
        Err(e @ DynamoError::TableMisconfigured { .. }) => {
            return Err(Failure::from(e).hint(format!(
                "the layout lynk checked against: {}; set it with --partition-key, --sort-key with --sort-key-value or --grouped, their LYNK_* variables or --layout-file (docs/cli.md, Table layout)",
                admin.layout()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    for w in &info.warnings {
        Printer::new(global).warn(w);
    }
    let layout = admin.layout();
    match global.output {
        OutputFormat::Json => print_json(&json!({
            "table": info.name,
            "usable": true,
            "status": info.status.as_str(),
            "billing": info.billing.as_str(),
            "item_count": info.item_count,
            "tagged": info.tagged,
            "ttl": info.ttl.as_ref().map(ToString::to_string),
            "arn": info.arn,
            "layout": layout.to_string(),
            "partition_key": layout.partition_key_attribute(),
            "sort_key": layout.sort_key_attribute(),
            "warnings": info.warnings,
        })),
        OutputFormat::Text => {
            say(format!("Table {} can hold lynk locks", info.name));
            say(format!("  layout:   {layout}"));
            say(format!("  status:   {}", info.status));
            say(format!("  billing:  {}", info.billing));
            if let Some(n) = info.item_count {
                say(format!(
                    "  items:    {n} (DynamoDB's estimate, updated every few hours)"
                ));
            }
            say(format!(
                "  tagged:   {}",
                match info.tagged {
                    Some(true) => "yes (lynk=lock-table)",
                    Some(false) => "no (lynk did not create it; `lynk delete-table` needs --force)",
                    None => "unknown",
                }
            ));
            say(format!(
                "  ttl:      {}",
                info.ttl
                    .map_or_else(|| "unknown".to_owned(), |t| t.to_string())
            ));
            if let Some(arn) = &info.arn {
                say(format!("  arn:      {arn}"));
            }
        }
    }
    Ok(exit::OK)
}

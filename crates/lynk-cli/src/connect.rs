//! Connecting to DynamoDB from the global options.

use lynk_dynamo::{AwsOptions, DynamoBackend, TableAdmin, TableInfo, TableLayout};

use crate::cli::Global;
use crate::exit::Failure;

/// The AWS options given by `--region`, `--endpoint-url` and `--profile`.
pub fn aws_options(global: &Global) -> AwsOptions {
    let mut options = AwsOptions::new();
    if let Some(r) = &global.region {
        options = options.region(r.clone());
    }
    if let Some(u) = &global.endpoint_url {
        options = options.endpoint_url(u.clone());
    }
    if let Some(p) = &global.profile {
        options = options.profile(p.clone());
    }
    options
}

/// The table layout of the layout options, their environment variables and
/// the layout file (exit 2 if they do not make one).
pub fn layout(global: &Global) -> Result<TableLayout, Failure> {
    crate::layout::resolve(&global.layout)
}

/// Checks that every name fits the table layout (e.g. has a group in a
/// grouped layout) before anything is sent: exit 2 otherwise.
pub fn check_names<'a>(
    global: &Global,
    names: impl IntoIterator<Item = &'a String>,
) -> Result<(), Failure> {
    let layout = layout(global)?;
    for name in names {
        layout
            .key_of(name)
            .map_err(|e| Failure::new(crate::exit::USAGE, e.to_string()))?;
    }
    Ok(())
}

/// Table administration with the global options, without the table
/// layout (`list-tables`, `delete-table`: a bad layout setting does not stop
/// them).
pub async fn plain_admin(global: &Global) -> Result<TableAdmin, Failure> {
    Ok(TableAdmin::connect(&aws_options(global)).await?)
}

/// Table administration with the global options and the table layout.
pub async fn admin(global: &Global) -> Result<TableAdmin, Failure> {
    let layout = layout(global)?;
    Ok(TableAdmin::connect(&aws_options(global))
        .await?
        .with_layout(layout)?)
}

/// A backend for `table`, after checking that the table exists and has the
/// right key schema (so a typo or a wrong table fails at once, with a clear
/// message, instead of inside the lock engine's retries).
///
/// A caller whose credentials may not describe tables still gets through:
/// an access-denied answer to the check is logged and ignored.
pub async fn checked_backend(global: &Global, table: &str) -> Result<DynamoBackend, Failure> {
    let backend = unchecked_backend(global, table).await?;
    match backend.admin().check_table(table).await {
        Ok(info) => check_active(&info)?,
        Err(lynk_dynamo::Error::AccessDenied { detail, .. }) => {
            tracing::info!(table, %detail, "cannot describe the table; skipping its check");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(backend)
}

/// The backend for `table`, without checking the table (no request).
pub async fn unchecked_backend(global: &Global, table: &str) -> Result<DynamoBackend, Failure> {
    let layout = layout(global)?;
    Ok(DynamoBackend::builder(table)
        .options(aws_options(global))
        .layout(layout)
        .build()
        .await?)
}

fn check_active(info: &TableInfo) -> Result<(), Failure> {
    if !info.status.is_usable() {
        return Err(Failure::new(
            crate::exit::TABLE,
            format!(
                "table `{}` is {}, not ACTIVE; wait until it is (lynk check-table {})",
                info.name, info.status, info.name
            ),
        ));
    }
    Ok(())
}

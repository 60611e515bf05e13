//! Fenced writes: your own DynamoDB write, applied only while a lock is
//! still held, in one `TransactWriteItems`.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem, Update};
use lynk_core::LockGuard;

use crate::classify::admin_error;
use crate::item::fence_condition;
use crate::{DynamoBackend, Error};

/// One write of yours to make conditional on holding a lock: the
/// `aws_sdk_dynamodb` transaction item types, on any table (including
/// conditions of their own).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum UserWrite {
    /// Put an item.
    Put(Put),
    /// Update an item.
    Update(Update),
    /// Delete an item.
    Delete(Delete),
    /// Check a condition on an item without writing it.
    ConditionCheck(ConditionCheck),
}

impl From<Put> for UserWrite {
    fn from(p: Put) -> Self {
        UserWrite::Put(p)
    }
}

impl From<Update> for UserWrite {
    fn from(u: Update) -> Self {
        UserWrite::Update(u)
    }
}

impl From<Delete> for UserWrite {
    fn from(d: Delete) -> Self {
        UserWrite::Delete(d)
    }
}

impl From<ConditionCheck> for UserWrite {
    fn from(c: ConditionCheck) -> Self {
        UserWrite::ConditionCheck(c)
    }
}

impl UserWrite {
    fn table(&self) -> &str {
        match self {
            UserWrite::Put(p) => p.table_name(),
            UserWrite::Update(u) => u.table_name(),
            UserWrite::Delete(d) => d.table_name(),
            UserWrite::ConditionCheck(c) => c.table_name(),
        }
    }

    fn into_item(self) -> TransactWriteItem {
        let b = TransactWriteItem::builder();
        match self {
            UserWrite::Put(p) => b.put(p),
            UserWrite::Update(u) => b.update(u),
            UserWrite::Delete(d) => b.delete(d),
            UserWrite::ConditionCheck(c) => b.condition_check(c),
        }
        .build()
    }
}

/// Fenced writes: the [`DynamoBackend`] operations that make your own
/// writes conditional on holding a lock.
///
/// The fence is a `ConditionCheck` on the lock record:
/// `fencingToken = <the guard's token> AND attribute_not_exists(released)`.
/// Heartbeats keep the token, so the fence holds for the whole time the
/// guard holds the lock, and fails as soon as anyone else acquires it, it is
/// released, or the original Python client rewrites it.
///
/// Needs a server with transactions (DynamoDB, moto; not dynalite).
///
/// ```no_run
/// # async fn f(backend: lynk_dynamo::DynamoBackend, guard: lynk_core::LockGuard) -> Result<(), lynk_dynamo::Error> {
/// use lynk_dynamo::aws_sdk_dynamodb::types::{AttributeValue, Put};
/// let put = Put::builder()
///     .table_name("accounts")
///     .item("id", AttributeValue::S("42".into()))
///     .item("balance", AttributeValue::N("100".into()))
///     .build()
///     .expect("table and item are set");
/// backend.fenced_write(&guard, put).await?; // Error::LockLost if taken over
/// # Ok(()) }
/// ```
impl DynamoBackend {
    /// The `ConditionCheck` that holds only while `guard` holds its lock, to
    /// compose into a transaction of your own. Fails with
    /// [`Error::InvalidLockName`] only for a guard whose name does not fit
    /// this backend's [layout](DynamoBackend::layout) (a guard of another
    /// backend).
    pub fn fence(&self, guard: &LockGuard) -> Result<ConditionCheck, Error> {
        let mut expr = fence_condition(self.layout(), guard.fencing_token());
        ConditionCheck::builder()
            .table_name(self.table())
            .set_key(Some(self.layout().key_of(guard.name())?))
            .condition_expression(expr.condition)
            .set_expression_attribute_names(expr.placeholders.take_names())
            .set_expression_attribute_values(expr.placeholders.take_values())
            .build()
            .map_err(|e| Error::InvalidRequest {
                operation: "ConditionCheck".into(),
                table: self.table().to_owned(),
                detail: format!("could not build the fence: {e}"),
            })
    }

    /// Applies `write` if and only if `guard` still holds its lock, as one
    /// transaction. Fails with [`Error::LockLost`] (nothing written) when
    /// the lock was taken over or released, and with
    /// [`Error::WriteConditionFailed`] when your write's own condition failed.
    pub async fn fenced_write(
        &self,
        guard: &LockGuard,
        write: impl Into<UserWrite> + Send,
    ) -> Result<(), Error> {
        self.fenced_write_all(guard, vec![write.into()]).await
    }

    /// Like [`fenced_write`](DynamoBackend::fenced_write) for up to 99
    /// writes, all applied or none.
    pub async fn fenced_write_all(
        &self,
        guard: &LockGuard,
        writes: Vec<UserWrite>,
    ) -> Result<(), Error> {
        let lost = || Error::LockLost {
            name: guard.name().to_owned(),
            token: guard.fencing_token().get(),
        };
        if !self.capabilities_transactions() {
            return Err(Error::TransactionsUnsupported);
        }
        if guard.is_lost() {
            return Err(lost());
        }
        let tables: Vec<String> = writes.iter().map(|w| w.table().to_owned()).collect();
        let mut items = vec![TransactWriteItem::builder()
            .condition_check(self.fence(guard)?)
            .build()];
        items.extend(writes.into_iter().map(UserWrite::into_item));
        let result = self
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(s))
                if matches!(
                    s.err(),
                    TransactWriteItemsError::TransactionCanceledException(_)
                ) =>
            {
                let TransactWriteItemsError::TransactionCanceledException(c) = s.err() else {
                    unreachable!("matched above")
                };
                let reasons = c.cancellation_reasons();
                let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
                if code(0) == "ConditionalCheckFailed" {
                    return Err(lost());
                }
                if let Some(i) = (1..reasons.len()).find(|&i| code(i) == "ConditionalCheckFailed") {
                    return Err(Error::WriteConditionFailed {
                        table: tables.get(i - 1).cloned().unwrap_or_default(),
                        detail: reasons[i]
                            .message()
                            .unwrap_or("ConditionalCheckFailed")
                            .to_owned(),
                    });
                }
                if reasons.is_empty() {
                    // Servers that give no reasons: find out whether the fence failed.
                    if !self.still_fenced(guard).await? {
                        return Err(lost());
                    }
                }
                let detail = c.message().unwrap_or("transaction cancelled").to_owned();
                let codes: Vec<&str> = (0..reasons.len()).map(code).collect();
                let retryable = codes.iter().any(|c| {
                    matches!(
                        *c,
                        "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
                    )
                });
                Err(Error::Service {
                    operation: "TransactWriteItems".into(),
                    table: self.table().to_owned(),
                    detail: format!("{detail} (reasons: {})", codes.join(", ")),
                    retryable,
                })
            }
            Err(e) => Err(admin_error(e, "TransactWriteItems", self.table())),
        }
    }

    fn capabilities_transactions(&self) -> bool {
        lynk_core::LockBackend::capabilities(self).transactions
    }

    /// Whether the stored record still carries `guard`'s token, unreleased.
    async fn still_fenced(&self, guard: &LockGuard) -> Result<bool, Error> {
        let record = lynk_core::LockBackend::read(self, guard.name())
            .await
            .map_err(|e| Error::Service {
                operation: "GetItem".into(),
                table: self.table().to_owned(),
                detail: e.to_string(),
                retryable: e.is_retryable(),
            })?;
        Ok(record.is_some_and(|r| !r.released && r.fencing_token == Some(guard.fencing_token())))
    }
}

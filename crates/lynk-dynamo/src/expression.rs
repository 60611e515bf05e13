//! A small builder for DynamoDB expressions that records exactly the
//! attribute names and values the expressions use.
//!
//! Strict servers (DynamoDB itself and dynalite) reject a request that
//! defines a name or value no expression uses, so placeholders are only
//! registered when an expression text refers to them.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// Whether an expression may spell attribute `attr` as it is: lynk's
/// default names are none of them a DynamoDB reserved word (every request
/// of the test suites sends them so, and DynamoDB, dynalite and moto reject
/// a reserved word). Any other name (a table layout's) gets a placeholder.
fn spelled_as_is(attr: &str) -> bool {
    attr == crate::item::LOCK_KEY || crate::LynkAttribute::from_default_name(attr).is_some()
}

/// Collects `#name` and `:value` placeholders for one request, writing
/// them into the expression texts as it goes.
///
/// A request has a dozen of each at most, so they are kept in small
/// vectors (a linear scan finds one) and become the SDK's maps only when
/// the request is built. Texts are written into one buffer each
/// ([`put_name`](Placeholders::put_name), [`put_value`](Placeholders::put_value)):
/// building a write's expressions allocates once per distinct name and
/// per value, and formats nothing.
#[derive(Debug)]
pub(crate) struct Placeholders {
    /// `(placeholder, attribute name)`.
    names: Vec<(String, String)>,
    /// `(label, value)`; the placeholder is `:label`.
    values: Vec<(&'static str, AttributeValue)>,
}

impl Default for Placeholders {
    /// Room for a protocol write's placeholders (at most 14 names and 16
    /// values), so building one does not grow the vectors.
    fn default() -> Self {
        Placeholders {
            names: Vec::with_capacity(16),
            values: Vec::with_capacity(16),
        }
    }
}

impl Placeholders {
    /// Writes attribute `attr` into `out` as an expression refers to it:
    /// as it is when it is one of lynk's default names (no placeholder, so
    /// the request carries no name map), else as a registered placeholder:
    /// `#attr` when the name is letters, digits and `_`, else `#nN` (a
    /// table layout may name attributes `ttl`, a reserved word, or
    /// `lynk-token` or `a.b`, which a placeholder cannot spell). One
    /// attribute, one placeholder.
    pub(crate) fn put_name(&mut self, out: &mut String, attr: &str) {
        if spelled_as_is(attr) {
            out.push_str(attr);
            return;
        }
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| a == attr) {
            out.push_str(placeholder);
            return;
        }
        let plain = !attr.is_empty() && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let mut placeholder = String::with_capacity(attr.len() + 1);
        placeholder.push('#');
        placeholder.push_str(attr);
        let mut i = 0;
        while !plain || self.has_name(&placeholder) {
            placeholder = format!("#n{i}");
            if !self.has_name(&placeholder) {
                break;
            }
            i += 1;
        }
        out.push_str(&placeholder);
        self.names.push((placeholder, attr.to_owned()));
    }

    fn has_name(&self, placeholder: &str) -> bool {
        self.names.iter().any(|(p, _)| p == placeholder)
    }

    /// Writes the placeholder `:label` for `value` into `out`, registering
    /// it. Using one label twice is fine: the later value replaces the
    /// earlier (the protocol only ever repeats a label with the same value).
    pub(crate) fn put_value(
        &mut self,
        out: &mut String,
        label: &'static str,
        value: AttributeValue,
    ) {
        out.push(':');
        out.push_str(label);
        match self.values.iter_mut().find(|(l, _)| *l == label) {
            Some((_, v)) => *v = value,
            None => self.values.push((label, value)),
        }
    }

    /// Writes `#attr = :label` into `out`, registering both.
    pub(crate) fn put_assign(
        &mut self,
        out: &mut String,
        attr: &str,
        label: &'static str,
        value: AttributeValue,
    ) {
        self.put_name(out, attr);
        out.push_str(" = ");
        self.put_value(out, label, value);
    }

    /// How an expression refers to attribute `attr`, registering a
    /// placeholder if it needs one (as [`put_name`](Placeholders::put_name)).
    pub(crate) fn name(&mut self, attr: &str) -> String {
        let mut out = String::new();
        self.put_name(&mut out, attr);
        out
    }

    /// The placeholder `:label` for `value`, registering it (as
    /// [`put_value`](Placeholders::put_value)).
    pub(crate) fn value(&mut self, label: &'static str, value: AttributeValue) -> String {
        let mut out = String::new();
        self.put_value(&mut out, label, value);
        out
    }

    /// Takes the names out as the SDK's map (leaving none), or `None` if
    /// there are none (the API rejects an empty map). Moved, not copied: a
    /// request's placeholders are sent once.
    pub(crate) fn take_names(&mut self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.drain(..).collect())
    }

    /// Takes the values out, as [`take_names`](Placeholders::take_names).
    pub(crate) fn take_values(&mut self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| {
            self.values
                .drain(..)
                .map(|(label, v)| {
                    let mut placeholder = String::with_capacity(label.len() + 1);
                    placeholder.push(':');
                    placeholder.push_str(label);
                    (placeholder, v)
                })
                .collect()
        })
    }
}

/// An update expression being written: `SET a, b REMOVE c, d`, leaving out
/// an empty clause.
#[derive(Debug, Default)]
pub(crate) struct UpdateText {
    set: String,
    remove: String,
}

impl UpdateText {
    /// The buffer to write the next `SET` action into.
    pub(crate) fn set(&mut self) -> &mut String {
        Self::next(&mut self.set, 256)
    }

    /// The buffer to write the next `REMOVE` action into.
    pub(crate) fn remove(&mut self) -> &mut String {
        Self::next(&mut self.remove, 96)
    }

    fn next(clause: &mut String, room: usize) -> &mut String {
        if clause.is_empty() {
            clause.reserve(room);
        } else {
            clause.push_str(", ");
        }
        clause
    }

    /// The whole expression.
    pub(crate) fn finish(self) -> String {
        let mut text = String::with_capacity(self.set.len() + self.remove.len() + 12);
        if !self.set.is_empty() {
            text.push_str("SET ");
            text.push_str(&self.set);
        }
        if !self.remove.is_empty() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str("REMOVE ");
            text.push_str(&self.remove);
        }
        text
    }
}

//! A small builder for DynamoDB expressions that records exactly the
//! attribute names and values the expressions use.
//!
//! Strict servers (DynamoDB itself and dynalite) reject a request that
//! defines a name or value no expression uses, so placeholders are only
//! registered when an expression text refers to them.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// Collects `#name` and `:value` placeholders for one request.
///
/// A request has a dozen of each at most, so they are kept in small
/// vectors (a linear scan finds one) and become the SDK's maps only when
/// the request is built: building the expressions of a write costs a few
/// allocations per placeholder and no hashing until then.
#[derive(Debug)]
pub(crate) struct Placeholders {
    /// `(placeholder, attribute name)`.
    names: Vec<(String, String)>,
    /// `(placeholder, value)`.
    values: Vec<(String, AttributeValue)>,
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
    /// The placeholder for attribute `attr`, registering it: `#attr` when
    /// the name is letters, digits and `_` (every default name), else
    /// `#nN` (a table layout may name attributes `lynk-token` or `a.b`,
    /// which a placeholder cannot spell). One attribute, one placeholder.
    pub(crate) fn name(&mut self, attr: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| a == attr) {
            return placeholder.clone();
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
        self.names.push((placeholder.clone(), attr.to_owned()));
        placeholder
    }

    fn has_name(&self, placeholder: &str) -> bool {
        self.names.iter().any(|(p, _)| p == placeholder)
    }

    /// The placeholder `:label` for `value`, registering it. Using one label
    /// twice is fine: the later value replaces the earlier (the protocol
    /// only ever repeats a label with the same value).
    pub(crate) fn value(&mut self, label: &str, value: AttributeValue) -> String {
        let mut placeholder = String::with_capacity(label.len() + 1);
        placeholder.push(':');
        placeholder.push_str(label);
        match self.values.iter_mut().find(|(p, _)| *p == placeholder) {
            Some((_, v)) => *v = value,
            None => self.values.push((placeholder.clone(), value)),
        }
        placeholder
    }

    /// `#attr = :label`, registering both.
    pub(crate) fn assign(&mut self, attr: &str, label: &str, value: AttributeValue) -> String {
        let mut text = self.name(attr);
        text.push_str(" = ");
        text.push_str(&self.value(label, value));
        text
    }

    /// Takes the names out as the SDK's map (leaving none), or `None` if
    /// there are none (the API rejects an empty map). Moved, not copied: a
    /// request's placeholders are sent once.
    pub(crate) fn take_names(&mut self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.drain(..).collect())
    }

    /// Takes the values out, as [`take_names`](Placeholders::take_names).
    pub(crate) fn take_values(&mut self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.drain(..).collect())
    }
}

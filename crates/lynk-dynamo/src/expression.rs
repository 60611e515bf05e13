//! A small builder for DynamoDB expressions that records exactly the
//! attribute names and values the expressions use.
//!
//! Strict servers (DynamoDB itself and dynalite) reject a request that
//! defines a name or value no expression uses, so placeholders are only
//! registered when an expression text refers to them.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// Collects `#name` and `:value` placeholders for one request.
#[derive(Debug)]
pub(crate) struct Placeholders {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Default for Placeholders {
    /// Room for a protocol write's placeholders (at most 14 names and 16
    /// values), so building one does not grow the maps.
    fn default() -> Self {
        Placeholders {
            names: HashMap::with_capacity(16),
            values: HashMap::with_capacity(16),
        }
    }
}

impl Placeholders {
    /// The placeholder for attribute `attr`, registering it: `#attr` when
    /// the name is letters, digits and `_` (every default name), else
    /// `#nN` (a table layout may name attributes `lynk-token` or `a.b`,
    /// which a placeholder cannot spell). One attribute, one placeholder.
    pub(crate) fn name(&mut self, attr: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| *a == attr) {
            return placeholder.clone();
        }
        let plain = !attr.is_empty() && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let mut placeholder = String::with_capacity(attr.len() + 1);
        placeholder.push('#');
        placeholder.push_str(attr);
        let mut i = 0;
        while !plain || self.names.contains_key(&placeholder) {
            placeholder = format!("#n{i}");
            if !self.names.contains_key(&placeholder) {
                break;
            }
            i += 1;
        }
        self.names.insert(placeholder.clone(), attr.to_owned());
        placeholder
    }

    /// The placeholder `:label` for `value`, registering it. Using one label
    /// twice with the same value is fine.
    pub(crate) fn value(&mut self, label: &str, value: AttributeValue) -> String {
        let mut placeholder = String::with_capacity(label.len() + 1);
        placeholder.push(':');
        placeholder.push_str(label);
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// Takes the names map out (leaving it empty), or `None` if it is empty
    /// (the API rejects an empty map). Moved, not copied: a request's
    /// placeholders are sent once.
    pub(crate) fn take_names(&mut self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| std::mem::take(&mut self.names))
    }

    /// Takes the values map out, as [`take_names`](Placeholders::take_names).
    pub(crate) fn take_values(&mut self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| std::mem::take(&mut self.values))
    }
}

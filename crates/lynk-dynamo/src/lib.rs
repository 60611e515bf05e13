//! # lynk-dynamo
//!
//! lynk's backend on Amazon DynamoDB. Not implemented yet: this crate is a
//! placeholder until the DynamoDB backend lands.

pub use lynk_core;

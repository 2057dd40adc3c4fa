//! Test harness: the AWS API emulator (`emulator`) and a Lambda Runtime API on loopback
//! (`runtime_api`) that a bootstrap binary polls for events, as it would in Lambda.

#![allow(dead_code)]

pub mod emulator;
pub mod ledger_table;
pub mod runtime_api;

//! The ringwatch console: a control plane that accepts agents over QUIC,
//! detects failed nodes with phi-accrual heartbeats and keeps the event log,
//! plus the command line that drives it headless or from a terminal UI.
//!
//! # Layout
//! - [`control`]: the control plane (server, node table, detector loop,
//!   store, PKI, admin channel).
//! - [`handle`]: the boundary the UI reads snapshots from and sends commands to.
//! - [`config`]: the optional TOML config file.
//! - [`demo`]: the demo's local agents and their fault-injecting relays.
//! - [`local`]: agents run in-process (the embedded local agent, the demo).
//! - [`metrics`]: Prometheus metrics on `--metrics-listen`.
//! - [`remote`]: credentials and the terminal UI's link to a remote console.
//! - [`report`]: human renderings of status for the command line.
//! - [`ui`]: the terminal UI, drawn from snapshots read through [`handle`].

pub mod config;
pub mod control;
pub mod demo;
pub mod handle;
pub mod local;
pub mod metrics;
pub mod remote;
pub mod report;
pub mod ui;

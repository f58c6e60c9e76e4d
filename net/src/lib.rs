//! Transport and file plumbing both ringwatch daemons stand on: QUIC
//! endpoints, TLS client configs and transport settings, durable private
//! files, PEM, signals and logging. The agent and the console each depend on
//! this crate; the console depends on the agent crate only to embed agents.
//!
//! # Layout
//! - [`endpoint`]: QUIC endpoints with large socket buffers.
//! - [`tls`]: client TLS configs (CA-pinned join, mutual TLS) and the QUIC
//!   transport settings both ends use.
//! - [`cert`]: a certificate's validity period; UTC dates for messages.
//! - [`files`]: atomic, fsynced writes (also ones that never replace a
//!   file); private files that refuse loose permissions.
//! - [`pem`]: PEM armour, and reading files of several PEM sections.
//! - [`signal`]: SIGINT/SIGTERM to a cancellation token.
//! - [`logging`]: the log filter and the stderr subscriber.
//! - [`cli_docs`]: shell completions and man pages from a clap definition.

pub mod cert;
pub mod cli_docs;
pub mod endpoint;
pub mod files;
pub mod logging;
pub mod pem;
pub mod signal;
pub mod tls;

pub use endpoint::{SOCKET_BUFFER_BYTES, client_bind, client_endpoint, endpoint};
pub use signal::stop_on_signal;

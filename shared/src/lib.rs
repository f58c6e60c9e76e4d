//! Everything the ringwatch agent and console must agree on, and the pure
//! logic both sides run: the wire protocol and its codec, the phi-accrual
//! failure detector, reconnect backoff, join tokens and the status model.
//!
//! Nothing here does I/O or reads the clock: time is always passed in (the
//! quinn-proto way), so every function is deterministic under test.
//!
//! # Layout
//! - [`protocol`]: the versioned messages exchanged on the control stream and
//!   as datagrams.
//! - [`codec`]: length-prefixed, size-limited frames that never panic on input.
//! - [`metrics`]: the resource sample an agent reports.
//! - [`detector`]: the phi-accrual failure detector.
//! - [`backoff`]: capped exponential backoff with jitter.
//! - [`token`]: the join token that pins the cluster CA and proves the right
//!   to join.
//! - [`status`]: node states and the cluster status an admin client reads.
//! - [`placement`]: choosing a node for an instance; headroom.
//! - [`plan`]: plans of operator actions.
//! - [`ring`]: the weighted consistent-hash ring.
//! - [`data`]: the replicated data store's keys, versions, reads, digests
//!   and repair plans.
//! - [`limits`]: resource limits that mark a node degraded.
//! - [`task`]: task files, the desired state.
//! - [`policy`]: restarting a crashed instance in place, or giving up.
//! - [`lifetime`]: certificate lifetimes, renewal at two thirds, expiry.
//! - [`duration`]: human durations (`500ms`, `5s`, `1m`) for command lines,
//!   bounded.
//! - [`size`]: human byte sizes (`10GiB`, `500MB`) for command lines.
//! - [`names`]: node names, task names and instance ids, valid by
//!   construction.
//! - [`bounds`]: caps on peer-supplied text, and adding a wait to the clock
//!   without overflow.

pub mod backoff;
pub mod bounds;
pub mod codec;
pub mod data;
pub mod detector;
pub mod duration;
pub mod lifetime;
pub mod limits;
pub mod metrics;
pub mod names;
pub mod placement;
pub mod plan;
pub mod policy;
pub mod protocol;
pub mod ring;
pub mod size;
pub mod status;
pub mod task;
pub mod token;

//! Who answers agents and operators on this console (ARCHITECTURE.md,
//! "Several consoles"): the owner, while this console leads; the standby
//! view, while another console leads or none does. A single console leads
//! itself for its whole life, at term 0.
//!
//! The role is published on a `watch` channel: every connection reads it
//! when it starts, and an agent's session ends the moment its console
//! stops leading, so a deposed leader says nothing more to anyone.

use std::sync::Arc;

use ringwatch_shared::protocol::{AdminRequest, AdminResponse};
use tokio::sync::watch;

use crate::control::owner::{ControlSnapshot, OwnerHandle};

/// A leader of a group, as the others know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    /// Its console name.
    pub name: String,
    /// The address agents reach it on.
    pub address: String,
    /// Its term.
    pub term: u64,
}

/// This console's role now.
#[derive(Debug, Clone)]
pub enum Role {
    /// It leads: its owner decides, its sessions serve agents.
    Leader {
        /// The owner.
        owner: OwnerHandle,
        /// The leadership's term, stamped on every frame to agents.
        term: u64,
    },
    /// Another console leads, or none does yet: read-only.
    Standby {
        /// The leader, when one is known.
        leader: Option<LeaderInfo>,
        /// What this console knows of the cluster, from the store.
        snapshots: watch::Receiver<Arc<ControlSnapshot>>,
    },
}

impl Role {
    /// The term of the leadership this console holds or follows.
    pub fn term(&self) -> u64 {
        match self {
            Self::Leader { term, .. } => *term,
            Self::Standby { leader, .. } => leader.as_ref().map_or(0, |leader| leader.term),
        }
    }

    /// The leader's address, for a standby's answers.
    pub fn leader_address(&self) -> Option<String> {
        match self {
            Self::Leader { .. } => None,
            Self::Standby { leader, .. } => leader.as_ref().map(|leader| leader.address.clone()),
        }
    }

    /// Whether this is the leadership of `term`.
    pub fn leads_at(&self, term: u64) -> bool {
        matches!(self, Self::Leader { term: current, .. } if *current == term)
    }

    /// Answers an operator's request: the owner does while this console
    /// leads; a standby answers `status` from what it knows of the store and
    /// points every other request at the leader.
    pub async fn answer(self, request: AdminRequest) -> AdminResponse {
        match (self, request) {
            (Self::Leader { owner, .. }, request) => owner.request(request).await,
            (Self::Standby { snapshots, .. }, AdminRequest::Status) => {
                AdminResponse::Status(snapshots.borrow().status.clone())
            }
            (standby @ Self::Standby { .. }, _) => AdminResponse::NotLeader { leader: standby.leader_address() },
        }
    }

    /// A snapshot of now: the owner's (at most a tick old) or the standby's.
    pub async fn snapshot(self) -> Option<Arc<ControlSnapshot>> {
        match self {
            Self::Leader { owner, .. } => owner.fresh_snapshot().await,
            Self::Standby { snapshots, .. } => Some(snapshots.borrow().clone()),
        }
    }
}

//! Who answers agents and operators on this console (ARCHITECTURE.md,
//! "Several consoles"): the owner, while this console leads; the standby
//! view, while another console leads or none does. A single console leads
//! itself for its whole life, at term 0.
//!
//! The role is published on a `watch` channel: every connection reads it
//! when it starts, and an agent's session ends the moment its console
//! stops leading, so a deposed leader says nothing more to anyone — except
//! under a [`Hold`]: a leader that lost its store keeps beating to its
//! agents for a bounded time, deciding nothing, so that a store outage does
//! not cut the fleet off.

use std::sync::Arc;

use ringwatch_shared::protocol::{AdminRequest, AdminResponse};
use tokio::sync::watch;
use tokio::time::Instant;

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

/// A leadership lost because the store went out of reach (ARCHITECTURE.md,
/// "Several consoles"). Until `until`, while no other leader is known, the
/// agent sessions of `term` stay open and keep beating — the console
/// decides nothing, sends no command — so a short store outage neither
/// disconnects the fleet nor runs down its fenced instances' clocks. The
/// bound is what makes this safe: a new leader elsewhere fails no node over
/// before its reconnect grace ends, and the hold lasts half of it, so the
/// agents reach the new leader first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// The term of the lost leadership.
    pub term: u64,
    /// When the sessions close in any case.
    pub until: Instant,
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
        /// Sessions of a leadership this console lost with its store,
        /// kept open meanwhile.
        hold: Option<Hold>,
        /// The highest term this console has seen, stamped on what it
        /// says to agents: a standby that knows no leader right now is not
        /// mistaken for a deposed leader.
        term: u64,
    },
}

impl Role {
    /// The term of the leadership this console holds or follows.
    pub fn term(&self) -> u64 {
        match self {
            Self::Leader { term, .. } => *term,
            Self::Standby { leader, term, .. } => leader.as_ref().map_or(*term, |leader| leader.term.max(*term)),
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

    /// Until when the sessions of the leadership of `term` are held open
    /// after it was lost, if they are (see [`Hold`]): only while no other
    /// leader is known.
    pub fn holds_sessions_of(&self, term: u64) -> Option<Instant> {
        match self {
            Self::Standby { leader: None, hold: Some(hold), .. }
                if hold.term == term && Instant::now() < hold.until =>
            {
                Some(hold.until)
            }
            _ => None,
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn standby(leader: Option<LeaderInfo>, hold: Option<Hold>) -> Role {
        let (_, snapshots) = watch::channel(Arc::new(ControlSnapshot::default()));
        Role::Standby { leader, snapshots, hold, term: 0 }
    }

    #[test]
    fn a_lost_leadership_holds_its_sessions_only_until_the_hold_ends_and_while_no_leader_is_known() {
        let until = Instant::now() + Duration::from_secs(7);
        let hold = Some(Hold { term: 4, until });
        assert_eq!(standby(None, hold).holds_sessions_of(4), Some(until));
        assert_eq!(standby(None, hold).holds_sessions_of(5), None, "another term's sessions are not held");
        assert_eq!(standby(None, None).holds_sessions_of(4), None);
        let elsewhere = LeaderInfo { name: "c2".into(), address: "127.0.0.1:7000".into(), term: 5 };
        assert_eq!(standby(Some(elsewhere), hold).holds_sessions_of(4), None, "a known leader takes the agents");
        let ended = Some(Hold { term: 4, until: Instant::now() });
        assert_eq!(standby(None, ended).holds_sessions_of(4), None, "the hold is bounded");
    }
}

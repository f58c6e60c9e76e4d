//! A console of a highly available group (cargo feature `etcd`;
//! ARCHITECTURE.md, "Several consoles").
//!
//! It campaigns for the group's leadership through etcd. While another
//! console leads — or none does yet — it stands by: it follows the records
//! in etcd to answer `status` and the TUI, and points agents and operators
//! at the leader. When it wins, it loads the records and starts an owner
//! whose every write is conditioned on its leadership, then serves agents
//! under its term. The moment the leadership is lost (a renewal went
//! unconfirmed for half the lease) it steps down: its sessions end, its
//! owner stops — its last writes fail, as they must — and it stands by
//! again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ringwatch_shared::status::{ClusterEvent, ConsoleRole, ConsoleStatus};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::control::owner::{ControlSnapshot, Outlets};
use crate::control::pki::ClusterPki;
use crate::control::records::Image;
use crate::control::role::{Hold, LeaderInfo as KnownLeader, Role};
use crate::control::standby;
use crate::control::store::etcd::{Etcd, Leader, LeaderInfo, Watched};
use crate::control::store::{StateStore, StoreError};
use crate::control::workload::Now;
use crate::control::{ConsoleConfig, ConsoleError, LOADED_EVENTS, OwnerStart, start_owner};

/// How long a console waits before campaigning again after etcd failed.
const CAMPAIGN_RETRY: Duration = Duration::from_secs(1);
/// How long a standby waits before following the store again after etcd
/// failed.
const FOLLOW_RETRY: Duration = Duration::from_millis(500);
/// How often, at most, a standby rebuilds its snapshot while records
/// change: a busy leader writes many batches a second, and a snapshot of a
/// large cluster is not free. Well inside the 1 s a standby may lag.
const STANDBY_PUBLISH: Duration = Duration::from_millis(250);

/// What a console of a group needs.
pub(crate) struct Group {
    /// The group's store.
    pub(crate) etcd: Etcd,
    /// The console's settings.
    pub(crate) config: ConsoleConfig,
    /// Its PKI.
    pub(crate) pki: Arc<ClusterPki>,
    /// What readers subscribe to, across leaderships.
    pub(crate) outlets: Outlets,
    /// Its role, read by every connection.
    pub(crate) role: watch::Sender<Role>,
    /// Who it is: its name and the address it tells agents.
    pub(crate) info: LeaderInfo,
}

impl Group {
    /// Campaigns, leads, steps down, stands by — until `shutdown`, when a
    /// leader resigns (another console takes over at once).
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        // The sessions of a leadership lost with the store, held open.
        let mut hold: Option<Hold> = None;
        loop {
            let follow = CancellationToken::new();
            let follower = tokio::spawn(follow_store(
                self.etcd.clone(),
                self.outlets.clone(),
                self.role.clone(),
                self.standby_status(),
                self.config.data.replicas,
                hold,
                follow.clone(),
            ));
            let leadership = tokio::select! {
                won = self.etcd.campaign(&self.info) => won,
                () = shutdown.cancelled() => {
                    follow.cancel();
                    let _ = follower.await;
                    return;
                }
            };
            follow.cancel();
            let _ = follower.await;
            let leadership = match leadership {
                Ok(leadership) => leadership,
                Err(err) => {
                    warn!(%err, "cannot campaign for the leadership; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(CAMPAIGN_RETRY) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            };
            let term = leadership.term();
            info!(term, "this console leads the group");
            // Until the owner runs, agents asking here learn that no leader
            // serves yet (not "the leader is here", which would bounce them).
            self.role.send_replace(Role::Standby {
                leader: None,
                snapshots: self.outlets.snapshots.subscribe(),
                hold: None,
                term,
            });
            let running = match self.lead(&leadership).await {
                Ok(running) => running,
                Err(err) => {
                    error!(%err, "cannot take up the leadership; resigning");
                    let _ = self.etcd.resign(&leadership).await;
                    continue;
                }
            };
            let lost = tokio::select! {
                lost = self.etcd.hold(&leadership) => Some(lost),
                () = shutdown.cancelled() => None,
            };
            // Step down at once: the owner stops (its last writes fail: it
            // no longer leads). Sessions end when the role changes — or, the
            // store being out of reach, are held open for a while, deciding
            // nothing (role::Hold).
            hold = lost.is_some().then(|| Hold { term, until: Instant::now() + self.config.reconnect_grace / 2 });
            self.role.send_replace(Role::Standby {
                leader: None,
                snapshots: self.outlets.snapshots.subscribe(),
                hold,
                term,
            });
            running.stop().await;
            match lost {
                Some(lost) => {
                    let mut console = self.standby_status();
                    console.store_problem = Some(lost.to_string());
                    republish(&self.outlets, &console);
                    error!(
                        "{lost}; stepping down to stand by: nothing is decided until a leader is elected, and this \
                         console's agents stay connected for up to {:?} meanwhile",
                        self.config.reconnect_grace / 2
                    );
                }
                None => {
                    if let Err(err) = self.etcd.resign(&leadership).await {
                        warn!(%err, "could not resign the leadership; it lapses with the lease");
                    }
                    return;
                }
            }
        }
    }

    /// Takes up the leadership: loads the records (finishing what a
    /// previous leader left half-written) and starts an owner writing under
    /// this leadership.
    async fn lead(
        &self,
        leadership: &crate::control::store::etcd::Leadership,
    ) -> Result<crate::control::Running, ConsoleError> {
        let term = leadership.term();
        let store = self.etcd.store(leadership)?;
        let (store, loaded) = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let mut store = store;
            let loaded = store.load(LOADED_EVENTS)?;
            Ok((store, loaded))
        })
        .await
        .map_err(|err| StoreError::Database { path: "etcd".into(), reason: err.to_string() })??;
        let console = ConsoleStatus {
            name: self.info.name.clone(),
            address: self.info.address.clone(),
            role: ConsoleRole::Leader,
            term,
            leader: Some(self.info.address.clone()),
            store_problem: None,
            ca_expires_unix: self.pki.ca_validity().not_after_unix,
        };
        let (owner, running) = start_owner(
            OwnerStart {
                config: &self.config,
                pki: self.pki.clone(),
                loaded,
                store: Box::new(store),
                console,
                outlets: self.outlets.clone(),
            },
            &format!("console \"{}\" at {} leads the group (term {term})", self.info.name, self.info.address),
        )?;
        self.role.send_replace(Role::Leader { owner, term });
        Ok(running)
    }

    /// How this console describes itself while it stands by.
    fn standby_status(&self) -> ConsoleStatus {
        ConsoleStatus {
            name: self.info.name.clone(),
            address: self.info.address.clone(),
            role: ConsoleRole::Standby,
            term: 0,
            leader: None,
            store_problem: None,
            ca_expires_unix: self.pki.ca_validity().not_after_unix,
        }
    }
}

/// A standby's work: follow who leads and what the store records, publish
/// what it knows as snapshots and events, and keep the role's leader
/// current, until `stop`.
async fn follow_store(
    etcd: Etcd,
    outlets: Outlets,
    role: watch::Sender<Role>,
    mut console: ConsoleStatus,
    data_replicas: u8,
    hold: Option<Hold>,
    stop: CancellationToken,
) {
    // The highest term seen, kept when the leader vanishes.
    let known_term = AtomicU64::new(hold.map_or(0, |hold| hold.term).max(role.borrow().term()));
    let own_address = console.address.clone();
    let standby = |leader: Option<&Leader>| {
        if let Some(leader) = leader {
            known_term.fetch_max(leader.term, Ordering::Relaxed);
        }
        // This console, elected a moment ago and still taking over, is no
        // leader to send agents to yet: they would come straight back.
        let leader = leader.filter(|leader| leader.info.address != own_address);
        Role::Standby {
            leader: leader.map(|leader| KnownLeader {
                name: leader.info.name.clone(),
                address: leader.info.address.clone(),
                term: leader.term,
            }),
            snapshots: outlets.snapshots.subscribe(),
            hold,
            term: known_term.load(Ordering::Relaxed),
        }
    };
    role.send_replace(standby(None));
    loop {
        let followed = tokio::select! {
            followed = follow_once(&etcd, &outlets, &role, &mut console, data_replicas, &standby) => followed,
            () = stop.cancelled() => return,
        };
        if let Err(err) = followed {
            // What was last known stays on show, marked as out of date.
            console.store_problem = Some(format!("cannot reach the store: {err}"));
            republish(&outlets, &console);
            warn!(%err, "cannot follow the group's store; trying again");
        }
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_RETRY) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Follows the store until etcd fails. `data_replicas` is this console's
/// replica count for a put that names none (the group's consoles share it),
/// shown in `status` as the leader shows it.
async fn follow_once(
    etcd: &Etcd,
    outlets: &Outlets,
    role: &watch::Sender<Role>,
    console: &mut ConsoleStatus,
    data_replicas: u8,
    standby: &impl Fn(Option<&Leader>) -> Role,
) -> Result<(), StoreError> {
    let mut leaders = etcd.watch_leader().await?;
    let (loaded, revision) = etcd.load_with_revision(LOADED_EVENTS).await?;
    let mut image = loaded.image;
    let mut events = loaded.events;
    let mut changes = etcd.watch_records(revision + 1, LOADED_EVENTS).await?;
    console.store_problem = None;
    let mut leader = leaders.borrow_and_update().clone();
    set_leader(console, leader.as_ref());
    role.send_replace(standby(leader.as_ref()));
    publish(outlets, &image, &events, console, data_replicas);
    let mut publish_tick = tokio::time::interval(STANDBY_PUBLISH);
    publish_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Records changed since the last snapshot.
    let mut unpublished = false;
    loop {
        tokio::select! {
            _ = publish_tick.tick(), if unpublished => {
                publish(outlets, &image, &events, console, data_replicas);
                unpublished = false;
            }
            changed = leaders.changed() => {
                if changed.is_err() {
                    return Err(StoreError::Database { path: "etcd".into(), reason: "the leader watch ended".into() });
                }
                leader = leaders.borrow_and_update().clone();
                set_leader(console, leader.as_ref());
                role.send_replace(standby(leader.as_ref()));
                // Who leads is shown at once.
                publish(outlets, &image, &events, console, data_replicas);
                unpublished = false;
            }
            batch = changes.next() => {
                for change in batch? {
                    match change {
                        Watched::Record { key, json } => {
                            if let Err(err) = image.load_stored(&key, json.as_deref()) {
                                warn!(%err, "a record in the store does not decode; the standby skips it");
                            }
                        }
                        Watched::Event(event) => {
                            let _ = outlets.events.send(event.clone());
                            events.push(event);
                            let excess = events.len().saturating_sub(LOADED_EVENTS);
                            events.drain(..excess);
                        }
                        Watched::Reloaded(loaded) => {
                            image = loaded.image;
                            events = loaded.events;
                        }
                    }
                }
                unpublished = true;
            }
        }
    }
}

fn set_leader(console: &mut ConsoleStatus, leader: Option<&Leader>) {
    console.term = leader.map_or(0, |leader| leader.term);
    console.leader = leader.map(|leader| leader.info.address.clone());
}

/// Publishes what a standby knows.
fn publish(outlets: &Outlets, image: &Image, events: &[ClusterEvent], console: &ConsoleStatus, data_replicas: u8) {
    outlets.operators.replace(image.operators.values());
    let snapshot = standby::snapshot_of(image, Arc::from(events), console.clone(), data_replicas, Now::read().unix_ms);
    outlets.snapshots.send_replace(Arc::new(snapshot));
}

/// Publishes the last snapshot again as `console` sees it now: the store is
/// out of reach, and what was last known is all there is to show.
fn republish(outlets: &Outlets, console: &ConsoleStatus) {
    let mut snapshot = ControlSnapshot::clone(&outlets.snapshots.borrow());
    snapshot.status.console = console.clone();
    snapshot.store_failing.clone_from(&console.store_problem);
    outlets.snapshots.send_replace(Arc::new(snapshot));
}

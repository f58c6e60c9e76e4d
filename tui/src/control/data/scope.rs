//! Which objects a repair plan looks at (README.md, "Data"; the planner
//! is `ringwatch_shared::data::repair`).
//!
//! Planning every object every second costs time in proportion to the
//! catalog, which a busy store grows by thousands a second. Yet an object
//! the last plan found settled (see `RepairPlan::unsettled`) gives nothing
//! the next time unless it changed, or the nodes' roles, the nodes waited
//! for or the ring did. So a plan looks only at the objects last found
//! unsettled and those changed since, and at every object when the world
//! around them changed — and every [`FULL_SCAN`] regardless, a bound on
//! what a change missed by this reasoning could cost.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringwatch_shared::data::ObjectKey;
use ringwatch_shared::data::repair::{NodeRole, RepairPlan};
use ringwatch_shared::names::NodeName;
use ringwatch_shared::ring::Ring;

/// How often a plan looks at every object though nothing around them
/// changed.
pub const FULL_SCAN: Duration = Duration::from_secs(30);

/// What the last repair plan looked at.
#[derive(Debug, Default)]
pub struct RepairScope {
    /// A digest of the roles, the nodes waited for and the ring the last
    /// plan was made with.
    world: Option<u64>,
    /// When every object was last looked at.
    full_at: Option<Instant>,
    /// The objects the last plan found unsettled.
    unsettled: BTreeSet<ObjectKey>,
}

impl RepairScope {
    /// The objects the next plan must look at (`None`: every one), given
    /// the objects `changed` since the last plan (`None`: any may have)
    /// and the world now.
    pub fn narrowed(
        &mut self,
        roles: &BTreeMap<String, NodeRole>,
        waiting: &HashSet<&NodeName>,
        ring: &Arc<Ring>,
        changed: Option<BTreeSet<ObjectKey>>,
        now: Instant,
    ) -> Option<BTreeSet<ObjectKey>> {
        let mut digest = DefaultHasher::new();
        roles.hash(&mut digest);
        waiting.iter().collect::<BTreeSet<_>>().hash(&mut digest);
        // A ring is rebuilt, never changed in place: another ring is
        // another allocation.
        (Arc::as_ptr(ring) as usize).hash(&mut digest);
        let world = digest.finish();
        let stale = self.full_at.is_none_or(|at| now.saturating_duration_since(at) >= FULL_SCAN);
        let Some(changed) = changed.filter(|_| !stale && self.world == Some(world)) else {
            self.world = Some(world);
            self.full_at = Some(now);
            return None;
        };
        let mut only = std::mem::take(&mut self.unsettled);
        only.extend(changed);
        Some(only)
    }

    /// Notes what `plan` found unsettled.
    pub fn planned(&mut self, plan: &RepairPlan) {
        self.unsettled = plan.unsettled.iter().cloned().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> ObjectKey {
        ObjectKey::parse(text).unwrap()
    }

    fn keys(texts: &[&str]) -> BTreeSet<ObjectKey> {
        texts.iter().map(|text| key(text)).collect()
    }

    #[test]
    fn a_plan_looks_at_everything_when_the_world_changed_else_at_the_unsettled_and_the_changed() {
        let ring = Arc::new(Ring::new([("a".to_string(), 1), ("b".to_string(), 1)]));
        let roles: BTreeMap<String, NodeRole> =
            [("a".to_string(), NodeRole::Eligible), ("b".to_string(), NodeRole::Eligible)].into();
        let nobody = HashSet::new();
        let start = Instant::now();
        let mut scope = RepairScope::default();
        assert_eq!(scope.narrowed(&roles, &nobody, &ring, Some(keys(&["x"])), start), None, "the first plan sees all");
        scope.planned(&RepairPlan { unsettled: vec![key("under")], ..RepairPlan::default() });
        assert_eq!(scope.narrowed(&roles, &nobody, &ring, Some(keys(&["new"])), start), Some(keys(&["new", "under"])));
        scope.planned(&RepairPlan::default());
        assert_eq!(scope.narrowed(&roles, &nobody, &ring, Some(BTreeSet::new()), start), Some(BTreeSet::new()));

        // Any change around the objects: all of them again.
        let mut leaving = roles.clone();
        leaving.insert("b".into(), NodeRole::Leaving);
        assert_eq!(scope.narrowed(&leaving, &nobody, &ring, Some(BTreeSet::new()), start), None);
        assert_eq!(scope.narrowed(&leaving, &nobody, &ring, Some(BTreeSet::new()), start), Some(BTreeSet::new()));
        let b = NodeName::parse("b").unwrap();
        let waiting: HashSet<&NodeName> = [&b].into();
        assert_eq!(scope.narrowed(&leaving, &waiting, &ring, Some(BTreeSet::new()), start), None);
        let rebuilt = Arc::new(Ring::new([("a".to_string(), 1), ("b".to_string(), 1)]));
        assert_eq!(scope.narrowed(&leaving, &waiting, &rebuilt, Some(BTreeSet::new()), start), None);
        assert_eq!(scope.narrowed(&leaving, &waiting, &rebuilt, None, start), None, "too many changed to list");
        assert_eq!(scope.narrowed(&leaving, &waiting, &rebuilt, Some(BTreeSet::new()), start + FULL_SCAN), None);
        let soon = start + FULL_SCAN + Duration::from_secs(1);
        assert_eq!(scope.narrowed(&leaving, &waiting, &rebuilt, Some(BTreeSet::new()), soon), Some(BTreeSet::new()));
    }
}

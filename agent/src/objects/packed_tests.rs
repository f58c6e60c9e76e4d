//! Packed copies (the `pack` module): what a reopen, a torn or damaged
//! pack and compaction leave; and a model test of the store, packed and
//! file copies mixed, against an in-memory reference.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::tests::{meta, put, read_all};
use super::*;

fn key(name: &str) -> ObjectKey {
    ObjectKey::parse(name).unwrap()
}

/// The names in `dir` ending with `suffix`, sorted.
fn named(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(suffix))
        .collect();
    names.sort();
    names
}

fn version(store: &ObjectStore, name: &str) -> Option<(u64, bool)> {
    store.get(&key(name)).map(|meta| (meta.version.counter, meta.tombstone))
}

#[test]
fn small_copies_are_packed_read_back_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    let largest = vec![7u8; MAX_PACKED as usize];
    let over = vec![8u8; MAX_PACKED as usize + 1];
    put(&mut store, "a", 1, b"first").unwrap();
    put(&mut store, "empty", 2, b"").unwrap();
    put(&mut store, "largest", 3, &largest).unwrap();
    put(&mut store, "over", 4, &over).unwrap();
    assert_eq!(named(dir.path(), ".obj").len(), 1, "only the copy over the bound has a file");
    assert_eq!(named(dir.path(), ".pack").len(), 1);
    put(&mut store, "a", 5, b"second").unwrap();
    store.remove(&key("empty"), Version { term: 1, counter: 6 }).unwrap();
    assert_eq!(store.usage().objects, 3);
    drop(store);

    let store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(read_all(&store, "a"), b"second");
    assert_eq!(version(&store, "a"), Some((5, false)));
    assert_eq!(version(&store, "empty"), Some((6, true)), "the tombstone is packed too");
    assert_eq!(read_all(&store, "largest"), largest);
    assert_eq!(read_all(&store, "over"), over);
    assert_eq!(store.used(), 6 + largest.len() as u64 + over.len() as u64);
}

#[test]
fn forgotten_and_discarded_packed_copies_do_not_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    put(&mut store, "forgotten", 1, b"bytes").unwrap();
    put(&mut store, "discarded", 2, b"bytes").unwrap();
    put(&mut store, "kept", 3, b"bytes").unwrap();
    assert!(store.forget(&key("forgotten")).unwrap());
    assert_eq!(store.discard(&key("discarded"), Version { term: 1, counter: 2 }).unwrap(), None);
    assert!(store.discard(&key("kept"), Version { term: 1, counter: 9 }).unwrap().is_some(), "another version stays");
    drop(store);
    let store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(version(&store, "forgotten"), None);
    assert_eq!(version(&store, "discarded"), None);
    assert_eq!(version(&store, "kept"), Some((3, false)));
}

#[test]
fn regression_a_packed_copy_replaced_by_a_file_copy_does_not_come_back_once_that_goes() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    let large = vec![3u8; MAX_PACKED as usize * 2];
    put(&mut store, "k", 1, b"packed").unwrap();
    put(&mut store, "k", 2, &large).unwrap();
    drop(store);
    let mut store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(read_all(&store, "k"), large, "the newer version, in its file, stands");
    assert!(store.forget(&key("k")).unwrap());
    drop(store);
    let store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(version(&store, "k"), None, "the older packed version stays gone");
}

#[test]
fn a_file_copy_replaced_by_a_packed_one_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    put(&mut store, "k", 1, &vec![1u8; MAX_PACKED as usize * 2]).unwrap();
    put(&mut store, "k", 2, b"small now").unwrap();
    assert!(named(dir.path(), ".obj").is_empty());
    drop(store);
    let store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(read_all(&store, "k"), b"small now");
}

#[test]
fn a_torn_pack_tail_loses_only_the_copy_being_appended() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        put(&mut store, name, i as u64 + 1, &vec![i as u8; 1000]).unwrap();
    }
    drop(store);
    let pack = dir.path().join(&named(dir.path(), ".pack")[0]);
    let len = fs::metadata(&pack).unwrap().len();
    // A crash while c's record was being written: its end never made it.
    OpenOptions::new().write(true).open(&pack).unwrap().set_len(len - 10).unwrap();
    let mut store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(version(&store, "a"), Some((1, false)));
    assert_eq!(version(&store, "b"), Some((2, false)));
    assert_eq!(version(&store, "c"), None, "the torn copy is dropped (the console copies it again)");
    // Appends go to a new pack, never behind the torn tail.
    put(&mut store, "c", 4, b"again").unwrap();
    assert_eq!(named(dir.path(), ".pack").len(), 2);
    drop(store);
    // Garbage after the last record (a tail of zeros, say) changes nothing.
    let last = dir.path().join(named(dir.path(), ".pack").last().unwrap());
    let mut file = OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(&[0u8; 300]).unwrap();
    drop(file);
    let store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(read_all(&store, "a"), vec![0u8; 1000]);
    assert_eq!(read_all(&store, "b"), vec![1u8; 1000]);
    assert_eq!(read_all(&store, "c"), b"again");
}

#[test]
fn a_packed_copy_whose_bytes_are_damaged_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    put(&mut store, "a", 1, b"intact bytes").unwrap();
    put(&mut store, "b", 2, b"bytes to damage").unwrap();
    drop(store);
    let pack = dir.path().join(&named(dir.path(), ".pack")[0]);
    let mut bytes = fs::read(&pack).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&pack, bytes).unwrap();
    let store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(read_all(&store, "a"), b"intact bytes");
    assert_eq!(version(&store, "b"), None);
}

#[test]
fn compaction_keeps_the_packs_bounded_and_every_current_copy_readable() {
    let dir = tempfile::tempdir().unwrap();
    let limits = PackLimits { pack_len: 64 << 10, compact_after: 128 << 10 };
    let mut store = ObjectStore::open_with(dir.path(), 1 << 30, MAX_PACKED, limits).unwrap();
    let mut last = BTreeMap::new();
    for i in 0..400u64 {
        let name = format!("k{}", i % 8);
        let bytes = vec![i as u8; 4096];
        put(&mut store, &name, i + 1, &bytes).unwrap();
        last.insert(name, bytes);
        assert!(store.packs.disk_len() < 512 << 10, "packs grew to {} bytes", store.packs.disk_len());
    }
    // 1.6 MiB were appended in all; what is left is about the limits.
    assert!(named(dir.path(), ".pack").len() <= 8, "{:?}", named(dir.path(), ".pack"));
    for (name, bytes) in &last {
        assert_eq!(&read_all(&store, name), bytes);
    }
    drop(store);
    let store = ObjectStore::open_with(dir.path(), 1 << 30, MAX_PACKED, limits).unwrap();
    for (name, bytes) in &last {
        assert_eq!(&read_all(&store, name), bytes, "{name} after a reopen");
    }
}

#[test]
fn packed_copies_made_durable_from_many_threads_at_once_are_all_current() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Mutex::new(ObjectStore::open(dir.path(), 1 << 30).unwrap()));
    let threads: Vec<_> = (0..8u64)
        .map(|thread| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25u64 {
                    let bytes = format!("{thread}-{i}").into_bytes();
                    let meta = meta(&format!("t{thread}/{i}"), thread * 100 + i + 1, &bytes);
                    let mut copy = store.lock().unwrap().begin(meta).unwrap();
                    copy.write(&bytes).unwrap();
                    // As the data service does: durable without the lock.
                    let durable = copy.persist().unwrap();
                    store.lock().unwrap().install(durable).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    drop(store);
    let store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(store.usage().objects, 200);
    for thread in 0..8 {
        for i in 0..25 {
            assert_eq!(read_all(&store, &format!("t{thread}/{i}")), format!("{thread}-{i}").into_bytes());
        }
    }
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Step {
    /// A put of `len` bytes (packed or not) filled with `fill`.
    Put {
        key: u8,
        len: usize,
        fill: u8,
    },
    Remove {
        key: u8,
    },
    Forget {
        key: u8,
    },
    /// Discards the held version, or (`held` false) another one.
    Discard {
        key: u8,
        held: bool,
    },
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    let len = prop_oneof![0usize..200, Just(MAX_PACKED as usize), Just(MAX_PACKED as usize + 1000)];
    prop_oneof![
        4 => (0u8..4, len, any::<u8>()).prop_map(|(key, len, fill)| Step::Put { key, len, fill }),
        1 => (0u8..4).prop_map(|key| Step::Remove { key }),
        1 => (0u8..4).prop_map(|key| Step::Forget { key }),
        1 => (0u8..4, any::<bool>()).prop_map(|(key, held)| Step::Discard { key, held }),
        1 => Just(Step::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever mix of packed and file copies, removals, forgets,
    /// discards and reopens: the store holds what the model does.
    #[test]
    fn the_store_holds_what_a_model_of_it_holds(steps in proptest::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
        // Key → (version, bytes; `None` for a tombstone).
        let mut model: BTreeMap<String, (u64, Option<Vec<u8>>)> = BTreeMap::new();
        for (counter, step) in (1u64..).zip(steps) {
            match step {
                Step::Put { key, len, fill } => {
                    let (name, bytes) = (format!("k{key}"), vec![fill; len]);
                    put(&mut store, &name, counter, &bytes).unwrap();
                    model.insert(name, (counter, Some(bytes)));
                }
                Step::Remove { key } => {
                    let name = format!("k{key}");
                    store.remove(&super::tests::key(&name), Version { term: 1, counter }).unwrap();
                    model.insert(name, (counter, None));
                }
                Step::Forget { key } => {
                    let name = format!("k{key}");
                    prop_assert_eq!(store.forget(&super::tests::key(&name)).unwrap(), model.remove(&name).is_some());
                }
                Step::Discard { key, held } => {
                    let name = format!("k{key}");
                    let at = model.get(&name).map_or(counter, |(version, _)| if held { *version } else { version + 1 });
                    store.discard(&super::tests::key(&name), Version { term: 1, counter: at }).unwrap();
                    if model.get(&name).is_some_and(|(version, _)| *version == at) {
                        model.remove(&name);
                    }
                }
                Step::Reopen => {
                    drop(store);
                    store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
                }
            }
            for key in 0..4 {
                let name = format!("k{key}");
                let expected = model.get(&name).map(|(version, bytes)| (*version, bytes.is_none()));
                prop_assert_eq!(version(&store, &name), expected, "{}", name);
                if let Some((_, Some(bytes))) = model.get(&name) {
                    prop_assert_eq!(&read_all(&store, &name), bytes);
                }
            }
        }
        drop(store);
        let store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
        for key in 0..4 {
            let name = format!("k{key}");
            let expected = model.get(&name).map(|(version, bytes)| (*version, bytes.is_none()));
            prop_assert_eq!(version(&store, &name), expected, "{} after the last reopen", name);
        }
        prop_assert_eq!(store.usage().objects as usize, model.values().filter(|(_, bytes)| bytes.is_some()).count());
    }
}

#[test]
fn copies_persisted_together_share_one_write_and_each_gets_its_own_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    let large = vec![5u8; MAX_PACKED as usize + 1];
    let mut wrong = meta("wrong", 3, b"announced");
    wrong.size = 8;
    let offered: Vec<(ObjectMeta, Vec<u8>)> = vec![
        (meta("a", 1, b"first"), b"first".to_vec()),
        (meta("b", 2, b"second"), b"second".to_vec()),
        (wrong, b"actually".to_vec()),
        (meta("large", 4, &large), large.clone()),
    ];
    let copies: Vec<PendingCopy> = offered
        .into_iter()
        .map(|(meta, bytes)| {
            let mut copy = store.begin(meta).unwrap();
            copy.write(&bytes).unwrap();
            copy
        })
        .collect();
    let outcomes: Vec<_> =
        persist_together(copies).into_iter().map(|durable| durable.and_then(|copy| store.install(copy))).collect();
    assert!(outcomes[0].is_ok() && outcomes[1].is_ok() && outcomes[3].is_ok(), "{outcomes:?}");
    assert!(matches!(outcomes[2], Err(ObjectsError::Mismatch { .. })), "{:?}", outcomes[2]);
    drop(store);
    let store = ObjectStore::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(read_all(&store, "a"), b"first");
    assert_eq!(read_all(&store, "b"), b"second");
    assert_eq!(read_all(&store, "large"), large);
    assert_eq!(version(&store, "wrong"), None);
}

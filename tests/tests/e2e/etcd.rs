//! The etcd store of a highly available group (README.md, "A highly
//! available group"), against a real etcd: elections and terms, writes
//! conditioned on the leadership, a leader stepping down when it cannot
//! renew its lease, batches larger than one etcd transaction, the bounded
//! event log, a standby following the records, TLS.
//!
//! Built only with the `etcd` feature:
//! `cargo test -p ringwatch-tests --features etcd etcd`.
//!
//! The library's calls are made from the test thread: the store blocks (it
//! is the writer thread's), the rest runs on a runtime of the test's own.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use ringwatch::control::records::{Change, ClusterRecord, CredentialRecord, InstanceRecord, NodeRecord};
use ringwatch::control::store::etcd::{
    Etcd, EtcdOptions, EtcdStore, EtcdTls, LeaderInfo, Leadership, LostLeadership, Watched,
};
use ringwatch::control::store::writer::Writer;
use ringwatch::control::store::{Batch, EVENT_LOG_LIMIT, Loaded, StateStore, StoreError};
use ringwatch_shared::names::{InstanceId, NodeName};
use ringwatch_shared::status::{ClusterEvent, NodeState};
use ringwatch_tests::etcd::ServerTls;
use ringwatch_tests::poll::{self, Step};
use ringwatch_tests::{EtcdServer, LIVENESS, Sandbox, TcpRelay};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn options(endpoint: &str) -> EtcdOptions {
    EtcdOptions::from_url(&format!("etcd://{endpoint}")).unwrap()
}

#[track_caller]
fn connect(rt: &Runtime, endpoint: &str) -> Etcd {
    rt.block_on(Etcd::connect(options(endpoint))).unwrap_or_else(|err| panic!("{err}"))
}

/// A lease no stall of a busy machine outlasts, for the tests of what the
/// store keeps rather than of the election: with the default 2 s, etcd
/// answering a renewal a second late deposes the leader mid-test.
fn steady(options: EtcdOptions) -> EtcdOptions {
    EtcdOptions { lease_ttl: Duration::from_secs(60), ..options }
}

/// [`connect`] with a [`steady`] lease.
#[track_caller]
fn connect_steady(rt: &Runtime, endpoint: &str) -> Etcd {
    rt.block_on(Etcd::connect(steady(options(endpoint)))).unwrap_or_else(|err| panic!("{err}"))
}

fn info(name: &str) -> LeaderInfo {
    LeaderInfo { name: name.to_string(), address: format!("{name}.example:7000") }
}

/// Runs `future` on `rt`, failing the test if it takes longer than
/// [`LIVENESS`] (a liveness bound, not a speed assertion).
#[track_caller]
fn within<T>(rt: &Runtime, what: &str, future: impl Future<Output = T>) -> T {
    rt.block_on(async { tokio::time::timeout(LIVENESS, future).await })
        .unwrap_or_else(|_| panic!("{what} did not happen within {LIVENESS:?}"))
}

#[track_caller]
fn campaign(rt: &Runtime, etcd: &Etcd, name: &str) -> Leadership {
    within(rt, &format!("{name} winning an uncontested election"), etcd.campaign(&info(name)))
        .unwrap_or_else(|err| panic!("{err}"))
}

/// The leader's store, loaded as a console does before its first commit.
#[track_caller]
fn leader_store(rt: &Runtime, etcd: &Etcd, leadership: &Leadership) -> (EtcdStore, Loaded) {
    let mut store = {
        let _runtime = rt.enter();
        etcd.store(leadership).unwrap()
    };
    let loaded = store.load(100).unwrap_or_else(|err| panic!("{err}"));
    (store, loaded)
}

fn node_name(name: &str) -> NodeName {
    NodeName::parse(name).unwrap()
}

fn node(name: &str, cordoned: bool) -> Change {
    let mut record = NodeRecord::new(node_name(name), NodeState::Alive);
    record.cordoned = cordoned;
    Change::Node(record)
}

fn event(seq: u64) -> ClusterEvent {
    ClusterEvent { seq, at_unix_ms: seq, reason: format!("event {seq}"), ..ClusterEvent::default() }
}

/// A credential whose record takes about `bytes` bytes.
fn credential(index: usize, bytes: usize) -> Change {
    Change::Credential {
        fingerprint: format!("{index:064x}"),
        record: CredentialRecord {
            name: node_name(&format!("n{index}")),
            key_fingerprint: "k".repeat(bytes),
            issued_unix: 1,
            revoked: false,
            token_id: None,
            expires_unix: None,
            renewed_to: None,
        },
    }
}

fn seqs(events: &[ClusterEvent]) -> Vec<u64> {
    events.iter().map(|event| event.seq).collect()
}

/// A client of its own, to poke etcd as an operator (or a fault) would.
#[track_caller]
fn raw_client(rt: &Runtime, server: &EtcdServer) -> etcd_client::Client {
    rt.block_on(etcd_client::Client::connect([server.endpoint()], None)).unwrap()
}

/// How many keys start with `prefix`.
fn count(rt: &Runtime, client: &etcd_client::Client, prefix: &str) -> i64 {
    let mut kv = client.kv_client();
    let options = etcd_client::GetOptions::new().with_prefix().with_count_only();
    rt.block_on(kv.get(prefix, Some(options))).unwrap().count()
}

#[test]
fn etcd_records_and_events_survive_an_etcd_restart() {
    let sandbox = Sandbox::new("etcd-restart");
    let mut server = EtcdServer::start(&sandbox.dir("etcd"));
    let rt = runtime();
    let etcd = connect(&rt, &server.endpoint());
    let leadership = campaign(&rt, &etcd, "a");
    let (mut store, loaded) = leader_store(&rt, &etcd, &leadership);
    assert_eq!(loaded, Loaded::default(), "a new prefix is empty");
    let web0 = InstanceId::parse("web/0").unwrap();
    store
        .commit(&Batch {
            seq: 1,
            changes: vec![
                node("a", false),
                node("b", true),
                Change::Cluster(ClusterRecord::new(7)),
                Change::Instance(InstanceRecord::new(web0.clone())),
            ],
            events: vec![event(1), event(2)],
        })
        .unwrap();
    store.commit(&Batch { seq: 2, changes: vec![Change::InstanceRemoved(web0)], events: vec![event(3)] }).unwrap();

    server.stop();
    sandbox.step("etcd killed");
    let err = store.commit(&Batch { seq: 3, changes: vec![node("c", false)], events: vec![event(4)] }).unwrap_err();
    assert!(matches!(err, StoreError::Etcd { .. }), "{err}");
    assert!(err.to_string().contains(&server.endpoint()), "the error names etcd: {err}");
    sandbox.step(format!("a commit without etcd: {err}"));
    drop((store, leadership, etcd));

    server.restart();
    sandbox.step("etcd restarted; a console starts again");
    let etcd = connect(&rt, &server.endpoint());
    let leadership = campaign(&rt, &etcd, "a");
    let (_store, loaded) = leader_store(&rt, &etcd, &leadership);
    let nodes: Vec<(&str, bool)> = loaded.image.nodes.values().map(|n| (n.name.as_str(), n.cordoned)).collect();
    assert_eq!(nodes, [("a", false), ("b", true)], "the failed commit wrote nothing");
    assert_eq!(loaded.image.cluster.map(|c| c.placement_seed), Some(7));
    assert!(loaded.image.instances.is_empty(), "the removal was applied");
    assert_eq!(seqs(&loaded.events), [1, 2, 3]);
}

/// The console's way: load on a blocking thread of its runtime, then the
/// writer thread commits; a deposed leader's writer reports why it fails.
#[test]
fn etcd_the_writer_thread_commits_through_the_store_until_the_leadership_ends() {
    let sandbox = Sandbox::new("etcd-writer");
    let server = EtcdServer::start(&sandbox.dir("etcd"));
    let rt = runtime();
    let etcd = connect_steady(&rt, &server.endpoint());
    let leadership = campaign(&rt, &etcd, "a");
    let mut store = {
        let _runtime = rt.enter();
        etcd.store(&leadership).unwrap()
    };
    let (store, loaded) = within(&rt, "loading on a blocking thread", async move {
        tokio::task::spawn_blocking(move || {
            let loaded = store.load(100);
            (store, loaded)
        })
        .await
        .unwrap()
    });
    assert_eq!(loaded.unwrap(), Loaded::default());
    let (writer, mut progress) = Writer::start(Box::new(store), 0).unwrap();
    writer.submit(Batch { seq: 1, changes: vec![node("x", false)], events: vec![event(1)] });
    writer.submit(Batch { seq: 2, changes: vec![node("x", true)], events: vec![event(2)] });
    within(&rt, "both batches durable", progress.wait_for(|progress| progress.durable == 2)).unwrap();

    rt.block_on(etcd.resign(&leadership)).unwrap();
    writer.submit(Batch { seq: 3, changes: vec![node("y", false)], events: vec![] });
    let failing = within(&rt, "the writer reporting the lost leadership", progress.wait_for(|p| p.failing.is_some()))
        .unwrap()
        .failing
        .clone()
        .unwrap_or_default();
    assert!(failing.contains("no longer leads"), "{failing}");
    drop(progress);
    writer.finish();
    let (loaded, _) = rt.block_on(etcd.load_with_revision(10)).unwrap();
    assert!(loaded.image.nodes["x"].cordoned);
    assert!(!loaded.image.nodes.contains_key("y"));
    assert_eq!(seqs(&loaded.events), [1, 2]);
}

#[test]
fn etcd_a_partitioned_leader_steps_down_and_writes_nothing_when_it_returns() {
    let sandbox = Sandbox::new("etcd-partition");
    let server = EtcdServer::start(&sandbox.dir("etcd"));
    let relay = TcpRelay::start(server.addr());
    let rt = runtime();
    let a = connect(&rt, &relay.endpoint());
    let b = connect(&rt, &server.endpoint());
    let leading_a = campaign(&rt, &a, "a");
    let (mut store_a, _) = leader_store(&rt, &a, &leading_a);
    store_a.commit(&Batch { seq: 1, changes: vec![node("x", false)], events: vec![event(1)] }).unwrap();
    let b_campaign = rt.spawn({
        let b = b.clone();
        async move { b.campaign(&info("b")).await }
    });

    relay.partition();
    sandbox.step("a partitioned from etcd");
    let lost: LostLeadership = within(&rt, "a stepping down", a.hold(&leading_a));
    sandbox.step(format!("a: {lost}"));
    assert_eq!(lost.term, leading_a.term());
    assert!(lost.reason.contains("steps down before the lease"), "{lost}");
    let leading_b = within(&rt, "b taking over once a's lease lapsed", b_campaign).unwrap().unwrap();
    sandbox.step(format!("b leads, term {}", leading_b.term()));
    assert!(leading_b.term() > leading_a.term());

    relay.heal();
    // a wakes up with a batch it decided while it led: refused, whole.
    let late = Batch { seq: 2, changes: vec![node("y", false)], events: vec![event(2)] };
    let refused = poll::until(LIVENESS, Duration::from_millis(100), || match store_a.commit(&late) {
        Err(StoreError::NotLeader { term }) => Step::Done(term),
        Err(other) => Step::Pending(other.to_string()),
        Ok(()) => Step::Abort("a deposed leader's commit was accepted".into()),
    })
    .unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(refused, leading_a.term());
    let (mut store_b, loaded) = leader_store(&rt, &b, &leading_b);
    assert!(loaded.image.nodes.contains_key("x"));
    assert!(!loaded.image.nodes.contains_key("y"), "the refused batch wrote nothing");
    assert_eq!(seqs(&loaded.events), [1]);
    store_b.commit(&late).unwrap();
}

#[test]
fn etcd_a_leader_whose_lease_is_revoked_says_so_and_writes_nothing() {
    let sandbox = Sandbox::new("etcd-revoked");
    let server = EtcdServer::start(&sandbox.dir("etcd"));
    let rt = runtime();
    let etcd = connect(&rt, &server.endpoint());
    let leadership = campaign(&rt, &etcd, "a");
    let (mut store, _) = leader_store(&rt, &etcd, &leadership);
    let mut raw = raw_client(&rt, &server);
    rt.block_on(raw.lease_revoke(leadership.lease_id())).unwrap();
    let lost = within(&rt, "a noticing its lease is gone", etcd.hold(&leadership));
    sandbox.step(format!("a: {lost}"));
    assert_eq!(lost.term, leadership.term());
    assert!(lost.reason.contains("revoked") || lost.reason.contains("was deleted"), "{lost}");
    let err = store.commit(&Batch { seq: 1, changes: vec![node("x", false)], events: vec![event(1)] }).unwrap_err();
    assert!(matches!(err, StoreError::NotLeader { term } if term == leadership.term()), "{err}");
    assert!(err.to_string().contains("no longer leads"), "{err}");
    assert_eq!(count(&rt, &raw, "/ringwatch/records/"), 0, "nothing was written");
    assert_eq!(count(&rt, &raw, "/ringwatch/events/"), 0, "nothing was written");
}

#[test]
fn etcd_one_console_leads_and_the_next_takes_over_with_a_higher_term() {
    let sandbox = Sandbox::new("etcd-election");
    let server = EtcdServer::start(&sandbox.dir("etcd"));
    let rt = runtime();
    let a = connect(&rt, &server.endpoint());
    let b = connect(&rt, &server.endpoint());
    let mut leaders = within(&rt, "reading who leads", a.watch_leader()).unwrap();
    assert_eq!(*leaders.borrow(), None);
    let leading_a = campaign(&rt, &a, "a");
    let term_a = leading_a.term();
    within(&rt, "the follower seeing a lead", leaders.wait_for(|l| l.as_ref().is_some_and(|l| l.term == term_a)))
        .unwrap();
    assert_eq!(leaders.borrow().as_ref().map(|l| l.info.clone()), Some(info("a")));

    let b_campaign = rt.spawn({
        let b = b.clone();
        async move { b.campaign(&info("b")).await }
    });
    // While a leads, b waits: a's writes go through and etcd names a.
    let (mut store_a, _) = leader_store(&rt, &a, &leading_a);
    store_a.commit(&Batch { seq: 1, changes: vec![node("x", false)], events: vec![] }).unwrap();
    let named = rt.block_on(b.leader()).unwrap().unwrap();
    assert_eq!((named.info, named.term), (info("a"), term_a));
    assert!(!b_campaign.is_finished(), "b won while a led");

    rt.block_on(a.resign(&leading_a)).unwrap();
    sandbox.step("a resigned");
    let leading_b = within(&rt, "b taking over", b_campaign).unwrap().unwrap();
    let term_b = leading_b.term();
    assert!(term_b > term_a, "terms grow: {term_a} then {term_b}");
    assert!(within(&rt, "a's hold ending", a.hold(&leading_a)).reason.contains("resigned"));
    let err = store_a.commit(&Batch { seq: 2, changes: vec![node("y", false)], events: vec![] }).unwrap_err();
    assert!(matches!(err, StoreError::NotLeader { .. }), "{err}");
    within(&rt, "the follower seeing b lead", leaders.wait_for(|l| l.as_ref().is_some_and(|l| l.term == term_b)))
        .unwrap();

    // a campaigns again; b gives up without resigning (its leadership
    // dropped, as when its console stops): its lease is revoked.
    let a_again = rt.spawn({
        let a = a.clone();
        async move { a.campaign(&info("a")).await }
    });
    drop(leading_b);
    let leading_a2 = within(&rt, "a leading again", a_again).unwrap().unwrap();
    assert!(leading_a2.term() > term_b, "terms grow: {term_b} then {}", leading_a2.term());
    let term_a2 = leading_a2.term();
    within(
        &rt,
        "the follower seeing a lead again",
        leaders.wait_for(|l| l.as_ref().is_some_and(|l| l.term == term_a2)),
    )
    .unwrap();
}

#[test]
fn etcd_a_leader_steps_down_before_its_lease_can_expire_when_etcd_stops_answering() {
    let sandbox = Sandbox::new("etcd-frozen");
    let mut server = EtcdServer::start(&sandbox.dir("etcd"));
    let rt = runtime();
    let etcd = connect(&rt, &server.endpoint());
    let leadership = campaign(&rt, &etcd, "a");
    server.freeze();
    sandbox.step("etcd frozen");
    // The loss is reported while etcd still answers nothing: the keeper
    // does not wait for etcd to say the lease expired.
    let lost = within(&rt, "a stepping down", etcd.hold(&leadership));
    sandbox.step(format!("a: {lost}"));
    assert!(lost.reason.contains("has not confirmed a renewal"), "{lost}");
    assert!(lost.reason.contains("steps down before the lease"), "{lost}");
    assert_eq!(leadership.lost(), Some(lost));
    server.thaw();
}

#[test]
fn etcd_the_event_log_keeps_its_newest_events() {
    let sandbox = Sandbox::new("etcd-events");
    let server = EtcdServer::start(&sandbox.dir("etcd"));
    let rt = runtime();
    let etcd = connect_steady(&rt, &server.endpoint());
    let leadership = campaign(&rt, &etcd, "a");
    let (mut store, _) = leader_store(&rt, &etcd, &leadership);
    store.commit(&Batch { seq: 1, changes: vec![], events: (1..=3).map(event).collect() }).unwrap();
    let last = EVENT_LOG_LIMIT + 2;
    store.commit(&Batch { seq: 2, changes: vec![], events: vec![event(last)] }).unwrap();
    // The newest EVENT_LOG_LIMIT sequence numbers stay: 3 ..= last.
    assert_eq!(seqs(&store.load(10).unwrap().events), [3, last]);
    assert_eq!(seqs(&store.load(1).unwrap().events), [last]);
    let raw = raw_client(&rt, &server);
    assert_eq!(count(&rt, &raw, "/ringwatch/events/"), 2);
}

#[test]
fn etcd_a_batch_larger_than_one_transaction_commits_whole() {
    let sandbox = Sandbox::new("etcd-large");
    let server = EtcdServer::start(&sandbox.dir("etcd"));
    let rt = runtime();
    let a = connect_steady(&rt, &server.endpoint());
    let b = connect_steady(&rt, &server.endpoint());
    let raw = raw_client(&rt, &server);
    let leading_a = campaign(&rt, &a, "a");
    let (mut store, _) = leader_store(&rt, &a, &leading_a);
    // 400 records of 4 KiB (1.6 MiB, past etcd's 1.5 MiB request limit) and
    // 300 more, 200 events: past its 128 operations per transaction too.
    let mut changes: Vec<Change> = (0..400).map(|i| credential(i, 4096)).collect();
    changes.extend((0..300).map(|i| node(&format!("n{i}"), false)));
    changes.push(node("n0", true));
    store.commit(&Batch { seq: 1, changes, events: (1..=200).map(event).collect() }).unwrap();
    let loaded = store.load(1000).unwrap();
    assert_eq!(loaded.image.credentials.len(), 400);
    assert_eq!(loaded.image.nodes.len(), 300);
    assert!(loaded.image.nodes["n0"].cordoned, "the batch's last change of a record wins");
    assert_eq!(loaded.events.len(), 200);
    assert_eq!(count(&rt, &raw, "/ringwatch/staged/"), 0, "nothing staged is left");

    // A leader that dies after its large batch became durable, before it
    // was applied: the batch is not lost, nor half-applied.
    store.interrupt_after_staging();
    let more: Vec<Change> = (400..800).map(|i| credential(i, 4096)).collect();
    let err = store.commit(&Batch { seq: 2, changes: more, events: (201..=400).map(event).collect() }).unwrap_err();
    sandbox.step(format!("interrupted: {err}"));
    assert!(count(&rt, &raw, "/ringwatch/staged/") > 0, "the batch is staged");
    let (standby, _) = rt.block_on(b.load_with_revision(1000)).unwrap();
    assert_eq!(standby.image.credentials.len(), 800, "a standby sees the durable batch whole");
    assert_eq!(standby.events.len(), 400);
    drop(store);
    rt.block_on(a.resign(&leading_a)).unwrap();
    let leading_b = campaign(&rt, &b, "b");
    let (mut store, _) = leader_store(&rt, &b, &leading_b);
    let loaded = store.load(1000).unwrap();
    assert_eq!(loaded.image.credentials.len(), 800, "the next leader finished the batch");
    assert_eq!(seqs(&loaded.events), (1..=400).collect::<Vec<_>>());
    assert_eq!(count(&rt, &raw, "/ringwatch/staged/"), 0, "nothing staged is left");
}

#[test]
fn etcd_a_standby_follows_every_change_in_order() {
    let sandbox = Sandbox::new("etcd-watch");
    let server = EtcdServer::start(&sandbox.dir("etcd"));
    let rt = runtime();
    let a = connect_steady(&rt, &server.endpoint());
    let standby = connect_steady(&rt, &server.endpoint());
    let leadership = campaign(&rt, &a, "a");
    let (mut store, _) = leader_store(&rt, &a, &leadership);
    store.commit(&Batch { seq: 1, changes: vec![node("before", false)], events: vec![event(1)] }).unwrap();

    let (mut image, revision) = rt.block_on(standby.load_with_revision(10)).unwrap();
    assert!(image.image.nodes.contains_key("before"));
    let mut watch = within(&rt, "watching", standby.watch_records(revision + 1, 10)).unwrap();
    let web0 = InstanceId::parse("web/0").unwrap();
    let batches = [
        Batch { seq: 2, changes: vec![node("x", false)], events: vec![event(2)] },
        Batch {
            seq: 3,
            changes: vec![node("x", true), Change::Instance(InstanceRecord::new(web0.clone()))],
            events: vec![],
        },
        Batch { seq: 4, changes: vec![Change::InstanceRemoved(web0.clone())], events: vec![event(3)] },
    ];
    for batch in &batches {
        store.commit(batch).unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 6 {
        seen.extend(within(&rt, "the standby seeing the changes", watch.next()).unwrap());
    }
    let record = |change: &Change| Watched::Record { key: change.key(), json: change.value().unwrap() };
    assert_eq!(
        seen,
        [
            record(&node("x", false)),
            Watched::Event(event(2)),
            record(&node("x", true)),
            record(&Change::Instance(InstanceRecord::new(web0.clone()))),
            record(&Change::InstanceRemoved(web0)),
            Watched::Event(event(3)),
        ]
    );
    for change in &seen {
        match change {
            Watched::Record { key, json } => image.image.load_stored(key, json.as_deref()).unwrap(),
            Watched::Event(event) => image.events.push(event.clone()),
            Watched::Reloaded(loaded) => image = (**loaded).clone(),
        }
    }
    let current = store.load(10).unwrap();
    assert_eq!(image, current, "the standby's copy is the leader's");

    // etcd compacted its history past where a standby was: it reloads.
    let mut raw = raw_client(&rt, &server);
    let now = rt.block_on(raw.get("/", None)).unwrap().header().unwrap().revision();
    rt.block_on(raw.compact(now, None)).unwrap();
    let mut stale =
        within(&rt, "watching from before the compaction", standby.watch_records(revision + 1, 10)).unwrap();
    match within(&rt, "the stale standby hearing of the compaction", stale.next()).unwrap().as_slice() {
        [Watched::Reloaded(loaded)] => assert_eq!(**loaded, current),
        other => panic!("expected a reload, got {other:?}"),
    }
    store.commit(&Batch { seq: 5, changes: vec![node("after", false)], events: vec![] }).unwrap();
    assert_eq!(
        within(&rt, "the standby following on after its reload", stale.next()).unwrap(),
        [record(&node("after", false))]
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as
/// PEM files in `dir`: (ca, server cert, server key, client cert, client key).
fn make_pki(dir: &Path) -> [std::path::PathBuf; 5] {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let server = server_params.signed_by(&server_key, &issuer).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::default();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &issuer).unwrap();
    let files = [
        (dir.join("ca.pem"), ca.pem()),
        (dir.join("server.pem"), server.pem()),
        (dir.join("server.key"), server_key.serialize_pem()),
        (dir.join("client.pem"), client.pem()),
        (dir.join("client.key"), client_key.serialize_pem()),
    ];
    for (path, pem) in &files {
        std::fs::write(path, pem).unwrap();
    }
    files.map(|(path, _)| path)
}

#[test]
fn etcd_over_tls_with_a_client_certificate() {
    let sandbox = Sandbox::new("etcd-tls");
    let [ca, server_cert, server_key, client_cert, client_key] = make_pki(&sandbox.dir("pki"));
    let server = EtcdServer::start_tls(
        &sandbox.dir("etcd"),
        ServerTls { cert: server_cert, key: server_key, client_ca: Some(ca.clone()) },
    );
    let rt = runtime();
    let tls = EtcdTls { ca: ca.clone(), cert: Some(client_cert), key: Some(client_key) };
    let etcd = rt
        .block_on(Etcd::connect(steady(EtcdOptions { tls: Some(tls), ..options(&server.endpoint()) })))
        .unwrap_or_else(|err| panic!("{err}\n{}", server.log_tail()));
    let leadership = campaign(&rt, &etcd, "a");
    let (mut store, _) = leader_store(&rt, &etcd, &leadership);
    store.commit(&Batch { seq: 1, changes: vec![node("x", false)], events: vec![event(1)] }).unwrap();
    assert!(store.load(1).unwrap().image.nodes.contains_key("x"));

    // etcd checks client certificates: without one, a console is refused,
    // and told where.
    let anonymous = EtcdTls { ca, cert: None, key: None };
    let err =
        rt.block_on(Etcd::connect(EtcdOptions { tls: Some(anonymous), ..options(&server.endpoint()) })).unwrap_err();
    assert!(err.to_string().contains(&server.endpoint()), "{err}");
}

/// Regression: the connection pinged etcd every second, even without a
/// stream open; etcd sends such a client away ("too many pings") after a
/// few quiet seconds, which broke a standby's watch while nothing changed.
#[test]
fn regression_a_quiet_standby_watch_and_leader_outlast_etcds_ping_policy() {
    let sandbox = Sandbox::new("etcd-quiet");
    let server = EtcdServer::start(&sandbox.dir("etcd"));
    let rt = runtime();
    let a = connect(&rt, &server.endpoint());
    let standby = connect(&rt, &server.endpoint());
    let leadership = campaign(&rt, &a, "a");
    let (mut store, _) = leader_store(&rt, &a, &leadership);
    let (_, revision) = rt.block_on(standby.load_with_revision(10)).unwrap();
    let mut watch = within(&rt, "watching", standby.watch_records(revision + 1, 10)).unwrap();
    // The condition under test is a quiet period longer than a ping
    // interval (10 s), not an event to wait for.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(leadership.lost(), None);
    store.commit(&Batch { seq: 1, changes: vec![node("x", false)], events: vec![] }).unwrap();
    let seen = within(&rt, "the standby seeing the change", watch.next()).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(seen, [Watched::Record { key: node("x", false).key(), json: node("x", false).value().unwrap() }]);
}

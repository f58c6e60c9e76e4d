//! Tests of the UI as a whole: snapshot tests of every view on a
//! `TestBackend` from a deterministic fake console, key handling, and the
//! state's bounds. Nothing here reads the clock or draws at random.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use ringwatch_shared::metrics::{DiskUsage, MetricsSample};
use ringwatch_shared::placement::Headroom;
use ringwatch_shared::plan::{DataImpact, Move, MoveKind, OperatorAction, Plan};
use ringwatch_shared::status::{ClusterEvent, ClusterStatus, NodeState, NodeStatus};
use tokio::sync::broadcast;

use futures_util::FutureExt;

use crate::handle::{Command, CommandError, ConsoleHandle, DemoAction, Reply, Snapshot};
use crate::ui::keys::{self, Action, Parsed, parse_command};
use crate::ui::ring::angle_at;
use crate::ui::state::{App, HISTORY_LEN, MAX_EVENTS, MessageKind, PickStep, RingColors, SortKey, View, action_words};
use crate::ui::{Flow, perform, views};

const GIB: u64 = 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;
/// 2023-11-14 22:13:20 UTC.
const EPOCH_MS: u64 = 1_700_000_000_000;

fn node(name: &str, state: NodeState) -> NodeStatus {
    NodeStatus {
        name: name.to_string(),
        state,
        cordoned: false,
        phi: 0.42,
        last_seen_ms: 120,
        cpu_percent: 23.5,
        mem_used_bytes: 6 * GIB,
        mem_total_bytes: 16 * GIB,
        load: [0.52, 0.48, 0.40],
        net_rx_bytes_per_sec: 1_200_000,
        net_tx_bytes_per_sec: 340_000,
        weight: 2,
        heartbeats_lost: 0,
        address: format!("10.0.0.{}:41000", name.len()),
        reason: "heartbeats arrive".to_string(),
        instances: Vec::new(),
        cert_sha256: None,
        cert_expires_unix: None,
        data_objects: 0,
        data_bytes: 0,
        data_free_bytes: None,
        rtt_ms: None,
    }
}

/// Six nodes, one in each interesting state, with fixed numbers.
fn nodes() -> Vec<NodeStatus> {
    let alpha = node("alpha", NodeState::Alive);
    let bravo = NodeStatus {
        cpu_percent: 91.2,
        mem_used_bytes: 30 * GIB,
        mem_total_bytes: 32 * GIB,
        load: [7.9, 6.1, 4.0],
        net_rx_bytes_per_sec: 48 * MIB,
        net_tx_bytes_per_sec: 52 * MIB,
        weight: 4,
        address: "10.0.0.2:41000".into(),
        ..node("bravo", NodeState::Alive)
    };
    let charlie = NodeStatus {
        phi: 5.7,
        last_seen_ms: 2_400,
        heartbeats_lost: 3,
        reason: "phi 5.7 ≥ 5".into(),
        ..node("charlie", NodeState::Suspect)
    };
    let delta = NodeStatus {
        phi: 9.3,
        last_seen_ms: 12_500,
        cpu_percent: 0.0,
        net_rx_bytes_per_sec: 0,
        net_tx_bytes_per_sec: 0,
        address: String::new(),
        reason: "phi 9.3 ≥ 8".into(),
        ..node("delta", NodeState::Failed)
    };
    let echo = NodeStatus {
        last_seen_ms: 300_000,
        address: String::new(),
        reason: "said goodbye".into(),
        weight: 1,
        ..node("echo", NodeState::Left)
    };
    let foxtrot = NodeStatus {
        cordoned: true,
        cpu_percent: 55.0,
        mem_used_bytes: 31 * GIB,
        mem_total_bytes: 32 * GIB,
        reason: "memory 97% ≥ 95%".into(),
        ..node("foxtrot-with-a-long-name", NodeState::Degraded)
    };
    vec![alpha, bravo, charlie, delta, echo, foxtrot]
}

fn sample() -> MetricsSample {
    MetricsSample {
        uptime_secs: 3 * 86_400 + 4 * 3_600 + 5 * 60,
        cpu_permille: 235,
        core_permille: vec![120, 340, 980, 50, 0, 610, 775, 233],
        load_centi: [52, 48, 40],
        mem_used_bytes: 6 * GIB,
        mem_total_bytes: 16 * GIB,
        swap_used_bytes: 256 * MIB,
        swap_total_bytes: 2 * GIB,
        disks: vec![
            DiskUsage { mount: "/".into(), used_bytes: 120 * GIB, total_bytes: 500 * GIB },
            DiskUsage { mount: "/var/lib/ringwatch".into(), used_bytes: 460 * GIB, total_bytes: 500 * GIB },
        ],
        net_rx_bytes_per_sec: 1_200_000,
        net_tx_bytes_per_sec: 340_000,
        instances: Vec::new(),
    }
}

fn event(seq: u64, node: Option<&str>, change: Option<(NodeState, NodeState)>, reason: &str) -> ClusterEvent {
    ClusterEvent {
        seq,
        at_unix_ms: EPOCH_MS + seq * 1_500,
        node: node.map(str::to_string),
        change,
        reason: reason.to_string(),
        ..ClusterEvent::default()
    }
}

fn events() -> Vec<ClusterEvent> {
    use NodeState::{Alive, Degraded, Failed, Left, Suspect, Unknown};
    vec![
        event(1, None, None, "console started on 127.0.0.1:7443"),
        event(2, Some("alpha"), Some((Unknown, Alive)), "joined from 10.0.0.5:41000"),
        event(3, Some("bravo"), Some((Unknown, Alive)), "joined from 10.0.0.2:41000"),
        event(4, Some("charlie"), Some((Unknown, Alive)), "joined from 10.0.0.7:41000"),
        event(5, Some("delta"), Some((Unknown, Alive)), "joined from 10.0.0.5:41000"),
        event(6, Some("echo"), Some((Unknown, Alive)), "joined from 10.0.0.4:41000"),
        event(7, Some("foxtrot-with-a-long-name"), Some((Unknown, Alive)), "joined"),
        event(8, Some("echo"), Some((Alive, Left)), "said goodbye"),
        event(9, Some("delta"), Some((Alive, Suspect)), "phi 5.2 ≥ 5"),
        event(10, Some("delta"), Some((Suspect, Failed)), "phi 9.3 ≥ 8"),
        event(11, Some("foxtrot-with-a-long-name"), Some((Alive, Degraded)), "memory 97% ≥ 95%"),
        event(12, Some("foxtrot-with-a-long-name"), None, "cordoned by the operator"),
        event(13, Some("charlie"), Some((Alive, Suspect)), "phi 5.7 ≥ 5"),
    ]
}

fn snapshot() -> Snapshot {
    let mut samples = BTreeMap::new();
    samples.insert("alpha".to_string(), sample());
    Snapshot {
        status: ClusterStatus { nodes: nodes(), tasks: Vec::new(), ..ClusterStatus::default() },
        samples,
        events: events(),
        dropped_events: 0,
        listen: Some("127.0.0.1:7443".parse().unwrap()),
        demo: true,
        at_unix_ms: 1_795_000_000_000,
        link_problem: None,
        read_only: false,
    }
}

/// A triangle wave between `low` and `high` with period `period`: moving
/// chart lines without floating-point functions that differ by platform.
fn wave(step: u64, period: u64, low: f64, high: f64) -> f64 {
    let phase = step % period;
    let half = period / 2;
    let rising = if phase < half { phase } else { period - phase };
    #[allow(clippy::cast_precision_loss)]
    let fraction = rising as f64 / half as f64;
    low + (high - low) * fraction
}

/// An app that has seen two minutes of snapshots, one a second.
fn app() -> App {
    let mut app = App::new("ringwatch");
    for second in 0..120 {
        let mut snapshot = snapshot();
        for node in &mut snapshot.status.nodes {
            if node.name == "alpha" {
                node.cpu_percent = wave(second, 40, 5.0, 85.0);
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let used = (wave(second, 90, 5.0, 9.0) * GIB as f64) as u64;
                node.mem_used_bytes = used;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let rx = (wave(second, 30, 0.2, 2.0) * MIB as f64) as u64;
                node.net_rx_bytes_per_sec = rx;
                node.net_tx_bytes_per_sec = rx / 3;
            }
        }
        app.apply_snapshot(snapshot, second * 1_000);
    }
    app
}

fn draw(app: &mut App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let mut hits = None;
    terminal.draw(|frame| hits = Some(views::draw(frame, app))).unwrap();
    app.remember(hits.unwrap());
    terminal
}

fn key(app: &mut App, code: KeyCode) -> Action {
    keys::handle_key(app, KeyEvent::new(code, KeyModifiers::NONE))
}

fn chars(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn click(app: &mut App, column: u16, row: u16) -> Action {
    let mouse =
        MouseEvent { kind: MouseEventKind::Down(MouseButton::Left), column, row, modifiers: KeyModifiers::NONE };
    keys::handle_mouse(app, mouse)
}

/// The cells of the row of `buffer` that contains `text`.
fn row_with<'a>(buffer: &'a Buffer, text: &str) -> Option<(u16, &'a [ratatui::buffer::Cell])> {
    let width = usize::from(buffer.area.width);
    (0..buffer.area.height).find_map(|y| {
        let cells = &buffer.content[usize::from(y) * width..usize::from(y + 1) * width];
        let line: String = cells.iter().map(|cell| cell.symbol()).collect();
        line.contains(text).then_some((y, cells))
    })
}

// ---- snapshot tests ----

#[test]
fn overview_80x24() {
    let mut app = app();
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn overview_160x48() {
    let mut app = app();
    key(&mut app, KeyCode::Down);
    insta::assert_snapshot!(draw(&mut app, 160, 48).backend());
}

#[test]
fn detail_80x24() {
    let mut app = app();
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.view(), View::Detail);
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn detail_160x48() {
    let mut app = app();
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!(draw(&mut app, 160, 48).backend());
}

#[test]
fn detail_without_a_sample_80x24() {
    let mut app = app();
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.selected(), Some("delta"));
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn events_80x24() {
    let mut app = app();
    key(&mut app, KeyCode::Char('3'));
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn events_filtered_160x48() {
    let mut app = app();
    key(&mut app, KeyCode::Char('3'));
    key(&mut app, KeyCode::Char('/'));
    chars(&mut app, "delta");
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!(draw(&mut app, 160, 48).backend());
}

#[test]
fn nodes_160x48() {
    let mut app = app();
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Char('s'));
    insta::assert_snapshot!(draw(&mut app, 160, 48).backend());
}

#[test]
fn tasks_80x24() {
    let mut app = app();
    key(&mut app, KeyCode::Char('4'));
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

/// The fixture once workloads run: tasks, instances and their usage, the
/// console's headroom, and two more alive nodes — `golf` free, `hotel`
/// cordoned — so migrations have somewhere (and somewhere not) to go.
fn with_tasks(mut snapshot: Snapshot) -> Snapshot {
    use ringwatch_shared::metrics::InstanceUsage;
    use ringwatch_shared::status::{InstanceStatus, TaskStatus};
    let instance = |id: &str, node: Option<&str>, state: &str, restarts| InstanceStatus {
        id: id.to_string(),
        node: node.map(str::to_string),
        state: state.to_string(),
        restarts,
    };
    snapshot.status.tasks = vec![
        TaskStatus {
            name: "web".into(),
            replicas: 2,
            instances: vec![
                instance("web/0", Some("alpha"), "running", 0),
                instance("web/1", Some("bravo"), "running", 1),
            ],
        },
        TaskStatus {
            name: "cache".into(),
            replicas: 2,
            instances: vec![instance("cache/0", Some("alpha"), "running", 0), instance("cache/1", None, "pending", 3)],
        },
    ];
    for node in &mut snapshot.status.nodes {
        match node.name.as_str() {
            "alpha" => node.instances = vec!["web/0".into(), "cache/0".into()],
            "bravo" => node.instances = vec!["web/1".into()],
            _ => {}
        }
    }
    if let Some(sample) = snapshot.samples.get_mut("alpha") {
        sample.instances = vec![
            InstanceUsage { instance: "web/0".into(), cpu_permille: 125, rss_bytes: 48 * MIB },
            InstanceUsage { instance: "cache/0".into(), cpu_permille: 30, rss_bytes: 310 * MIB },
        ];
    }
    snapshot.status.nodes.push(NodeStatus { cpu_percent: 4.0, ..node("golf", NodeState::Alive) });
    snapshot.status.nodes.push(NodeStatus { cordoned: true, ..node("hotel", NodeState::Alive) });
    snapshot.status.headroom = Headroom { failures_survived: Some(0), capacity_ok: true };
    snapshot
}

/// [`app`] once workloads run.
fn app_with_tasks() -> App {
    let mut app = app();
    app.apply_snapshot(with_tasks(snapshot()), 200_000);
    app
}

/// The fixture with automatic failover paused.
fn paused(mut snapshot: Snapshot) -> Snapshot {
    snapshot.status.failover_paused = Some(
        "3 of 6 nodes failed within 10s: automatic failover is PAUSED (a console-side network fault must not \
         become a mass migration); resume with `ringwatch resume` or `:resume`"
            .into(),
    );
    snapshot
}

#[test]
fn tasks_with_instances_80x24() {
    let mut app = app_with_tasks();
    assert_eq!(app.instances, 4);
    assert_eq!(app.headroom.failures_survived, Some(0), "the console's figure");
    assert_eq!(app.instance_dots.len(), 3, "placed instances are dots on the ring");
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::Down);
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn tasks_with_instances_160x48() {
    let mut app = app_with_tasks();
    // cache/0 runs on a node that just failed; cache/1 is crash-looping.
    let mut next = with_tasks(snapshot());
    for node in &mut next.status.nodes {
        if node.name == "alpha" {
            node.state = NodeState::Failed;
        }
    }
    next.status.tasks[1].instances[1].state = "restarting".into();
    next.status.tasks[1].instances[1].node = Some("golf".into());
    next.status.tasks.push(ringwatch_shared::status::TaskStatus {
        name: "batch".into(),
        replicas: 1,
        instances: vec![ringwatch_shared::status::InstanceStatus {
            id: "batch/0".into(),
            node: Some("bravo".into()),
            state: "failed".into(),
            restarts: 6,
        }],
    });
    app.apply_snapshot(next, 201_000);
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::End);
    insta::assert_snapshot!(draw(&mut app, 160, 48).backend());
}

#[test]
fn instance_states_have_their_colours_in_the_tasks_view() {
    let mut app = app();
    let mut next = with_tasks(snapshot());
    let states = ["running", "starting", "restarting", "pending", "failed"];
    next.status.tasks = vec![ringwatch_shared::status::TaskStatus {
        name: "web".into(),
        replicas: 5,
        instances: states
            .iter()
            .enumerate()
            .map(|(index, state)| ringwatch_shared::status::InstanceStatus {
                id: format!("web/{index}"),
                node: Some("golf".into()),
                state: (*state).into(),
                restarts: 0,
            })
            .collect(),
    }];
    app.apply_snapshot(next, 200_000);
    key(&mut app, KeyCode::Char('4'));
    let terminal = draw(&mut app, 120, 30);
    let buffer = terminal.backend().buffer();
    for (index, (state, color)) in
        states.iter().zip([Color::Green, Color::Yellow, Color::Yellow, Color::Gray, Color::Red]).enumerate()
    {
        let (_, row) = row_with(buffer, &format!("web/{index} ")).unwrap();
        let line: String = row.iter().map(ratatui::buffer::Cell::symbol).collect();
        let column = line.find(state).map(|byte| line[..byte].chars().count()).unwrap();
        assert_eq!(row[column].fg, color, "{state}");
    }
}

#[test]
fn overview_with_tasks_160x48() {
    let mut app = app_with_tasks();
    insta::assert_snapshot!(draw(&mut app, 160, 48).backend());
}

#[test]
fn confirm_drain_80x24() {
    let console = FakeConsole::new(with_tasks(snapshot()));
    let mut app = app_with_tasks();
    press(&mut app, &console, KeyCode::Char('d'));
    assert!(app.dialog.is_some());
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn what_if_160x48() {
    let console = FakeConsole::new(with_tasks(snapshot()));
    let mut app = app_with_tasks();
    press(&mut app, &console, KeyCode::Char('w'));
    assert!(app.dialog.as_ref().unwrap().read_only());
    insta::assert_snapshot!(draw(&mut app, 160, 48).backend());
}

#[test]
fn migrate_picker_80x24() {
    let mut app = app_with_tasks();
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::End);
    assert_eq!(app.selected_task_item().unwrap().1.unwrap().id, "cache/1");
    key(&mut app, KeyCode::Char('m'));
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn paused_banner_80x24() {
    let mut app = app_with_tasks();
    app.apply_snapshot(paused(with_tasks(snapshot())), 201_000);
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn the_cluster_bar_shows_the_data_store_only_when_it_holds_objects() {
    let mut app = app();
    assert!(!screen(&draw(&mut app, 160, 48)).contains("data "), "no data figures without objects");
    let mut with_data = snapshot();
    with_data.status.data = ringwatch_shared::status::DataStatus {
        objects: 20,
        bytes: 82_110,
        replicas: 3,
        under_replicated: 15,
        unavailable: 1,
        repair_bytes_per_sec: 70_000_000,
    };
    app.apply_snapshot(with_data, 201_000);
    let roomy = screen(&draw(&mut app, 200, 48));
    assert!(roomy.contains("data 20 objects"), "{roomy}");
    assert!(roomy.contains("15 under-replicated") && roomy.contains("1 unavailable"), "{roomy}");
    let narrow = screen(&draw(&mut app, 80, 24));
    assert!(narrow.contains("headroom"), "the bar still fits its headroom on 80 columns: {narrow}");
}

#[test]
fn a_node_whose_data_quota_is_full_says_so_in_its_detail() {
    let mut app = app();
    key(&mut app, KeyCode::Enter);
    assert!(!screen(&draw(&mut app, 160, 48)).contains("quota"), "nothing said before it is full");
    let mut full = snapshot();
    full.status.nodes[0].data_free_bytes = Some(0);
    app.apply_snapshot(full, 201_000);
    let detail = screen(&draw(&mut app, 160, 48));
    assert!(detail.contains("quota full: takes no new copies"), "{detail}");
}

#[test]
fn a_connected_nodes_round_trip_time_is_in_its_detail() {
    let mut app = app();
    key(&mut app, KeyCode::Enter);
    assert!(!screen(&draw(&mut app, 160, 48)).contains("rtt"), "nothing said before it is measured");
    let mut measured = snapshot();
    measured.status.nodes[0].rtt_ms = Some(0.42);
    app.apply_snapshot(measured, 201_000);
    let detail = screen(&draw(&mut app, 160, 48));
    assert!(detail.contains("rtt 0.42ms"), "{detail}");
}

#[test]
fn detail_with_instances_160x48() {
    let mut app = app();
    app.apply_snapshot(with_tasks(snapshot()), 200_000);
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!(draw(&mut app, 160, 48).backend());
}

#[test]
fn help_80x24() {
    let mut app = app();
    key(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn help_160x48() {
    let mut app = app();
    key(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!(draw(&mut app, 160, 48).backend());
}

#[test]
fn too_small_79x24() {
    let mut app = app();
    insta::assert_snapshot!(draw(&mut app, 79, 24).backend());
}

#[test]
fn too_small_30x8() {
    let mut app = app();
    insta::assert_snapshot!(draw(&mut app, 30, 8).backend());
}

#[test]
fn empty_cluster_80x24() {
    let mut app = App::new("ringwatch");
    app.apply_snapshot(Snapshot::default(), 0);
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn every_view_survives_every_size() {
    let mut app = app();
    for view in ['1', '2', '3', '4'] {
        key(&mut app, KeyCode::Char(view));
        for help in [false, true] {
            app.help = help;
            for (width, height) in [(0, 0), (1, 1), (10, 3), (79, 23), (80, 24), (81, 25), (120, 30), (300, 100)] {
                draw(&mut app, width, height);
            }
        }
    }
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Enter);
    for (width, height) in [(80, 24), (200, 60), (80, 60), (250, 24)] {
        draw(&mut app, width, height);
    }
}

// ---- colours ----

#[test]
fn a_failed_node_is_red_in_the_table_and_on_the_ring_at_the_next_redraw() {
    let mut app = app();
    let terminal = draw(&mut app, 120, 40);
    let buffer = terminal.backend().buffer();
    let (_, row) = row_with(buffer, "delta ").unwrap();
    assert!(row.iter().any(|cell| cell.symbol() == "f" && cell.fg == Color::Red), "delta's state is red");
    let ring = app.hits.ring.unwrap().area;
    let red_on_ring = |buffer: &Buffer, color: Color| {
        (ring.y..ring.bottom())
            .flat_map(|y| (ring.x..ring.right()).map(move |x| (x, y)))
            .filter(|&(x, y)| buffer[(x, y)].fg == color)
            .count()
    };
    let red_before = red_on_ring(buffer, Color::Red);
    assert!(red_before > 0, "delta's arcs are red");

    // bravo fails: red at once, in the table and on the ring.
    let mut next = snapshot();
    for node in &mut next.status.nodes {
        if node.name == "bravo" {
            node.state = NodeState::Failed;
        }
    }
    app.apply_snapshot(next, 200_000);
    let terminal = draw(&mut app, 120, 40);
    let buffer = terminal.backend().buffer();
    let (_, row) = row_with(buffer, "bravo ").unwrap();
    assert!(row.iter().any(|cell| cell.symbol() == "f" && cell.fg == Color::Red));
    assert!(red_on_ring(buffer, Color::Red) > red_before, "bravo's arcs turned red");
}

#[test]
fn states_have_their_colours_on_the_ring() {
    let mut app = app();
    let terminal = draw(&mut app, 160, 48);
    let buffer = terminal.backend().buffer();
    let ring = app.hits.ring.unwrap().area;
    let mut seen = std::collections::HashSet::new();
    for y in ring.y..ring.bottom() {
        for x in ring.x..ring.right() {
            seen.insert(buffer[(x, y)].fg);
        }
    }
    for color in [Color::Green, Color::Yellow, Color::Red, Color::DarkGray, Color::Magenta, Color::White] {
        assert!(seen.contains(&color), "{color:?} missing from the ring: {seen:?}");
    }
}

// ---- keys ----

#[test]
fn q_and_ctrl_c_quit() {
    let mut app = app();
    assert_eq!(key(&mut app, KeyCode::Char('q')), Action::Quit);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(keys::handle_key(&mut app, ctrl_c), Action::Quit);
    key(&mut app, KeyCode::Char('/'));
    assert_eq!(key(&mut app, KeyCode::Char('q')), Action::None, "q types into the filter");
    assert_eq!(app.filter, "q");
    assert_eq!(keys::handle_key(&mut app, ctrl_c), Action::Quit, "Ctrl-C always quits");
}

#[test]
fn the_selection_stays_in_bounds() {
    let mut app = app();
    assert_eq!(app.selected(), Some("alpha"), "the first node is selected at start");
    key(&mut app, KeyCode::Up);
    assert_eq!(app.cursor, 0);
    for _ in 0..20 {
        key(&mut app, KeyCode::Char('j'));
    }
    assert_eq!(app.cursor, 5);
    assert_eq!(app.selected(), Some("foxtrot-with-a-long-name"));
    key(&mut app, KeyCode::Char('k'));
    assert_eq!(app.selected(), Some("echo"));
    key(&mut app, KeyCode::Home);
    assert_eq!(app.selected(), Some("alpha"));
    key(&mut app, KeyCode::End);
    assert_eq!(app.cursor, 5);
    key(&mut app, KeyCode::PageUp);
    assert_eq!(app.cursor, 0);
}

#[test]
fn the_selection_follows_its_node_through_sorting_and_snapshots() {
    let mut app = app();
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.selected(), Some("charlie"));
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(app.sort, SortKey::State);
    assert_eq!(app.node_at(0).unwrap().name, "delta", "failed first");
    assert_eq!(app.selected(), Some("charlie"));
    assert_eq!(app.node_at(app.cursor).unwrap().name, "charlie");
    app.apply_snapshot(snapshot(), 500_000);
    assert_eq!(app.selected(), Some("charlie"));
    for expected in [SortKey::Phi, SortKey::Cpu, SortKey::Memory, SortKey::Name] {
        key(&mut app, KeyCode::Char('s'));
        assert_eq!(app.sort, expected);
    }
    key(&mut app, KeyCode::Char('S'));
    assert_eq!(app.node_at(0).unwrap().name, "foxtrot-with-a-long-name", "reversed");
}

#[test]
fn views_switch_with_digits_tab_enter_and_esc() {
    let mut app = app();
    assert_eq!(app.view(), View::Overview);
    for (digit, view) in [('2', View::Nodes), ('3', View::Events), ('4', View::Tasks), ('1', View::Overview)] {
        key(&mut app, KeyCode::Char(digit));
        assert_eq!(app.view(), view);
    }
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.view(), View::Nodes);
    key(&mut app, KeyCode::BackTab);
    key(&mut app, KeyCode::BackTab);
    assert_eq!(app.view(), View::Tasks);
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.view(), View::Detail);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.selected(), Some("bravo"), "arrows browse nodes in the detail view");
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.view(), View::Nodes, "Esc goes back where Enter came from");
    key(&mut app, KeyCode::Char('3'));
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.view(), View::Events, "no detail from the event view");
}

#[test]
fn help_opens_closes_and_swallows_keys() {
    let mut app = app();
    key(&mut app, KeyCode::Char('?'));
    assert!(app.help);
    key(&mut app, KeyCode::Char('3'));
    assert_eq!(app.view(), View::Overview, "keys do not act under the help");
    key(&mut app, KeyCode::Esc);
    assert!(!app.help);
    key(&mut app, KeyCode::Char('?'));
    key(&mut app, KeyCode::Char('?'));
    assert!(!app.help);
    key(&mut app, KeyCode::Char('?'));
    assert_eq!(key(&mut app, KeyCode::Char('q')), Action::Quit);
}

#[test]
fn the_filter_edits_and_narrows_nodes_and_events() {
    let mut app = app();
    key(&mut app, KeyCode::Char('/'));
    assert!(app.filter_editing);
    chars(&mut app, "DELX");
    key(&mut app, KeyCode::Backspace);
    assert_eq!(app.filter, "DEL");
    assert_eq!(app.order.len(), 1, "case-insensitive");
    assert_eq!(app.selected(), Some("delta"));
    assert!(app.filtered_events().all(|event| event.text.contains("delta")));
    assert_eq!(app.filtered_events().count(), 3);
    key(&mut app, KeyCode::Enter);
    assert!(!app.filter_editing);
    assert_eq!(app.filter, "DEL", "Enter keeps the filter");
    key(&mut app, KeyCode::Char('j'));
    assert_eq!(app.selected(), Some("delta"), "keys act again");
    key(&mut app, KeyCode::Esc);
    assert!(app.filter.is_empty(), "Esc clears a kept filter");
    assert_eq!(app.order.len(), 6);
    key(&mut app, KeyCode::Char('/'));
    chars(&mut app, "zzz");
    assert!(app.order.is_empty());
    assert_eq!(app.selected(), None);
    draw(&mut app, 80, 24);
    key(&mut app, KeyCode::Esc);
    assert!(!app.filter_editing && app.filter.is_empty(), "Esc while typing ends and clears");
    assert_eq!(app.order.len(), 6);
    assert!(app.selected().is_some());
}

#[test]
fn demo_keys_act_on_the_selected_node_only_in_the_demo() {
    let mut app = app();
    key(&mut app, KeyCode::Down);
    for (c, action) in
        [('x', DemoAction::Crash), ('p', DemoAction::Partition), ('t', DemoAction::Stall), ('h', DemoAction::Heal)]
    {
        assert_eq!(key(&mut app, KeyCode::Char(c)), Action::Command(Command::Demo { node: "bravo".into(), action }));
    }
    let mut plain = snapshot();
    plain.demo = false;
    app.apply_snapshot(plain, 200_000);
    assert_eq!(key(&mut app, KeyCode::Char('x')), Action::None);
    assert!(app.message.as_ref().unwrap().text.contains("ringwatch demo"));
}

#[test]
fn command_results_reach_the_status_line_and_expire() {
    let mut app = app();
    app.command_result(Ok("crashed \"bravo\"".into()));
    assert_eq!(app.message.as_ref().unwrap().kind, MessageKind::Ok);
    let terminal = draw(&mut app, 80, 24);
    assert!(row_with(terminal.backend().buffer(), "crashed \"bravo\"").is_some());
    app.command_result(Err("no such node".into()));
    assert_eq!(app.message.as_ref().unwrap().kind, MessageKind::Error);
    app.apply_snapshot(snapshot(), app.now_ms + 60_000);
    assert!(app.message.is_none(), "messages expire");
}

#[test]
fn the_fake_console_round_trip() {
    let console = FakeConsole::new(snapshot());
    let mut app = App::new("ringwatch");
    app.apply_snapshot(console.snapshot(), 0);
    key(&mut app, KeyCode::Down);
    if let Action::Command(command) = key(&mut app, KeyCode::Char('x')) {
        app.command_result(ready(console.command(command)).map_err(|err| format!("{err:?}")));
    }
    assert_eq!(
        console.commands.lock().unwrap().as_slice(),
        [Command::Demo { node: "bravo".into(), action: DemoAction::Crash }]
    );
    assert_eq!(app.message.as_ref().unwrap().text, "crash \"bravo\"");
}

// ---- mouse ----

#[test]
fn a_click_selects_a_table_row_and_a_tab() {
    let mut app = app();
    draw(&mut app, 80, 24);
    let table = app.hits.table.unwrap();
    click(&mut app, table.rows.x + 3, table.rows.y + 2);
    assert_eq!(app.selected(), Some("charlie"));
    click(&mut app, table.rows.x + 3, table.rows.bottom() - 1);
    assert_eq!(app.selected(), Some("charlie"), "below the last row: nothing");
    let (tab, view) = app.hits.tabs[2];
    click(&mut app, tab.x + 1, tab.y);
    assert_eq!((app.view(), view), (View::Events, View::Events));
}

#[test]
fn a_click_on_the_ring_selects_the_node_owning_that_angle() {
    let mut app = app();
    draw(&mut app, 160, 48);
    let ring = app.hits.ring.unwrap();
    let radius = ring.bounds.radius();
    let mut selected = std::collections::HashSet::new();
    // Walk round the ring cell by cell.
    for y in ring.area.y..ring.area.bottom() {
        for x in ring.area.x..ring.area.right() {
            let (cx, cy) = ring.bounds.cell_center(ring.area, x, y).unwrap();
            let distance = cx.hypot(cy);
            if (distance - radius).abs() > 0.5 {
                continue;
            }
            let owner = app.ring.owner_at(angle_at(cx, cy)).unwrap().to_string();
            click(&mut app, x, y);
            assert_eq!(app.selected(), Some(owner.as_str()), "cell ({x}, {y})");
            selected.insert(owner);
        }
    }
    assert_eq!(selected.len(), 6, "every node can be clicked: {selected:?}");
    // The middle shows a label, not a node.
    let before = app.selected().map(str::to_string);
    let (middle_x, middle_y) = (ring.area.x + ring.area.width / 2, ring.area.y + ring.area.height / 2);
    click(&mut app, middle_x, middle_y);
    assert_eq!(app.selected().map(str::to_string), before);
}

#[test]
fn the_wheel_scrolls_and_a_click_closes_help() {
    let mut app = app();
    let wheel = |kind| MouseEvent { kind, column: 0, row: 0, modifiers: KeyModifiers::NONE };
    keys::handle_mouse(&mut app, wheel(MouseEventKind::ScrollDown));
    assert_eq!(app.selected(), Some("bravo"));
    keys::handle_mouse(&mut app, wheel(MouseEventKind::ScrollUp));
    assert_eq!(app.selected(), Some("alpha"));
    app.help = true;
    click(&mut app, 1, 1);
    assert!(!app.help);
}

// ---- state ----

#[test]
fn history_is_sampled_once_a_second_and_bounded() {
    let mut app = App::new("t");
    for now in [0, 250, 500, 750, 1_000, 1_100, 2_000] {
        app.apply_snapshot(snapshot(), now);
    }
    assert_eq!(app.history("alpha").unwrap().len(), 3);
    for second in 3..1_000 {
        app.apply_snapshot(snapshot(), second * 1_000);
    }
    assert_eq!(app.history("alpha").unwrap().len(), HISTORY_LEN);
    // A node that leaves the snapshot takes its history with it.
    let mut fewer = snapshot();
    fewer.status.nodes.retain(|node| node.name != "echo");
    app.apply_snapshot(fewer, 2_000_000);
    assert!(app.history("echo").is_none());
    assert_eq!(app.history.len(), 5);
}

#[test]
fn the_ring_is_rebuilt_only_when_names_or_weights_change() {
    let mut app = app();
    assert_eq!(app.ring_builds, 1, "120 snapshots, one ring");
    let mut next = snapshot();
    next.status.nodes[0].state = NodeState::Failed;
    next.status.nodes[0].cpu_percent = 99.0;
    app.apply_snapshot(next, 130_000);
    assert_eq!(app.ring_builds, 1, "state and metrics do not move the ring");
    let mut heavier = snapshot();
    heavier.status.nodes[0].weight = 8;
    app.apply_snapshot(heavier, 131_000);
    assert_eq!(app.ring_builds, 2);
    let shares: f64 = app.nodes.iter().map(|node| node.share).sum();
    assert!((shares - 1.0).abs() < 1e-6, "{shares}");
}

#[test]
fn deferred_ring_builds_keep_the_old_ring_until_the_new_one_arrives() {
    let mut app = App::new("t");
    app.defer_ring_builds();
    app.apply_snapshot(snapshot(), 0);
    assert!(app.ring.is_empty() && app.ring_builds == 0, "nothing built inline");
    draw(&mut app, 80, 24);
    let key = app.take_ring_request().unwrap();
    assert_eq!(app.take_ring_request(), None, "one request per change");
    app.apply_snapshot(snapshot(), 250);
    assert_eq!(app.take_ring_request(), None, "the same ring is not asked for twice");
    app.install_ring(crate::ui::ring::RingCache::build(key));
    assert_eq!(app.ring_builds, 1);
    assert!(app.nodes.iter().all(|node| node.ring_index.is_some() && node.share > 0.0));
    // A newcomer: the old ring stays until the new one is installed.
    let mut bigger = snapshot();
    bigger.status.nodes.push(node("golf", NodeState::Alive));
    app.apply_snapshot(bigger, 500);
    assert_eq!(app.ring.len(), 6);
    assert_eq!(app.nodes.last().unwrap().ring_index, None);
    draw(&mut app, 80, 24);
    let key = app.take_ring_request().unwrap();
    app.install_ring(crate::ui::ring::RingCache::build(key));
    assert_eq!(app.ring.len(), 7);
    assert!(app.ring_request.is_none());
}

#[test]
fn bursts_of_events_stay_bounded_and_gaps_are_counted() {
    let mut app = App::new("t");
    let mut seq = 0;
    for round in 0..12 {
        let burst: Vec<ClusterEvent> = (0..1_000)
            .map(|_| {
                seq += 1;
                event(seq, Some("alpha"), None, "flap")
            })
            .collect();
        let mut snapshot = snapshot();
        // Every other burst is only seen in part: the console kept the
        // newest 600.
        snapshot.events = if round % 2 == 1 { burst[400..].to_vec() } else { burst };
        app.apply_snapshot(snapshot, round * 250);
    }
    assert_eq!(app.events.len(), MAX_EVENTS);
    assert_eq!(app.events.back().unwrap().seq, 12_000);
    assert_eq!(app.events_missed, 6 * 400);
    // A console that starts over starts the log over.
    let mut restarted = snapshot();
    restarted.events = events();
    app.apply_snapshot(restarted, 10_000);
    assert_eq!(app.events.len(), 13);
    draw(&mut app, 80, 24);
}

#[test]
fn scrolled_back_events_stay_put_when_new_ones_arrive() {
    let mut app = app();
    key(&mut app, KeyCode::Char('3'));
    key(&mut app, KeyCode::Up);
    key(&mut app, KeyCode::Up);
    assert_eq!(app.event_scroll, 2);
    let mut next = snapshot();
    next.events.push(event(14, Some("alpha"), None, "new"));
    next.events.push(event(15, Some("alpha"), None, "newer"));
    app.apply_snapshot(next, 200_000);
    assert_eq!(app.event_scroll, 4);
    key(&mut app, KeyCode::End);
    assert_eq!(app.event_scroll, 0, "End follows the log again");
    key(&mut app, KeyCode::Home);
    assert_eq!(app.event_scroll, 14, "Home shows the oldest");
}

/// A console that serves a fixed snapshot, plans every action with the
/// same fixed plan (except on a node named `nowhere`), and records plans and
/// commands.
struct FakeConsole {
    snapshot: Snapshot,
    commands: Mutex<Vec<Command>>,
    plans: Mutex<Vec<OperatorAction>>,
    events: broadcast::Sender<ClusterEvent>,
    /// While set, a confirmed plan no longer holds.
    changed: Mutex<bool>,
}

impl FakeConsole {
    fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot,
            commands: Mutex::new(Vec::new()),
            plans: Mutex::new(Vec::new()),
            events: broadcast::channel(16).0,
            changed: Mutex::new(false),
        }
    }

    fn commands(&self) -> Vec<Command> {
        self.commands.lock().unwrap().clone()
    }

    fn plans(&self) -> Vec<OperatorAction> {
        self.plans.lock().unwrap().clone()
    }
}

/// The plan the fake console gives for everything.
fn fixed_plan() -> Plan {
    let migrate = |instance: &str, from: &str, to: &str| Move {
        instance: instance.into(),
        kind: MoveKind::Migrate,
        from: Some(from.into()),
        to: Some(to.into()),
    };
    Plan {
        action: "drain node \"alpha\"".into(),
        moves: vec![
            migrate("web/0", "alpha", "golf"),
            migrate("cache/0", "alpha", "bravo"),
            Move { instance: "cache/1".into(), kind: MoveKind::Start, from: None, to: Some("golf".into()) },
            Move { instance: "web/1".into(), kind: MoveKind::Restart, from: Some("bravo".into()), to: None },
            Move { instance: "batch/0".into(), kind: MoveKind::Stop, from: Some("alpha".into()), to: None },
        ],
        headroom_before: Headroom { failures_survived: Some(1), capacity_ok: true },
        headroom_after: Headroom { failures_survived: Some(0), capacity_ok: false },
        notes: vec!["cache/2 has nowhere to go: no eligible node without an instance of its task".into()],
        data: None,
    }
}

/// The plan the fake console gives for a what-if: the fixed moves, and
/// the data store's figures.
fn what_if_plan(node: &str) -> Plan {
    Plan {
        action: format!("what if node \"{node}\" failed now"),
        data: Some(Box::new(DataImpact {
            objects: 1_250,
            bytes: 3 * GIB / 2,
            below_quorum: 37,
            unavailable: 4,
            bytes_unavailable: 9 * MIB,
        })),
        ..fixed_plan()
    }
}

impl ConsoleHandle for FakeConsole {
    fn snapshot(&self) -> Snapshot {
        self.snapshot.clone()
    }

    fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.events.subscribe()
    }

    fn command(&self, command: Command) -> Reply<Result<String, CommandError>> {
        let outcome = match &command {
            Command::Demo { node, action } => Ok(format!("{} \"{node}\"", format!("{action:?}").to_lowercase())),
            Command::Act { action: OperatorAction::WhatIf { .. }, .. } => {
                Err(CommandError::Refused("a what-if plan is never executed".into()))
            }
            Command::Act { confirmed: Some(confirmed), .. } if *self.changed.lock().unwrap() => {
                Err(CommandError::PlanChanged(Box::new(Plan {
                    action: format!("{} (changed)", confirmed.action),
                    ..fixed_plan()
                })))
            }
            Command::Act { action, .. } => Ok(format!("{}: started", action_words(action))),
        };
        if outcome.is_ok() {
            self.commands.lock().unwrap().push(command);
        }
        Box::pin(std::future::ready(outcome))
    }

    fn plan(&self, action: &OperatorAction) -> Reply<Result<Plan, String>> {
        self.plans.lock().unwrap().push(action.clone());
        let plan = match action {
            OperatorAction::Drain { node } | OperatorAction::Cordon { node } if node == "nowhere" => {
                Err("no node named \"nowhere\"".into())
            }
            OperatorAction::WhatIf { node } => Ok(what_if_plan(node)),
            _ => Ok(fixed_plan()),
        };
        Box::pin(std::future::ready(plan))
    }
}

/// The answer of a fake console's future, which is always ready.
fn ready<T>(future: Reply<T>) -> T {
    future.now_or_never().expect("the fake console answers at once")
}

/// A key, carried out against `console` as the loop does.
fn press(app: &mut App, console: &FakeConsole, code: KeyCode) -> Flow {
    let action = key(app, code);
    perform(app, console, action).now_or_never().expect("the fake console answers at once")
}

/// Keys typed, carried out against `console`.
fn type_keys(app: &mut App, console: &FakeConsole, text: &str) {
    for c in text.chars() {
        press(app, console, KeyCode::Char(c));
    }
}

/// Every line of the screen, joined.
fn screen(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    let width = usize::from(buffer.area.width);
    buffer
        .content
        .chunks(width)
        .map(|row| row.iter().map(ratatui::buffer::Cell::symbol).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- operator actions ----

#[test]
fn a_confirmed_plan_that_no_longer_holds_comes_back_into_the_dialog() {
    let console = FakeConsole::new(with_tasks(snapshot()));
    let mut app = app_with_tasks();
    press(&mut app, &console, KeyCode::Char('d'));
    assert_eq!(app.dialog.as_ref().unwrap().plan, fixed_plan());
    // The cluster changes between the dialog and the keystroke.
    *console.changed.lock().unwrap() = true;
    assert_eq!(press(&mut app, &console, KeyCode::Enter), Flow::Refresh);
    assert!(console.commands().is_empty(), "nothing was done");
    let dialog = app.dialog.as_ref().expect("the fresh plan is shown for confirmation");
    assert_eq!(dialog.plan.action, "drain node \"alpha\" (changed)");
    assert!(app.message.as_ref().unwrap().text.contains("changed since this plan was made"));
    // Confirming the fresh plan carries it out.
    *console.changed.lock().unwrap() = false;
    press(&mut app, &console, KeyCode::Enter);
    assert!(app.dialog.is_none());
    assert_eq!(console.commands().len(), 1);
}

#[test]
fn d_plans_a_drain_and_enter_confirms_it() {
    let console = FakeConsole::new(with_tasks(snapshot()));
    let mut app = app_with_tasks();
    assert_eq!(app.selected(), Some("alpha"));
    assert_eq!(key(&mut app, KeyCode::Char('d')), Action::Plan(OperatorAction::Drain { node: "alpha".into() }));
    assert!(app.dialog.is_none(), "the key only asks for the plan");
    assert_eq!(press(&mut app, &console, KeyCode::Char('d')), Flow::Stay);
    assert_eq!(console.plans(), [OperatorAction::Drain { node: "alpha".into() }]);
    assert_eq!(app.dialog.as_ref().unwrap().plan, fixed_plan());
    assert!(console.commands().is_empty(), "nothing done before confirmation");
    // Keys other than the dialog's do nothing while it is open.
    for c in ['q', 'j', '4', 'd', ':'] {
        assert_eq!(key(&mut app, KeyCode::Char(c)), Action::None);
    }
    assert!(app.dialog.is_some() && app.view() == View::Overview && app.command_line.is_none());
    assert_eq!(press(&mut app, &console, KeyCode::Enter), Flow::Refresh);
    assert!(app.dialog.is_none());
    assert_eq!(
        console.commands(),
        [Command::Act { action: OperatorAction::Drain { node: "alpha".into() }, confirmed: Some(fixed_plan()) }]
    );
    let message = app.message.as_ref().unwrap();
    assert_eq!((message.text.as_str(), message.kind), ("drain \"alpha\": started", MessageKind::Ok));
    // `y` confirms too.
    press(&mut app, &console, KeyCode::Char('d'));
    press(&mut app, &console, KeyCode::Char('y'));
    assert_eq!(console.commands().len(), 2);
}

#[test]
fn esc_and_n_cancel_a_plan() {
    let console = FakeConsole::new(with_tasks(snapshot()));
    let mut app = app_with_tasks();
    for cancel in [KeyCode::Esc, KeyCode::Char('n')] {
        press(&mut app, &console, KeyCode::Char('d'));
        assert!(app.dialog.is_some());
        assert_eq!(press(&mut app, &console, cancel), Flow::Stay);
        assert!(app.dialog.is_none());
        assert_eq!(app.message.as_ref().unwrap().text, "cancelled: drain \"alpha\"");
    }
    assert_eq!(console.plans().len(), 2);
    assert!(console.commands().is_empty());
}

#[test]
fn c_cordons_or_uncordons_by_the_nodes_state() {
    let mut app = app_with_tasks();
    assert_eq!(key(&mut app, KeyCode::Char('c')), Action::Plan(OperatorAction::Cordon { node: "alpha".into() }));
    key(&mut app, KeyCode::Char('/'));
    chars(&mut app, "hotel");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.selected(), Some("hotel"));
    assert_eq!(key(&mut app, KeyCode::Char('c')), Action::Plan(OperatorAction::Uncordon { node: "hotel".into() }));
}

#[test]
fn w_shows_a_read_only_plan_that_is_never_carried_out() {
    let console = FakeConsole::new(with_tasks(snapshot()));
    let mut app = app_with_tasks();
    key(&mut app, KeyCode::Down);
    press(&mut app, &console, KeyCode::Char('w'));
    assert_eq!(console.plans(), [OperatorAction::WhatIf { node: "bravo".into() }]);
    assert!(app.dialog.as_ref().unwrap().read_only());
    assert_eq!(press(&mut app, &console, KeyCode::Enter), Flow::Stay, "Enter only closes it");
    assert!(app.dialog.is_none() && app.message.is_none());
    press(&mut app, &console, KeyCode::Char('w'));
    press(&mut app, &console, KeyCode::Esc);
    assert!(app.dialog.is_none() && app.message.is_none(), "nothing to cancel");
    assert!(console.commands().is_empty());
}

#[test]
fn plan_errors_go_to_the_status_line() {
    let console = FakeConsole::new(with_tasks(snapshot()));
    let mut app = app_with_tasks();
    press(&mut app, &console, KeyCode::Char(':'));
    type_keys(&mut app, &console, "drain nowhere");
    assert_eq!(press(&mut app, &console, KeyCode::Enter), Flow::Stay);
    assert!(app.dialog.is_none());
    let message = app.message.as_ref().unwrap();
    assert_eq!(
        (message.text.as_str(), message.kind),
        ("cannot drain \"nowhere\": no node named \"nowhere\"", MessageKind::Error)
    );
    // A console that cannot plan at all says so.
    struct Planless;
    impl ConsoleHandle for Planless {
        fn snapshot(&self) -> Snapshot {
            Snapshot::default()
        }
        fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
            broadcast::channel(1).1
        }
        fn command(&self, _: Command) -> Reply<Result<String, CommandError>> {
            Box::pin(std::future::ready(Err(CommandError::Refused("no".into()))))
        }
        fn plan(&self, _: &OperatorAction) -> Reply<Result<Plan, String>> {
            Box::pin(std::future::ready(Err("this console cannot plan actions".into())))
        }
    }
    perform(&mut app, &Planless, Action::Plan(OperatorAction::Resume)).now_or_never().unwrap();
    assert!(app.message.as_ref().unwrap().text.contains("cannot plan"));
}

#[test]
fn r_in_the_tasks_view_restarts_the_selected_task_or_instance() {
    let mut app = app_with_tasks();
    key(&mut app, KeyCode::Char('4'));
    assert_eq!(key(&mut app, KeyCode::Char('r')), Action::Plan(OperatorAction::Restart { target: "web".into() }));
    key(&mut app, KeyCode::Down);
    assert_eq!(key(&mut app, KeyCode::Char('r')), Action::Plan(OperatorAction::Restart { target: "web/0".into() }));
    key(&mut app, KeyCode::End);
    assert_eq!(key(&mut app, KeyCode::Char('r')), Action::Plan(OperatorAction::Restart { target: "cache/1".into() }));
}

#[test]
fn r_in_node_views_picks_one_of_the_nodes_instances() {
    let console = FakeConsole::new(with_tasks(snapshot()));
    let mut app = app_with_tasks();
    // alpha runs two: pick one.
    assert_eq!(key(&mut app, KeyCode::Char('r')), Action::None);
    let picker = app.picker.as_ref().unwrap();
    assert_eq!(picker.step, PickStep::Restart);
    let values: Vec<&str> = picker.items.iter().map(|item| item.value.as_str()).collect();
    assert_eq!(values, ["web/0", "cache/0"]);
    key(&mut app, KeyCode::Down);
    assert_eq!(key(&mut app, KeyCode::Enter), Action::Plan(OperatorAction::Restart { target: "cache/0".into() }));
    assert!(app.picker.is_none());
    // Esc leaves the picker without a plan.
    key(&mut app, KeyCode::Char('r'));
    assert_eq!(press(&mut app, &console, KeyCode::Esc), Flow::Stay);
    assert!(app.picker.is_none() && console.plans().is_empty());
    // bravo runs one: no question.
    key(&mut app, KeyCode::Down);
    assert_eq!(key(&mut app, KeyCode::Char('r')), Action::Plan(OperatorAction::Restart { target: "web/1".into() }));
    // charlie runs none.
    key(&mut app, KeyCode::Down);
    assert_eq!(key(&mut app, KeyCode::Char('r')), Action::None);
    assert!(app.picker.is_none());
    assert!(app.message.as_ref().unwrap().text.contains("runs no instances"));
}

#[test]
fn m_picks_an_instance_then_an_eligible_node() {
    let console = FakeConsole::new(with_tasks(snapshot()));
    let mut app = app_with_tasks();
    key(&mut app, KeyCode::Char('m'));
    assert_eq!(app.picker.as_ref().unwrap().step, PickStep::MigrateInstance);
    assert_eq!(key(&mut app, KeyCode::Enter), Action::None, "web/0 picked: now its target");
    let picker = app.picker.as_ref().unwrap();
    assert_eq!(picker.step, PickStep::MigrateTarget { instance: "web/0".into() });
    let targets: Vec<&str> = picker.items.iter().map(|item| item.value.as_str()).collect();
    assert_eq!(targets, ["golf"], "not alpha (runs it), bravo (runs web/1), hotel (cordoned) nor the unwell");
    press(&mut app, &console, KeyCode::Enter);
    assert_eq!(console.plans(), [OperatorAction::Migrate { instance: "web/0".into(), to: "golf".into() }]);
    press(&mut app, &console, KeyCode::Enter);
    assert_eq!(
        console.commands(),
        [Command::Act {
            action: OperatorAction::Migrate { instance: "web/0".into(), to: "golf".into() },
            confirmed: Some(fixed_plan())
        }]
    );

    // In the tasks view, on an instance: straight to the targets, least loaded first.
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::End);
    key(&mut app, KeyCode::Char('m'));
    let targets: Vec<&str> = app.picker.as_ref().unwrap().items.iter().map(|item| item.value.as_str()).collect();
    assert_eq!(targets, ["golf", "bravo"]);
    // Typing narrows (j and k type rather than move here).
    chars(&mut app, "bxa");
    assert_eq!(app.picker.as_ref().unwrap().current(), None);
    key(&mut app, KeyCode::Backspace);
    key(&mut app, KeyCode::Backspace);
    assert_eq!(app.picker.as_ref().unwrap().current().unwrap().value, "bravo");
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        Action::Plan(OperatorAction::Migrate { instance: "cache/1".into(), to: "bravo".into() })
    );
    // On a task's row: its instances first.
    key(&mut app, KeyCode::Home);
    key(&mut app, KeyCode::Char('m'));
    let picker = app.picker.as_ref().unwrap();
    assert_eq!(picker.step, PickStep::MigrateInstance);
    assert_eq!(picker.items.len(), 2);
}

#[test]
fn a_long_picker_scrolls_with_its_cursor() {
    let mut app = app();
    let mut crowded = with_tasks(snapshot());
    for index in 0..60 {
        crowded.status.nodes.push(node(&format!("spare-{index:02}"), NodeState::Alive));
    }
    app.apply_snapshot(crowded, 200_000);
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Char('m'));
    assert_eq!(app.picker.as_ref().unwrap().items.len(), 61, "golf and the spares");
    draw(&mut app, 80, 24);
    let rows = usize::from(app.hits.picker.unwrap().rows.height);
    for _ in 0..rows {
        key(&mut app, KeyCode::Down);
    }
    let text = screen(&draw(&mut app, 80, 24));
    let offset = app.hits.picker.unwrap().offset;
    assert_eq!(offset, 1, "one past the bottom scrolls by one");
    assert!(text.contains(&format!("▶ spare-{:02}", rows - 1)), "{text}");
    key(&mut app, KeyCode::Up);
    draw(&mut app, 80, 24);
    assert_eq!(app.hits.picker.unwrap().offset, 1, "moving back inside the window does not scroll");
    key(&mut app, KeyCode::End);
    let text = screen(&draw(&mut app, 80, 24));
    assert!(text.contains("▶ spare-59"), "{text}");
    chars(&mut app, "spare-0");
    let text = screen(&draw(&mut app, 80, 24));
    assert!(text.contains("10 of 61") && text.contains("▶ spare-00"), "typing narrows and starts over: {text}");
}

#[test]
fn m_says_when_no_node_can_take_the_instance() {
    let mut app = app();
    let mut cramped = with_tasks(snapshot());
    cramped.status.nodes.retain(|node| node.name != "golf");
    app.apply_snapshot(cramped, 200_000);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.selected(), Some("bravo"));
    assert_eq!(key(&mut app, KeyCode::Char('m')), Action::None);
    assert!(app.picker.is_none());
    assert!(app.message.as_ref().unwrap().text.starts_with("no node can take web/1"));
}

#[test]
fn node_actions_in_the_tasks_view_act_on_the_instances_node() {
    let mut app = app_with_tasks();
    key(&mut app, KeyCode::Char('4'));
    assert_eq!(key(&mut app, KeyCode::Char('d')), Action::None, "a task has no one node");
    assert!(app.message.as_ref().unwrap().text.contains("select an instance"));
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.selected_task_item().unwrap().1.unwrap().id, "web/1");
    assert_eq!(key(&mut app, KeyCode::Char('d')), Action::Plan(OperatorAction::Drain { node: "bravo".into() }));
    assert_eq!(key(&mut app, KeyCode::Char('w')), Action::Plan(OperatorAction::WhatIf { node: "bravo".into() }));
    assert_eq!(key(&mut app, KeyCode::Char('c')), Action::Plan(OperatorAction::Cordon { node: "bravo".into() }));
    key(&mut app, KeyCode::End);
    assert_eq!(key(&mut app, KeyCode::Char('d')), Action::None);
    assert!(app.message.as_ref().unwrap().text.contains("cache/1 is not placed"));
    // The event view has no selected node on screen.
    key(&mut app, KeyCode::Char('3'));
    assert_eq!(key(&mut app, KeyCode::Char('d')), Action::None);
    assert_eq!(key(&mut app, KeyCode::Char('r')), Action::None);
}

#[test]
fn the_tasks_view_selection_moves_follows_snapshots_and_opens_the_node() {
    let mut app = app_with_tasks();
    key(&mut app, KeyCode::Char('4'));
    assert_eq!(app.task_items.len(), 6, "two tasks and their four instances");
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.selected_task_item().unwrap().0.name, "cache");
    // A new task sorts before: the selection stays on cache.
    let mut next = with_tasks(snapshot());
    next.status
        .tasks
        .insert(0, ringwatch_shared::status::TaskStatus { name: "api".into(), replicas: 1, instances: Vec::new() });
    app.apply_snapshot(next, 201_000);
    assert_eq!(app.task_cursor, 4);
    assert_eq!(app.selected_task_item().unwrap().0.name, "cache");
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Enter);
    assert_eq!((app.view(), app.selected()), (View::Detail, Some("alpha")), "cache/0's node");
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.view(), View::Tasks);
    // The filter narrows tasks by name, instance or node.
    key(&mut app, KeyCode::Char('/'));
    chars(&mut app, "bravo");
    assert_eq!(app.task_items.len(), 3, "web runs on bravo");
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.task_items.len(), 7);
    // A click selects a row.
    draw(&mut app, 80, 24);
    let table = app.hits.tasks.unwrap();
    click(&mut app, table.rows.x + 3, table.rows.y + 2);
    assert_eq!(app.selected_task_item().unwrap().0.name, "web");
    assert_eq!(app.task_cursor, 2);
}

#[test]
fn the_command_line_plans_actions_and_quits() {
    let console = FakeConsole::new(with_tasks(snapshot()));
    let mut app = app_with_tasks();
    press(&mut app, &console, KeyCode::Char(':'));
    assert_eq!(app.command_line.as_deref(), Some(""));
    type_keys(&mut app, &console, "cordon golf");
    assert_eq!(app.view(), View::Overview, "keys type, not act");
    let terminal = draw(&mut app, 80, 24);
    assert!(row_with(terminal.backend().buffer(), ":cordon golf█").is_some());
    assert!(row_with(terminal.backend().buffer(), "no new placements on NODE").is_some(), "a usage hint");
    press(&mut app, &console, KeyCode::Enter);
    assert!(app.command_line.is_none());
    assert_eq!(console.plans(), [OperatorAction::Cordon { node: "golf".into() }]);
    press(&mut app, &console, KeyCode::Enter);
    assert_eq!(
        console.commands(),
        [Command::Act { action: OperatorAction::Cordon { node: "golf".into() }, confirmed: Some(fixed_plan()) }]
    );

    for (line, action) in [
        ("resume", OperatorAction::Resume),
        ("uncordon hotel", OperatorAction::Uncordon { node: "hotel".into() }),
        ("drain bravo", OperatorAction::Drain { node: "bravo".into() }),
        ("restart web", OperatorAction::Restart { target: "web".into() }),
        ("migrate cache/1 golf", OperatorAction::Migrate { instance: "cache/1".into(), to: "golf".into() }),
    ] {
        key(&mut app, KeyCode::Char(':'));
        chars(&mut app, line);
        assert_eq!(key(&mut app, KeyCode::Enter), Action::Plan(action), ":{line}");
    }
    // Mistakes go to the status line; Esc and Backspace on empty leave.
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "migrate web golf");
    assert_eq!(key(&mut app, KeyCode::Enter), Action::None);
    let message = app.message.as_ref().unwrap();
    assert_eq!((message.text.as_str(), message.kind), ("usage: :migrate TASK/INDEX NODE", MessageKind::Error));
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "x");
    key(&mut app, KeyCode::Esc);
    assert!(app.command_line.is_none() && app.selected() == Some("alpha"));
    key(&mut app, KeyCode::Char(':'));
    key(&mut app, KeyCode::Backspace);
    assert!(app.command_line.is_none());
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "q");
    assert_eq!(press(&mut app, &console, KeyCode::Enter), Flow::Quit);
}

#[test]
fn commands_parse_strictly() {
    let plan = |action| Ok(Parsed::Plan(action));
    assert_eq!(parse_command("q"), Ok(Parsed::Quit));
    assert_eq!(parse_command("  resume "), plan(OperatorAction::Resume));
    assert_eq!(parse_command("cordon a"), plan(OperatorAction::Cordon { node: "a".into() }));
    assert_eq!(parse_command("uncordon a"), plan(OperatorAction::Uncordon { node: "a".into() }));
    assert_eq!(parse_command("drain a"), plan(OperatorAction::Drain { node: "a".into() }));
    assert_eq!(parse_command("whatif a"), plan(OperatorAction::WhatIf { node: "a".into() }));
    assert_eq!(parse_command("restart web/12"), plan(OperatorAction::Restart { target: "web/12".into() }));
    assert_eq!(
        parse_command("migrate web/0 b"),
        plan(OperatorAction::Migrate { instance: "web/0".into(), to: "b".into() })
    );
    assert_eq!(parse_command("drain"), Err("usage: :drain NODE".into()));
    assert_eq!(parse_command("resume now"), Err("usage: :resume".into()));
    assert_eq!(parse_command("restart web/x"), Err("usage: :restart TASK[/INDEX]".into()));
    assert_eq!(parse_command("migrate /0 b"), Err("usage: :migrate TASK/INDEX NODE".into()));
    assert!(parse_command("reboot a").unwrap_err().starts_with("unknown command \":reboot\" (try :resume"));
    assert!(parse_command("").is_err());
}

#[test]
fn a_long_plan_scrolls_between_its_fixed_lines() {
    let mut app = app_with_tasks();
    let mut plan = fixed_plan();
    plan.moves = (0..40)
        .map(|index| Move {
            instance: format!("web/{index}"),
            kind: MoveKind::Migrate,
            from: Some("alpha".into()),
            to: Some("golf".into()),
        })
        .collect();
    app.show_plan(OperatorAction::Drain { node: "alpha".into() }, Ok(plan));
    let terminal = draw(&mut app, 80, 24);
    let text = screen(&terminal);
    assert!(text.contains("web/0 ") && !text.contains("web/39"), "{text}");
    assert!(text.contains("headroom: survives 1 node failure"), "{text}");
    assert!(text.contains("→ survives 0 node failures, capacity short"), "{text}");
    let (shown, total) = app.hits.dialog_lines.unwrap();
    assert!(shown < total && text.contains(&format!("lines 1–{shown} of {total} ↓")), "{text}");
    key(&mut app, KeyCode::End);
    for _ in 0..100 {
        key(&mut app, KeyCode::Down);
    }
    assert_eq!(app.dialog.as_ref().unwrap().scroll, total - shown, "scrolling stops at the end");
    let text = screen(&draw(&mut app, 80, 24));
    assert!(text.contains("web/39") && text.contains("note: cache/2 has nowhere to go"), "{text}");
    assert!(text.contains("Enter/y confirm"), "{text}");
}

#[test]
fn the_help_scrolls_when_it_does_not_fit() {
    let mut app = app();
    key(&mut app, KeyCode::Char('?'));
    let text = screen(&draw(&mut app, 80, 24));
    assert!(text.contains("restart the selected task") && !text.contains("Ctrl-C"), "{text}");
    key(&mut app, KeyCode::End);
    let text = screen(&draw(&mut app, 80, 24));
    assert!(text.contains("Ctrl-C") && text.contains(":migrate TASK/INDEX NODE"), "{text}");
    key(&mut app, KeyCode::Home);
    assert_eq!(app.help_scroll, 0);
    let text = screen(&draw(&mut app, 160, 48));
    let (shown, total) = app.hits.help_lines.unwrap();
    assert!(text.contains("Ctrl-C") && shown == total, "all of it fits: {text}");
}

#[test]
fn the_paused_banner_shows_on_every_view() {
    let mut app = app_with_tasks();
    app.apply_snapshot(paused(with_tasks(snapshot())), 201_000);
    for view in ['1', '2', '3', '4'] {
        key(&mut app, KeyCode::Char(view));
        for (width, height) in [(80, 24), (160, 48)] {
            let terminal = draw(&mut app, width, height);
            let (y, cells) = row_with(terminal.backend().buffer(), "automatic failover PAUSED — :resume to resume")
                .unwrap_or_else(|| panic!("view {view} at {width}×{height}"));
            assert_eq!(y, 2, "right under the cluster bar");
            assert!(cells.iter().all(|cell| cell.bg == Color::Red), "the whole line is red");
        }
    }
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Enter);
    assert!(row_with(draw(&mut app, 80, 24).backend().buffer(), "failover PAUSED").is_some(), "and the detail");
    app.apply_snapshot(with_tasks(snapshot()), 202_000);
    assert!(row_with(draw(&mut app, 80, 24).backend().buffer(), "failover PAUSED").is_none(), "gone once resumed");
}

#[test]
fn the_cluster_bar_shows_headroom_in_words_and_cordons() {
    let mut app = app_with_tasks();
    let text = screen(&draw(&mut app, 160, 48));
    assert!(text.contains("instances 4") && text.contains("headroom: survives 0 node failures"), "{text}");
    assert!(text.contains("2 cordoned ⊘"), "{text}");
    let text = screen(&draw(&mut app, 80, 24));
    assert!(text.contains("inst 4") && text.contains("headroom 0"), "{text}");
    let terminal = draw(&mut app, 160, 48);
    let (_, row) = row_with(terminal.backend().buffer(), "headroom:").unwrap();
    assert!(row.iter().any(|cell| cell.fg == Color::Red), "no spare failure is red");
    let mut empty = App::new("t");
    empty.apply_snapshot(Snapshot::default(), 0);
    assert!(screen(&draw(&mut empty, 160, 48)).contains("headroom: no tasks"));
}

#[test]
fn the_selected_nodes_instances_are_highlighted_on_the_ring() {
    let mut app = app_with_tasks();
    let highlighted = |app: &mut App| {
        let terminal = draw(app, 160, 48);
        let buffer = terminal.backend().buffer();
        let ring = app.hits.ring.unwrap();
        // Inside the band (away from the label in the middle): only the
        // instance ticks use the highlight colour there.
        let band = ring.bounds.radius() - 1.0;
        (ring.area.y..ring.area.bottom())
            .flat_map(|y| (ring.area.x..ring.area.right()).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let (cx, cy) = ring.bounds.cell_center(ring.area, x, y).unwrap();
                let distance = cx.hypot(cy);
                distance < band - 1.0 && distance > band * 0.6 && buffer[(x, y)].fg == Color::White
            })
            .count()
    };
    assert_eq!(app.selected(), Some("alpha"));
    assert_eq!(app.selected_dots.len(), 2);
    assert!(highlighted(&mut app) > 0, "alpha's two instances stand out");
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.selected(), Some("charlie"));
    assert!(app.selected_dots.is_empty());
    assert_eq!(highlighted(&mut app), 0, "charlie runs nothing");
}

#[test]
fn every_popup_survives_every_size() {
    let console = FakeConsole::new(with_tasks(snapshot()));
    let mut app = app_with_tasks();
    app.apply_snapshot(paused(with_tasks(snapshot())), 201_000);
    let sizes = [(0, 0), (10, 3), (79, 23), (80, 24), (81, 25), (120, 30), (300, 100)];
    press(&mut app, &console, KeyCode::Char('d'));
    for (width, height) in sizes {
        draw(&mut app, width, height);
    }
    press(&mut app, &console, KeyCode::Esc);
    key(&mut app, KeyCode::Char('m'));
    for (width, height) in sizes {
        draw(&mut app, width, height);
    }
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "migrate cache/1 a-node-name-that-is-much-longer-than-the-screen-is-wide-at-eighty-columns");
    for (width, height) in sizes {
        draw(&mut app, width, height);
    }
}

#[test]
fn a_standby_says_so_in_the_header_and_a_broken_store_in_a_banner() {
    use ringwatch_shared::status::{ConsoleRole, ConsoleStatus};
    let mut app = app_with_tasks();
    let mut standby = with_tasks(snapshot());
    standby.status.console = ConsoleStatus {
        name: "c2".into(),
        address: "10.0.0.2:7443".into(),
        role: ConsoleRole::Standby,
        term: 12,
        leader: Some("10.0.0.1:7443".into()),
        store_problem: None,
        ca_expires_unix: 0,
    };
    app.apply_snapshot(standby.clone(), 201_000);
    let header = screen(&draw(&mut app, 120, 30));
    assert!(header.lines().next().unwrap().contains("standby · leader 10.0.0.1:7443"), "{header}");

    standby.status.console.store_problem = Some("etcd at \"127.0.0.1:2379\" cannot be reached".into());
    app.apply_snapshot(standby, 202_000);
    let banner = screen(&draw(&mut app, 120, 30));
    assert!(banner.contains("the state store cannot be written; no decision takes effect"), "{banner}");
}

// ---- the data store on the ring and in what-if ----

/// The fixture holding objects: bravo far more than an even share, alpha
/// about even, charlie and foxtrot little, delta (failed) a few stale
/// figures, echo (left) nothing.
fn with_data(mut snapshot: Snapshot) -> Snapshot {
    let held: [(&str, u64, u64); 5] = [
        ("alpha", 300, 60 * MIB),
        ("bravo", 900, 180 * MIB),
        ("charlie", 100, 20 * MIB),
        ("delta", 150, 30 * MIB),
        ("foxtrot-with-a-long-name", 40, 8 * MIB),
    ];
    for node in &mut snapshot.status.nodes {
        if let Some(&(_, objects, bytes)) = held.iter().find(|(name, ..)| *name == node.name) {
            node.data_objects = objects;
            node.data_bytes = bytes;
        }
    }
    snapshot.status.data = ringwatch_shared::status::DataStatus {
        objects: 500,
        bytes: 100 * MIB,
        replicas: 3,
        under_replicated: 12,
        unavailable: 0,
        repair_bytes_per_sec: 0,
    };
    snapshot
}

/// [`app`] once the store holds objects, the ring coloured by data share.
fn app_with_data() -> App {
    let mut app = app();
    app.apply_snapshot(with_data(snapshot()), 200_000);
    assert_eq!(key(&mut app, KeyCode::Char('a')), Action::None);
    assert_eq!(app.ring_colors, RingColors::Data);
    app
}

/// The colours of the ring canvas's dots, and the legend's text.
fn ring_colours_and_legend(app: &mut App, width: u16, height: u16) -> (std::collections::HashSet<Color>, String) {
    let terminal = draw(app, width, height);
    let buffer = terminal.backend().buffer();
    let ring = app.hits.ring.unwrap().area;
    let mut seen = std::collections::HashSet::new();
    for y in ring.y..ring.bottom() {
        for x in ring.x..ring.right() {
            // Braille dots only: the label in the middle is text.
            let braille =
                buffer[(x, y)].symbol().chars().next().is_some_and(|c| ('\u{2801}'..='\u{28ff}').contains(&c));
            if braille {
                seen.insert(buffer[(x, y)].fg);
            }
        }
    }
    // The legend: the rows between the canvas and the panel's border.
    let width = usize::from(buffer.area.width);
    let legend: Vec<String> = (ring.bottom()..buffer.area.height)
        .map(|y| {
            let start = usize::from(y) * width + usize::from(ring.x);
            buffer.content[start..start + usize::from(ring.width)].iter().map(|cell| cell.symbol()).collect()
        })
        .take_while(|line: &String| !line.starts_with('─'))
        .collect();
    (seen, legend.join("\n"))
}

#[test]
fn ring_by_data_share_80x24() {
    let mut app = app_with_data();
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn ring_by_data_share_160x48() {
    let mut app = app_with_data();
    key(&mut app, KeyCode::Down);
    insta::assert_snapshot!(draw(&mut app, 160, 48).backend());
}

#[test]
fn a_switches_the_ring_between_state_and_data_share_colours() {
    let mut app = app();
    app.apply_snapshot(with_data(snapshot()), 200_000);
    let (by_state, legend) = ring_colours_and_legend(&mut app, 160, 48);
    assert!(by_state.contains(&Color::Magenta), "foxtrot is degraded: {by_state:?}");
    assert!(legend.is_empty(), "no legend by state: {legend}");
    assert!(screen(&draw(&mut app, 160, 48)).contains("points"), "the title counts points by state");

    key(&mut app, KeyCode::Char('a'));
    assert!(app.message.as_ref().unwrap().text.contains("data share"));
    let (by_data, legend) = ring_colours_and_legend(&mut app, 160, 48);
    // 6 nodes, 5 up or holding data: an even share is 20 %. bravo holds
    // 180 of 298 MiB (60 %, 3× even), alpha 20 % (even), charlie 6.7 %
    // (⅓), echo nothing.
    assert!(by_data.contains(&Color::Red), "bravo holds far more than even: {by_data:?}");
    assert!(by_data.contains(&Color::Green), "alpha holds about even: {by_data:?}");
    assert!(by_data.contains(&Color::Blue), "charlie holds little: {by_data:?}");
    assert!(by_data.contains(&Color::DarkGray), "echo holds nothing: {by_data:?}");
    assert!(!by_data.contains(&Color::Magenta), "no state colours: {by_data:?}");
    assert!(legend.contains("none") && legend.contains("even"), "the scale: {legend}");
    assert!(legend.contains("bravo 60.4%") && legend.contains("alpha 20.1%"), "the heaviest first: {legend}");
    assert!(legend.find("bravo").unwrap() < legend.find("alpha").unwrap(), "{legend}");
    assert!(screen(&draw(&mut app, 160, 48)).contains("by data share"), "the title says so");

    key(&mut app, KeyCode::Char('a'));
    assert_eq!(app.ring_colors, RingColors::State);
    let (again, _) = ring_colours_and_legend(&mut app, 160, 48);
    assert_eq!(again, by_state, "back to state colours");
}

#[test]
fn the_selected_nodes_data_share_is_in_the_middle_of_the_ring() {
    let mut app = app_with_data();
    key(&mut app, KeyCode::Down);
    assert_eq!(app.selected(), Some("bravo"));
    let text = screen(&draw(&mut app, 160, 48));
    assert!(text.contains("data 60.4%"), "{text}");
}

#[test]
fn a_ring_by_data_share_without_objects_says_so() {
    let mut app = app();
    key(&mut app, KeyCode::Char('a'));
    let (mut seen, legend) = ring_colours_and_legend(&mut app, 160, 48);
    assert!(legend.contains("no objects stored"), "{legend}");
    // White traces the selected node's arcs outside the ring.
    seen.remove(&Color::White);
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [Color::DarkGray], "every arc: nothing held");
}

#[test]
fn the_ring_by_data_share_survives_every_size() {
    let mut app = app_with_data();
    for (width, height) in [(0, 0), (1, 1), (10, 3), (79, 23), (80, 24), (81, 25), (100, 26), (120, 30), (300, 100)] {
        draw(&mut app, width, height);
    }
    // At the smallest supported size the legend still fits its scale and
    // the heaviest node, and the ring keeps its rows.
    let (_, legend) = ring_colours_and_legend(&mut app, 80, 24);
    assert!(legend.contains("≥2") && legend.contains("bravo"), "{legend}");
    assert!(app.hits.ring.unwrap().area.height >= 6);
}

#[test]
fn what_if_names_the_objects_a_failure_would_leave_below_quorum_or_unavailable() {
    let console = FakeConsole::new(with_data(with_tasks(snapshot())));
    let mut app = app_with_tasks();
    press(&mut app, &console, KeyCode::Char('w'));
    assert_eq!(app.dialog.as_ref().unwrap().plan.data.as_ref().unwrap().below_quorum, 37);
    let terminal = draw(&mut app, 80, 24);
    let text = screen(&terminal);
    for line in [
        "data: the node holds 1250 objects (1.5 GiB)",
        "37 objects would drop below quorum",
        "4 objects would become unavailable (9.0 MiB)",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    let buffer = terminal.backend().buffer();
    let (_, row) = row_with(buffer, "would become unavailable").unwrap();
    assert!(row.iter().any(|cell| cell.symbol() == "4" && cell.fg == Color::Red), "unavailable is red");
    let (_, row) = row_with(buffer, "below quorum").unwrap();
    assert!(row.iter().any(|cell| cell.symbol() == "3" && cell.fg == Color::Yellow), "below quorum is yellow");
}

#[test]
fn what_if_with_data_80x24() {
    let console = FakeConsole::new(with_data(with_tasks(snapshot())));
    let mut app = app_with_tasks();
    press(&mut app, &console, KeyCode::Char('w'));
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

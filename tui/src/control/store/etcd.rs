//! The records of a highly available group of consoles, kept in etcd
//! (cargo feature `etcd`; README.md, "Running several consoles";
//! ARCHITECTURE.md, "The change log").
//!
//! Consoles sharing a store elect one leader through an etcd lease
//! ([`Etcd::campaign`]); the others stand by, follow the leader
//! ([`Etcd::watch_leader`]) and keep a read-only copy of the records current
//! ([`Etcd::load_with_revision`], [`Etcd::watch_records`]). Every write the
//! leader makes ([`EtcdStore`], the [`StateStore`](super::StateStore) its
//! writer thread commits to) is an etcd transaction conditioned on its
//! leadership: a console whose lease lapsed — paused, partitioned from etcd —
//! cannot change anything when it wakes. A leader that cannot renew its lease
//! steps down before the lease can expire ([`Etcd::hold`]).
//!
//! Only state changes reach etcd (and the lease renewals that keep a leader
//! leading): heartbeats and metrics never do.
//!
//! # Keys
//! Everything lives under one prefix (`--etcd-prefix`, default
//! [`DEFAULT_PREFIX`]):
//! - `leader/<lease id, hex>`: a campaigner's election key, attached to its
//!   lease; its value is the console's [`LeaderInfo`] (JSON). The oldest
//!   (lowest create revision) leads; that revision is its term.
//! - `records/<key>`: each durable record under its
//!   [`Change::key`](crate::control::records::Change::key), as JSON: the
//!   current state of the change log. etcd's own revision history is the log
//!   a standby follows.
//! - `events/<sequence number, 20 digits>`: the event log, as JSON, the
//!   newest [`EVENT_LOG_LIMIT`](super::EVENT_LOG_LIMIT) only.
//! - `staged/…`: a batch too large for one etcd transaction while it is
//!   written ([`EtcdStore`] explains why and how).
//!
//! # Layout
//! - [`election`]: campaigning, holding and resigning the leadership.
//! - [`state`]: the store: conditioned commits, loads, following the records.

mod election;
mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, KvClient, TlsOptions, WatchClient};

pub use self::election::{Leader, LeaderInfo, Leadership, LostLeadership};
pub use self::state::{EtcdStore, StoreWatch, Watched};
use super::{LeaseTallies, StoreError};

/// Where a group's records live in etcd unless `--etcd-prefix` says
/// otherwise.
pub const DEFAULT_PREFIX: &str = "/ringwatch/";

/// The leader's lease unless configured otherwise: a leader that stops
/// renewing it (paused, partitioned) is replaced within about this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(2);

/// How a store address starts: `etcd://HOST:PORT[,HOST:PORT…]`.
pub const STORE_SCHEME: &str = "etcd://";

/// How long connecting to etcd (and the first request) may take before the
/// console says it cannot reach it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one request may take. A commit that times out may still have
/// been applied; the writer retries the same batch, which is harmless
/// (records are whole values, events are keyed by sequence number).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 pings on the connection while a stream is open: a dead
/// connection (etcd gone, a partition) fails the streams that use it (a
/// standby's watches) instead of leaving them waiting. etcd sends a client
/// that pings more often than every 5 s (`--grpc-keepalive-min-time`), or
/// pings without a stream open, away ("too many pings"), so: every 10 s,
/// and only while a stream is open. The leader's lease does not depend on
/// these: its keeper has its own deadline.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Responses may be large: a page of records (each at most a task spec), a
/// watch response catching up on many revisions. tonic's default (4 MiB)
/// would fail those.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How a console reaches etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client addresses, `HOST:PORT`.
    pub endpoints: Vec<String>,
    /// Every key of the group starts with it; ends with `/`.
    pub prefix: String,
    /// TLS to etcd; plain HTTP/2 when `None`.
    pub tls: Option<EtcdTls>,
    /// The leader's lease. etcd counts leases in whole seconds (a fraction
    /// is rounded up) and may grant more than asked (its minimum is about
    /// 1.5 times its election timeout: 2 s by default).
    pub lease_ttl: Duration,
}

/// TLS to etcd, as `etcdctl --cacert/--cert/--key` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM certificates of the authority that signed etcd's server
    /// certificate (`--etcd-ca`).
    pub ca: PathBuf,
    /// PEM client certificate, when etcd checks clients
    /// (`--client-cert-auth`; `--etcd-cert`).
    pub cert: Option<PathBuf>,
    /// Its PEM private key (`--etcd-key`).
    pub key: Option<PathBuf>,
}

/// Options that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EtcdOptionsError {
    /// The store address is not `etcd://HOST:PORT[,HOST:PORT…]`.
    #[error("\"{url}\" is not an etcd store address: {reason}; write it as etcd://HOST:PORT[,HOST:PORT…]")]
    Url {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The prefix is empty.
    #[error("the etcd prefix is empty; give --etcd-prefix a path such as \"{DEFAULT_PREFIX}\"")]
    EmptyPrefix,
    /// The lease is shorter than etcd counts.
    #[error("the etcd lease TTL {0:?} is too short: etcd counts leases in whole seconds; give at least 1s")]
    LeaseTtl(Duration),
    /// A client certificate without its key, or the other way round.
    #[error("--etcd-cert and --etcd-key go together: give both (a client certificate and its key) or neither")]
    HalfIdentity,
}

impl EtcdOptions {
    /// Options for the store at `url` (`etcd://HOST:PORT[,HOST:PORT…]`)
    /// with the default prefix and lease, without TLS.
    ///
    /// # Errors
    /// [`EtcdOptionsError::Url`] saying what is wrong with the address.
    pub fn from_url(url: &str) -> Result<Self, EtcdOptionsError> {
        Ok(Self {
            endpoints: parse_url(url)?,
            prefix: DEFAULT_PREFIX.to_string(),
            tls: None,
            lease_ttl: DEFAULT_LEASE_TTL,
        })
    }

    /// Checks the options and normalises the prefix (a trailing `/` is
    /// added, so that `/a` and `/ab` never share keys).
    ///
    /// # Errors
    /// [`EtcdOptionsError`] for an empty endpoint list or prefix, a lease
    /// under a second, or half a client identity.
    pub fn validated(mut self) -> Result<Self, EtcdOptionsError> {
        if self.endpoints.is_empty() {
            return Err(EtcdOptionsError::Url { url: String::new(), reason: "it names no endpoint".into() });
        }
        if self.prefix.is_empty() {
            return Err(EtcdOptionsError::EmptyPrefix);
        }
        if !self.prefix.ends_with('/') {
            self.prefix.push('/');
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(EtcdOptionsError::LeaseTtl(self.lease_ttl));
        }
        if let Some(tls) = &self.tls
            && tls.cert.is_some() != tls.key.is_some()
        {
            return Err(EtcdOptionsError::HalfIdentity);
        }
        Ok(self)
    }

    /// The lease to ask etcd for, in whole seconds (rounded up).
    fn lease_seconds(&self) -> i64 {
        let whole = self.lease_ttl.as_secs() + u64::from(self.lease_ttl.subsec_nanos() > 0);
        i64::try_from(whole.max(1)).unwrap_or(i64::MAX)
    }

    /// The endpoints and prefix, for messages.
    fn describe(&self) -> String {
        format!("\"{}\" (prefix \"{}\")", self.endpoints.join(","), self.prefix)
    }
}

/// Reads `etcd://HOST:PORT[,HOST:PORT…]` into `HOST:PORT` endpoints.
fn parse_url(url: &str) -> Result<Vec<String>, EtcdOptionsError> {
    let bad = |reason: &str| EtcdOptionsError::Url { url: url.to_string(), reason: reason.to_string() };
    let Some(rest) = url.strip_prefix(STORE_SCHEME) else {
        return Err(bad("it does not start with \"etcd://\""));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(bad("it names no endpoint"));
    }
    rest.split(',').map(|endpoint| parse_endpoint(endpoint).map_err(|reason| bad(&reason))).collect()
}

/// Checks one `HOST:PORT` (`[V6]:PORT` for an IPv6 address).
fn parse_endpoint(endpoint: &str) -> Result<String, String> {
    if endpoint.is_empty() {
        return Err("it has an empty endpoint (two commas, or a trailing one)".into());
    }
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err(format!("\"{endpoint}\" has no port (HOST:PORT)"));
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']').is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    };
    if !host_ok {
        return Err(format!("\"{host}\" in \"{endpoint}\" is not a host name or address"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(endpoint.to_string()),
        _ => Err(format!("\"{port}\" in \"{endpoint}\" is not a port (1 to 65535)")),
    }
}

/// A connection to the etcd cluster a group of consoles shares: elections,
/// reads and the watches of a standby. Cheap to clone (one connection).
#[derive(Clone)]
pub struct Etcd {
    /// The client; its connection is shared by every clone.
    client: Client,
    /// The checked options.
    options: Arc<EtcdOptions>,
    /// Endpoints and prefix, for messages.
    store: Arc<str>,
    /// Where the lease keepers count renewals and step-downs.
    tallies: LeaseTallies,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd").field("store", &self.store).finish_non_exhaustive()
    }
}

impl Etcd {
    /// Connects to etcd and checks that it answers (a read of the prefix).
    ///
    /// # Errors
    /// [`StoreError::Etcd`] when the options cannot work, the TLS files
    /// cannot be read, or etcd does not answer within 5 s (the message names
    /// the endpoints).
    pub async fn connect(options: EtcdOptions) -> Result<Self, StoreError> {
        let described = options.describe();
        let options =
            options.validated().map_err(|err| StoreError::Etcd { store: described, reason: err.to_string() })?;
        let store: Arc<str> = options.describe().into();
        let tls = options.tls.is_some();
        let unreachable = |reason: String| StoreError::Etcd {
            store: store.to_string(),
            reason: format!(
                "cannot reach it ({reason}); check that etcd runs there and listens for clients on that address{}",
                if tls { ", and that it speaks TLS with that authority" } else { "" }
            ),
        };
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(PING_INTERVAL, PING_TIMEOUT)
            .with_keep_alive_while_idle(false);
        let scheme = match &options.tls {
            Some(settings) => {
                let settings = tls_options(settings)
                    .await
                    .map_err(|reason| StoreError::Etcd { store: store.to_string(), reason })?;
                connect = connect.with_tls(settings);
                "https://"
            }
            None => "http://",
        };
        let endpoints: Vec<String> = options.endpoints.iter().map(|endpoint| format!("{scheme}{endpoint}")).collect();
        let client = match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(&endpoints, Some(connect))).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => return Err(unreachable(reason(&err))),
            Err(_) => return Err(unreachable(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        };
        let mut kv = client.kv_client();
        let probe = kv.get(options.prefix.as_str(), Some(GetOptions::new().with_count_only()));
        match tokio::time::timeout(CONNECT_TIMEOUT, probe).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return Err(unreachable(reason(&err))),
            Err(_) => return Err(unreachable(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        }
        Ok(Self { client, options: Arc::new(options), store, tallies: LeaseTallies::default() })
    }

    /// Counts its leases' renewals and step-downs in `tallies` (the
    /// console's, for `/metrics`) rather than in tallies of its own.
    #[must_use]
    pub fn reporting_to(mut self, tallies: LeaseTallies) -> Self {
        self.tallies = tallies;
        self
    }

    /// The checked options (the prefix ends with `/`).
    pub fn options(&self) -> &EtcdOptions {
        &self.options
    }

    /// The endpoints and prefix, for messages.
    pub fn describe(&self) -> String {
        self.store.to_string()
    }

    /// `prefix` + `rest`.
    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.options.prefix)
    }

    fn kv(&self) -> KvClient {
        self.client.kv_client().max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    fn watcher(&self) -> WatchClient {
        self.client.watch_client().max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// An error about this store.
    fn error(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Etcd { store: self.store.to_string(), reason: reason.into() }
    }

    /// Data under the prefix that does not decode.
    fn data_error(&self, reason: impl Into<String>) -> StoreError {
        StoreError::EtcdData { store: self.store.to_string(), reason: reason.into() }
    }

    /// Runs one request with [`REQUEST_TIMEOUT`], saying `what` failed.
    async fn request<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) if unavailable(&err) => {
                Err(self.error(format!("{what} failed: {}; {UNAVAILABLE_HINT}", reason(&err))))
            }
            Ok(Err(err)) => Err(self.error(format!("{what} failed: {}", reason(&err)))),
            Err(_) => Err(self.error(format!("{what} got no answer within {REQUEST_TIMEOUT:?}; {UNAVAILABLE_HINT}"))),
        }
    }
}

/// The TLS settings from the PEM files.
async fn tls_options(tls: &EtcdTls) -> Result<TlsOptions, String> {
    let read = |path: PathBuf, what: &'static str| async move {
        tokio::fs::read(&path).await.map_err(|err| format!("cannot read the {what} \"{}\": {err}", path.display()))
    };
    let mut options = TlsOptions::new().ca_certificate(Certificate::from_pem(read(tls.ca.clone(), "etcd CA").await?));
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        let cert = read(cert.clone(), "etcd client certificate").await?;
        let key = read(key.clone(), "etcd client key").await?;
        options = options.identity(Identity::from_pem(cert, key));
    }
    Ok(options)
}

/// What to check when etcd does not answer.
const UNAVAILABLE_HINT: &str = "is etcd running there and reachable, with a quorum of its members up?";

/// Whether `err` means etcd could not be reached (rather than refused).
fn unavailable(err: &etcd_client::Error) -> bool {
    match err {
        // gRPC's DEADLINE_EXCEEDED (4) and UNAVAILABLE (14).
        etcd_client::Error::GRpcStatus(status) => matches!(i32::from(status.code()), 4 | 14),
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// What an etcd client error says, without the transport's noise.
fn reason(err: &etcd_client::Error) -> String {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            if message.is_empty() { format!("{:?}", status.code()) } else { format!("{:?}: {message}", status.code()) }
        }
        other => other.to_string(),
    }
}

/// The first key after every key starting with `prefix` (etcd's range end
/// for a prefix).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range runs to the end of the key space.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_addresses_parse_or_say_what_is_wrong() {
        assert_eq!(parse_url("etcd://127.0.0.1:2379").unwrap(), vec!["127.0.0.1:2379"]);
        assert_eq!(
            parse_url("etcd://a.example:2379,b-2:2380,[::1]:2381/").unwrap(),
            vec!["a.example:2379", "b-2:2380", "[::1]:2381"]
        );
        for (url, says) in [
            ("http://127.0.0.1:2379", "does not start with \"etcd://\""),
            ("etcd://", "names no endpoint"),
            ("etcd://a:1,,b:2", "empty endpoint"),
            ("etcd://a:1,", "empty endpoint"),
            ("etcd://a", "has no port"),
            ("etcd://a:0", "is not a port"),
            ("etcd://a:99999", "is not a port"),
            ("etcd://a:x", "is not a port"),
            ("etcd://:2379", "is not a host"),
            ("etcd://a b:2379", "is not a host"),
            ("etcd://[::1:2379", "is not a host"),
            ("etcd://a/b:2379", "is not a host"),
        ] {
            let err = parse_url(url).unwrap_err().to_string();
            assert!(err.contains(says), "{url}: {err}");
            assert!(err.contains(&format!("\"{url}\"")) && err.contains("etcd://HOST:PORT"), "{err}");
        }
    }

    #[test]
    fn options_are_checked_and_the_prefix_gets_its_slash() {
        let options = EtcdOptions::from_url("etcd://127.0.0.1:2379").unwrap();
        assert_eq!(options.prefix, DEFAULT_PREFIX);
        assert_eq!(options.lease_ttl, DEFAULT_LEASE_TTL);
        let options = EtcdOptions { prefix: "/group-a".into(), ..options };
        assert_eq!(options.clone().validated().unwrap().prefix, "/group-a/");
        assert_eq!(
            EtcdOptions { prefix: String::new(), ..options.clone() }.validated(),
            Err(EtcdOptionsError::EmptyPrefix)
        );
        let short = Duration::from_millis(500);
        assert_eq!(
            EtcdOptions { lease_ttl: short, ..options.clone() }.validated(),
            Err(EtcdOptionsError::LeaseTtl(short))
        );
        let half = EtcdTls { ca: "ca.pem".into(), cert: Some("c.pem".into()), key: None };
        assert_eq!(EtcdOptions { tls: Some(half), ..options.clone() }.validated(), Err(EtcdOptionsError::HalfIdentity));
        assert_eq!(EtcdOptions { lease_ttl: Duration::from_millis(2100), ..options.clone() }.lease_seconds(), 3);
        assert_eq!(options.lease_seconds(), 2);
    }

    #[test]
    fn a_prefix_range_ends_after_its_last_key() {
        assert_eq!(prefix_end("/ringwatch/"), b"/ringwatch0".to_vec());
        assert_eq!(prefix_end("ab"), b"ac".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }

    #[tokio::test]
    async fn an_unreachable_etcd_is_an_error_naming_the_endpoints() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let options = EtcdOptions::from_url(&format!("etcd://127.0.0.1:{port}")).unwrap();
        let err = Etcd::connect(options).await.unwrap_err().to_string();
        assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("cannot reach it"), "{err}");
    }
}

//! The commands for operating a console from elsewhere (README.md,
//! "Operating ringwatch"): `credential`, `attach` and `events`.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ringwatch::control::admin::{AdminClient, AdminError, Target};
use ringwatch::control::pki::unix_now;
use ringwatch::handle::ConsoleHandle;
use ringwatch::remote::bundle::CredentialBundle;
use ringwatch::remote::console::RemoteConsole;
use ringwatch::ui::UiOptions;
use ringwatch_shared::protocol::{AdminRequest, AdminResponse, EventQuery};
use ringwatch_shared::status::{ClusterEvent, EventLine};

use crate::{CredentialCommand, NOT_RUNNING, ask};

/// The longest wait between two attempts to reach the console again while
/// following events.
const FOLLOW_BACKOFF: Duration = Duration::from_secs(5);

/// `ringwatch credential issue|list|revoke`.
pub(crate) async fn credential(target: &Target, command: CredentialCommand) -> Result<ExitCode> {
    match command {
        CredentialCommand::Issue { name, role, ttl, output, force, address } => {
            if output.exists() && !force {
                anyhow::bail!("\"{}\" exists: pass --force to replace it", output.display());
            }
            let key = rcgen::KeyPair::generate().context("failed to generate a key")?;
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name.push(rcgen::DnType::CommonName, format!("operator {name}"));
            let csr = params.serialize_request(&key).context("failed to build a certificate request")?;
            let request = AdminRequest::IssueCredential {
                name: name.clone(),
                role: role.into(),
                ttl_secs: ttl.as_secs(),
                csr_der: csr.der().to_vec(),
            };
            let issued = match ask(target, &request).await? {
                Ok(AdminResponse::Credential(issued)) => issued,
                Ok(_) => anyhow::bail!("the console sent an unexpected answer"),
                Err(code) => return Ok(code),
            };
            let mut consoles = address;
            if consoles.is_empty() {
                if let Target::Remote { consoles: used, .. } = target {
                    consoles.extend(used.iter().cloned());
                }
                consoles.extend(
                    issued.consoles.iter().filter(|console| !consoles.contains(console)).cloned().collect::<Vec<_>>(),
                );
            }
            let bundle = CredentialBundle::new(
                &name,
                role.into(),
                consoles,
                issued.ca_pem,
                issued.certificate_pem,
                key.serialize_pem(),
                issued.expires_unix,
            )
            .map_err(|err| anyhow::anyhow!(err))?;
            bundle.write(&output, force)?;
            outln!(
                "wrote the {} credential \"{name}\" (valid until {}, consoles {}) to \"{}\": give it to its holder, who runs `ringwatch --credential {} status`",
                bundle.role,
                ringwatch::report::unix_time(bundle.expires_unix),
                bundle.consoles.join(", "),
                output.display(),
                output.display(),
            );
            Ok(ExitCode::SUCCESS)
        }
        CredentialCommand::List { json } => {
            let list = match ask(target, &AdminRequest::ListCredentials).await? {
                Ok(AdminResponse::Credentials(list)) => list,
                Ok(_) => anyhow::bail!("the console sent an unexpected answer"),
                Err(code) => return Ok(code),
            };
            if json {
                outln!("{}", serde_json::to_string_pretty(&list).context("failed to encode the credentials")?);
            } else {
                out!("{}", ringwatch::report::credential_table(&list, unix_now()));
            }
            Ok(ExitCode::SUCCESS)
        }
        CredentialCommand::Revoke { name } => match ask(target, &AdminRequest::RevokeCredential(name)).await? {
            Ok(AdminResponse::Done(text)) => {
                outln!("{text}");
                Ok(ExitCode::SUCCESS)
            }
            Ok(_) => anyhow::bail!("the console sent an unexpected answer"),
            Err(code) => Ok(code),
        },
    }
}

/// `ringwatch attach`: the terminal UI over a remote console.
pub(crate) async fn attach(target: Target) -> Result<ExitCode> {
    let Target::Remote { consoles, path, credential } = &target else {
        anyhow::bail!("attach needs --credential FILE");
    };
    init_attach_logging(path)?;
    let title = format!("ringwatch · {} · {}", consoles.join(","), credential.name);
    let handle: Arc<dyn ConsoleHandle> = Arc::new(RemoteConsole::start(target.clone()));
    let options = UiOptions { title, ..UiOptions::default() };
    ringwatch::ui::run(handle, options).await.context("the terminal UI failed")?;
    Ok(ExitCode::SUCCESS)
}

/// An attached UI logs next to nothing, to a file beside the credential's
/// directory's cache: the terminal belongs to the UI.
fn init_attach_logging(credential: &std::path::Path) -> Result<()> {
    let dir = dirs::cache_dir().map(|dir| dir.join("ringwatch")).unwrap_or_else(std::env::temp_dir);
    ringwatch_net::logging::log_to_file(&dir, "attach.log").map_err(|err| anyhow::anyhow!(err))?;
    tracing::info!(credential = %credential.display(), "attaching");
    Ok(())
}

/// `ringwatch events`: the log, then (with `follow`) live events; a
/// follower whose link fails says so and reconnects, printing nothing
/// twice.
pub(crate) async fn events(target: &Target, query: EventQuery, json: bool) -> Result<ExitCode> {
    let mut last_seq = 0;
    let mut backoff = Duration::from_millis(250);
    let mut reached = false;
    loop {
        let outcome = follow_once(target, &query, json, &mut last_seq, &mut reached).await;
        let err = match outcome {
            Ok(()) if !query.follow => return Ok(ExitCode::SUCCESS),
            Ok(()) => None,
            Err(FollowError::Output(err)) => return Err(err),
            Err(FollowError::Admin(err @ AdminError::Refused(_) | err @ AdminError::Rejected { .. })) => {
                anyhow::bail!("{err}")
            }
            Err(FollowError::Admin(err)) if !reached || !query.follow => {
                eprintln!("ringwatch: {err}");
                return Ok(ExitCode::from(NOT_RUNNING));
            }
            Err(FollowError::Admin(err)) => Some(err),
        };
        match err {
            Some(err) => eprintln!("ringwatch: the link to the console failed ({err}); reconnecting"),
            None => eprintln!("ringwatch: the console ended the stream (it is stopping); reconnecting"),
        }
        // The backlog comes again: what was printed (by seq) is skipped.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(FOLLOW_BACKOFF);
    }
}

/// Why following stopped.
enum FollowError {
    /// The link or the console.
    Admin(AdminError),
    /// Writing out (a closed pipe ends the command quietly).
    Output(anyhow::Error),
}

impl From<AdminError> for FollowError {
    fn from(err: AdminError) -> Self {
        Self::Admin(err)
    }
}

impl From<std::io::Error> for FollowError {
    fn from(err: std::io::Error) -> Self {
        Self::Output(err.into())
    }
}

async fn follow_once(
    target: &Target,
    query: &EventQuery,
    json: bool,
    last_seq: &mut u64,
    reached: &mut bool,
) -> Result<(), FollowError> {
    let client = AdminClient::connect(target).await?;
    let mut answer = client.open(&AdminRequest::Events(query.clone())).await?;
    *reached = true;
    while let Some(frame) = answer.next().await? {
        match frame {
            AdminResponse::Events(events) => {
                for event in &events {
                    if event.seq > *last_seq {
                        print_event(event, json)?;
                        *last_seq = event.seq;
                    }
                }
            }
            AdminResponse::EventsMissed(missed) => {
                eprintln!("ringwatch: {missed} event(s) were missed: this follower fell behind the console");
            }
            AdminResponse::Error(reason) => return Err(AdminError::Refused(reason).into()),
            AdminResponse::NotLeader { .. } => {}
            _ => return Err(FollowError::Output(anyhow::anyhow!("the console sent an unexpected answer"))),
        }
    }
    client.close().await;
    Ok(())
}

fn print_event(event: &ClusterEvent, json: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let line = serde_json::to_string(&EventLine::from(event)).map_err(std::io::Error::other)?;
        writeln!(out, "{line}")?;
    } else {
        let line = EventLine::from(event);
        writeln!(out, "{}  {:<10}  {event}", line.time, line.kind)?;
    }
    out.flush()
}

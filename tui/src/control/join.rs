//! Joining: an agent without a certificate proves a join token and receives
//! a client certificate for its own key under the name it asked for.
//!
//! The connection task checks what needs no state (the token's MAC and
//! expiry, the name, the certificate request) and signs the certificate;
//! the owner checks and records what needs state (the token's id, the
//! name's owner) and answers once the credential is durable: a certificate
//! the console forgot would be refused at the agent's next connection.

use std::sync::Arc;
use std::time::Duration;

use quinn::Connection;
use ringwatch_shared::names::NodeName;
use ringwatch_shared::protocol::{AgentFrame, ConsoleFrame, FromConsole, JoinGrant, JoinRequest, Refusal, RefusalKind};
use ringwatch_shared::token::{JoinToken, TokenError, fingerprint, to_hex};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tracing::{info, warn};

use crate::control::admission::Slot;
use crate::control::owner::{Input, JoinCheck, OwnerHandle};
use crate::control::pki::ClusterPki;
use crate::control::server::{ServerContext, first_frame, frame_name, refuse};

/// How long a joined agent has to store its credentials and close.
const STORE_GRACE: Duration = Duration::from_secs(5);

/// Serves a connection without a client certificate; `_slot` counts it
/// among the handshakes in progress until it is done.
pub async fn handle_join(
    connection: Connection,
    context: Arc<ServerContext>,
    owner: OwnerHandle,
    term: u64,
    _slot: Slot,
) {
    let (mut send, request) = match first_frame(&connection).await {
        Ok((send, _, AgentFrame::Join(request))) => (send, request),
        Ok((mut send, _, other)) => {
            let refusal = Refusal {
                kind: RefusalKind::ProtocolViolation,
                reason: format!(
                    "a connection without a client certificate may only join, but sent {}",
                    frame_name(&other)
                ),
            };
            refuse(&connection, Some(&mut send), &refusal, &context).await;
            return;
        }
        Err((mut send, refusal)) => {
            refuse(&connection, send.as_mut(), &refusal, &context).await;
            return;
        }
    };
    let (check, grant) = match prepare(&context.pki, &request, &connection) {
        Ok(prepared) => prepared,
        Err(refusal) => {
            refuse(&connection, Some(&mut send), &refusal, &context).await;
            return;
        }
    };
    let name = check.name.clone();
    let (reply, answer) = oneshot::channel();
    if owner.inputs.send(Input::Join { request: check, reply }).await.is_err() {
        return;
    }
    match answer.await {
        Ok(Ok(())) => {
            let granted = FromConsole { term, frame: ConsoleFrame::JoinGranted(grant) };
            let written = match ringwatch_shared::codec::encode_frame(&granted) {
                Ok(frame) => send.write_all(&frame).await.is_ok() && send.finish().is_ok(),
                Err(_) => false,
            };
            if written {
                info!(node = %name, "issued a client certificate");
                // The agent closes once it has stored its credentials.
                let _ = timeout(STORE_GRACE, connection.closed()).await;
            } else {
                warn!(node = %name, "failed to send the join grant");
            }
        }
        Ok(Err(refusal)) => refuse(&connection, Some(&mut send), &refusal, &context).await,
        Err(_) => {}
    }
}

/// Checks what needs no state and signs the certificate.
fn prepare(
    pki: &ClusterPki,
    request: &JoinRequest,
    connection: &Connection,
) -> Result<(JoinCheck, JoinGrant), Refusal> {
    let token: JoinToken = request
        .token
        .parse()
        .map_err(|err: TokenError| Refusal { kind: RefusalKind::BadToken, reason: err.to_string() })?;
    pki.verify_token(&token).map_err(|err| Refusal {
        kind: if matches!(err, TokenError::Expired { .. }) { RefusalKind::TokenExpired } else { RefusalKind::BadToken },
        reason: format!("join token refused: {err}"),
    })?;
    let name = NodeName::parse(&request.name)
        .map_err(|err| Refusal { kind: RefusalKind::BadName, reason: err.to_string() })?;
    let bad_request =
        |err: crate::control::pki::PkiError| Refusal { kind: RefusalKind::ProtocolViolation, reason: err.to_string() };
    let issued = pki.issue_agent_cert(name.as_str(), &request.csr_der).map_err(bad_request)?;
    let check = JoinCheck {
        name,
        key_fingerprint: issued.key_fingerprint,
        token_id: token.id_hex(),
        cert_fingerprint: to_hex(&fingerprint(&issued.cert)),
        expires_unix: issued.expires_unix,
        address: connection.remote_address(),
    };
    Ok((check, JoinGrant { cert_der: issued.cert.to_vec(), ca_der: pki.ca.to_vec() }))
}

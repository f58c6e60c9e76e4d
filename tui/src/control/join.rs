//! Joining: an agent without a certificate proves a join token and receives
//! a client certificate for its own key under the name it asked for.

use std::sync::Arc;

use quinn::Connection;
use ringwatch_shared::codec;
use ringwatch_shared::protocol::{AgentFrame, ConsoleFrame, JoinGrant, JoinRequest, Refusal, RefusalKind};
use ringwatch_shared::token::{JoinToken, TokenError, fingerprint, to_hex};
use tokio::time::timeout;
use tracing::{info, warn};

use crate::control::pki::{ClusterPki, unix_now};
use crate::control::server::{first_frame, frame_name, refuse};
use crate::control::store::CredentialRecord;
use crate::control::{Shared, lock};

/// Longest node name; names also travel in certificates and file names.
const MAX_NAME_LEN: usize = 63;

/// Serves a connection without a client certificate.
pub async fn handle_join(connection: Connection, shared: Arc<Shared>) {
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
            refuse(&connection, Some(&mut send), &refusal).await;
            return;
        }
        Err((mut send, refusal)) => {
            refuse(&connection, send.as_mut(), &refusal).await;
            return;
        }
    };
    match admit(&shared, &request) {
        Ok(grant) => {
            let written = match codec::encode_frame(&ConsoleFrame::JoinGranted(grant)) {
                Ok(frame) => send.write_all(&frame).await.is_ok() && send.finish().is_ok(),
                Err(_) => false,
            };
            if written {
                shared.events.emit(Some(&request.name), None, format!("joined from {}", connection.remote_address()));
                // The agent closes once it has stored its credentials.
                let _ = timeout(std::time::Duration::from_secs(5), connection.closed()).await;
            } else {
                warn!(node = %request.name, "failed to send the join grant");
            }
        }
        Err(refusal) => refuse(&connection, Some(&mut send), &refusal).await,
    }
}

/// Checks a join request and issues the certificate.
fn admit(shared: &Shared, request: &JoinRequest) -> Result<JoinGrant, Refusal> {
    let token: JoinToken = request
        .token
        .parse()
        .map_err(|err: TokenError| Refusal { kind: RefusalKind::BadToken, reason: err.to_string() })?;
    shared.pki.verify_token(&token).map_err(|err| Refusal {
        kind: if matches!(err, TokenError::Expired { .. }) { RefusalKind::TokenExpired } else { RefusalKind::BadToken },
        reason: format!("join token refused: {err}"),
    })?;
    validate_name(&request.name)?;
    let bad_request =
        |err: crate::control::pki::PkiError| Refusal { kind: RefusalKind::ProtocolViolation, reason: err.to_string() };
    let key_fingerprint = ClusterPki::request_key_fingerprint(&request.csr_der).map_err(bad_request)?;
    if lock(&shared.table).name_taken(&request.name, &key_fingerprint) {
        return Err(Refusal {
            kind: RefusalKind::NameInUse,
            reason: format!("node name \"{}\" is already connected with another key", request.name),
        });
    }
    let issued = shared.pki.issue_agent_cert(&request.name, &request.csr_der).map_err(bad_request)?;
    let record = CredentialRecord {
        name: request.name.clone(),
        key_fingerprint: issued.key_fingerprint,
        issued_unix: unix_now(),
        revoked: false,
    };
    // Stored before it is handed out: a certificate the console forgot
    // would be refused at the agent's next connection.
    shared.store.add_credential(&to_hex(&fingerprint(&issued.cert)), &record).map_err(|err| {
        warn!(%err, "cannot store a new credential");
        Refusal { kind: RefusalKind::Unavailable, reason: "the console cannot store credentials now".into() }
    })?;
    info!(node = %request.name, "issued a client certificate");
    Ok(JoinGrant { cert_der: issued.cert.to_vec(), ca_der: shared.pki.ca.to_vec() })
}

/// Node names: 1–63 of `a-z 0-9 . _ -`, starting with a letter or digit.
fn validate_name(name: &str) -> Result<(), Refusal> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|first: char| first.is_ascii_lowercase() || first.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(Refusal {
            kind: RefusalKind::BadName,
            reason: format!(
                "node name \"{name}\" is invalid: use 1–63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_checked() {
        for good in ["a", "node-1", "web.eu_2", "0"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "A", "a/b", "a b", &"x".repeat(64)] {
            assert_eq!(validate_name(bad).unwrap_err().kind, RefusalKind::BadName, "{bad}");
        }
    }
}

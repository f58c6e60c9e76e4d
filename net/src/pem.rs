//! PEM armour for the DER certificates both sides store, and the reading
//! of files holding several PEM sections (the console's PKI bundle).

use base64::Engine;

/// PEM armour for DER bytes.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// One `-----BEGIN LABEL-----` … `-----END LABEL-----` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemSection {
    /// What the section holds (`CERTIFICATE`, `PRIVATE KEY`, …).
    pub label: String,
    /// The decoded body.
    pub der: Vec<u8>,
}

/// Why a PEM text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct PemError {
    /// The 1-based line the problem is on.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

/// Every PEM section of `text`, in order. Lines outside sections (comments)
/// are skipped; a section that is not closed, closed with another label,
/// nested, or whose body is not base64 is an error naming its line.
///
/// # Errors
/// [`PemError`] for the first malformed section.
pub fn sections(text: &str) -> Result<Vec<PemSection>, PemError> {
    let mut found = Vec::new();
    // The open section: its label, the line it began on, its body so far.
    let mut open: Option<(String, usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        let fail = |problem: String| PemError { line: number, problem };
        if let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|rest| rest.strip_suffix("-----")) {
            if let Some((open_label, began, _)) = &open {
                return Err(fail(format!("\"{label}\" begins inside \"{open_label}\" (line {began})")));
            }
            open = Some((label.to_string(), number, String::new()));
        } else if let Some(label) = line.strip_prefix("-----END ").and_then(|rest| rest.strip_suffix("-----")) {
            let Some((open_label, _, body)) = open.take() else {
                return Err(fail(format!("\"{label}\" ends without having begun")));
            };
            if open_label != label {
                return Err(fail(format!("\"{label}\" ends the section \"{open_label}\"")));
            }
            let der = base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .map_err(|err| fail(format!("the body of \"{label}\" is not base64 ({err})")))?;
            found.push(PemSection { label: open_label, der });
        } else if let Some((_, _, body)) = &mut open {
            body.push_str(line);
        }
    }
    match open {
        Some((label, began, _)) => Err(PemError { line: began, problem: format!("\"{label}\" never ends") }),
        None => Ok(found),
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    use super::*;

    #[test]
    fn pem_armour_round_trips() {
        let der = vec![7u8; 200];
        let pem = to_pem("CERTIFICATE", &der);
        assert_eq!(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().as_ref(), der.as_slice());
    }

    #[test]
    fn sections_are_read_in_order_and_comments_skipped() {
        let text =
            format!("# a comment\n{}\n# another\n{}", to_pem("CERTIFICATE", &[1; 70]), to_pem("MY KEY", &[2; 3]));
        let found = sections(&text).unwrap();
        assert_eq!(
            found,
            vec![
                PemSection { label: "CERTIFICATE".into(), der: vec![1; 70] },
                PemSection { label: "MY KEY".into(), der: vec![2; 3] },
            ]
        );
        assert_eq!(sections("# nothing here\n").unwrap(), vec![]);
    }

    #[test]
    fn malformed_sections_name_their_line() {
        let unclosed = "# x\n-----BEGIN A-----\nAAAA\n";
        assert_eq!(sections(unclosed).unwrap_err().line, 2);
        let crossed = "-----BEGIN A-----\nAAAA\n-----END B-----\n";
        assert_eq!(sections(crossed).unwrap_err().line, 3);
        let nested = "-----BEGIN A-----\n-----BEGIN B-----\n";
        assert_eq!(sections(nested).unwrap_err().line, 2);
        let garbage = "-----BEGIN A-----\n!!!!\n-----END A-----\n";
        assert!(sections(garbage).unwrap_err().problem.contains("not base64"));
        assert_eq!(sections("-----END A-----\n").unwrap_err().line, 1);
    }
}

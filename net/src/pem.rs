//! PEM armour for the DER certificates both sides store.

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
}

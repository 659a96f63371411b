//! A throwaway certificate authority and a server certificate for 127.0.0.1/localhost, made
//! fresh by each TLS test (rcgen), so no key or certificate is ever checked in.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

pub struct Pki {
    pub ca_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
}

pub fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "tec test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let server = params.signed_by(&server_key, &ca, &ca_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
    }
}

//! The process's one rustls crypto provider.
//!
//! rustls picks a provider by itself only when exactly one of its `aws-lc-rs` and `ring`
//! features is on. The embedded demo broker (rmqtt, through quinn) turns `ring` on beside the
//! `aws-lc-rs` the MQTT TLS stack uses, and then every TLS client built from rustls's defaults
//! (rumqttc's among them) panics with "could not determine the process-level CryptoProvider".
//! Installing aws-lc-rs explicitly, before any TLS client is built, removes the ambiguity.

/// Makes aws-lc-rs the process-level rustls provider, unless one is installed already (then
/// that one stays: it was chosen on purpose). Cheap and idempotent: call it before building any
/// TLS client.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another thread installing one leaves that one, which is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_provider_is_installed_and_a_second_call_keeps_it() {
        super::install_crypto_provider();
        let first = rustls::crypto::CryptoProvider::get_default().map(|p| std::sync::Arc::as_ptr(p));
        assert!(first.is_some());
        super::install_crypto_provider();
        let second = rustls::crypto::CryptoProvider::get_default().map(|p| std::sync::Arc::as_ptr(p));
        assert_eq!(first, second);
    }
}

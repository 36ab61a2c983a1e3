//! Plain Rust clients for external systems; none of them knows about Lua.

pub mod ansible;
pub mod notify;
pub mod prom;
pub mod uyuni;

/// Install rustls' process-wide crypto provider (ring) if none is installed yet. Every
/// reqwest client and TLS listener needs one; calling this again is harmless.
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

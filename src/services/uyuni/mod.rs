//! UYUNI XML-RPC: codec, client and typed calls.

pub mod xmlrpc;

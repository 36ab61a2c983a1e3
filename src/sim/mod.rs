//! The simulated UYUNI server (`spm sim`).

//! `spm types`: write `scripts/types/spm.meta.lua` and `.luarc.json` from the API list.

use std::path::PathBuf;

use anyhow::Context;

use super::Outcome;
use crate::host::types::{LUARC_PATH, META_PATH, luarc_json, meta_lua};

/// Arguments of `spm types`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Project root.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Do not write; exit 1 when the files on disk differ from what would be generated.
    #[arg(long)]
    pub check: bool,
}

/// Run `spm types`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let outputs = [(META_PATH, meta_lua()), (LUARC_PATH, luarc_json())];
    let mut drift = false;
    for (rel, content) in &outputs {
        let path = args.root.join(rel);
        if args.check {
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            if on_disk != *content {
                println!("{rel}: out of date; run `spm types`");
                drift = true;
            }
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&path, content)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {rel}");
        }
    }
    Ok(if drift { Outcome::No } else { Outcome::Ok })
}

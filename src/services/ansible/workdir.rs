//! The private work directory of one run (inventory, extra vars, callback plugin).

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::{AnsibleError, io_err};
use super::runner::LOG_TARGET;

/// A private temporary directory (mode 0700), removed on drop.
pub(crate) struct WorkDir(PathBuf);

impl WorkDir {
    pub(crate) fn create() -> Result<Self, AnsibleError> {
        let path =
            std::env::temp_dir().join(format!("spm-ansible-{}", uuid::Uuid::new_v4().simple()));
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io_err(format!(
                "creating work directory {}",
                path.display()
            )))?;
        Ok(Self(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(target: LOG_TARGET, dir = %self.0.display(), error = %e, "could not remove ansible work directory");
        }
    }
}

/// Create `path` (must not exist) with mode 0600 and write `bytes`.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AnsibleError> {
    let context = || format!("writing {}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(context())(e))?;
    file.write_all(bytes).map_err(|e| io_err(context())(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_dir_and_files_are_owner_only_and_removed_on_drop() {
        let work = WorkDir::create().unwrap();
        let dir = work.path().to_path_buf();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("extra-vars.json");
        write_private(&file, b"{}").unwrap();
        assert_eq!(mode(&file), 0o600);
        // An existing file is never reused or overwritten.
        assert!(write_private(&file, b"{\"x\":1}").is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"{}");
        drop(work);
        assert!(!dir.exists());
    }
}

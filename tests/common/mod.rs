//! Helpers shared by the host tests: script roots built from `tests/fixtures/lua`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `tests/fixtures/lua` in the source tree.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lua")
}

/// Copy a directory tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// A temporary script root holding a copy of the fixture set.
pub fn root_with_set() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixtures().join("set"), dir.path());
    dir
}

/// A temporary root with only `phases/patch.lua` taken from `fixture` (relative to fixtures).
pub fn root_with_patch(fixture: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("phases")).unwrap();
    std::fs::copy(
        fixtures().join(fixture),
        dir.path().join("phases/patch.lua"),
    )
    .unwrap();
    dir
}

/// Write `content` to `root/rel` the way editors do: temp file then rename.
pub fn save_atomically(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    let tmp = p.with_extension("lua.tmp~");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
}

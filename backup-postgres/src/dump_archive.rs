//! The pg_dump archive of a PostgreSQL source as a manifest records it: one custom-format file
//! (`dump.pgc.zst`), or the files of a directory-format archive written by a parallel dump
//! (`dump.d/toc.dat.zst`, `dump.d/<dump id>.dat.zst`, …), and how it is staged on this machine
//! for pg_restore (a file or a directory: pg_restore takes either).

use backup_core::{ArtifactMeta, Result, SourceManifest, Store};
use backup_verify::{StagedArchive, stage_archive, stage_archive_dir};

use crate::snapshotter::DUMP_FORMAT;

/// Format name of each file of a pg_dump directory-format archive (a parallel dump).
pub const DIR_FORMAT: &str = "pg_dump-directory";
/// Where the files of a directory-format archive sit within the source's directory.
pub const DIR_PREFIX: &str = "dump.d/";
/// The directory-format archive's table of contents: pg_restore reads it first.
pub const TOC_FILE: &str = "toc.dat";

/// The stored name of the file `name` of a directory-format archive (`dump.d/<name>.zst`).
pub fn dir_artifact_name(name: &str) -> String {
    format!("{DIR_PREFIX}{name}.zst")
}

/// The pg_dump archive of one source.
#[derive(Debug, Clone)]
pub struct DumpArchive<'a> {
    /// The artifact that findings about the whole archive are recorded against: the
    /// custom-format file, or a directory archive's `toc.dat`.
    pub head: &'a ArtifactMeta,
    /// For a directory archive, each file: its name in the directory and its artifact (the
    /// head among them); empty for a custom-format archive.
    files: Vec<(&'a str, &'a ArtifactMeta)>,
}

impl<'a> DumpArchive<'a> {
    /// The archive of `source`, if it has one.
    pub fn of(source: &'a SourceManifest) -> Option<Self> {
        if let Some(head) = source.artifacts.iter().find(|a| a.format == DUMP_FORMAT) {
            return Some(DumpArchive {
                head,
                files: Vec::new(),
            });
        }
        let files: Vec<(&str, &ArtifactMeta)> = source
            .artifacts
            .iter()
            .filter(|a| a.format == DIR_FORMAT)
            .map(|a| (dir_file_name(a), a))
            .collect();
        // Without its table of contents (an altered manifest) the archive is still named by
        // its first file, and pg_restore's refusal to read it says what is wrong.
        let head = files
            .iter()
            .find(|(name, _)| *name == TOC_FILE)
            .or(files.first())?
            .1;
        Some(DumpArchive { head, files })
    }

    /// Whether it is a directory-format archive (a parallel dump).
    pub fn is_directory(&self) -> bool {
        !self.files.is_empty()
    }

    /// Whether `a` is one of its files other than the head: checked with the head, as part of
    /// the whole archive.
    pub fn is_other_file(&self, a: &ArtifactMeta) -> bool {
        // Every directory-format artifact of the source is one of its files (see `of`).
        self.is_directory() && a.format == DIR_FORMAT && !std::ptr::eq(a, self.head)
    }

    /// Its artifacts: the head, then the other files of a directory archive.
    pub fn artifacts(&self) -> impl Iterator<Item = &'a ArtifactMeta> + '_ {
        std::iter::once(self.head).chain(
            self.files
                .iter()
                .map(|(_, a)| *a)
                .filter(|a| !std::ptr::eq(*a, self.head)),
        )
    }

    /// Its files as (name in the directory, artifact), for a directory archive.
    pub fn files(&self) -> &[(&'a str, &'a ArtifactMeta)] {
        &self.files
    }

    /// Bytes pg_restore reads: the decompressed size of all its artifacts.
    pub fn raw_size(&self) -> u64 {
        self.artifacts().map(|a| a.raw_size).sum()
    }

    /// Reads it from the store once (levels 1–2 of every artifact) into a temp file or, for a
    /// directory archive, a temp directory under `temp_dir`.
    ///
    /// # Errors
    ///
    /// When the temp file cannot be written or the store fails (damage is a finding).
    pub async fn stage(
        &self,
        store: &dyn Store,
        source: &SourceManifest,
        temp_dir: Option<&std::path::Path>,
    ) -> Result<StagedArchive> {
        if self.is_directory() {
            stage_archive_dir(store, source, &self.files, temp_dir).await
        } else {
            stage_archive(store, source, self.head, temp_dir).await
        }
    }
}

/// The name in the directory of one file of a directory archive: `dump.d/3001.dat.zst` →
/// `3001.dat`. A name of another shape is returned whole (staging refuses it).
fn dir_file_name(a: &ArtifactMeta) -> &str {
    a.name
        .strip_prefix(DIR_PREFIX)
        .and_then(|n| n.strip_suffix(".zst"))
        .unwrap_or(&a.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(name: &str, format: &str, raw_size: u64) -> ArtifactMeta {
        ArtifactMeta {
            name: name.into(),
            key: format!("backups/x/data/db/{name}"),
            format: format.into(),
            compression: "zstd".into(),
            stored_size: 1,
            raw_size,
            sha256: backup_core::Digest::of(b""),
            extra: Default::default(),
        }
    }

    fn source(artifacts: Vec<ArtifactMeta>) -> SourceManifest {
        SourceManifest {
            name: "db".parse().expect("name"),
            kind: "postgres".into(),
            location: "postgres://h/db".into(),
            server_version: None,
            tool_version: None,
            artifacts,
            stats: Default::default(),
            notes: Vec::new(),
            extra: Default::default(),
        }
    }

    #[test]
    fn a_custom_archive_is_its_one_file() {
        let s = source(vec![
            artifact("schema.txt.zst", "pg-schema-listing-v2", 5),
            artifact("dump.pgc.zst", DUMP_FORMAT, 10),
        ]);
        let dump = DumpArchive::of(&s).expect("a dump");
        assert!(!dump.is_directory());
        assert_eq!(dump.head.name, "dump.pgc.zst");
        assert_eq!(dump.raw_size(), 10);
        assert!(!dump.is_other_file(&s.artifacts[0]));
    }

    #[test]
    fn a_directory_archive_is_headed_by_its_toc_and_sums_its_files() {
        let s = source(vec![
            artifact("dump.d/3001.dat.zst", DIR_FORMAT, 100),
            artifact(&dir_artifact_name(TOC_FILE), DIR_FORMAT, 7),
            artifact("schema.txt.zst", "pg-schema-listing-v2", 5),
        ]);
        let dump = DumpArchive::of(&s).expect("a dump");
        assert!(dump.is_directory());
        assert_eq!(dump.head.name, "dump.d/toc.dat.zst");
        assert_eq!(dump.raw_size(), 107);
        assert!(dump.is_other_file(&s.artifacts[0]));
        assert!(!dump.is_other_file(&s.artifacts[1]), "the head");
        assert!(!dump.is_other_file(&s.artifacts[2]), "not a dump file");
        let names: Vec<&str> = dump.files().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["3001.dat", "toc.dat"]);
        assert!(DumpArchive::of(&source(vec![])).is_none());
    }
}

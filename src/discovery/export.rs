//! Where the published documents are also written: a directory for static hosting
//! (`--export-dir`) or S3 (`--export-s3`, in [`super::s3`]).

use std::path::{Path, PathBuf};

use super::document::{DISCOVERY_PATH, Documents, JWKS_PATH};
use super::s3::S3Exporter;

/// One export destination.
#[derive(Clone)]
pub enum Target {
    Dir(Exporter),
    S3(S3Exporter),
}

impl Target {
    /// How the destination is named in logs, metrics and `/readyz`.
    pub fn name(&self) -> String {
        match self {
            Self::Dir(dir) => format!("export to {}", dir.root.display()),
            Self::S3(s3) => format!("export to {}", s3.location()),
        }
    }

    /// Writes both documents, the JWKS first; `Ok(false)` when nothing had to change.
    pub async fn write(&self, docs: &Documents) -> Result<bool, String> {
        match self {
            Self::Dir(dir) => {
                let (dir, docs) = (dir.clone(), docs.clone());
                tokio::task::spawn_blocking(move || dir.write(&docs))
                    .await
                    .expect("the export task does not panic")
                    .map(|()| true)
                    .map_err(|e| e.to_string())
            }
            Self::S3(s3) => s3
                .write(docs)
                .await
                .map(|n| n > 0)
                .map_err(|e| e.to_string()),
        }
    }
}

/// A file of `--export-dir` that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {cause}")]
pub struct ExportError {
    path: PathBuf,
    cause: std::io::Error,
}

/// `--export-dir`, with both subdirectories created up front so a bad directory fails start-up.
#[derive(Debug, Clone)]
pub struct Exporter {
    root: PathBuf,
    discovery: PathBuf,
    jwks: PathBuf,
}

impl Exporter {
    /// Creates `dir/.well-known` and `dir/openid/v1`.
    pub fn new(dir: &Path) -> Result<Self, ExportError> {
        let exporter = Self {
            root: dir.to_owned(),
            discovery: dir.join(DISCOVERY_PATH.trim_start_matches('/')),
            jwks: dir.join(JWKS_PATH.trim_start_matches('/')),
        };
        for file in [&exporter.discovery, &exporter.jwks] {
            let parent = file.parent().expect("a joined path has a parent");
            std::fs::create_dir_all(parent).map_err(|cause| ExportError {
                path: parent.to_owned(),
                cause,
            })?;
        }
        Ok(exporter)
    }

    /// Writes both files, the JWKS first: a reader that sees the new discovery document then
    /// finds the keys it points to.
    pub fn write(&self, docs: &Documents) -> Result<(), ExportError> {
        replace(&self.jwks, &docs.jwks.body)?;
        replace(&self.discovery, &docs.discovery.body)
    }
}

fn replace(path: &Path, content: &[u8]) -> Result<(), ExportError> {
    crate::serving::files::write_atomically(path, content, 0o644).map_err(|cause| ExportError {
        path: path.to_owned(),
        cause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::document::sample_documents as docs;

    #[test]
    fn writes_both_documents_at_their_public_paths_and_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let exporter = Exporter::new(&dir.path().join("site")).unwrap();
        exporter.write(&docs("a")).unwrap();
        let read = |p: &str| std::fs::read(dir.path().join("site").join(p)).unwrap();
        assert_eq!(
            read(".well-known/openid-configuration"),
            docs("a").discovery.body
        );
        assert_eq!(read("openid/v1/jwks"), docs("a").jwks.body);
        exporter.write(&docs("b")).unwrap();
        assert_eq!(read("openid/v1/jwks"), docs("b").jwks.body);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("site/openid/v1"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["jwks"], "no temporary files left behind");
    }

    #[test]
    fn an_unusable_directory_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let err = Exporter::new(&file).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot write {}/.well-known: ", file.display())),
            "{err}"
        );
    }
}

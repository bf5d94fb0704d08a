//! `crunchbox crunch FILE... --out DIR`: the crunch library on local files.
//!
//! Each input's variants are written as `NAME.jpg`, `NAME_small.jpg` and
//! `NAME_large.jpg` (`.png` for images with transparency), NAME being the
//! input's file stem; with `--webp`, each also gets its WebP twin
//! (`NAME.webp`, …). A bad file is reported and skipped; the command still
//! fails at the end so scripts notice.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{Limits, Outputs, Variant, crunch_with};
use crate::cli::CrunchArgs;

#[derive(Debug, thiserror::Error)]
pub enum CrunchCliError {
    #[error("cannot create the output directory {}: {source}", path.display())]
    OutDir { path: PathBuf, source: std::io::Error },
    #[error("{failed} of {total} files could not be crunched")]
    SomeFailed { failed: usize, total: usize },
}

/// Why one input file produced no variants.
#[derive(Debug, thiserror::Error)]
enum FileError {
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("{0} [{reason}]", reason = .0.reason())]
    Crunch(#[from] super::CrunchError),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

pub fn run(args: &CrunchArgs) -> Result<(), CrunchCliError> {
    std::fs::create_dir_all(&args.out).map_err(|source| CrunchCliError::OutDir { path: args.out.clone(), source })?;
    let limits = Limits { max_pixels: args.max_pixels };
    let mut failed = 0;
    for file in &args.files {
        let started = Instant::now();
        match crunch_file(file, &args.out, &limits, Outputs { webp: args.webp }) {
            Ok(written) => {
                let list: Vec<String> =
                    written.iter().map(|(path, v)| format!("{} {}x{}", path.display(), v.width, v.height)).collect();
                println!("{}: {} ({} ms)", file.display(), list.join(", "), started.elapsed().as_millis());
            }
            Err(e) => {
                failed += 1;
                eprintln!("{}: error: {e}", file.display());
            }
        }
    }
    if failed > 0 {
        return Err(CrunchCliError::SomeFailed { failed, total: args.files.len() });
    }
    Ok(())
}

fn crunch_file(
    file: &Path,
    out: &Path,
    limits: &Limits,
    outputs: Outputs,
) -> Result<Vec<(PathBuf, Variant)>, FileError> {
    let bytes = std::fs::read(file).map_err(FileError::Read)?;
    let variants = crunch_with(&bytes, limits, outputs)?;
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".to_owned());
    let mut written = Vec::with_capacity(variants.len());
    for v in variants {
        let path = out.join(format!("{stem}{}.{}", v.name.suffix(), v.extension()));
        std::fs::write(&path, &v.bytes).map_err(|source| FileError::Write { path: path.clone(), source })?;
        if let Some(webp) = &v.webp {
            let twin = path.with_extension("webp");
            std::fs::write(&twin, webp).map_err(|source| FileError::Write { path: twin, source })?;
        }
        written.push((path, v));
    }
    Ok(written)
}

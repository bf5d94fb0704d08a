//! `crunchbox crunch FILE... --out DIR`: the crunch library on local files.
//!
//! Each input's variants are written as `NAME.jpg`, `NAME_small.jpg` and
//! `NAME_large.jpg` (`.png` for images with transparency), NAME being the
//! input's file stem; with `--webp`, each also gets its WebP twin
//! (`NAME.webp`, …). Two inputs whose outputs would share a name (`a/x.png`
//! and `b/x.jpg`) are refused before anything is written, rather than one
//! silently replacing the other. A bad file is reported and skipped; the
//! command still fails at the end so scripts notice. An output directory the
//! command created and wrote nothing into is removed again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{Limits, Outputs, Variant, VariantName, crunch_with};
use crate::cli::CrunchArgs;

#[derive(Debug, thiserror::Error)]
pub enum CrunchCliError {
    #[error("cannot create the output directory {}: {source}", path.display())]
    OutDir { path: PathBuf, source: std::io::Error },
    #[error("--out {} is not a directory", path.display())]
    OutNotDir { path: PathBuf },
    #[error(
        "{} and {} would both write {name}.* in {}: rename one, or crunch them into separate --out directories",
        first.display(), second.display(), out.display()
    )]
    Collision { first: PathBuf, second: PathBuf, name: String, out: PathBuf },
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
    check_names(&args.files, &args.out)?;
    let created = prepare_out(&args.out)?;
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
    if created && failed == args.files.len() {
        // Nothing was written: leave no trace. (Fails harmlessly if
        // something else put a file there meanwhile.)
        let _ = std::fs::remove_dir(&args.out);
    }
    if failed > 0 {
        return Err(CrunchCliError::SomeFailed { failed, total: args.files.len() });
    }
    Ok(())
}

/// The name an input's outputs start with.
fn stem_of(file: &Path) -> String {
    file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".to_owned())
}

/// Refuses inputs whose outputs would overwrite each other's: the same stem
/// (`a/x.png`, `b/x.jpg`), or one's default output named like another's
/// variant (`x.png` and `x_small.png`). Extensions are left out, as an
/// output's (`.jpg` or `.png`) is known only once it is crunched.
fn check_names(files: &[PathBuf], out: &Path) -> Result<(), CrunchCliError> {
    let mut owners: HashMap<String, &PathBuf> = HashMap::new();
    for file in files {
        let stem = stem_of(file);
        for variant in VariantName::ALL {
            let name = format!("{stem}{}", variant.suffix());
            if let Some(first) = owners.insert(name.clone(), file) {
                let (first, second) = (first.clone(), file.clone());
                return Err(CrunchCliError::Collision { first, second, name, out: out.to_owned() });
            }
        }
    }
    Ok(())
}

/// Makes sure `out` is a directory; true if this created it.
fn prepare_out(out: &Path) -> Result<bool, CrunchCliError> {
    match std::fs::metadata(out) {
        Ok(meta) if meta.is_dir() => Ok(false),
        Ok(_) => Err(CrunchCliError::OutNotDir { path: out.to_owned() }),
        Err(_) => {
            std::fs::create_dir_all(out).map_err(|source| CrunchCliError::OutDir { path: out.to_owned(), source })?;
            Ok(true)
        }
    }
}

fn crunch_file(
    file: &Path,
    out: &Path,
    limits: &Limits,
    outputs: Outputs,
) -> Result<Vec<(PathBuf, Variant)>, FileError> {
    let bytes = std::fs::read(file).map_err(FileError::Read)?;
    let variants = crunch_with(&bytes, limits, outputs)?;
    let stem = stem_of(file);
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

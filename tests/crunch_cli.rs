//! `crunchbox crunch FILE... --out DIR` as a user meets it: inputs whose
//! outputs would share a name, an output directory that cannot be one, and a
//! run that writes nothing.

use std::io::Cursor;
use std::path::Path;
use std::process::{Command, Output};

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

fn png(path: &Path, colour: [u8; 3]) {
    let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 30, Rgb(colour)));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, out.into_inner()).unwrap();
}

fn crunch(files: &[&Path], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crunchbox")).arg("crunch").args(files).arg("--out").arg(out).output().unwrap()
}

fn stderr(run: &Output) -> String {
    String::from_utf8_lossy(&run.stderr).into_owned()
}

/// `a/x.png b/x.png --out d` wrote `d/x.jpg` twice, the second silently
/// replacing the first: now it is refused, naming both, before any write.
#[test]
fn inputs_whose_outputs_collide_are_refused_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a/x.png"), tmp.path().join("b/x.png"));
    png(&a, [255, 0, 0]);
    png(&b, [0, 0, 255]);
    let out = tmp.path().join("d");
    let run = crunch(&[&a, &b], &out);
    assert!(!run.status.success());
    let err = stderr(&run);
    assert!(err.contains(&*a.to_string_lossy()) && err.contains(&*b.to_string_lossy()), "{err}");
    assert!(!out.exists(), "nothing is written, not even the directory");

    // A default output named like another input's variant collides too.
    let small = tmp.path().join("x_small.png");
    png(&small, [0, 255, 0]);
    let run = crunch(&[&a, &small], &out);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("x_small.*"), "{}", stderr(&run));

    // Distinct names crunch side by side.
    let y = tmp.path().join("b/y.png");
    png(&y, [0, 0, 255]);
    let run = crunch(&[&a, &y], &out);
    assert!(run.status.success(), "{}", stderr(&run));
    for name in ["x.jpg", "x_small.jpg", "x_large.jpg", "y.jpg", "y_small.jpg", "y_large.jpg"] {
        assert!(out.join(name).is_file(), "{name}");
    }
}

#[test]
fn a_run_that_writes_nothing_leaves_no_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("notes.png");
    std::fs::write(&bad, b"not an image").unwrap();
    let out = tmp.path().join("out");
    let run = crunch(&[&bad], &out);
    assert!(!run.status.success());
    assert!(!out.exists(), "an empty --out directory was left behind");

    // A directory that was there before stays, written to or not.
    std::fs::create_dir(&out).unwrap();
    assert!(!crunch(&[&bad], &out).status.success());
    assert!(out.is_dir());
}

#[test]
fn out_naming_a_file_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("x.png");
    png(&input, [1, 2, 3]);
    let file = tmp.path().join("out.txt");
    std::fs::write(&file, b"keep me").unwrap();
    let run = crunch(&[&input], &file);
    assert!(!run.status.success());
    let err = stderr(&run);
    assert!(err.contains("is not a directory") && err.contains("out.txt"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

//! Embeds every schema file under `../schemas` and the lock file into the
//! crate, so the registry needs no file I/O at run time.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            let rel = path
                .strip_prefix(root)
                .expect("schema under the schemas folder")
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, path));
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest
        .join("../schemas")
        .canonicalize()
        .expect("schemas folder");
    println!("cargo:rerun-if-changed={}", root.display());

    let mut files = Vec::new();
    collect(&root, &root, &mut files);

    let mut code = String::from("/// Every schema file, as (path under schemas/, contents).\n");
    code.push_str("pub static EMBEDDED_SCHEMAS: &[(&str, &str)] = &[\n");
    for (rel, path) in &files {
        writeln!(
            code,
            "    ({rel:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n\n/// The contents of schemas/schemas.lock.\n");
    writeln!(
        code,
        "pub static SCHEMAS_LOCK: &str = include_str!({:?});",
        root.join("schemas.lock").display().to_string()
    )
    .unwrap();

    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("embedded_schemas.rs");
    std::fs::write(out, code).expect("write embedded_schemas.rs");
}

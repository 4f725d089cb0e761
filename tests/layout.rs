//! The code's layering (README "Development"): `src/lib.rs` declares the
//! modules from the bottom layer up, and a module uses only modules declared
//! before it. So there is no dependency cycle, and a new one fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The modules in the order `src/lib.rs` declares them.
fn declared_order(src: &Path) -> Vec<String> {
    std::fs::read_to_string(src.join("lib.rs"))
        .unwrap()
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod "))
        .filter_map(|rest| rest.strip_suffix(';'))
        // `fuzzing` is test support (`cfg(test)` or a fuzz build), not a layer.
        .filter(|name| *name != "fuzzing")
        .map(str::to_string)
        .collect()
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The top-level modules a file's code (not its comments, not its unit tests) names as `crate::X`.
fn used_modules(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut used = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (at, _) in line.match_indices("crate::") {
            let name: String = line[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() {
                used.insert(name);
            }
        }
    }
    used
}

#[test]
fn every_module_uses_only_modules_declared_before_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = declared_order(&src);
    assert!(order.len() > 10, "src/lib.rs declares its modules: {order:?}");
    let mut wrong = Vec::new();
    for (rank, module) in order.iter().enumerate() {
        let mut files = Vec::new();
        rust_files(&src.join(format!("{module}.rs")), &mut files);
        rust_files(&src.join(module), &mut files);
        assert!(!files.is_empty(), "no source for module {module}");
        for file in files {
            for used in used_modules(&file) {
                match order.iter().position(|m| *m == used) {
                    Some(at) if at > rank => wrong.push(format!(
                        "{} uses crate::{used}, declared after {module}",
                        file.strip_prefix(&src).unwrap().display()
                    )),
                    _ => {}
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "modules that reach up the layers:\n{}",
        wrong.join("\n")
    );
}

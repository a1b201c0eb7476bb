//! Rules about the source that no compiler checks, in the manner of rust-analyzer's `tidy`:
//! the engine stays free of I/O and platform code, comments promise nothing, FORMAT.md states the
//! format versions the code writes, Cargo.toml keeps the lints that make every `unsafe` explain
//! itself, every source file starts by saying its job, and shared test code comes from the test
//! kit rather than `#[path]` includes, and the TypeScript error codes are the ones Rust gives.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_engine_does_no_io_and_has_no_platform_code() {
    // The engine sees only bytes and plain data: persistence depends on it, never the reverse.
    const FORBIDDEN: [&str; 16] = [
        "crate::persist",
        "crate::storage",
        "crate::db",
        "crate::wasm",
        "crate::lifecycle",
        "crate::metrics",
        "crate::health",
        "crate::clock",
        "std::fs",
        "std::net",
        "std::thread::spawn",
        "std::time",
        "memmap2",
        "wasm_bindgen",
        "js_sys",
        "cfg(target_arch",
    ];
    let mut found = Vec::new();
    for file in rust_files(&root().join("src/engine")) {
        // The unit tests at the end of a file may run in wasm too (wasm_bindgen_test).
        let text = read(&file);
        let code = text.lines().take_while(|l| l.trim() != "#[cfg(test)]");
        for (n, line) in code.enumerate() {
            for bad in FORBIDDEN.iter().filter(|bad| line.contains(*bad)) {
                found.push(format!("{}:{}: {bad}", file.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the engine reaches outside itself:\n{}",
        found.join("\n")
    );
}

#[test]
fn comments_promise_nothing() {
    // A comment says what the code is and why; what is missing belongs in an issue.
    const PROMISES: [&str; 5] = ["(to come)", "to come)", "(later)", "(not yet)", "TODO"];
    let mut files = rust_files(&root().join("src"));
    files.extend(["ARCHITECTURE.md", "FORMAT.md"].map(|f| root().join(f)));
    let mut found = Vec::new();
    for file in files {
        for (n, line) in read(&file).lines().enumerate() {
            let is_prose = file.extension().is_some_and(|e| e == "md");
            let comment = line.trim_start().starts_with("//");
            for promise in PROMISES.iter().filter(|p| line.contains(*p)) {
                if is_prose || comment {
                    found.push(format!("{}:{}: {promise}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "promises in comments:\n{}",
        found.join("\n")
    );
}

/// The `VERSION` constant of a format module.
fn version_in(module: &str) -> u32 {
    let text = read(&root().join("src/persist").join(module));
    let line = text
        .lines()
        .find(|l| l.contains("const VERSION: u32 ="))
        .unwrap_or_else(|| panic!("{module} has no VERSION"));
    line.rsplit('=')
        .next()
        .unwrap()
        .trim()
        .trim_end_matches(';')
        .parse()
        .unwrap()
}

#[test]
fn format_md_states_the_versions_the_code_writes() {
    let format = read(&root().join("FORMAT.md"));
    let (segment, log, manifest, archive) = (
        version_in("segment.rs"),
        version_in("wal.rs"),
        version_in("manifest.rs"),
        version_in("archive.rs"),
    );
    for expected in [
        format!("(segments {segment},\nlog {log}, manifest {manifest})"),
        format!("| 8 | 4 | version ({segment}) |"),
        format!("| 8 | 4 | version ({log}) |"),
        format!("| 8 | 4 | version ({manifest}) |"),
        format!("| 8 | 4 | archive version ({archive}) |"),
    ] {
        assert!(
            format.contains(&expected),
            "FORMAT.md should say {expected:?}: update it with the code"
        );
    }
}

#[test]
fn cargo_toml_keeps_the_lints() {
    let manifest = read(&root().join("Cargo.toml"));
    for lint in [
        "[lints.rust]",
        "unsafe_op_in_unsafe_fn = \"deny\"",
        "[lints.clippy]",
        "undocumented_unsafe_blocks = \"deny\"",
    ] {
        assert!(manifest.contains(lint), "Cargo.toml lost {lint}");
    }
}

#[test]
fn every_source_file_says_its_job_first() {
    // A newcomer opens a file and learns from its first line what it owns (ARCHITECTURE.md
    // lists the same jobs); a file that cannot say it in a sentence mixes jobs.
    let mut files = rust_files(&root().join("src"));
    files.extend(rust_files(&root().join("testkit/src")));
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !read(f).starts_with("//!"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not start with a `//!` doc saying their job:\n{}",
        missing.join("\n")
    );
}

#[test]
fn shared_test_code_comes_from_the_test_kit() {
    // `#[path]` includes compile the same code into every binary and hide what depends on
    // what: tests, examples, benchmarks and fuzz targets share code through `grape-testkit`.
    let mut found = Vec::new();
    for dir in [
        "src",
        "tests",
        "examples",
        "benches",
        "testkit",
        "fuzz/fuzz_targets",
    ] {
        for file in rust_files(&root().join(dir)) {
            for (n, line) in read(&file).lines().enumerate() {
                if line.trim_start().starts_with("#[path") {
                    found.push(format!("{}:{}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "#[path] includes:\n{}", found.join("\n"));
}

#[test]
fn performance_md_states_the_tuning_constants_the_code_uses() {
    // Tuning numbers live in one table (PERFORMANCE.md), not repeated in prose where they
    // drift: each row must be a `const` of that value in that file.
    let text = read(&root().join("PERFORMANCE.md"));
    let section = text
        .split("## Tuning constants")
        .nth(1)
        .expect("PERFORMANCE.md has a Tuning constants section");
    let mut rows = 0;
    let mut wrong = Vec::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, name, value, file, ..] = cells[..] else {
            continue;
        };
        let unquote = |c: &str| c.strip_prefix('`')?.strip_suffix('`').map(str::to_owned);
        let (Some(name), Some(value), Some(file)) = (unquote(name), unquote(value), unquote(file))
        else {
            continue; // the header and its rule
        };
        rows += 1;
        let code = read(&root().join(&file));
        let declared = code.lines().any(|l| {
            let l = l.trim_start();
            let l = ["pub(crate) ", "pub(super) "]
                .iter()
                .find_map(|p| l.strip_prefix(p))
                .unwrap_or(l);
            l.starts_with(&format!("const {name}:")) && l.ends_with(&format!("= {value};"))
        });
        if !declared {
            wrong.push(format!("{name} = {value} is not declared in {file}"));
        }
    }
    assert!(
        rows >= 10,
        "only {rows} rows found: is the table still a table?"
    );
    assert!(wrong.is_empty(), "PERFORMANCE.md:\n{}", wrong.join("\n"));
}

#[test]
fn architecture_md_names_mechanisms_not_numbers() {
    // Tuning numbers change with measurements; the map must not: they belong in
    // PERFORMANCE.md's table (checked above). Numbers inside `code` and in words (u64, AVX-512F)
    // are names, not figures.
    let text = read(&root().join("ARCHITECTURE.md"));
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        for word in prose.split(|c: char| c.is_whitespace() || "(),;:".contains(c)) {
            let figure = word.trim_end_matches(['.', '%', 'x']);
            let numeric = !figure.is_empty()
                && figure
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == ',');
            if numeric && (figure.len() > 1 || word.ends_with('%')) {
                found.push(format!("ARCHITECTURE.md:{}: {word}", n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "figures in ARCHITECTURE.md (move them to PERFORMANCE.md):\n{}",
        found.join("\n")
    );
}

/// The quoted names in `text` after `marker`, up to the first line that is just `end`.
fn quoted_after(text: &str, marker: &str, end: &str) -> std::collections::BTreeSet<String> {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not found"));
    text[start..]
        .lines()
        .take_while(|line| line.trim() != end)
        .flat_map(|line| line.split('"').skip(1).step_by(2))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_typescript_error_codes_are_the_codes_errors_have() {
    // JS code switches on `e.code`; the union in grape.d.ts must name every code Rust gives,
    // plus the one the package's entry point throws before the module is loaded.
    let rust = quoted_after(
        &read(&root().join("src/error.rs")),
        "pub fn code(&self)",
        "}",
    );
    let mut typescript = quoted_after(
        &read(&root().join("src/wasm/grape.d.ts")),
        "export type ErrorCode",
        "",
    );
    assert!(rust.len() >= 20, "codes of Error::code not found: {rust:?}");
    assert!(
        typescript.remove("NotInitialized"),
        "NotInitialized (js/index.js) is missing"
    );
    assert_eq!(
        typescript, rust,
        "ErrorCode in src/wasm/grape.d.ts against Error::code"
    );
}

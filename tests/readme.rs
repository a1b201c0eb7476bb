//! The README's examples are true: its Rust block runs as a doctest (see `lib.rs`), and every
//! JSON block here must parse as a point, a search request or a filter.

use grape_vector_db::{Filter, Point, SearchRequest};

#[test]
fn every_json_example_in_the_readme_parses() {
    let readme = include_str!("../README.md");
    let blocks: Vec<&str> = readme
        .split("```json")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 5, "found {} JSON blocks", blocks.len());
    for block in blocks {
        let ok = serde_json::from_str::<Point>(block).is_ok()
            || serde_json::from_str::<SearchRequest>(block).is_ok()
            || serde_json::from_str::<Filter>(block).is_ok();
        assert!(
            ok,
            "README example does not parse:\n{block}\nas a filter: {:?}",
            serde_json::from_str::<Filter>(block).err()
        );
    }
}

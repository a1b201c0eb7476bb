//! The HNSW index: recall floors on clustered data, deletes never returned, filters always
//! honoured with `min(limit, matching)` results, and reopening gives identical answers.

use grape_testkit as testkit;

use std::collections::HashSet;
use std::sync::Arc;

use grape_vector_db::storage::MemoryStorage;
use grape_vector_db::{
    Condition, Distance, EmbeddedConfig, EmbeddedVectorDB, Filter, HnswConfig, Point, PointId,
    Range, SearchParams, SearchRequest,
};
use serde_json::json;
use testkit::Rng;

const N: usize = 20_000;
const DIM: usize = 32;

fn config() -> EmbeddedConfig {
    graph_past_1000(DIM, Distance::Euclid, &["pct", "tenant"])
}

/// A graph past 1,000 points with payload indexes on `indexed`.
fn graph_past_1000(dim: usize, distance: Distance, indexed: &[&str]) -> EmbeddedConfig {
    indexed
        .iter()
        .fold(EmbeddedConfig::builder(dim).distance(distance), |b, key| {
            b.payload_index(*key)
        })
        .hnsw(Some(HnswConfig {
            full_scan_threshold: 1_000,
            ..HnswConfig::default()
        }))
        .build()
        .unwrap()
}

fn load(db: &EmbeddedVectorDB, data: &testkit::Matrix) {
    let points: Vec<Point> = (0..data.rows)
        .map(|i| {
            Point::new(i as u64, data.row(i).to_vec())
                .with_payload(json!({
                    "pct": i % 100,
                    "parity": i % 2,
                    "tenant": format!("t{}", i % 10),
                    // The same values, with no payload index.
                    "plain_pct": i % 100,
                    "plain_tenant": format!("t{}", i % 10),
                }))
                .unwrap()
        })
        .collect();
    for chunk in points.chunks(5_000) {
        db.upsert(chunk.to_vec()).unwrap();
    }
}

fn ids(res: &grape_vector_db::SearchResponse) -> Vec<PointId> {
    res.result.iter().map(|p| p.id).collect()
}

/// Recall@10 of approximate search against exact search, over `queries`.
fn recall(db: &EmbeddedVectorDB, queries: &[Vec<f32>], filter: Option<&Filter>, ef: usize) -> f64 {
    let mut hits = 0;
    let mut total = 0;
    for q in queries {
        let mut req = SearchRequest::new(q.clone(), 10);
        req.filter = filter.cloned();
        req.params = SearchParams {
            hnsw_ef: Some(ef),
            exact: false,
            ..SearchParams::default()
        };
        let approx = db.search(&req).unwrap();
        req.params.exact = true;
        let exact = db.search(&req).unwrap();
        assert!(exact.exact);
        let truth: HashSet<PointId> = ids(&exact).into_iter().collect();
        hits += ids(&approx).iter().filter(|id| truth.contains(id)).count();
        total += truth.len();
    }
    hits as f64 / total as f64
}

#[test]
fn recall_floors_hold_unfiltered_and_filtered() {
    let data = testkit::clustered(N + 200, DIM, 1_000, 5);
    let db = EmbeddedVectorDB::open(config()).unwrap();
    load(
        &db,
        &testkit::Matrix {
            rows: N,
            dim: DIM,
            data: data.data[..N * DIM].to_vec(),
        },
    );
    let queries: Vec<Vec<f32>> = (N..N + 200).map(|i| data.row(i).to_vec()).collect();

    let probe = db
        .search(&SearchRequest::new(queries[0].clone(), 10))
        .unwrap();
    assert!(!probe.exact, "20K points are past the full-scan threshold");
    assert!(
        probe.scored < N / 4,
        "the graph computed {} distances",
        probe.scored
    );

    let r = recall(&db, &queries, None, 64);
    eprintln!("recall@10 at ef=64: {r:.4}");
    assert!(r >= 0.95, "recall@10 at ef=64 is {r}");
    // Every way a filter is searched: graph walked through or around, index candidates or
    // the exact scan, with and without a payload index, from 90% of the points down to 1%.
    let range = |key: &str, lt: u32| json!({"key": key, "range": {"lt": lt}});
    let tenant = |key: &str| json!({"key": key, "match": {"value": "t3"}});
    let mut below = Vec::new();
    for (name, filter, floor) in [
        ("90%", json!({"must": [range("pct", 90)]}), 0.97),
        ("50%", json!({"must": [range("pct", 50)]}), 0.97),
        ("20%", json!({"must": [range("pct", 20)]}), 0.97),
        ("10%", json!({"must": [range("pct", 10)]}), 0.95),
        ("1%", json!({"must": [range("pct", 1)]}), 0.99),
        ("tenant 10%", json!({"must": [tenant("tenant")]}), 0.95),
        (
            "tenant and range 5%",
            json!({"must": [tenant("tenant"), range("pct", 50)]}),
            0.99,
        ),
        (
            "range or tenant 14.5%",
            json!({"should": [range("pct", 5), tenant("tenant")]}),
            0.95,
        ),
        (
            "unindexed 50%",
            json!({"must": [range("plain_pct", 50)]}),
            0.97,
        ),
        (
            "unindexed 10%",
            json!({"must": [range("plain_pct", 10)]}),
            0.97,
        ),
        (
            "unindexed 1%",
            json!({"must": [range("plain_pct", 1)]}),
            0.99,
        ),
        (
            "unindexed tenant 10%",
            json!({"must": [tenant("plain_tenant")]}),
            0.97,
        ),
    ] {
        let f: Filter = serde_json::from_value(filter).unwrap();
        let r = recall(&db, &queries[..50], Some(&f), 32);
        eprintln!("recall@10 at ef=32, {name}: {r:.4}");
        if r < floor {
            below.push(format!("{name}: recall {r}, floor {floor}"));
        }
    }
    assert!(below.is_empty(), "{below:#?}");
}

#[test]
fn deleted_points_are_never_returned_and_filters_always_hold() {
    let data = testkit::clustered(6_000, DIM, 20, 8);
    let db = EmbeddedVectorDB::open(config()).unwrap();
    load(&db, &data);
    // Delete every third point: tombstones stay in the graph as waypoints.
    db.delete((0..6_000u64).filter(|i| i % 3 == 0)).unwrap();
    let live = db.count(None).unwrap();
    let mut rng = Rng::new(2);
    for round in 0..60 {
        let q: Vec<f32> = data.row(rng.below(6_000)).to_vec();
        let limit = 1 + rng.below(50);
        let filter = match round % 4 {
            0 => None,
            1 => Some(Filter::must([Condition::match_value("parity", 1)])),
            2 => Some(Filter::must([Condition::match_value("pct", 7)])),
            _ => Some(Filter::must([Condition::match_value("pct", 1000)])),
        };
        let mut req = SearchRequest::new(q, limit).with_payload(true);
        req.filter = filter.clone();
        let res = db.search(&req).unwrap();
        let matching = filter.as_ref().map_or(live, |f| db.count(Some(f)).unwrap());
        assert_eq!(res.result.len(), limit.min(matching), "round {round}");
        for p in &res.result {
            let PointId::Num(n) = p.id else {
                unreachable!()
            };
            assert_ne!(n % 3, 0, "deleted point {n} returned");
            if let Some(f) = &filter {
                assert!(
                    f.matches(p.id, p.payload.as_ref().unwrap()),
                    "filter broken"
                );
            }
        }
    }
}

#[test]
fn a_repeated_filter_sees_every_write_between_its_searches() {
    // A filter's candidates are kept between searches (repeated filters are the common
    // case): an indexed one's bitset, an unindexed one's listed matches. Each kind of write
    // between two identical searches must show in the second.
    let data = testkit::clustered(6_000, DIM, 20, 9);
    let db = EmbeddedVectorDB::open(config()).unwrap();
    load(&db, &data);
    let at = data.row(13).to_vec(); // point 13 is of tenant t3
    for (key, new) in [("tenant", 60_000), ("plain_tenant", 60_001)] {
        let tenant = Filter::must([Condition::match_value(key, "t3")]);
        let top = |db: &EmbeddedVectorDB| {
            let res = db
                .search(&SearchRequest::new(at.clone(), 5).with_filter(tenant.clone()))
                .unwrap();
            assert!(!res.exact, "a tenant of 10% walks the graph");
            ids(&res)
        };
        let best = top(&db)[0];
        assert!(
            best == PointId::Num(13) || key == "plain_tenant",
            "{key}: {best}"
        );
        for _ in 0..3 {
            assert_eq!(top(&db)[0], best, "{key}: the same search, another answer");
        }
        db.delete([best]).unwrap();
        for _ in 0..3 {
            assert!(!top(&db).contains(&best), "{key}: deleted point returned");
        }
        db.upsert(vec![Point::new(new, at.clone())
            .with_payload(json!({key: "t3"}))
            .unwrap()])
            .unwrap();
        for _ in 0..3 {
            assert_eq!(top(&db)[0], PointId::Num(new), "{key}: new point missed");
        }
        db.set_payload([new], json!({key: "t4"})).unwrap();
        for _ in 0..3 {
            assert!(
                !top(&db).contains(&PointId::Num(new)),
                "{key}: moved point returned"
            );
        }
        db.set_payload([new], json!({key: "t3"})).unwrap();
        for _ in 0..3 {
            assert_eq!(
                top(&db)[0],
                PointId::Num(new),
                "{key}: point moved back missed"
            );
        }
    }
}

#[test]
fn reopening_gives_identical_answers() {
    let data = testkit::clustered(3_000, DIM, 10, 9);
    let queries: Vec<SearchRequest> = (0..40)
        .map(|i| SearchRequest::new(data.row(i * 70).to_vec(), 10))
        .collect();
    let storage = MemoryStorage::new();
    let open = || EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage.clone())).unwrap();
    let answers = |db: &EmbeddedVectorDB| {
        let res = db.search_batch(&queries).unwrap();
        assert!(res.iter().all(|r| !r.exact));
        res.into_iter().map(|r| r.result).collect::<Vec<_>>()
    };

    // From the log alone: replay rebuilds the same graph.
    let db = open();
    load(&db, &data);
    db.delete((0..3_000u64).filter(|i| i % 5 == 0)).unwrap();
    let before = answers(&db);
    drop(db);
    let db = open();
    assert_eq!(answers(&db), before, "after replaying the log");

    // From a checkpoint: the graph is read back from the segment.
    db.compact().unwrap();
    let before = answers(&db);
    drop(db);
    let db = open();
    assert_eq!(db.open_report().wal_records_replayed, 0);
    assert_eq!(answers(&db), before, "after reading the segment");

    // Writes after reopening extend the mapped graph.
    db.upsert(vec![Point::new(99_999, vec![0.5; DIM])]).unwrap();
    let hit = db.search(&SearchRequest::new(vec![0.5; DIM], 1)).unwrap();
    assert_eq!(hit.result[0].id, PointId::Num(99_999));
}

#[test]
fn points_replayed_at_open_are_found_before_and_after_they_are_indexed() {
    let data = testkit::clustered(3_100, DIM, 10, 12);
    let storage = MemoryStorage::new();
    let open = || EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage.clone())).unwrap();
    let db = open();
    load(
        &db,
        &testkit::Matrix {
            rows: 3_000,
            dim: DIM,
            data: data.data[..3_000 * DIM].to_vec(),
        },
    );
    db.checkpoint().unwrap();
    // 100 more points, one log record each: replayed at the next open, not indexed then.
    for i in 3_000..3_100 {
        db.upsert(vec![Point::new(i as u64, data.row(i).to_vec())])
            .unwrap();
    }
    drop(db);
    let db = open();
    assert_eq!(db.open_report().wal_records_replayed, 100);
    let find_each = |db: &EmbeddedVectorDB| {
        for i in (3_000..3_100).step_by(7) {
            let res = db
                .search(&SearchRequest::new(data.row(i).to_vec(), 3))
                .unwrap();
            assert!(!res.exact);
            assert_eq!(res.result[0].id, PointId::Num(i as u64), "point {i}");
        }
    };
    find_each(&db); // through the exact scan of the unindexed tail
    let before = db.stats().memory.index;
    db.upsert(vec![Point::new(9_999, vec![0.25; DIM])]).unwrap();
    assert!(
        db.stats().memory.index > before,
        "the write indexed the tail"
    );
    find_each(&db); // through the graph
    db.checkpoint().unwrap();
    drop(db);
    let db = open();
    assert_eq!(db.open_report().segment_points, 3_101);
    find_each(&db);
}

#[test]
fn the_graph_is_the_same_however_many_threads_build_it() {
    let data = testkit::clustered(2_500, DIM, 10, 13);
    let queries: Vec<SearchRequest> = (0..30)
        .map(|i| SearchRequest::new(data.row(i * 80).to_vec(), 10))
        .collect();
    let answers = |threads: usize| {
        let mut cfg = config();
        cfg.thread_pool_size = threads;
        let db = EmbeddedVectorDB::open(cfg).unwrap();
        load(&db, &data);
        db.search_batch(&queries)
            .unwrap()
            .into_iter()
            .map(|r| r.result)
            .collect::<Vec<_>>()
    };
    assert_eq!(answers(1), answers(2));
    assert_eq!(answers(1), answers(4));
}

#[test]
fn recall_survives_heavy_churn_and_compaction() {
    let data = testkit::clustered(6_200, DIM, 30, 14);
    let base = testkit::Matrix {
        rows: 6_000,
        dim: DIM,
        data: data.data[..6_000 * DIM].to_vec(),
    };
    let queries: Vec<Vec<f32>> = (6_000..6_200).map(|i| data.row(i).to_vec()).collect();
    let db = EmbeddedVectorDB::open(config()).unwrap();
    load(&db, &base);
    // Rewrite every point twice: each rewrite leaves a tombstone in the graph, and the second
    // round crosses the automatic compaction threshold (more dead slots than live ones).
    load(&db, &base);
    load(&db, &base);
    let stats = db.stats();
    assert!(
        stats.tombstones < 6_000,
        "compaction ran ({} tombstones)",
        stats.tombstones
    );
    db.compact().unwrap();
    let r = recall(&db, &queries, None, 64);
    eprintln!("recall@10 at ef=64 after churn and compaction: {r:.4}");
    assert!(r >= 0.95, "recall after churn: {r}");
}

#[test]
fn a_checkpoint_after_some_churn_keeps_recall() {
    let data = testkit::clustered(6_200, DIM, 30, 15);
    let base = testkit::Matrix {
        rows: 6_000,
        dim: DIM,
        data: data.data[..6_000 * DIM].to_vec(),
    };
    let queries: Vec<Vec<f32>> = (6_000..6_200).map(|i| data.row(i).to_vec()).collect();
    let storage = MemoryStorage::new();
    let open = || EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage.clone())).unwrap();
    let db = open();
    load(&db, &base);
    // 8% of the points deleted: below the compaction threshold of an export, so the segment's
    // graph is the live graph with the lists that lost dead neighbours patched.
    db.delete((0..6_000u64).filter(|i| i % 12 == 0)).unwrap();
    db.checkpoint().unwrap();
    assert!(db.stats().tombstones > 0, "no compaction at 8%");
    drop(db);
    let db = open();
    let r = recall(&db, &queries, None, 64);
    eprintln!("recall@10 at ef=64 after reopening a patched graph: {r:.4}");
    assert!(r >= 0.95, "recall {r}");
}

#[test]
fn filtered_graph_search_sees_payload_changes() {
    let data = testkit::clustered(6_000, DIM, 20, 16);
    let db = EmbeddedVectorDB::open(config()).unwrap();
    load(&db, &data);
    let f = Filter::must([Condition::range(
        "pct",
        Range {
            lt: Some(50.0),
            ..Range::default()
        },
    )]);
    // Build the index, then move some points out of the filter's range in place.
    db.search(&SearchRequest::new(data.row(0).to_vec(), 5).with_filter(f.clone()))
        .unwrap();
    let moved: Vec<u64> = (0..6_000u64).filter(|i| i % 100 == 10).collect();
    db.set_payload(moved.clone(), json!({"pct": 999})).unwrap();
    // And some into it: the index's column still holds their old values.
    let moved_in: Vec<u64> = (0..6_000u64).filter(|i| i % 100 == 77).collect();
    db.set_payload(moved_in.clone(), json!({"pct": 3})).unwrap();
    for &i in moved_in.iter().take(20) {
        let res = db
            .search(&SearchRequest::new(data.row(i as usize).to_vec(), 10).with_filter(f.clone()))
            .unwrap();
        assert!(!res.exact, "50% selectivity takes the graph");
        assert_eq!(
            res.result[0].id,
            PointId::Num(i),
            "point {i} moved in is found"
        );
    }
    for &i in moved.iter().take(20) {
        let res = db
            .search(
                &SearchRequest::new(data.row(i as usize).to_vec(), 10)
                    .with_filter(f.clone())
                    .with_payload(true),
            )
            .unwrap();
        assert!(!res.exact, "50% selectivity takes the graph");
        for p in &res.result {
            assert!(
                f.matches(p.id, p.payload.as_ref().unwrap()),
                "{} no longer matches",
                p.id
            );
        }
        assert_ne!(
            res.result[0].id,
            PointId::Num(i),
            "moved point {i} returned"
        );
    }
}

#[test]
fn a_point_added_at_an_existing_vector_is_found_beside_it() {
    // The web demo adds a passage at the vector of the selected one and expects to see it
    // among that passage's neighbours: exact duplicates must be reachable through the graph.
    let data = testkit::clustered(12_000, DIM, 40, 11);
    let db = EmbeddedVectorDB::open(
        EmbeddedConfig::builder(DIM)
            .hnsw(Some(HnswConfig::default()))
            .build()
            .unwrap(),
    )
    .unwrap();
    load(&db, &data);
    for i in (0..12_000).step_by(997) {
        let added = 1_000_000 + i as u64;
        db.upsert(vec![Point::new(added, data.row(i).to_vec())])
            .unwrap();
        let found = ids(&db
            .search(&SearchRequest::new(data.row(i).to_vec(), 10))
            .unwrap());
        assert!(found.contains(&PointId::Num(i as u64)), "{i}: {found:?}");
        assert!(found.contains(&PointId::Num(added)), "{i}: {found:?}");
    }
}

#[test]
fn every_copy_of_a_repeated_vector_is_found() {
    // Applications store the same text twice (a re-import, a pasted paragraph): its copies
    // share one vector, and each must stay reachable, with or without a filter refusing the
    // others. Neighbour selection must not take a copy as covering the points around it.
    let data = testkit::clustered(6_000, DIM, 20, 5);
    let db = EmbeddedVectorDB::open(config()).unwrap();
    load(&db, &data);
    let at = data.row(13).to_vec();
    let copies: Vec<u64> = (0..40).map(|i| 100_000 + i).collect();
    for &id in &copies {
        db.upsert(vec![Point::new(id, at.clone())
            .with_payload(json!({"copy": id, "tenant": format!("c{id}")}))
            .unwrap()])
            .unwrap();
    }
    let mut req = SearchRequest::new(at.clone(), 41);
    req.params.hnsw_ef = Some(64);
    let res = db.search(&req).unwrap();
    assert!(!res.exact);
    let found: HashSet<PointId> = ids(&res).into_iter().collect();
    for id in copies.iter().copied().chain([13]) {
        assert!(
            found.contains(&PointId::Num(id)),
            "copy {id} missed: {found:?}"
        );
    }
    // The same text stored for several tenants: a search for one tenant walks the graph
    // around the other tenants' copies (and a deleted one) to its own.
    let at = data.row(27).to_vec(); // point 27 is of tenant t7
    for t in 0..5 {
        db.upsert(vec![Point::new(200_000 + t, at.clone())
            .with_payload(json!({"tenant": format!("t{t}")}))
            .unwrap()])
            .unwrap();
    }
    db.delete([200_001]).unwrap();
    for t in [0, 2, 3, 4, 7] {
        let req =
            SearchRequest::new(at.clone(), 3).with_filter(Filter::must([Condition::match_value(
                "tenant",
                format!("t{t}"),
            )]));
        let res = db.search(&req).unwrap();
        assert!(!res.exact);
        let own = if t == 7 { 27 } else { 200_000 + t };
        assert_eq!(ids(&res)[0], PointId::Num(own), "t{t}: {:?}", ids(&res));
    }
}

/// Cosine graphs skip neighbours whose sketch is far from the query's (see `engine/sketch.rs`).
/// On the same unit vectors dot product builds the same graph without sketches: cosine must
/// score far fewer vectors for the same recall.
#[test]
fn cosine_search_skips_far_neighbours_without_losing_recall() {
    const N: usize = 4_000;
    // Sketches are kept from 256 dimensions on.
    const DIM: usize = 256;
    let mut data = testkit::clustered(N + 100, DIM, 40, 11);
    for row in data.data.chunks_exact_mut(DIM) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= norm);
    }
    let queries: Vec<Vec<f32>> = (N..N + 100).map(|i| data.row(i).to_vec()).collect();
    // A tenant of 25% interleaved through the ids: with sketches its 1,000 points are scored
    // in the order of their sketches, and only while they may beat the worst result; without,
    // the graph walks through the rest.
    let tenant = Filter::must([Condition::match_value("tenant", 3)]);
    let measure = |distance: Distance| {
        let db = EmbeddedVectorDB::open(graph_past_1000(DIM, distance, &["tenant"])).unwrap();
        let points: Vec<Point> = (0..N)
            .map(|i| {
                Point::new(i as u64, data.row(i).to_vec())
                    .with_payload(json!({"tenant": i % 4}))
                    .unwrap()
            })
            .collect();
        db.upsert(points).unwrap();
        let scored = |filter: Option<&Filter>| -> usize {
            queries
                .iter()
                .map(|q| {
                    let mut request = SearchRequest::new(q.clone(), 10);
                    request.filter = filter.cloned();
                    let found = db.search(&request).unwrap();
                    assert!(!found.exact);
                    found.scored
                })
                .sum()
        };
        // A small ef, where a wrongly skipped neighbour would cost recall.
        let unfiltered = (recall(&db, &queries, None, 12), scored(None));
        let filtered = (
            recall(&db, &queries, Some(&tenant), 12),
            scored(Some(&tenant)),
        );
        (unfiltered, filtered)
    };
    let dot = measure(Distance::Dot);
    let cos = measure(Distance::Cosine);
    eprintln!("(recall, scored), unfiltered and tenant of 10%: dot {dot:?}, cosine {cos:?}");
    for ((dot_recall, dot_scored), (cos_recall, cos_scored)) in [(dot.0, cos.0), (dot.1, cos.1)] {
        assert!(
            cos_scored * 10 < dot_scored * 9,
            "sketches skipped too little: {cos_scored} vs {dot_scored} vectors scored"
        );
        assert!(
            cos_recall >= dot_recall - 0.01,
            "{cos_recall} vs {dot_recall}"
        );
    }
}

/// Index candidates scanned in the order of their sketches (cosine, from 256 dimensions, 500 to
/// 15,000 candidates) skip deleted points, check the part of a filter no index answers, and
/// find what the exact scan finds.
#[test]
fn candidates_scanned_in_sketch_order_hold_the_filter_and_the_exact_answer() {
    const N: usize = 3_000;
    const DIM: usize = 256;
    let data = testkit::clustered(N + 40, DIM, 30, 12);
    let db = EmbeddedVectorDB::open(graph_past_1000(DIM, Distance::Cosine, &["tenant"])).unwrap();
    let points: Vec<Point> = (0..N)
        .map(|i| {
            Point::new(i as u64, data.row(i).to_vec())
                .with_payload(json!({"tenant": i % 3, "odd": i % 2}))
                .unwrap()
        })
        .collect();
    db.upsert(points).unwrap();
    db.delete((0..N as u64).filter(|i| i % 7 == 0)).unwrap();
    let tenant = Condition::match_value("tenant", 1);
    let (mut hits, mut total) = (0, 0);
    for (round, filter) in [
        Filter::must([tenant.clone()]),
        // `odd` has no index: the candidates are a superset, checked point by point.
        Filter::must([tenant, Condition::match_value("odd", 1)]),
    ]
    .into_iter()
    .cycle()
    .take(40)
    .enumerate()
    {
        let mut req = SearchRequest::new(data.row(N + round).to_vec(), 10).with_payload(true);
        req.filter = Some(filter.clone());
        let found = db.search(&req).unwrap();
        assert!(!found.exact, "{} candidates are sketched", N / 3);
        assert!(found.scored < N / 6, "{} of {} scored", found.scored, N / 3);
        for p in &found.result {
            let PointId::Num(n) = p.id else {
                unreachable!()
            };
            assert_ne!(n % 7, 0, "deleted point {n} returned");
            assert!(filter.matches(p.id, p.payload.as_ref().unwrap()));
        }
        req.params.exact = true;
        let truth: HashSet<PointId> = ids(&db.search(&req).unwrap()).into_iter().collect();
        assert_eq!(found.result.len(), truth.len());
        hits += ids(&found).iter().filter(|id| truth.contains(id)).count();
        total += truth.len();
    }
    let recall = hits as f64 / total as f64;
    assert!(recall >= 0.98, "recall@10 {recall}");
}

#[test]
fn a_condition_with_a_second_part_is_not_answered_by_its_index_alone() {
    // Finding D12 (issue 16): with a payload index on `n`, one field condition combining
    // `match` with `range` (or `values_count`) was answered from the index's `match` list as
    // if that list were exactly the matches, so the graph search ignored the second part.
    // Whatever a combined condition means, every search path must agree with `count`.
    let points: Vec<Point> = (0..12_000u64)
        .map(|i| {
            let angle = i as f32 * 0.001;
            Point::new(i, vec![angle.cos(), angle.sin()])
                .with_payload(json!({
                    "n": if i % 2 == 1 { 1 } else { 5 },
                    "t": if i % 3 == 0 { "quick brown" } else { "brown fox" },
                    "ts": format!("2024-01-0{}", i % 5 + 1),
                }))
                .unwrap()
        })
        .collect();
    let config = |indexed: bool| {
        let mut builder = EmbeddedConfig::builder(2).distance(Distance::Euclid);
        if indexed {
            builder = builder
                .payload_index("n")
                .payload_index("t")
                .payload_index("ts");
        }
        builder.build().unwrap()
    };
    let open = |indexed: bool| {
        let db = EmbeddedVectorDB::open(config(indexed)).unwrap();
        db.upsert(points.clone()).unwrap();
        db
    };
    // The indexes also as a segment stores them: half the points checkpointed, reopened (the
    // stored part), then the rest written (the part built since).
    let storage = Arc::new(MemoryStorage::new());
    let reopened = || EmbeddedVectorDB::open_with_storage(config(true), storage.clone()).unwrap();
    let db = reopened();
    db.upsert(points[..6_000].to_vec()).unwrap();
    db.checkpoint().unwrap();
    db.close().unwrap();
    let stored = reopened();
    stored.upsert(points[6_000..].to_vec()).unwrap();
    let dbs = [open(true), open(false), stored];
    for condition in [
        json!({"key": "n", "match": {"value": 1}, "range": {"gt": 3}}),
        json!({"key": "n", "match": {"value": 1}, "values_count": {"gt": 1}}),
        json!({"key": "n", "range": {"gte": 1, "lte": 1}, "values_count": {"gte": 2}}),
        // Word and datetime lists: exact for one word, a superset for several.
        json!({"key": "t", "match": {"text": "quick"}}),
        json!({"key": "t", "match": {"text": "fox brown"}}),
        json!({"key": "t", "match": {"phrase": "brown quick"}}),
        json!({"key": "t", "match": {"text_any": "quick zebra"}}),
        json!({"key": "ts", "range": {"gt": "2024-01-02", "lte": "2024-01-04T00:00:00Z"}}),
    ] {
        let filter: Filter = serde_json::from_value(json!({"must": [condition]})).unwrap();
        agree_on(&dbs, &points, &filter);
    }
    // Several indexed conditions: the slots all of them list.
    let both: Filter = serde_json::from_value(json!({"must": [
        {"key": "n", "match": {"value": 1}},
        {"key": "ts", "range": {"gte": "2024-01-02", "lt": "2024-01-04"}}
    ]}))
    .unwrap();
    agree_on(&dbs, &points, &both);
}

/// Every search path of every database (graph or exact) agrees with `count` and with the
/// filter itself.
fn agree_on(dbs: &[EmbeddedVectorDB], points: &[Point], filter: &Filter) {
    let matching: HashSet<PointId> = points
        .iter()
        .filter(|p| filter.matches(p.id, &p.payload))
        .map(|p| p.id)
        .collect();
    for (d, db) in dbs.iter().enumerate() {
        assert_eq!(
            db.count(Some(filter)).unwrap(),
            matching.len(),
            "{filter:?}"
        );
        for exact in [false, true] {
            let mut request = SearchRequest::new(vec![1.0, 0.0], 10).with_filter(filter.clone());
            request.params.exact = exact;
            let found = db.search(&request).unwrap();
            assert_eq!(
                found.result.len(),
                matching.len().min(10),
                "db {d} exact {exact}"
            );
            for p in &found.result {
                assert!(
                    matching.contains(&p.id),
                    "db {d} (indexed: {}), exact {exact}: {} does not match {filter:?}",
                    d != 1,
                    p.id
                );
            }
        }
    }
}

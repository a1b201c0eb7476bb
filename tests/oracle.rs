//! Property tests: random points, filters and queries, checked against a brute-force oracle
//! written here independently of the engine (f64 distances, its own filter evaluation).

use grape_testkit as testkit;

use std::collections::BTreeMap;

use grape_vector_db::{
    Distance, EmbeddedConfig, EmbeddedVectorDB, Filter, Point, PointId, ScrollRequest,
    SearchRequest,
};
use serde_json::{json, Value};
use testkit::Rng;

const COLORS: [&str; 4] = ["red", "green", "blue", "cyan"];

/// What the oracle knows of a point.
#[derive(Clone)]
struct Stored {
    vector: Vec<f32>,
    color: Option<&'static str>,
    size: Option<i64>,
    weight: f64,
    tags: Vec<&'static str>,
}

/// A small filter language the test can both render as Qdrant JSON and evaluate itself.
enum Cond {
    Color(&'static str),
    ColorAny(Vec<&'static str>),
    ColorExcept(Vec<&'static str>),
    SizeIs(i64),
    WeightRange(f64, f64),
    Tag(&'static str),
    TagsEmpty,
    HasId(Vec<PointId>),
    Not(Box<Cond>),
    AnyOf(Vec<Cond>),
}

impl Cond {
    fn random(rng: &mut Rng, ids: &[PointId], depth: u32) -> Cond {
        match rng.below(if depth > 1 { 8 } else { 10 }) {
            0 => Cond::Color(rng.pick(&COLORS)),
            1 => Cond::ColorAny((0..1 + rng.below(2)).map(|_| rng.pick(&COLORS)).collect()),
            2 => Cond::ColorExcept((0..1 + rng.below(2)).map(|_| rng.pick(&COLORS)).collect()),
            3 => Cond::SizeIs(rng.below(5) as i64),
            4 => {
                let a = rng.unit() * 10.0;
                Cond::WeightRange(a, a + rng.unit() * 6.0)
            }
            5 => Cond::Tag(rng.pick(&COLORS)),
            6 => Cond::TagsEmpty,
            7 => Cond::HasId((0..1 + rng.below(20)).map(|_| rng.pick(ids)).collect()),
            8 => Cond::Not(Box::new(Cond::random(rng, ids, depth + 1))),
            _ => Cond::AnyOf((0..2).map(|_| Cond::random(rng, ids, depth + 1)).collect()),
        }
    }

    fn json(&self) -> Value {
        match self {
            Cond::Color(c) => json!({"key": "color", "match": {"value": c}}),
            Cond::ColorAny(cs) => json!({"key": "color", "match": {"any": cs}}),
            Cond::ColorExcept(cs) => json!({"key": "color", "match": {"except": cs}}),
            Cond::SizeIs(n) => json!({"key": "dims.size", "match": {"value": n}}),
            Cond::WeightRange(a, b) => json!({"key": "weight", "range": {"gte": a, "lt": b}}),
            Cond::Tag(t) => json!({"key": "tags[].name", "match": {"value": t}}),
            Cond::TagsEmpty => json!({"is_empty": {"key": "tags"}}),
            Cond::HasId(ids) => json!({ "has_id": ids }),
            Cond::Not(c) => json!({"must_not": [c.json()]}),
            Cond::AnyOf(cs) => json!({"should": cs.iter().map(Cond::json).collect::<Vec<_>>()}),
        }
    }

    fn eval(&self, id: PointId, p: &Stored) -> bool {
        match self {
            Cond::Color(c) => p.color == Some(*c),
            Cond::ColorAny(cs) => p.color.is_some_and(|c| cs.contains(&c)),
            // Qdrant: a missing field is never outside the list.
            Cond::ColorExcept(cs) => p.color.is_some_and(|c| !cs.contains(&c)),
            Cond::SizeIs(n) => p.size == Some(*n),
            Cond::WeightRange(a, b) => p.weight >= *a && p.weight < *b,
            Cond::Tag(t) => p.tags.contains(t),
            Cond::TagsEmpty => p.tags.is_empty(),
            Cond::HasId(ids) => ids.contains(&id),
            Cond::Not(c) => !c.eval(id, p),
            Cond::AnyOf(cs) => cs.iter().any(|c| c.eval(id, p)),
        }
    }
}

fn random_point(rng: &mut Rng, id: PointId, dim: usize) -> (Point, Stored) {
    let stored = Stored {
        vector: (0..dim).map(|_| rng.signed()).collect(),
        color: rng.chance(0.85).then(|| rng.pick(&COLORS)),
        size: rng.chance(0.7).then(|| rng.below(5) as i64),
        weight: rng.unit() * 16.0,
        tags: (0..rng.below(3)).map(|_| rng.pick(&COLORS)).collect(),
    };
    let mut payload = json!({
        "weight": stored.weight,
        "tags": stored.tags.iter().map(|t| json!({"name": t})).collect::<Vec<_>>(),
    });
    if let Some(c) = stored.color {
        payload["color"] = json!(c);
    }
    if let Some(s) = stored.size {
        payload["dims"] = json!({"size": s});
    }
    let point = Point::new(id, stored.vector.clone())
        .with_payload(payload)
        .unwrap();
    (point, stored)
}

/// The oracle's score of a stored vector against a query, in f64.
fn oracle_score(distance: Distance, q: &[f32], v: &[f32]) -> f64 {
    let pairs = q.iter().zip(v).map(|(&a, &b)| (f64::from(a), f64::from(b)));
    match distance {
        Distance::Dot => pairs.map(|(a, b)| a * b).sum(),
        Distance::Cosine => {
            let (mut dot, mut qq, mut vv) = (0.0, 0.0, 0.0);
            for (a, b) in pairs {
                dot += a * b;
                qq += a * a;
                vv += b * b;
            }
            dot / (qq.sqrt() * vv.sqrt())
        }
        Distance::Euclid => pairs.map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt(),
        Distance::Manhattan => pairs.map(|(a, b)| (a - b).abs()).sum(),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-5 * a.abs().max(1.0)
}

fn random_id(rng: &mut Rng) -> PointId {
    if rng.chance(0.8) {
        PointId::Num(rng.below(400) as u64)
    } else {
        PointId::Uuid(u128::from(rng.next_u64()) << 64 | rng.below(50) as u128)
    }
}

fn check_case(seed: u64) {
    let mut rng = Rng::new(seed);
    let distance = rng.pick(&[
        Distance::Cosine,
        Distance::Dot,
        Distance::Euclid,
        Distance::Manhattan,
    ]);
    let dim = 1 + rng.below(40);
    // Odd seeds index the payload keys (float weights included), so filtered searches, counts
    // and deletes also go through the indexes' candidate lists.
    let mut config = EmbeddedConfig::builder(dim).distance(distance);
    if seed % 2 == 1 {
        for key in ["color", "dims.size", "tags[].name", "weight"] {
            config = config.payload_index(key);
        }
    }
    let db = EmbeddedVectorDB::open(config.build().unwrap()).unwrap();
    let mut oracle: BTreeMap<PointId, Stored> = BTreeMap::new();

    // A few rounds of upserts (with replacements) and deletes.
    for _ in 0..3 {
        let batch: Vec<(Point, Stored)> = (0..rng.below(150))
            .map(|_| {
                let id = random_id(&mut rng);
                random_point(&mut rng, id, dim)
            })
            .collect();
        for (p, s) in &batch {
            oracle.insert(p.id, s.clone());
        }
        db.upsert(batch.into_iter().map(|(p, _)| p).collect())
            .unwrap();
        let doomed: Vec<PointId> = (0..rng.below(30)).map(|_| random_id(&mut rng)).collect();
        let existed = doomed
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .iter()
            .filter(|id| oracle.remove(id).is_some())
            .count();
        assert_eq!(db.delete(doomed).unwrap(), existed, "seed {seed}");
    }
    let ids: Vec<PointId> = oracle.keys().copied().collect();
    if ids.is_empty() {
        return;
    }
    assert_eq!(db.count(None).unwrap(), oracle.len(), "seed {seed}");

    for _ in 0..8 {
        let conds: Vec<Cond> = (0..rng.below(3))
            .map(|_| Cond::random(&mut rng, &ids, 0))
            .collect();
        let filter_json = json!({"must": conds.iter().map(Cond::json).collect::<Vec<_>>()});
        let filter = Filter::from_json(&filter_json).unwrap();
        let matching: Vec<PointId> = oracle
            .iter()
            .filter(|(id, s)| conds.iter().all(|c| c.eval(**id, s)))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(
            db.count(Some(&filter)).unwrap(),
            matching.len(),
            "seed {seed} {filter_json}"
        );

        // Scroll pages through exactly the matching ids, in order.
        let mut req = ScrollRequest {
            limit: 1 + rng.below(40),
            filter: Some(filter.clone()),
            ..ScrollRequest::default()
        };
        let mut scrolled = Vec::new();
        loop {
            let page = db.scroll(&req).unwrap();
            scrolled.extend(page.points.iter().map(|r| r.id));
            match page.next_page_offset {
                Some(next) => req.offset = Some(next),
                None => break,
            }
        }
        assert_eq!(scrolled, matching, "seed {seed} scroll {filter_json}");

        // Search: same ranks and scores as the oracle.
        let query: Vec<f32> = (0..dim).map(|_| rng.signed()).collect();
        let limit = 1 + rng.below(25);
        let offset = if rng.chance(0.3) { rng.below(10) } else { 0 };
        let req = SearchRequest::new(query.clone(), limit)
            .with_filter(filter)
            .with_offset(offset);
        let got = db.search(&req).unwrap().result;
        let mut want: Vec<(f64, PointId)> = matching
            .iter()
            .map(|id| (oracle_score(distance, &query, &oracle[id].vector), *id))
            .collect();
        if distance.higher_is_better() {
            want.sort_by(|a, b| b.0.total_cmp(&a.0));
        } else {
            want.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let want: Vec<_> = want.into_iter().skip(offset).take(limit).collect();
        assert_eq!(got.len(), want.len(), "seed {seed}: result count");
        for (rank, (g, (w_score, _))) in got.iter().zip(&want).enumerate() {
            let own = oracle_score(distance, &query, &oracle[&g.id].vector);
            assert!(
                close(f64::from(g.score), *w_score) && close(own, *w_score),
                "seed {seed} rank {rank}: got {} scored {} (oracle {own}), expected score {w_score}",
                g.id,
                g.score
            );
            assert!(
                matching.contains(&g.id),
                "seed {seed}: {} does not match",
                g.id
            );
        }
        let mut unique: Vec<PointId> = got.iter().map(|p| p.id).collect();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), got.len(), "seed {seed}: duplicate ids");

        // A threshold at the k-th score keeps exactly the results at least that good.
        if let Some(last) = got.last() {
            let thr = SearchRequest::new(query.clone(), limit).with_score_threshold(last.score);
            let kept = db.search(&thr).unwrap().result;
            assert!(kept.iter().all(|p| if distance.higher_is_better() {
                p.score >= last.score
            } else {
                p.score <= last.score
            }));
        }
    }

    // delete_by_filter removes exactly what the oracle says.
    let cond = Cond::random(&mut rng, &ids, 0);
    let filter = Filter::from_json(&json!({"must": [cond.json()]})).unwrap();
    let doomed: Vec<PointId> = oracle
        .iter()
        .filter(|(id, s)| cond.eval(**id, s))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        db.delete_by_filter(&filter).unwrap(),
        doomed.len(),
        "seed {seed}"
    );
    assert_eq!(
        db.count(None).unwrap(),
        oracle.len() - doomed.len(),
        "seed {seed}"
    );
    assert_eq!(db.count(Some(&filter)).unwrap(), 0, "seed {seed}");
}

#[test]
fn search_count_scroll_and_delete_agree_with_brute_force() {
    let cases: u64 = std::env::var("GRAPE_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    for seed in 0..cases {
        check_case(seed);
    }
}

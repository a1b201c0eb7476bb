//! Point files: Qdrant points as JSON lines in and out, and the progress of a long import.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use grape_vector_db::{EmbeddedVectorDB, Point, ScrollRequest};
use serde_json::Value;

/// Points per upsert: large batches log and index efficiently, small ones keep memory flat.
const BATCH: usize = 1000;

/// Reports an import's progress on standard error: a bar on a terminal, nothing otherwise, and
/// a summary at the end either way.
pub(crate) struct Progress {
    total_bytes: Option<u64>,
    points: usize,
    started: Instant,
    terminal: bool,
}

impl Progress {
    pub fn new(total_bytes: Option<u64>) -> Self {
        Progress {
            total_bytes,
            points: 0,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    pub fn advance(&mut self, points: usize, bytes_done: u64) {
        self.points += points;
        if !self.terminal {
            return;
        }
        let share = self
            .total_bytes
            .filter(|&t| t > 0)
            .map_or(0.0, |t| bytes_done as f64 / t as f64);
        let filled = (share * 30.0) as usize;
        eprint!(
            "\r[{}{}] {:>3.0}% {} points",
            "=".repeat(filled.min(30)),
            " ".repeat(30 - filled.min(30)),
            share * 100.0,
            self.points
        );
    }

    pub fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
        let secs = self.started.elapsed().as_secs_f64();
        eprintln!(
            "imported {} points in {secs:.1} s ({:.0} points/s)",
            self.points,
            self.points as f64 / secs.max(1e-9)
        );
    }
}

/// Upserts the points of a JSON-lines stream, a batch at a time. Errors name the line.
pub(crate) fn import_points(
    db: &EmbeddedVectorDB,
    input: impl BufRead,
    progress: &mut Progress,
) -> Result<(), String> {
    let mut batch = Vec::with_capacity(BATCH);
    let mut bytes = 0u64;
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", n + 1))?;
        bytes += line.len() as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", n + 1))?;
        batch.push(Point::from_json(&value).map_err(|e| format!("line {}: {e}", n + 1))?);
        if batch.len() == BATCH {
            upsert(db, &mut batch, progress, bytes)?;
        }
    }
    upsert(db, &mut batch, progress, bytes)
}

pub(crate) fn upsert(
    db: &EmbeddedVectorDB,
    batch: &mut Vec<Point>,
    progress: &mut Progress,
    bytes_done: u64,
) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let n = batch.len();
    db.upsert(std::mem::take(batch))
        .map_err(|e| e.to_string())?;
    progress.advance(n, bytes_done);
    Ok(())
}

/// Writes every point as one Qdrant point a line (`{"id", "vector", "payload"}`), in id order:
/// what Qdrant's REST upsert takes, a batch of lines at a time.
pub(crate) fn export_points(db: &EmbeddedVectorDB, out: &mut dyn Write) -> Result<usize, String> {
    let mut request = ScrollRequest {
        limit: BATCH,
        with_payload: true,
        with_vector: true,
        ..ScrollRequest::default()
    };
    let mut written = 0;
    loop {
        let page = db.scroll(&request).map_err(|e| e.to_string())?;
        for record in &page.points {
            serde_json::to_writer(&mut *out, record).map_err(|e| e.to_string())?;
            out.write_all(b"\n").map_err(|e| e.to_string())?;
        }
        written += page.points.len();
        match page.next_page_offset {
            Some(next) => request.offset = Some(next),
            None => break,
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(written)
}

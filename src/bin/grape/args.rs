//! The command line: the usage text, and the command, directory, arguments and options it
//! was given.

use std::path::PathBuf;

pub(crate) const USAGE: &str = "\
grape: inspect and change a Grape Vector DB database (requests and answers in Qdrant's JSON)

usage: grape <command> <dir> [arguments]

  create <dir> --dimension N [--distance cosine|dot|euclid|manhattan] [--no-index]
         [--sparse name[=idf|bm25],...]  sparse vectors beside the dense one; bm25 takes text
         [--named name=size[:distance],...]  named dense vectors beside the unnamed one
                                       (--dimension 0: named vectors only)
  import <dir> <points.jsonl>          Qdrant points, one {\"id\", \"vector\", \"payload\"} a line
  import <dir> --npy <vectors.npy> [--payloads <payloads.jsonl>] [--first-id N]
  import <dir> --archive <db.grape>    a whole database exported by export --archive (or by JS
                                       exportBytes()), into an empty or new directory
  export <dir> [<points.jsonl>]        every point as Qdrant points JSONL (stdout without a file)
  export <dir> --archive <db.grape>    the whole database as one file, for GrapeDB.open({ import })
                                       in a browser or Node, or import --archive elsewhere
  query  <dir> <request>               Qdrant's query request: {\"query\": [...], \"filter\": ..., \"limit\": 10};
                                       a named vector's, sparse ({\"indices\", \"values\"}) or
                                       text ({\"text\"}) with \"using\", and \"prefetch\" with
                                       {\"fusion\": \"rrf\" | \"dbsf\"}
  count  <dir> [<request>]             Qdrant's count request: {\"filter\": ...}
  scroll <dir> [<request>]             Qdrant's scroll request: {\"filter\": ..., \"limit\": 10, \"offset\": id}
  info   <dir>                         dimension, distance, files and their format versions, counts
  verify <dir>                         checks every checksum and the engine; exit 0 healthy,
                                       1 damaged, 2 warnings (nothing is changed)
  snapshot <dir> <dest>                a consistent copy, itself a database
  compact  <dir>                       reclaims the space of deleted points

A <request> is JSON text, a file holding it, or - for standard input.";

/// A command line, split into the command, the database directory, positional arguments and
/// `--name value` options (`--flag` alone for switches).
pub(crate) struct Args {
    pub command: String,
    pub dir: PathBuf,
    pub positional: Vec<String>,
    pub options: Vec<(String, Option<String>)>,
}

/// Options that take no value.
const SWITCHES: [&str; 1] = ["--no-index"];

impl Args {
    pub fn parse(mut words: impl Iterator<Item = String>) -> Result<Args, String> {
        let command = words.next().ok_or("no command given")?;
        if matches!(command.as_str(), "-h" | "--help" | "help") {
            return Err(String::new());
        }
        let dir = words
            .next()
            .ok_or_else(|| format!("{command}: the database directory is missing"))?;
        let mut positional = Vec::new();
        let mut options = Vec::new();
        while let Some(word) = words.next() {
            if word.starts_with("--") {
                let value = match SWITCHES.contains(&word.as_str()) {
                    true => None,
                    false => Some(
                        words
                            .next()
                            .ok_or_else(|| format!("{word} needs a value"))?,
                    ),
                };
                options.push((word, value));
            } else {
                positional.push(word);
            }
        }
        Ok(Args {
            command,
            dir: PathBuf::from(dir),
            positional,
            options,
        })
    }

    /// The value of `--name`, if given.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    pub fn switch(&self, name: &str) -> bool {
        self.options.iter().any(|(n, _)| n == name)
    }

    /// Refuses options the command does not know, so a misspelt one is not silently ignored.
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        match self
            .options
            .iter()
            .find(|(n, _)| !known.contains(&n.as_str()))
        {
            Some((n, _)) => Err(format!("{}: unknown option {n}", self.command)),
            None => Ok(()),
        }
    }
}

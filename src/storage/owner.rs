//! The owner record: which process has a database directory open, readable by every host.
//!
//! Natively a directory is locked with `flock` on `LOCK`, which the OS releases when the process
//! dies. Node has no `flock`, so a Node process could not see a native one's lock, nor the
//! reverse. Both therefore also claim [`OWNER`], a file naming the process (`pid host`), created
//! atomically (written under a private name, then hard-linked: the link fails if the record
//! exists, and no reader ever sees it half written). A record whose process is gone from this
//! host is stale (a crash) and is taken over, and so, natively, is one a native process wrote
//! (the `flock` just taken proves that process gone, on hosts that cannot look processes up);
//! one held by a live process, or by another host (whose processes we cannot see), makes the
//! open fail with [`Error::AlreadyOpen`].

use std::io;

use crate::error::{Error, Result};

/// The file native opens hold their `flock` on. Every name starting with `LOCK` is the lock's,
/// never a database file (`Storage::list` leaves them out).
pub(crate) const LOCK_FILE: &str = "LOCK";

/// Name of the owner record, beside [`LOCK_FILE`].
pub(crate) const OWNER: &str = "LOCK.owner";

/// Attempts at claiming the record: each failed one has seen a record go away or taken a stale
/// one over, so more than a few means processes racing for the directory.
const ATTEMPTS: usize = 4;

/// The file and process operations the owner protocol needs of a host.
pub(crate) trait OwnerHost {
    /// Creates or replaces `name` with `content`.
    fn write(&self, name: &str, content: &[u8]) -> io::Result<()>;
    /// Hard-links `from` as `to`; fails with `AlreadyExists` if `to` exists.
    fn link(&self, from: &str, to: &str) -> io::Result<()>;
    /// The content of `name`; `NotFound` if it is missing.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// Renames `from` to `to`; `NotFound` if `from` is missing.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes `name`; a missing file is not an error.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// This process's id.
    fn pid(&self) -> u32;
    /// When this process started, in milliseconds since the Unix epoch, where the host records
    /// it: a record naming our own pid is then ours only if it names our start too (after a
    /// container restarts, its processes get the same pids again).
    fn started(&self) -> Option<u64>;
    /// Whether this process holds the directory's `flock` (natively, taken before the claim).
    /// Then no other native process holds the directory, nor another open of this one: a record
    /// written natively (natives write no start) or naming our own pid is stale. Node has no
    /// `flock`; there another database object (or worker thread) of this process may hold it.
    fn holds_flock(&self) -> bool;
    /// This machine's name.
    fn host(&self) -> String;
    /// Whether process `pid` of this machine exists (`true` when the host cannot tell).
    fn alive(&self, pid: u32) -> bool;
}

/// How far apart two readings of one process's start may be (they are computed from the clock
/// and the process's uptime) and still be the same process.
const SAME_START_MS: u64 = 250;

/// Who a record names: `pid host [start]`.
#[derive(Debug, PartialEq, Eq)]
struct Record {
    pid: u32,
    host: String,
    started: Option<u64>,
}

impl Record {
    fn of(host: &dyn OwnerHost) -> Record {
        Record {
            pid: host.pid(),
            host: host.host(),
            started: host.started(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self.started {
            Some(ms) => format!("{} {} {ms}\n", self.pid, self.host),
            None => format!("{} {}\n", self.pid, self.host),
        }
        .into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(bytes).ok()?.strip_suffix('\n')?;
        let mut fields = text.split(' ');
        let record = Record {
            pid: fields.next()?.parse().ok()?,
            host: fields.next()?.to_owned(),
            started: match fields.next() {
                Some(ms) => Some(ms.parse().ok()?),
                None => None,
            },
        };
        fields.next().is_none().then_some(record)
    }

    /// Whether the process this record names is gone, as far as `host` (on the same machine)
    /// can tell.
    fn is_stale(&self, host: &dyn OwnerHost, ours: &Record) -> bool {
        if host.holds_flock() && (self.started.is_none() || self.pid == ours.pid) {
            return true;
        }
        if self.pid != ours.pid {
            return !host.alive(self.pid);
        }
        // Our own pid, in Node: ours, unless it names another start (a restarted container).
        match (self.started, ours.started) {
            (Some(a), Some(b)) => a.abs_diff(b) > SAME_START_MS,
            _ => false,
        }
    }
}

/// A claimed owner record, as written: what [`release`] removes if it is still there (a
/// process's start is computed from the clock, so it is not written twice the same).
#[derive(Debug)]
pub(crate) struct Claim(Vec<u8>);

/// Claims the directory for this process, or fails with [`Error::AlreadyOpen`] (naming
/// `location` and the holder) if a live process holds it.
pub(crate) fn claim(host: &dyn OwnerHost, location: &str) -> Result<Claim> {
    let ours = Record::of(host);
    let io = |op: &'static str| move |e: io::Error| Error::io(op, OWNER, e);
    let private = format!("{OWNER}.{}.claim", ours.pid);
    host.write(&private, &ours.encode())
        .map_err(io("write owner record"))?;
    let outcome = (|| {
        for _ in 0..ATTEMPTS {
            match host.link(&private, OWNER) {
                Ok(()) => return Ok(Claim(ours.encode())),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io("claim owner record")(e)),
            }
            let held = match host.read(OWNER) {
                Ok(bytes) => bytes,
                // Released meanwhile: claim again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("read owner record")(e)),
            };
            match Record::decode(&held) {
                Some(r) if r.host == ours.host && r.is_stale(host, &ours) => {
                    take_over_stale(host, &held, r.pid).map_err(io("take over owner record"))?
                }
                holder => return Err(held_by(location, holder)),
            }
        }
        Err(Error::AlreadyOpen(format!(
            "{location} (processes are racing to open it; try again)"
        )))
    })();
    let _ = host.remove(&private);
    outcome
}

/// Moves a stale record (`judged`, naming dead process `pid`) out of the way. If another
/// process replaced it between our read and the rename, what we moved is put back: it is that
/// process's claim, not the stale record.
fn take_over_stale(host: &dyn OwnerHost, judged: &[u8], pid: u32) -> io::Result<()> {
    let aside = format!("{OWNER}.{pid}.stale.{}", host.pid());
    match host.rename(OWNER, &aside) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    }
    if host.read(&aside)? != judged {
        match host.link(&aside, OWNER) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
    }
    host.remove(&aside)
}

fn held_by(location: &str, holder: Option<Record>) -> Error {
    let who = match holder {
        Some(r) => format!("process {} on {}", r.pid, r.host),
        None => "an unreadable owner record".to_owned(),
    };
    Error::AlreadyOpen(format!(
        "{location} (held by {who}; if no process has it open, delete {OWNER} in it)"
    ))
}

/// Gives the directory up, if `claim` still holds it.
pub(crate) fn release(host: &dyn OwnerHost, claim: &Claim) {
    if host.read(OWNER).is_ok_and(|held| held == claim.0) {
        let _ = host.remove(OWNER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::{HashMap, HashSet};
    use std::rc::Rc;

    /// Files in a map shared by several simulated processes.
    #[derive(Default)]
    struct Machine {
        files: RefCell<HashMap<String, Vec<u8>>>,
        live: RefCell<HashSet<u32>>,
    }

    struct Process {
        machine: Rc<Machine>,
        pid: u32,
        host: &'static str,
        started: Option<u64>,
        /// Node's rule (another object of this process may hold it), else native's.
        node: bool,
    }

    impl Process {
        fn start(machine: &Rc<Machine>, pid: u32) -> Process {
            machine.live.borrow_mut().insert(pid);
            Process {
                machine: machine.clone(),
                pid,
                host: "here",
                started: Some(1_000_000 + u64::from(pid)),
                node: true,
            }
        }
        fn die(self) {
            self.machine.live.borrow_mut().remove(&self.pid);
        }
    }

    fn not_found() -> io::Error {
        io::ErrorKind::NotFound.into()
    }

    impl OwnerHost for Process {
        fn write(&self, name: &str, content: &[u8]) -> io::Result<()> {
            let mut files = self.machine.files.borrow_mut();
            files.insert(name.to_owned(), content.to_vec());
            Ok(())
        }
        fn link(&self, from: &str, to: &str) -> io::Result<()> {
            let mut files = self.machine.files.borrow_mut();
            if files.contains_key(to) {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            let content = files.get(from).ok_or_else(not_found)?.clone();
            files.insert(to.to_owned(), content);
            Ok(())
        }
        fn read(&self, name: &str) -> io::Result<Vec<u8>> {
            let files = self.machine.files.borrow();
            files.get(name).cloned().ok_or_else(not_found)
        }
        fn rename(&self, from: &str, to: &str) -> io::Result<()> {
            let mut files = self.machine.files.borrow_mut();
            let content = files.remove(from).ok_or_else(not_found)?;
            files.insert(to.to_owned(), content);
            Ok(())
        }
        fn remove(&self, name: &str) -> io::Result<()> {
            self.machine.files.borrow_mut().remove(name);
            Ok(())
        }
        fn pid(&self) -> u32 {
            self.pid
        }
        fn started(&self) -> Option<u64> {
            self.started
        }
        fn holds_flock(&self) -> bool {
            !self.node
        }
        fn host(&self) -> String {
            self.host.to_owned()
        }
        fn alive(&self, pid: u32) -> bool {
            self.machine.live.borrow().contains(&pid)
        }
    }

    fn names(machine: &Machine) -> Vec<String> {
        let mut names: Vec<String> = machine.files.borrow().keys().cloned().collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn one_live_process_holds_the_directory_until_it_releases_it() {
        let machine = Rc::new(Machine::default());
        let (a, b) = (Process::start(&machine, 10), Process::start(&machine, 11));
        let held = claim(&a, "db").unwrap();
        let refused = claim(&b, "db").unwrap_err();
        assert!(
            refused.to_string().contains("process 10 on here"),
            "{refused}"
        );
        assert!(claim(&a, "db").is_err(), "a second open in one process");
        release(&b, &Claim(b"11 here 1000011\n".to_vec()));
        assert!(claim(&b, "db").is_err(), "only the holder releases");
        release(&a, &held);
        claim(&b, "db").unwrap();
        assert_eq!(
            names(&machine),
            vec![OWNER.to_owned()],
            "no claim left over"
        );
    }

    #[test]
    fn release_removes_the_record_as_written_though_the_start_reads_otherwise_now() {
        // Node computes its start from the clock and its uptime: a few ms off at release.
        let machine = Rc::new(Machine::default());
        let mut a = Process::start(&machine, 10);
        let held = claim(&a, "db").unwrap();
        a.started = a.started.map(|ms| ms + 3);
        release(&a, &held);
        assert!(names(&machine).is_empty(), "{:?}", names(&machine));
    }

    #[test]
    fn a_dead_holders_record_is_taken_over() {
        let machine = Rc::new(Machine::default());
        let a = Process::start(&machine, 10);
        claim(&a, "db").unwrap();
        a.die();
        let b = Process::start(&machine, 11);
        claim(&b, "db").unwrap();
        assert_eq!(b.read(OWNER).unwrap(), b"11 here 1000011\n");
        assert_eq!(names(&machine), vec![OWNER.to_owned()]);
    }

    #[test]
    fn a_record_of_our_pid_is_ours_only_if_it_names_our_start() {
        // A container restarted after a crash: the new process has the old one's pid.
        let machine = Rc::new(Machine::default());
        let this = Process::start(&machine, 7);
        claim(&this, "db").unwrap();
        assert!(
            claim(&this, "db").is_err(),
            "our start: this process holds it"
        );
        machine
            .files
            .borrow_mut()
            .insert(OWNER.into(), b"7 here 5000\n".to_vec());
        claim(&this, "db").unwrap();
        assert_eq!(this.read(OWNER).unwrap(), b"7 here 1000007\n");
        // Natively the flock just taken says no other open of this process holds it.
        let native = Process {
            node: false,
            started: None,
            ..Process::start(&machine, 8)
        };
        machine
            .files
            .borrow_mut()
            .insert(OWNER.into(), b"8 here\n".to_vec());
        claim(&native, "db").unwrap();
    }

    #[test]
    fn natively_a_native_record_is_stale_and_a_live_node_record_is_not() {
        // The flock is ours, so no native process holds the directory, whatever `alive` says
        // (on Windows it cannot tell); a live Node process (its record has a start) may.
        let machine = Rc::new(Machine::default());
        let native = Process {
            node: false,
            started: None,
            ..Process::start(&machine, 8)
        };
        Process::start(&machine, 20);
        let record = |bytes: &[u8]| {
            machine
                .files
                .borrow_mut()
                .insert(OWNER.into(), bytes.to_vec())
        };
        record(b"20 here\n");
        claim(&native, "db").unwrap();
        record(b"20 here 1000020\n");
        assert!(claim(&native, "db").is_err());
    }

    #[test]
    fn another_hosts_or_an_unreadable_record_is_never_taken_over() {
        let machine = Rc::new(Machine::default());
        let b = Process::start(&machine, 11);
        for record in [&b"99 elsewhere\n"[..], b"garbage", b"99 here 1 2\n"] {
            machine
                .files
                .borrow_mut()
                .insert(OWNER.into(), record.to_vec());
            let refused = claim(&b, "db").unwrap_err();
            assert!(matches!(refused, Error::AlreadyOpen(_)), "{refused}");
            assert!(refused.to_string().contains(OWNER), "{refused}");
        }
    }

    #[test]
    fn a_claim_made_during_a_takeover_is_put_back() {
        // B judged the record of dead process 10 stale, but C replaced it before B's rename:
        // B moves C's record aside, sees it is not what it judged, and restores it.
        let machine = Rc::new(Machine::default());
        let (b, c) = (Process::start(&machine, 11), Process::start(&machine, 12));
        let stale = Record {
            pid: 10,
            host: "here".into(),
            started: None,
        }
        .encode();
        claim(&c, "db").unwrap();
        take_over_stale(&b, &stale, 10).unwrap();
        assert_eq!(b.read(OWNER).unwrap(), b"12 here 1000012\n");
        assert!(claim(&b, "db").is_err());
    }
}

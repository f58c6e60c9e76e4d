//! Group commit of fsyncs: a caller returns once an fsync that started
//! after it called has finished. Whoever finds none running starts one;
//! the others wait for the next to finish, so any number of writes made
//! while one fsync runs share the following one. The store uses one for
//! its directory (renames, removals) and one for the pack being appended
//! to (see the `pack` module).

use std::io;
use std::sync::{Condvar, Mutex, PoisonError};

/// The fsyncs of one file or directory, grouped.
#[derive(Debug, Default)]
pub(crate) struct GroupSync {
    state: Mutex<SyncState>,
    finished: Condvar,
}

#[derive(Debug, Default)]
struct SyncState {
    /// Fsyncs started, the running one included.
    started: u64,
    /// The last one finished.
    finished: u64,
    running: bool,
    /// The last one that failed, and why.
    failed: Option<(u64, String)>,
}

impl GroupSync {
    /// Fsyncs started so far.
    #[cfg(test)]
    pub(crate) fn started(&self) -> u64 {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).started
    }

    /// Returns once a run of `fsync` begun after this call has finished
    /// (this caller's or another's: every caller of one `GroupSync` must
    /// pass the same fsync).
    pub(crate) fn sync(&self, fsync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // One running now may have begun before the caller's write: only
        // the next one counts.
        let needed = state.started + 1;
        let mut fsync = Some(fsync);
        loop {
            if state.finished >= needed {
                return match &state.failed {
                    Some((at, why)) if *at >= needed => Err(io::Error::other(why.clone())),
                    _ => Ok(()),
                };
            }
            if state.running {
                state = self.finished.wait(state).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.running = true;
            state.started += 1;
            let generation = state.started;
            drop(state);
            // A caller runs at most one fsync: the one it starts is begun
            // after its call, so it is the one `needed` waits for.
            let result = fsync.take().map_or(Ok(()), |fsync| fsync());
            state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.running = false;
            state.finished = generation;
            if let Err(err) = result {
                state.failed = Some((generation, err.to_string()));
            }
            self.finished.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn an_fsync_serves_every_caller_that_waited_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let group = Arc::new(GroupSync::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (group, path) = (group.clone(), dir.path().to_path_buf());
                std::thread::spawn(move || (0..20).try_for_each(|_| group.sync(|| File::open(&path)?.sync_all())))
            })
            .collect();
        for thread in threads {
            thread.join().unwrap().unwrap();
        }
        let state = group.state.lock().unwrap();
        assert!(!state.running);
        assert_eq!(state.started, state.finished);
        assert!(state.started <= 160, "at most one fsync per call");
        drop(state);
        let missing = dir.path().join("missing");
        assert!(group.sync(|| File::open(&missing)?.sync_all()).is_err(), "a failed fsync is reported to its callers");
    }
}

//! Which data-path worker thread this is (see `edge::workers`).
//!
//! A school's connections are placed by worker: a request prefers a connection whose task
//! runs on its own thread, so no wake-up crosses threads. The pool owns the thread-local
//! because it is what reads it; the edge sets it once when it starts a worker thread, so
//! the pool never depends on the server.

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the worker running on this thread; `None` on the control path's threads.
pub fn current() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// Marks this thread as worker `index`. Called once, first thing, on each worker thread.
pub fn enter(index: usize) {
    WORKER.with(|worker| worker.set(Some(index)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_has_no_index_until_it_enters_one() {
        std::thread::spawn(|| {
            assert_eq!(current(), None);
            enter(3);
            assert_eq!(current(), Some(3));
        })
        .join()
        .unwrap();
        assert_eq!(current(), None);
    }
}

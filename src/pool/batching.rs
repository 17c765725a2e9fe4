//! The connection task of a pooled connection, made to batch its socket writes.
//!
//! Why: a tokio-postgres `Connection` is a task of its own; a request hands it a query
//! through a channel and wakes it. tokio runs a task woken by another task next (its
//! "LIFO slot"), so without help the connection task runs right after each request's task
//! and writes that one query: one `sendto` per request, and one wake-up of the PostgreSQL
//! backend per query. When requests arrive together (one `epoll` batch of client
//! sockets), they should share one write instead.
//!
//! So after every wake-up the task first yields once: it wakes itself and returns, which
//! puts it at the back of its worker's run queue, behind the request tasks that are
//! already runnable. When it then runs, every query those tasks enqueued is in its
//! channel, and tokio-postgres writes them all before it flushes. Responses are batched
//! the same way: one `recvfrom` returns the results of several pipelined queries.
//! The cost is one extra poll per wake-up (no syscall, no allocation).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Drives `inner`, yielding to the scheduler once before each poll of it.
pub struct YieldFirst<F> {
    inner: F,
    yielded: bool,
}

impl<F> YieldFirst<F> {
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            yielded: false,
        }
    }
}

impl<F: Future + Unpin> Future for YieldFirst<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if !self.yielded {
            self.yielded = true;
            // Scheduled again behind the tasks that are runnable now (a self-wake during
            // poll is a yield to tokio, not a LIFO-slot schedule).
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yielded = false;
        Pin::new(&mut self.inner).poll(cx)
    }
}

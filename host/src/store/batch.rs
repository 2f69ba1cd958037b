//! Coalescing concurrent requests into one database round trip.
//!
//! Under load the order path's cost in PostgreSQL is per statement (parse/bind, executor
//! start-up, a commit, a wake-up of the backend), not per row. A [`Batcher`] owns a
//! channel: each caller sends its input and awaits its own answer; a drain task takes
//! every input waiting (up to `max`), hands the group to the handler in one call and
//! answers each caller from the handler's outputs, in order. Nothing waits for a group
//! to fill: a group is whatever piled up while the previous one ran, so an idle service
//! pays one round trip per request and a busy one far fewer. `lanes` bounds how many
//! groups run at once. Written here because the existing crates either batch by timer
//! (adding latency on an idle service) or are tied to a GraphQL layer.

use std::{future::Future, sync::Arc};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument as _;

/// An input, where to answer, and the caller's span (its request id, tenant and user).
type Envelope<I, O> = (I, oneshot::Sender<O>, tracing::Span);

/// The group handler, shared by the drain task and callers that run inline.
type Handler<I, O> =
    dyn Fn(Vec<I>) -> std::pin::Pin<Box<dyn Future<Output = Vec<O>> + Send>> + Send + Sync;

/// Handle to a drain task; cheap to clone.
pub struct Batcher<I, O> {
    tx: mpsc::Sender<Envelope<I, O>>,
    lanes: Arc<Semaphore>,
    handle: Arc<Handler<I, O>>,
}

impl<I, O> std::fmt::Debug for Batcher<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("waiting", &(self.tx.max_capacity() - self.tx.capacity()))
            .field("free_lanes", &self.lanes.available_permits())
            .finish()
    }
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            lanes: self.lanes.clone(),
            handle: self.handle.clone(),
        }
    }
}

/// The drain task is gone (the runtime is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the batch task stopped")]
pub struct Stopped;

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the drain task. `handle` gets a non-empty group and must return exactly one
    /// output per input, in the same order (a missing output answers its caller with
    /// [`Stopped`]).
    pub fn start<F, Fut>(max: usize, lanes: usize, handle: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<O>> + Send + 'static,
    {
        let max = max.max(1);
        let one_lane = lanes <= 1;
        let (tx, mut rx) = mpsc::channel::<Envelope<I, O>>(4 * max);
        let handle: Arc<Handler<I, O>> = Arc::new(move |group| Box::pin(handle(group)));
        let lanes = Arc::new(Semaphore::new(lanes.max(1)));
        let (drain_lanes, drain_handle) = (lanes.clone(), handle.clone());
        tokio::spawn(async move {
            loop {
                // Wait for work first, then for a lane: an idle drain task holds no lane,
                // so a caller of `call_or_run` finds one free.
                let Some(first) = rx.recv().await else {
                    return;
                };
                let Ok(permit) = drain_lanes.clone().acquire_owned().await else {
                    return;
                };
                let mut group = vec![first];
                while group.len() < max {
                    match rx.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                // The group runs in a span of its own that follows from every caller's
                // span: a trace links each request to the group that served it, and the
                // group's log lines are not attributed to whichever request came first.
                let span = tracing::debug_span!("batch", size = group.len());
                let mut inputs = Vec::with_capacity(group.len());
                let mut replies = Vec::with_capacity(group.len());
                for (input, reply, caller) in group {
                    span.follows_from(&caller);
                    inputs.push(input);
                    replies.push(reply);
                }
                let run = drain_handle(inputs).instrument(span);
                let answer = async move {
                    let outputs = run.await;
                    for (reply, output) in replies.into_iter().zip(outputs) {
                        // The caller may have gone away (a dropped request): nothing to do.
                        let _ = reply.send(output);
                    }
                    drop(permit);
                };
                if one_lane {
                    // Groups run one at a time anyway: run it here, without a task spawn.
                    answer.await;
                } else {
                    tokio::spawn(answer);
                }
            }
        });
        Self { tx, lanes, handle }
    }

    /// Sends `input` with the next group and waits for its output.
    pub async fn call(&self, input: I) -> Result<O, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((input, reply, tracing::Span::current()))
            .await
            .map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }

    /// Like [`Self::call`], but when nothing is waiting and a lane is free (an idle
    /// service) runs `input` as a group of one in the caller's own task: no hand-over to
    /// the drain task and back, which at light load costs more than the statement. Only
    /// for handlers that may be dropped half-way (reads): a dropped caller drops its run.
    pub async fn call_or_run(&self, input: I) -> Result<O, Stopped> {
        if self.tx.capacity() == self.tx.max_capacity()
            && let Ok(permit) = self.lanes.clone().try_acquire_owned()
        {
            let output = (self.handle)(vec![input]).await.into_iter().next();
            drop(permit);
            return output.ok_or(Stopped);
        }
        self.call(input).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_each_caller_with_its_own_output_and_groups_concurrent_calls() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Batcher::start(8, 1, move |group: Vec<u32>| {
            seen.lock().unwrap().push(group.len());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                group.into_iter().map(|n| n * 10).collect::<Vec<_>>()
            }
        });
        let calls: Vec<_> = (0..40u32)
            .map(|n| {
                let b = batcher.clone();
                tokio::spawn(async move { (n, b.call(n).await.unwrap()) })
            })
            .collect();
        for call in calls {
            let (n, out) = call.await.unwrap();
            assert_eq!(out, n * 10);
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 40);
        assert!(sizes.iter().all(|&s| (1..=8).contains(&s)), "{sizes:?}");
        assert!(sizes.len() < 40, "concurrent calls were grouped: {sizes:?}");
    }

    #[tokio::test]
    async fn an_idle_batcher_runs_inline_and_a_busy_one_groups() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Batcher::start(8, 1, move |group: Vec<u32>| {
            seen.lock().unwrap().push(group.len());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                group.into_iter().map(|n| n + 1).collect::<Vec<_>>()
            }
        });
        // Idle: one call is a group of one, answered inline.
        assert_eq!(batcher.call_or_run(1).await.unwrap(), 2);
        assert_eq!(*sizes.lock().unwrap(), vec![1]);
        // Busy: while the lane runs, the others wait in the channel and are grouped.
        let calls: Vec<_> = (0..20u32)
            .map(|n| {
                let b = batcher.clone();
                tokio::spawn(async move { (n, b.call_or_run(n).await.unwrap()) })
            })
            .collect();
        for call in calls {
            let (n, out) = call.await.unwrap();
            assert_eq!(out, n + 1);
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 21);
        assert!(sizes.len() < 21, "concurrent calls were grouped: {sizes:?}");
    }

    #[tokio::test]
    async fn a_short_answer_fails_only_the_unanswered_callers() {
        let batcher = Batcher::start(4, 1, |group: Vec<u32>| async move {
            group.into_iter().take(0).collect::<Vec<u32>>()
        });
        assert!(batcher.call(1).await.is_err());
    }
}

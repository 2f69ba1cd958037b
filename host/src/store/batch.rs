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

/// Handle to a drain task; cheap to clone.
#[derive(Debug)]
pub struct Batcher<I, O> {
    tx: mpsc::Sender<Envelope<I, O>>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
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
        let (tx, mut rx) = mpsc::channel::<Envelope<I, O>>(4 * max);
        let handle = Arc::new(handle);
        let lanes = Arc::new(Semaphore::new(lanes.max(1)));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = lanes.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = rx.recv().await else {
                    return;
                };
                let mut group = vec![first];
                while group.len() < max {
                    match rx.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                let handle = handle.clone();
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
                tokio::spawn(async move {
                    let outputs = handle(inputs).instrument(span).await;
                    for (reply, output) in replies.into_iter().zip(outputs) {
                        // The caller may have gone away (a dropped request): nothing to do.
                        let _ = reply.send(output);
                    }
                    drop(permit);
                });
            }
        });
        Self { tx }
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
    async fn a_short_answer_fails_only_the_unanswered_callers() {
        let batcher = Batcher::start(4, 1, |group: Vec<u32>| async move {
            group.into_iter().take(0).collect::<Vec<u32>>()
        });
        assert!(batcher.call(1).await.is_err());
    }
}

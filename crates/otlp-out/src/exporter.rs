//! The push task. The pipe hands it the newest request and never waits for it. Values are
//! cumulative (or deltas against the last accepted request), so a newer request supersedes an
//! unsent older one: the queue holds one request, and nothing is lost while the collector is
//! down. Failures are retried with capped exponential backoff and logged once per change of
//! state.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::transport::Transport;

/// First retry delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

type Latest = Option<(u64, Arc<Vec<u8>>)>;

/// Handle of the push task.
pub struct Exporter {
    latest: watch::Sender<Latest>,
    acked: watch::Receiver<u64>,
    failures: Arc<AtomicU64>,
    last_success: Arc<Mutex<Option<Instant>>>,
    endpoint: String,
}

impl Exporter {
    /// Starts pushing through `transport`.
    #[must_use]
    pub fn spawn(mut transport: Transport) -> Self {
        let (latest, mut rx) = watch::channel::<Latest>(None);
        let (ack_tx, acked) = watch::channel(0u64);
        let failures = Arc::new(AtomicU64::new(0));
        let last_success = Arc::new(Mutex::new(None));
        let endpoint = transport.endpoint().to_owned();
        let (task_failures, task_success) = (Arc::clone(&failures), Arc::clone(&last_success));
        tokio::spawn(async move {
            let mut failing = false;
            while rx.changed().await.is_ok() {
                let Some((mut seq, mut req)) = rx.borrow_and_update().clone() else { continue };
                let mut backoff = FIRST_BACKOFF;
                loop {
                    match transport.send(&req).await {
                        Ok(rejected) => {
                            if failing {
                                tracing::info!(endpoint = transport.endpoint(), "OTLP export works again");
                                failing = false;
                            }
                            if rejected > 0 {
                                tracing::warn!(rejected, "the collector rejected some data points");
                            }
                            *task_success.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                                Some(Instant::now());
                            let _ = ack_tx.send(seq);
                            break;
                        }
                        Err(e) => {
                            task_failures.fetch_add(1, Ordering::Relaxed);
                            if !failing {
                                tracing::warn!(error = %e, "OTLP export failed; retrying with backoff, values keep accumulating");
                                failing = true;
                            }
                            tokio::select! {
                                () = tokio::time::sleep(backoff) => {}
                                changed = rx.changed() => if changed.is_err() { return },
                            }
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            // Retry with the newest request: it carries everything the old one did.
                            if let Some((s, r)) = rx.borrow_and_update().clone() {
                                (seq, req) = (s, r);
                            }
                        }
                    }
                }
            }
        });
        Self { latest, acked, failures, last_success, endpoint }
    }

    /// Hands over the newest encoded request; an unsent older one is dropped (superseded).
    pub fn publish(&self, seq: u64, req: Vec<u8>) {
        self.latest.send_replace(Some((seq, Arc::new(req))));
    }

    /// The sequence number of the last request the collector accepted (0: none yet).
    #[must_use]
    pub fn acknowledged(&self) -> u64 {
        *self.acked.borrow()
    }

    /// Failed attempts so far.
    #[must_use]
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// When an export last succeeded.
    #[must_use]
    pub fn last_success(&self) -> Option<Instant> {
        *self.last_success.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where requests go.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Waits until request `seq` (or a newer one) was accepted, at most `timeout`.
    pub async fn flush(&self, seq: u64, timeout: Duration) -> bool {
        let mut acked = self.acked.clone();
        let accepted = acked.wait_for(|a| *a >= seq);
        let done = matches!(tokio::time::timeout(timeout, accepted).await, Ok(Ok(_)));
        done
    }
}

//! A table refreshed in the background, on an interval and on demand (rate-limited), and
//! published as an immutable `Arc` so readers on the export path never wait on I/O.
//! Failures keep the last good table and are logged once per change of state.

use std::{
    fmt::Display,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{watch, Notify};

/// A published table and when the load that produced it started.
#[derive(Debug)]
pub struct Versioned<T> {
    /// The table.
    pub value: Arc<T>,
    /// When the load that produced it started (`None`: the initial value, never loaded).
    pub loaded_at: Option<Instant>,
    /// Whether the last load failed (the value is then the last good one).
    pub stale: bool,
    /// Which load produced the value: 0 for the initial value, then one more per successful
    /// load. Caches built from a table compare this, never the table's address.
    pub version: u64,
}

impl<T> Versioned<T> {
    /// A table as published by its `version`-th load (for tests and benchmarks).
    #[must_use]
    pub fn new(value: T, version: u64) -> Self {
        Self { value: Arc::new(value), loaded_at: None, stale: false, version }
    }
}

/// Reader side of a refreshed table.
#[derive(Debug)]
pub struct Refreshed<T> {
    rx: watch::Receiver<Arc<Versioned<T>>>,
    wake: Arc<Notify>,
    name: &'static str,
}

impl<T> Clone for Refreshed<T> {
    fn clone(&self) -> Self {
        Self { rx: self.rx.clone(), wake: Arc::clone(&self.wake), name: self.name }
    }
}

impl<T: Send + Sync + 'static> Refreshed<T> {
    /// Starts the refresher task: a load now, then every `every`, and on request no more
    /// than once per `min_gap`.
    pub fn spawn<F, Fut, E>(name: &'static str, initial: T, every: Duration, min_gap: Duration, mut load: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send,
        E: Display,
    {
        let (tx, rx) = watch::channel(Arc::new(Versioned::new(initial, 0)));
        let wake = Arc::new(Notify::new());
        let task_wake = Arc::clone(&wake);
        tokio::spawn(async move {
            let mut last: Option<Instant> = None;
            let mut failing = false;
            let mut version = 0;
            loop {
                if let Some(last) = last {
                    tokio::select! {
                        () = tokio::time::sleep(every.saturating_sub(last.elapsed())) => {}
                        () = task_wake.notified() => {
                            if let Some(wait) = min_gap.checked_sub(last.elapsed()) {
                                tokio::time::sleep(wait).await;
                            }
                        }
                    }
                }
                let started = Instant::now();
                last = Some(started);
                match load().await {
                    Ok(value) => {
                        if failing {
                            tracing::info!(source = name, "recovered");
                            failing = false;
                        }
                        version += 1;
                        let v = Versioned { value: Arc::new(value), loaded_at: Some(started), stale: false, version };
                        if tx.send(Arc::new(v)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(source = name, error = %e, "refresh failed; keeping the last good table");
                            failing = true;
                        }
                        let prev = Arc::clone(&tx.borrow().value);
                        let v = Versioned { value: prev, loaded_at: Some(started), stale: true, version };
                        if tx.send(Arc::new(v)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Self { rx, wake, name }
    }

    /// The table as of the last load.
    #[must_use]
    pub fn current(&self) -> Arc<Versioned<T>> {
        Arc::clone(&self.rx.borrow())
    }

    /// Asks for a load soon.
    pub fn request(&self) {
        self.wake.notify_one();
    }

    /// Asks for a load and waits, at most `timeout`, for one that started at or after
    /// `since`; returns the newest table either way.
    pub async fn fresh_since(&self, since: Instant, timeout: Duration) -> Arc<Versioned<T>> {
        self.request();
        let mut rx = self.rx.clone();
        let wait = rx.wait_for(|v| v.loaded_at.is_some_and(|t| t >= since));
        let fresh = match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(v)) => Some(Arc::clone(&v)),
            _ => None,
        };
        fresh.unwrap_or_else(|| {
            tracing::debug!(source = self.name, "no fresh table in time; naming with what is known");
            self.current()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn loads_on_request_rate_limited_and_keeps_last_good() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = Arc::clone(&calls);
        let t0 = Instant::now();
        let r = Refreshed::spawn("test", 0u32, Duration::from_secs(3600), Duration::from_millis(50), move || {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n == 3 {
                    Err("boom")
                } else {
                    Ok(n)
                }
            }
        });
        let v = r.fresh_since(t0, Duration::from_secs(5)).await;
        assert_eq!((*v.value, v.version), (1, 1));
        let t1 = Instant::now();
        let v = r.fresh_since(t1, Duration::from_secs(5)).await;
        assert_eq!(*v.value, 2);
        assert!(t1.elapsed() >= Duration::from_millis(40), "rate limit");
        // The third load fails: the value stays, marked stale.
        let v = r.fresh_since(Instant::now(), Duration::from_secs(5)).await;
        assert_eq!((*v.value, v.stale, v.version), (2, true, 2), "a failed load keeps the version");
        let v = r.fresh_since(Instant::now(), Duration::from_secs(5)).await;
        assert_eq!((*v.value, v.stale, v.version), (4, false, 3));
    }

    #[tokio::test]
    async fn fresh_since_gives_up_after_the_timeout() {
        let r = Refreshed::spawn("slow", 7u32, Duration::from_secs(3600), Duration::ZERO, || async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, String>(8)
        });
        let v = r.fresh_since(Instant::now(), Duration::from_millis(50)).await;
        assert_eq!(*v.value, 7);
    }
}

//! A session's output rate limit: a token bucket the pump asks before each read of the
//! terminal, so a flooding program is read more slowly (it blocks on its writes once the
//! kernel's buffer is full) and no byte is ever dropped.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Bytes per second, with a burst of a tenth of a second's worth (at least 64 bytes, at most
/// one read buffer), so the measured rate over a second or more is the limit's.
#[derive(Debug)]
pub struct OutputRate {
    per_sec: u64,
    burst: u64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl OutputRate {
    /// A bucket of `per_sec` bytes per second, full to start with.
    pub fn new(per_sec: u64, max_read: usize) -> Self {
        let burst = (per_sec / 10).clamp(64, max_read.max(64) as u64);
        Self {
            per_sec,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst as f64,
                at: Instant::now(),
            }),
        }
    }

    /// Waits until up to `want` bytes may be read, and takes them: the size of the next read.
    /// Give back what the read did not use with [`OutputRate::refund`].
    pub async fn take(&self, want: usize) -> usize {
        let want = (want as u64).clamp(1, self.burst);
        loop {
            let wait = {
                let mut bucket = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let earned = now.duration_since(bucket.at).as_secs_f64() * self.per_sec as f64;
                bucket.tokens = (bucket.tokens + earned).min(self.burst as f64);
                bucket.at = now;
                // Read as much as is earned, once at least a whole chunk (or everything
                // wanted) is: tiny reads would cost a wakeup per byte at low rates.
                let enough = want.min(self.burst / 4).max(1) as f64;
                if bucket.tokens >= enough {
                    let n = (bucket.tokens as u64).min(want);
                    bucket.tokens -= n as f64;
                    return n as usize;
                }
                Duration::from_secs_f64((enough - bucket.tokens) / self.per_sec as f64)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Gives back `n` bytes taken but not read.
    pub fn refund(&self, n: usize) {
        let mut bucket = self.state.lock().unwrap_or_else(|e| e.into_inner());
        bucket.tokens = (bucket.tokens + n as f64).min(self.burst as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_are_granted_at_the_rate() {
        let rate = OutputRate::new(10_000, 16 * 1024);
        let start = Instant::now();
        let mut total = 0;
        while total < 4000 {
            total += rate.take(4096).await;
        }
        let secs = start.elapsed().as_secs_f64();
        // The first 1000 bytes are the burst; 3000 more take 0.3 s (more on a loaded machine).
        assert!((0.28..1.0).contains(&secs), "{secs}");
    }

    #[tokio::test]
    async fn a_refund_is_read_again_without_waiting() {
        let rate = OutputRate::new(1000, 16 * 1024);
        let n = rate.take(4096).await;
        rate.refund(n);
        let start = Instant::now();
        assert_eq!(rate.take(4096).await, n);
        assert!(start.elapsed() < Duration::from_millis(50));
    }
}

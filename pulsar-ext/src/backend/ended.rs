//! The stand-in backend of a session whose program is gone: nothing to read, write or wait
//! for. A stopped session restored with its history holds one, so the core needs no special
//! case for "no backend".

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Backend, ExitStatus};

/// A backend that has already ended, for `reason`.
pub fn ended(reason: Option<String>) -> Arc<dyn Backend> {
    Arc::new(Ended { reason })
}

struct Ended {
    reason: Option<String>,
}

#[async_trait]
impl Backend for Ended {
    async fn read(&self, _buf: &mut [u8]) -> io::Result<usize> {
        Ok(0)
    }

    async fn write_all(&self, _data: &[u8]) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::NotConnected,
            "the session has ended",
        ))
    }

    fn resize(&self, _cols: u16, _rows: u16) -> io::Result<()> {
        Ok(())
    }

    async fn wait(&self) -> ExitStatus {
        std::future::pending().await
    }

    async fn terminate(&self, _grace: Duration) {}

    fn pid(&self) -> Option<u32> {
        None
    }

    fn end_reason(&self) -> Option<String> {
        self.reason.clone()
    }
}

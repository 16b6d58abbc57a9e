//! `pulsar wait`: blocks until a session's output (or, with `--screen`, its screen) matches a
//! regular expression, and prints the match; `send --wait` uses it to type, then wait.
//!
//! What scripts and agents need instead of sleeps: exit 0 with the match, 5 on a timeout.

use std::time::Duration;

use pulsar_protocol::{PulsarApiClient as _, PulsarClient, WaitOn, error as code};

use crate::daemon::Endpoint;
use crate::error::{Exit, Failure, Result, rpc_code};
use crate::resolve;
use crate::rpc::Session;

/// What to wait for.
#[derive(Debug, Clone)]
pub struct Wait {
    /// The regular expression.
    pub pattern: String,
    /// How long to wait at most.
    pub timeout: Duration,
    /// Match the current screen instead of the output that follows.
    pub screen: bool,
}

/// `pulsar wait TARGET REGEX`.
pub async fn run(endpoint: &Endpoint, target: &str, wait: &Wait) -> Result<Exit> {
    let client = endpoint.connect().await?;
    let session = resolve::session(&client, target).await?;
    until(&client, &session, wait, None).await
}

/// Waits for `wait`'s pattern in `session`'s output after `since` (default: from now) and
/// prints the match.
pub async fn until(
    client: &PulsarClient,
    session: &Session,
    wait: &Wait,
    since: Option<u64>,
) -> Result<Exit> {
    let on = wait.screen.then_some(WaitOn::Screen);
    let timeout_ms = u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX);
    match client
        .wait_for_output(session.id, wait.pattern.clone(), since, timeout_ms, on)
        .await
    {
        Ok(found) => {
            println!("{}", found.matched);
            Ok(Exit::Ok)
        }
        Err(err) if rpc_code(&err) == Some(code::WAIT_TIMEOUT) => Err(Failure::new(
            Exit::TimedOut,
            format!(
                "session {}: no match for {:?} within {} s",
                session.name,
                wait.pattern,
                wait.timeout.as_secs_f64()
            ),
        )),
        Err(err) => Err(Failure::rpc(
            &format!("wait for output of session {}", session.name),
            err,
        )),
    }
}

/// Parses `--timeout` seconds (fractions allowed).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.0..=3600.0).contains(&secs) {
        return Err(format!("{secs} is outside 0..=3600 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_seconds_with_fractions_up_to_an_hour() {
        assert_eq!(parse_timeout("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_timeout("3601").is_err());
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("soon").is_err());
    }
}

//! Retry decisions, as pure functions of the attempt's outcome.
//!
//! Retry `n` (1-based) waits `backoffDelay × n` (linear) or
//! `backoffDelay × 2ⁿ` (exponential), as Knative's DeliverySpec defines;
//! never more than [`MAX_BACKOFF`]. A `Retry-After` on 429 or 503 lengthens
//! the wait, up to the dispatcher's cap.

use std::time::Duration;

use ferry_proto::BackoffPolicy;

/// No single wait grows beyond this, whatever the policy's arithmetic says.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The subscriber answered.
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or reset, or the attempt timed out.
    NoResponse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Delivered.
    Done,
    /// Try again after this long.
    RetryAfter(Duration),
    /// No attempt left, or the failure is final: dead-letter.
    GiveUp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    retries: u32,
    policy: BackoffPolicy,
    delay: Duration,
    retry_after_max: Duration,
    /// The longest wait between two attempts the trigger allows
    /// (`delivery.ferry.dev/backoff-max`), a subscriber's `Retry-After`
    /// included.
    cap: Option<Duration>,
}

// === impl RetryPolicy ===

impl RetryPolicy {
    /// A zero `delay` with retries retries at once, as the reference does
    /// for a user's `PT0S`.
    pub fn new(
        retries: u32,
        policy: BackoffPolicy,
        delay: Duration,
        retry_after_max: Duration,
    ) -> Self {
        RetryPolicy {
            retries,
            policy,
            delay,
            retry_after_max,
            cap: None,
        }
    }

    /// Caps every wait (`delivery.ferry.dev/backoff-max`); a zero cap is
    /// none.
    pub fn capped(mut self, cap: Duration) -> Self {
        self.cap = Some(cap.min(MAX_BACKOFF)).filter(|c| !c.is_zero());
        self
    }

    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The wait before retry `n` (1-based).
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = match self.policy {
            BackoffPolicy::Linear => n,
            BackoffPolicy::Exponential => 2u32.saturating_pow(n),
        };
        self.delay
            .saturating_mul(factor)
            .min(self.cap.unwrap_or(MAX_BACKOFF))
    }

    /// What to do after attempt number `attempt` (1-based) came to `outcome`.
    pub fn action(&self, outcome: &Outcome, attempt: u32) -> Action {
        let retry_after = match outcome {
            Outcome::Status {
                code: 200..=299, ..
            } => return Action::Done,
            Outcome::Status { code, retry_after } if is_retryable(*code) => match code {
                429 | 503 => *retry_after,
                _ => None,
            },
            Outcome::Status { .. } => return Action::GiveUp,
            Outcome::NoResponse => None,
        };
        if attempt > self.retries {
            return Action::GiveUp;
        }
        let wait = self.backoff(attempt);
        let wait = retry_after.map_or(wait, |ra| wait.max(ra.min(self.retry_after_max)));
        Action::RetryAfter(self.cap.map_or(wait, |cap| wait.min(cap)))
    }
}

/// Knative retries these; every other non-2xx is final.
pub fn is_retryable(code: u16) -> bool {
    matches!(code, 404 | 408 | 409 | 429 | 500..=599)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn status(code: u16) -> Outcome {
        Outcome::Status {
            code,
            retry_after: None,
        }
    }

    #[test]
    fn a_cap_bounds_every_wait_of_both_policies() {
        for policy in [BackoffPolicy::Linear, BackoffPolicy::Exponential] {
            let p =
                RetryPolicy::new(12, policy, 100 * MS, Duration::from_secs(60)).capped(250 * MS);
            let waits: Vec<_> = (1..=12).map(|n| p.backoff(n)).collect();
            assert!(
                waits.iter().all(|w| *w <= 250 * MS),
                "{policy:?}: {waits:?}"
            );
            assert_eq!(waits[11], 250 * MS, "{policy:?} reaches the cap");
        }
        let p = RetryPolicy::new(3, BackoffPolicy::Linear, 100 * MS, Duration::from_secs(60))
            .capped(250 * MS);
        let busy = Outcome::Status {
            code: 503,
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            p.action(&busy, 1),
            Action::RetryAfter(250 * MS),
            "a Retry-After too"
        );
        let uncapped = p.clone().capped(Duration::ZERO);
        assert_eq!(uncapped.backoff(1), 100 * MS);
        assert_eq!(
            uncapped.action(&busy, 1),
            Action::RetryAfter(Duration::from_secs(30))
        );
    }

    #[test]
    fn backoff_formulas() {
        let linear = RetryPolicy::new(5, BackoffPolicy::Linear, 100 * MS, Duration::from_secs(60));
        let exponential = RetryPolicy::new(
            5,
            BackoffPolicy::Exponential,
            100 * MS,
            Duration::from_secs(60),
        );
        let waits = |p: &RetryPolicy| {
            (1..=4)
                .map(|n| p.backoff(n).as_millis())
                .collect::<Vec<_>>()
        };
        assert_eq!(waits(&linear), [100, 200, 300, 400]);
        assert_eq!(waits(&exponential), [200, 400, 800, 1600]);
        assert_eq!(exponential.backoff(60), MAX_BACKOFF);
        let immediate = RetryPolicy::new(3, BackoffPolicy::Exponential, Duration::ZERO, MS);
        assert_eq!(waits(&immediate), [0, 0, 0, 0]);
        assert_eq!(
            immediate.action(&Outcome::NoResponse, 3),
            Action::RetryAfter(Duration::ZERO)
        );
    }

    #[test]
    fn actions_by_outcome_and_attempt() {
        let p = RetryPolicy::new(2, BackoffPolicy::Linear, 10 * MS, Duration::from_secs(1));
        let cases = [
            (status(200), 1, Action::Done),
            (status(202), 3, Action::Done),
            (status(204), 1, Action::Done),
            (status(400), 1, Action::GiveUp),
            (status(401), 1, Action::GiveUp),
            (status(403), 1, Action::GiveUp),
            (status(410), 1, Action::GiveUp),
            (status(404), 1, Action::RetryAfter(10 * MS)),
            (status(408), 2, Action::RetryAfter(20 * MS)),
            (status(409), 1, Action::RetryAfter(10 * MS)),
            (status(429), 1, Action::RetryAfter(10 * MS)),
            (status(500), 1, Action::RetryAfter(10 * MS)),
            (status(503), 2, Action::RetryAfter(20 * MS)),
            (status(599), 3, Action::GiveUp),
            (Outcome::NoResponse, 1, Action::RetryAfter(10 * MS)),
            (Outcome::NoResponse, 3, Action::GiveUp),
            // Retry-After on 429/503 lengthens the wait, up to the cap ...
            (
                Outcome::Status {
                    code: 429,
                    retry_after: Some(300 * MS),
                },
                1,
                Action::RetryAfter(300 * MS),
            ),
            (
                Outcome::Status {
                    code: 503,
                    retry_after: Some(Duration::from_secs(90)),
                },
                1,
                Action::RetryAfter(Duration::from_secs(1)),
            ),
            // ... never shortens it, and is ignored elsewhere.
            (
                Outcome::Status {
                    code: 503,
                    retry_after: Some(MS),
                },
                2,
                Action::RetryAfter(20 * MS),
            ),
            (
                Outcome::Status {
                    code: 500,
                    retry_after: Some(300 * MS),
                },
                1,
                Action::RetryAfter(10 * MS),
            ),
        ];
        for (outcome, attempt, expected) in cases {
            assert_eq!(
                p.action(&outcome, attempt),
                expected,
                "{outcome:?} at attempt {attempt}"
            );
        }
    }

    #[test]
    fn no_retries_means_one_attempt() {
        let p = RetryPolicy::new(0, BackoffPolicy::Exponential, Duration::ZERO, MS);
        assert_eq!(p.action(&status(500), 1), Action::GiveUp);
    }
}

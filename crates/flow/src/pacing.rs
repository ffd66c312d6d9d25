//! When a load starts its iterations: an absolute schedule (SIPp's `-r`, `-rate_increase`,
//! `-rate_max`), sans-IO. The k-th start of a step of the ramp is due at the step's start plus
//! k / rate, so a late start never shifts the ones after it (no drift), and a generator that
//! fell behind skips the starts it missed instead of sending them in a burst: each is counted,
//! so the summary can say the generator, not the peer, was the limit.

use std::time::{Duration, Instant};

/// How late a start may be and still go (at high rates, more than one interval).
pub const LATE_OK: Duration = Duration::from_millis(20);

/// A rate that may step up: `rate` per second, plus `increase` every `every`, up to `max`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ramp {
    pub rate: f64,
    pub increase: f64,
    pub every: Duration,
    pub max: f64,
}

impl Ramp {
    /// A constant rate.
    pub fn constant(rate: f64) -> Self {
        Self {
            rate,
            increase: 0.0,
            every: Duration::from_secs(1),
            max: rate,
        }
    }

    /// The target rate at `since` after the start.
    pub fn rate_at(&self, since: Duration) -> f64 {
        let steps = if self.every.is_zero() {
            0.0
        } else {
            (since.as_secs_f64() / self.every.as_secs_f64()).floor()
        };
        (self.rate + steps * self.increase).min(self.max.max(self.rate))
    }
}

/// The schedule of starts.
#[derive(Clone, Debug)]
pub struct Schedule {
    ramp: Ramp,
    start: Instant,
    /// The step of the ramp the next start falls in, and how many starts of it came before.
    step: u32,
    in_step: u64,
    /// Starts skipped because the generator was late by more than one interval.
    missed: u64,
}

/// The next start, and how late the caller is for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    pub at: Instant,
    /// Starts skipped to get here (each more than one interval late).
    pub skipped: u64,
}

impl Schedule {
    pub fn new(ramp: Ramp, start: Instant) -> Self {
        Self {
            ramp,
            start,
            step: 0,
            in_step: 0,
            missed: 0,
        }
    }

    fn step_start(&self) -> Instant {
        self.start + self.ramp.every * self.step
    }

    fn step_rate(&self) -> f64 {
        self.ramp
            .rate_at(self.ramp.every * self.step)
            .max(f64::MIN_POSITIVE)
    }

    /// When the next start is due (without taking it).
    pub fn peek(&self) -> Instant {
        self.step_start() + Duration::from_secs_f64(self.in_step as f64 / self.step_rate())
    }

    /// Moves past the start at [`Self::peek`]; at a step's end, to the next step.
    fn advance(&mut self) {
        self.in_step += 1;
        // A ramp with no interval does not step (rather than stepping at every start).
        let ramps = self.ramp.increase > 0.0
            && !self.ramp.every.is_zero()
            && self.step_rate() < self.ramp.max;
        if ramps && self.peek() >= self.step_start() + self.ramp.every {
            self.step += 1;
            self.in_step = 0;
        }
    }

    /// Takes the next start if it is due at `now`: the starts more than [`LATE_OK`] (or one
    /// interval) overdue are skipped (counted, not sent in a burst).
    pub fn take(&mut self, now: Instant) -> Option<Due> {
        let mut skipped = 0;
        loop {
            let at = self.peek();
            if at > now {
                return None;
            }
            let interval = Duration::from_secs_f64(1.0 / self.step_rate());
            self.advance();
            if now.saturating_duration_since(at) <= interval.max(LATE_OK) || self.peek() > now {
                self.missed += skipped;
                return Some(Due { at, skipped });
            }
            skipped += 1;
        }
    }

    /// Starts skipped so far.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The target rate now.
    pub fn rate(&self, now: Instant) -> f64 {
        self.ramp.rate_at(now.saturating_duration_since(self.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The origin of fake time; nothing else reads a clock.
    #[allow(clippy::disallowed_methods)]
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn a_constant_rate_is_an_absolute_schedule() {
        let t0 = origin();
        let mut s = Schedule::new(Ramp::constant(100.0), t0);
        assert_eq!(s.take(t0).map(|d| d.at), Some(t0));
        assert_eq!(s.take(t0), None, "the next is 10 ms on");
        // Taken 3 ms late, the one after is still due at 20 ms, not 23 ms.
        assert_eq!(s.take(t0 + ms(13)).map(|d| d.at), Some(t0 + ms(10)));
        assert_eq!(s.peek(), t0 + ms(20));
    }

    #[test]
    fn a_generator_far_behind_skips_what_it_missed_instead_of_bursting() {
        let t0 = origin();
        let mut s = Schedule::new(Ramp::constant(100.0), t0);
        // 55 ms late for the first: the starts at 0..=30 ms are more than LATE_OK late; those
        // at 40 and 50 ms go at once.
        let due = s.take(t0 + ms(55)).expect("due");
        assert_eq!((due.at, due.skipped), (t0 + ms(40), 4));
        assert_eq!(s.take(t0 + ms(55)).map(|d| d.at), Some(t0 + ms(50)));
        assert_eq!(s.take(t0 + ms(55)), None);
        assert_eq!(s.missed(), 4);
    }

    #[test]
    fn a_ramp_with_no_interval_keeps_its_first_rate() {
        let t0 = origin();
        let ramp = Ramp {
            rate: 10.0,
            increase: 10.0,
            every: Duration::ZERO,
            max: 50.0,
        };
        let mut s = Schedule::new(ramp, t0);
        let n = (0..1000).filter(|t| s.take(t0 + ms(*t)).is_some()).count();
        assert_eq!(n, 10);
    }

    #[test]
    fn a_ramp_steps_up_every_interval_to_its_max() {
        let t0 = origin();
        let ramp = Ramp {
            rate: 10.0,
            increase: 10.0,
            every: Duration::from_secs(1),
            max: 25.0,
        };
        let mut s = Schedule::new(ramp, t0);
        let mut count =
            |from: u64, to: u64| (from..to).filter(|t| s.take(t0 + ms(*t)).is_some()).count();
        assert_eq!(count(0, 1000), 10);
        assert_eq!(count(1000, 2000), 20);
        assert_eq!(count(2000, 3000), 25);
        assert_eq!(count(3000, 4000), 25, "capped at the max");
        assert!((ramp.rate_at(Duration::from_millis(1500)) - 20.0).abs() < 1e-9);
    }
}

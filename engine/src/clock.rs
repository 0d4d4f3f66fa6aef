//! Where time comes from. The core takes `now` as an argument; the shells read it from a
//! `Clock`: the system clock in production, a manual clock in tests and simulations, which
//! only moves when told to. This is the one module allowed to read the system time
//! (clippy's `disallowed_methods` in `clippy.toml` forbids it elsewhere).

use crate::sync::Unpoisoned;
use chrono::{DateTime, Duration, Utc};
use std::sync::Mutex;

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests move by hand.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> ManualClock {
        ManualClock(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unpoisoned() = at;
    }

    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unpoisoned();
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unpoisoned()
    }
}

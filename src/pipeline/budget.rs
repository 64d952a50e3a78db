//! The buffer budget: request bodies on matched routes are buffered (to
//! verify signatures and extract keys), so what all clients together can make
//! statehold hold is bounded by `server.max_buffered_bytes`. A request that
//! would go over it is answered 503 at once instead of waiting: memory is
//! the resource an attacker spends, so it never queues.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

pub struct Budget {
    bytes: Arc<Semaphore>,
    max: usize,
    metrics: Arc<Metrics>,
}

/// Bytes held by one request; given back when dropped.
pub struct Lease {
    permit: Option<OwnedSemaphorePermit>,
    held: usize,
    budget: Arc<Budget>,
}

/// The budget is spent.
#[derive(Debug)]
pub struct OverBudget;

impl Budget {
    pub fn new(max_bytes: u64, metrics: Arc<Metrics>) -> Arc<Budget> {
        let max = (max_bytes as usize).min(Semaphore::MAX_PERMITS);
        Arc::new(Budget {
            bytes: Arc::new(Semaphore::new(max)),
            max,
            metrics,
        })
    }

    /// An empty lease, grown with [`Lease::grow_to`].
    pub fn lease(self: &Arc<Self>) -> Lease {
        Lease {
            permit: None,
            held: 0,
            budget: Arc::clone(self),
        }
    }

    fn report(&self) {
        let used = self.max - self.bytes.available_permits();
        self.metrics.set_buffered_bytes(used as u64);
    }
}

impl Lease {
    /// Holds at least `total` bytes, or fails without waiting.
    pub fn grow_to(&mut self, total: usize) -> Result<(), OverBudget> {
        if total <= self.held {
            return Ok(());
        }
        let more = u32::try_from(total - self.held).map_err(|_| OverBudget)?;
        let extra = Arc::clone(&self.budget.bytes)
            .try_acquire_many_owned(more)
            .map_err(|_| OverBudget)?;
        match &mut self.permit {
            Some(p) => p.merge(extra),
            None => self.permit = Some(extra),
        }
        self.held = total;
        self.budget.report();
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.permit.take().is_some() {
            self.budget.report();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_given_back() {
        let budget = Budget::new(100, Arc::new(Metrics::new(Vec::<String>::new())));
        let mut a = budget.lease();
        a.grow_to(60).unwrap();
        a.grow_to(40).unwrap();
        let mut b = budget.lease();
        assert!(b.grow_to(41).is_err());
        b.grow_to(40).unwrap();
        drop(a);
        b.grow_to(100).unwrap();
        assert!(budget.lease().grow_to(1).is_err());
        drop(b);
        budget.lease().grow_to(100).unwrap();
    }
}

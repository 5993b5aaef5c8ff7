//! The sandbox's limits: one memory budget over all memories of an instance,
//! the CPU deadline, and caps on what a call may return. Each limit that
//! stops a pack does so with its own error type, which the invoker turns into
//! a `provider` error naming the cause.

use wasmtime::ResourceLimiter;

/// A memory grow would take the instance past its budget.
#[derive(Debug, thiserror::Error)]
#[error("memory budget of {budget} bytes exceeded: {requested} bytes requested")]
pub struct BudgetExceeded {
    pub requested: usize,
    pub budget: usize,
    /// A memory being created at its declared initial size (instantiation),
    /// not grown by the pack's code.
    pub at_start: bool,
}

/// Limits one instance: the sum of all its linear memories stays within
/// `budget` bytes, and tables within `max_table_elements` each.
pub struct MemoryBudget {
    budget: usize,
    in_use: usize,
    peak: usize,
    max_table_elements: usize,
}

impl MemoryBudget {
    pub fn new(budget: usize) -> Self {
        MemoryBudget {
            budget,
            in_use: 0,
            peak: 0,
            max_table_elements: 100_000,
        }
    }

    /// Bytes of linear memory the instance holds now.
    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Most bytes of linear memory the instance held at once.
    pub fn peak(&self) -> usize {
        self.peak
    }
}

impl ResourceLimiter for MemoryBudget {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let requested = self.in_use.saturating_sub(current).saturating_add(desired);
        if requested > self.budget {
            return Err(wasmtime::Error::new(BudgetExceeded {
                requested,
                budget: self.budget,
                at_start: current == 0,
            }));
        }
        self.in_use = requested;
        self.peak = self.peak.max(requested);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("the host could not grow the pack's memory"))
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_spans_all_memories() {
        let mut budget = MemoryBudget::new(10 << 16);
        assert!(budget.memory_growing(0, 6 << 16, None).unwrap());
        assert!(budget.memory_growing(0, 4 << 16, None).unwrap());
        let err = budget.memory_growing(4 << 16, 5 << 16, None).unwrap_err();
        let exceeded = err.downcast_ref::<BudgetExceeded>().unwrap();
        assert_eq!(exceeded.requested, 11 << 16);
        assert_eq!(budget.in_use(), 10 << 16);
    }
}

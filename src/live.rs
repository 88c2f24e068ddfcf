//! A value that a config reload replaces while it is in use: each request
//! takes the current one and keeps it until it is done, so a reload never
//! cuts a request short and never mixes two configs within one request.

use std::sync::{Arc, RwLock};

pub struct Live<T> {
    /// A std `RwLock` holding an `Arc`: readers clone the pointer and let go
    /// at once; nothing is awaited while it is held.
    current: RwLock<Arc<T>>,
}

impl<T> Live<T> {
    pub fn new(value: Arc<T>) -> Self {
        Live {
            current: RwLock::new(value),
        }
    }

    /// The current value; later replacements do not affect it.
    pub fn load(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts `value` in place for requests that start from now on.
    pub fn replace(&self, value: Arc<T>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_value_outlives_its_replacement() {
        let live = Live::new(Arc::new(1));
        let held = live.load();
        live.replace(Arc::new(2));
        assert_eq!((*held, *live.load()), (1, 2));
    }
}

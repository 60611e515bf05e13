//! Per-client shared state of the primitives built on the lock engine
//! (leader observers, semaphores): one instance per name and kind, shared by
//! every handle of one [`LockClient`](crate::LockClient), dropped when the
//! last handle goes.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Weak references to per-name shared state, keyed by the state's type.
#[derive(Default)]
pub(crate) struct Registry {
    map: Mutex<HashMap<(TypeId, String), Weak<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// The live shared state of type `T` for `name`, or a new one made by
    /// `make` (and remembered while anyone holds it).
    pub(crate) fn shared<T: Any + Send + Sync>(
        &self,
        name: &str,
        make: impl FnOnce() -> Arc<T>,
    ) -> Arc<T> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let key = (TypeId::of::<T>(), name.to_owned());
        if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
            if let Ok(typed) = live.downcast::<T>() {
                return typed;
            }
        }
        map.retain(|_, weak| weak.strong_count() > 0);
        let made = make();
        let erased: Arc<dyn Any + Send + Sync> = made.clone();
        map.insert(key, Arc::downgrade(&erased));
        made
    }

    /// Every live shared state of type `T`, with its name.
    pub(crate) fn all<T: Any + Send + Sync>(&self) -> Vec<(String, Arc<T>)> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|((kind, _), _)| *kind == TypeId::of::<T>())
            .filter_map(|((_, name), weak)| {
                let live = weak.upgrade()?.downcast::<T>().ok()?;
                Some((name.clone(), live))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_instance_per_name_and_kind_while_held() {
        let registry = Registry::default();
        let a = registry.shared("x", || Arc::new(1u32));
        let b = registry.shared("x", || Arc::new(2u32));
        assert!(Arc::ptr_eq(&a, &b));
        let other_kind = registry.shared("x", || Arc::new(3u64));
        assert_eq!(*other_kind, 3);
        let other_name = registry.shared("y", || Arc::new(4u32));
        assert_eq!(*other_name, 4);
        assert_eq!(registry.all::<u32>().len(), 2);
        drop((a, b));
        let fresh = registry.shared("x", || Arc::new(5u32));
        assert_eq!(*fresh, 5);
    }
}

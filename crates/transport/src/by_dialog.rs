//! What the message inspector keeps per dialog (`early.rs`, `late.rs`): keyed by Call-ID and
//! remote (To) tag, bounded, the oldest forgotten first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// A dialog's Call-ID and remote (To) tag.
pub(crate) type Key = (String, String);

/// Dialogs remembered at once.
const CAP: usize = 1024;

/// The first header of `headers` called `name` (or its compact form `short`), case-insensitive.
pub(crate) fn value_of<'a>(
    headers: &'a rsipstack::sip::Headers,
    name: &str,
    short: &str,
) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case(name) || h.name().eq_ignore_ascii_case(short))
        .map(|h| h.value())
}

/// The Call-ID and To tag of a message.
pub(crate) fn key(headers: &rsipstack::sip::Headers) -> Option<Key> {
    let call_id = value_of(headers, "Call-ID", "i")?.trim().to_owned();
    let tag = value_of(headers, "To", "t")?
        .split(';')
        .skip(1)
        .find_map(|p| p.trim().strip_prefix("tag="))?
        .trim()
        .to_owned();
    Some((call_id, tag))
}

/// A value per dialog, at most [`CAP`] of them.
pub(crate) struct ByDialog<V> {
    inner: Mutex<Entries<V>>,
}

struct Entries<V> {
    map: HashMap<Key, V>,
    order: VecDeque<Key>,
}

impl<V> Default for ByDialog<V> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Entries {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }
}

impl<V: Clone> ByDialog<V> {
    /// Keeps `v` for `k` unless `k` has a value already; `make` is only called then.
    pub(crate) fn insert_with(&self, k: Key, make: impl FnOnce() -> Option<V>) {
        let mut e = self.inner.lock().expect("by-dialog lock");
        if e.map.contains_key(&k) {
            return;
        }
        let Some(v) = make() else { return };
        e.map.insert(k.clone(), v);
        e.order.push_back(k);
        if e.order.len() > CAP
            && let Some(old) = e.order.pop_front()
        {
            e.map.remove(&old);
        }
    }

    pub(crate) fn get(&self, k: &Key) -> Option<V> {
        self.inner
            .lock()
            .expect("by-dialog lock")
            .map
            .get(k)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_dialog_is_forgotten_past_the_bound_and_the_first_value_stays() {
        let d = ByDialog::<usize>::default();
        for i in 0..=CAP {
            d.insert_with((i.to_string(), "t".into()), || Some(i));
        }
        assert_eq!(d.get(&("0".into(), "t".into())), None);
        assert_eq!(d.get(&("1".into(), "t".into())), Some(1));
        d.insert_with(("1".into(), "t".into()), || Some(99));
        assert_eq!(d.get(&("1".into(), "t".into())), Some(1));
    }
}

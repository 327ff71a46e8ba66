//! A shard's records: an open-addressing hash table from `u64` key to [`Value`], whose slots a
//! look-ahead can find without a lookup ([`KeyTable::slot_address`], for
//! [`super::prefetch`]).
//!
//! Why not `std`'s `HashMap` (hashbrown): a lookup there reads a control group, then the bucket
//! it points to, then the value, and no API gives the address of the first two, so the
//! requests of a read cannot start their loads ahead (docs/benchmarks.md, "Overlapping a
//! read's misses"). Here a key's first probe is at a slot computed from its hash alone.
//!
//! Layout: a power-of-two array of 16-byte slots (`u64` key, [`Value`]'s 8-byte thin pointer,
//! whose null niche marks an empty slot), no control bytes: 16 bytes per slot against
//! hashbrown's 17 per bucket, at the same maximum load (7/8) and the same growth (doubling), so
//! a table is never larger than hashbrown's for the same records. Linear probing: a key lives
//! at its home slot (`hash & mask`) or after it, with no empty slot in between; removal shifts
//! the following entries of the run back (backward-shift deletion, no tombstones), which keeps
//! that true. Like hashbrown, the table never shrinks on removal (a shard keeps its array).
//! The hash is the shard maps' keyed [`KeyHasher`] (per process: hash flooding).

use super::channel::KeyHasher;
use super::value::Value;
use std::hash::Hasher;

/// Slots of the first allocation (hashbrown's too: 4 buckets, 3 records).
const MIN_CAPACITY: usize = 4;

/// One slot: empty when `value` is `None` (its key is then meaningless).
struct Slot {
    key: u64,
    value: Option<Value>,
}

impl Slot {
    const EMPTY: Slot = Slot {
        key: 0,
        value: None,
    };
}

/// The table (see the module's doc).
#[derive(Default)]
pub struct KeyTable {
    /// Empty, or a power of two ≥ [`MIN_CAPACITY`] of slots.
    slots: Box<[Slot]>,
    /// Occupied slots; at most [`max_load`] of the capacity.
    len: usize,
}

/// Records a table of `capacity` slots may hold: 7/8 of it (hashbrown's), always leaving an
/// empty slot, so that every probe ends.
fn max_load(capacity: usize) -> usize {
    capacity * 7 / 8
}

/// The table's hash of `key` (the keyed [`KeyHasher`]): where its probe starts.
pub fn hash(key: u64) -> u64 {
    let mut hasher = KeyHasher::default();
    hasher.write_u64(key);
    hasher.finish()
}

/// What [`KeyTable::entry`] found.
pub enum Entry<'a> {
    Occupied(&'a mut Value),
    Vacant(VacantEntry<'a>),
}

/// A key the table does not hold, to insert.
pub struct VacantEntry<'a> {
    table: &'a mut KeyTable,
    key: u64,
    /// The empty slot that ended the key's probe (`None`: nothing allocated yet): where the
    /// key goes unless the table grows first, so that an insert walks the run once.
    empty: Option<usize>,
}

impl VacantEntry<'_> {
    pub fn insert(self, value: Value) {
        self.table.insert_new(self.key, value, self.empty);
    }
}

/// Where a key's probe ended ([`KeyTable::probe`]).
enum Probe {
    /// At the slot holding the key.
    Found(usize),
    /// At an empty slot: the key is not held, and would go there.
    Empty(usize),
    /// Nothing is allocated.
    NoSlots,
}

impl KeyTable {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots allocated (0 before the first insert).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn mask(&self) -> usize {
        debug_assert!(self.slots.len().is_power_of_two());
        self.slots.len() - 1
    }

    fn home(&self, key: u64) -> usize {
        hash(key) as usize & self.mask()
    }

    /// The slot holding `key`, whose [`hash`] is `hash`.
    fn find(&self, key: u64, hash: u64) -> Option<usize> {
        match self.probe(key, hash) {
            Probe::Found(index) => Some(index),
            Probe::Empty(_) | Probe::NoSlots => None,
        }
    }

    /// Walks `key`'s run from its home slot (`hash`: its [`hash`]) to the slot holding it or
    /// to the first empty one.
    fn probe(&self, key: u64, hash: u64) -> Probe {
        if self.slots.is_empty() {
            return Probe::NoSlots;
        }
        let mask = self.mask();
        let mut index = hash as usize & mask;
        // At most every slot; an empty one (there always is one) ends the run sooner.
        for _ in 0..self.slots.len() {
            let slot = &self.slots[index];
            match slot.value {
                None => return Probe::Empty(index),
                Some(_) if slot.key == key => return Probe::Found(index),
                Some(_) => index = (index + 1) & mask,
            }
        }
        unreachable!("a table below its maximum load has an empty slot");
    }

    /// The address of the home slot of a key whose [`hash`] is `hash`, where its lookup reads
    /// first (`None` while nothing is allocated): what a look-ahead prefetches. Only an
    /// address; nothing is read.
    pub fn slot_address(&self, hash: u64) -> Option<*const u8> {
        if self.slots.is_empty() {
            return None;
        }
        let slot: *const Slot = &self.slots[hash as usize & self.mask()];
        Some(slot.cast())
    }

    pub fn get(&self, key: u64) -> Option<&Value> {
        self.get_hashed(key, hash(key))
    }

    /// [`get`](Self::get) of a key whose [`hash`] the caller computed already.
    pub fn get_hashed(&self, key: u64, hash: u64) -> Option<&Value> {
        debug_assert_eq!(hash, self::hash(key));
        let index = self.find(key, hash)?;
        self.slots[index].value.as_ref()
    }

    pub fn contains_key(&self, key: u64) -> bool {
        self.find(key, hash(key)).is_some()
    }

    /// The value of `key` to change in place, or the place to insert one.
    pub fn entry(&mut self, key: u64) -> Entry<'_> {
        let empty = match self.probe(key, hash(key)) {
            Probe::Found(index) => match &mut self.slots[index].value {
                Some(value) => return Entry::Occupied(value),
                None => unreachable!("probe finds occupied slots"),
            },
            Probe::Empty(index) => Some(index),
            Probe::NoSlots => None,
        };
        Entry::Vacant(VacantEntry {
            table: self,
            key,
            empty,
        })
    }

    /// Stores `value` under `key`; returns the value it replaced.
    pub fn insert(&mut self, key: u64, value: Value) -> Option<Value> {
        match self.entry(key) {
            Entry::Occupied(old) => Some(std::mem::replace(old, value)),
            Entry::Vacant(entry) => {
                entry.insert(value);
                None
            }
        }
    }

    /// Inserts a key the table does not hold, growing first if it is full; `empty` is the
    /// empty slot its probe ended at (valid unless the table grows).
    fn insert_new(&mut self, key: u64, value: Value, empty: Option<usize>) {
        debug_assert!(!self.contains_key(key));
        let index = match empty {
            Some(index) if self.len < max_load(self.slots.len()) => index,
            _ => {
                self.grow();
                self.empty_slot_for(key)
            }
        };
        debug_assert_eq!(index, self.empty_slot_for(key));
        self.slots[index] = Slot {
            key,
            value: Some(value),
        };
        self.len += 1;
        debug_assert!(self.reachable(index));
    }

    /// The first empty slot from `key`'s home on: where it goes (the table has room).
    fn empty_slot_for(&self, key: u64) -> usize {
        let mask = self.mask();
        let mut index = self.home(key);
        for _ in 0..self.slots.len() {
            if self.slots[index].value.is_none() {
                return index;
            }
            index = (index + 1) & mask;
        }
        unreachable!("a table below its maximum load has an empty slot");
    }

    /// Doubles the slots (the first allocation: [`MIN_CAPACITY`]) and places every record
    /// again.
    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(MIN_CAPACITY);
        let fresh = (0..capacity).map(|_| Slot::EMPTY).collect();
        let old = std::mem::replace(&mut self.slots, fresh);
        for slot in old.into_vec() {
            if let Some(value) = slot.value {
                let index = self.empty_slot_for(slot.key);
                self.slots[index] = Slot {
                    key: slot.key,
                    value: Some(value),
                };
            }
        }
        debug_assert!(self.check_invariants());
    }

    /// Removes `key`'s record; returns its value. The entries after it in its run move back
    /// (each to the hole, when the hole is on its probe path), so no lookup crosses an empty
    /// slot before its key.
    pub fn remove(&mut self, key: u64) -> Option<Value> {
        let mut hole = self.find(key, hash(key))?;
        let removed = self.slots[hole].value.take();
        self.len -= 1;
        let mask = self.mask();
        let mut next = (hole + 1) & mask;
        for _ in 0..self.slots.len() {
            if self.slots[next].value.is_none() {
                break;
            }
            let home = self.home(self.slots[next].key);
            // Cyclic distances: the entry may move to the hole when the hole is between its
            // home and its slot.
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.slots.swap(hole, next);
                debug_assert!(self.reachable(hole));
                hole = next;
            }
            next = (next + 1) & mask;
        }
        removed
    }

    /// Whether the entry at `index` is found by a lookup: no empty slot between its home and
    /// it (debug assertions and tests).
    fn reachable(&self, index: usize) -> bool {
        let mask = self.mask();
        let mut at = self.home(self.slots[index].key);
        while at != index {
            if self.slots[at].value.is_none() {
                return false;
            }
            at = (at + 1) & mask;
        }
        true
    }

    /// Every record reachable from its home, the count right, the load within its maximum,
    /// and no key twice (debug assertions after a growth, and tests).
    pub fn check_invariants(&self) -> bool {
        let occupied: Vec<usize> = (0..self.slots.len())
            .filter(|index| self.slots[*index].value.is_some())
            .collect();
        let mut keys: Vec<u64> = occupied
            .iter()
            .map(|index| self.slots[*index].key)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        occupied.len() == self.len
            && keys.len() == self.len
            && self.len <= max_load(self.slots.len())
            && (self.slots.is_empty() || self.slots.len().is_power_of_two())
            && occupied.iter().all(|index| self.reachable(*index))
    }

    /// The records, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &Value)> {
        self.slots
            .iter()
            .filter_map(|slot| slot.value.as_ref().map(|value| (&slot.key, value)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &u64> {
        self.iter().map(|(key, _)| key)
    }

    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.iter().map(|(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A small seeded generator (xorshift), so a failing sequence can be run again.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn value_of(n: u64) -> Value {
        Value::new(&n.to_le_bytes()[..(n % 8 + 1) as usize], n % 3)
    }

    fn same(table: &KeyTable, model: &HashMap<u64, Vec<u8>>) -> bool {
        table.len() == model.len()
            && table.iter().count() == model.len()
            && table
                .iter()
                .all(|(key, value)| model.get(key).map(Vec::as_slice) == Some(value.as_bytes()))
    }

    /// Long random runs of insert, overwrite, remove and get against std's map, over key spaces
    /// small enough to hit every case often (overwrites, removes of present and absent keys,
    /// growth at every size, runs that wrap around the end of the array).
    #[test]
    fn random_operations_match_std_hashmap() {
        for (seed, key_space, operations) in [
            (0x1234_5678_9abc_def1_u64, 8u64, 20_000usize),
            (0x0fed_cba9_8765_4321, 100, 100_000),
            (0x5555_aaaa_1234_0001, 3_000, 200_000),
        ] {
            let mut rng = Rng(seed);
            let mut table = KeyTable::default();
            let mut model: HashMap<u64, Vec<u8>> = HashMap::new();
            for step in 0..operations {
                let key = rng.below(key_space).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                match rng.below(10) {
                    0..=4 => {
                        let value = value_of(rng.next());
                        let bytes = value.as_bytes().to_vec();
                        let old = table.insert(key, value).map(|old| old.as_bytes().to_vec());
                        assert_eq!(old, model.insert(key, bytes), "seed {seed:x} step {step}");
                    }
                    5..=7 => {
                        let removed = table.remove(key).map(|old| old.as_bytes().to_vec());
                        assert_eq!(removed, model.remove(&key), "seed {seed:x} step {step}");
                    }
                    _ => {
                        let found = table.get(key).map(Value::as_bytes);
                        assert_eq!(found, model.get(&key).map(Vec::as_slice));
                    }
                }
                if step % 997 == 0 {
                    assert!(table.check_invariants(), "seed {seed:x} step {step}");
                    assert!(same(&table, &model), "seed {seed:x} step {step}");
                }
            }
            assert!(table.check_invariants());
            assert!(same(&table, &model));
            // Emptied again: every lookup misses, and the table still works.
            let keys: Vec<u64> = model.keys().copied().collect();
            for key in keys {
                assert!(table.remove(key).is_some());
            }
            assert!(table.is_empty() && table.check_invariants());
            assert!(table.get(7).is_none());
        }
    }

    /// Growth happens at 7/8 of the capacity, doubling from 4 slots, and keeps every record.
    #[test]
    fn growth_doubles_at_seven_eighths() {
        let mut table = KeyTable::default();
        assert_eq!((table.capacity(), table.len()), (0, 0));
        assert!(table.get(0).is_none() && table.remove(0).is_none());
        assert!(table.slot_address(hash(0)).is_none());
        let mut expected_capacity = 0;
        for key in 0..10_000u64 {
            if key as usize + 1 > max_load(expected_capacity) {
                expected_capacity = (expected_capacity * 2).max(MIN_CAPACITY);
            }
            table.insert(key, value_of(key));
            assert_eq!(
                table.capacity(),
                expected_capacity,
                "after {} records",
                key + 1
            );
        }
        assert_eq!(max_load(4), 3);
        assert_eq!(max_load(8), 7);
        assert_eq!(table.capacity(), 16_384);
        assert!(table.check_invariants());
        for key in 0..10_000u64 {
            assert_eq!(
                table.get(key).map(Value::as_bytes),
                Some(value_of(key).as_bytes())
            );
        }
        // Removal never shrinks (as hashbrown).
        for key in 0..10_000u64 {
            table.remove(key);
        }
        assert_eq!((table.capacity(), table.len()), (16_384, 0));
    }

    /// An empty table of 16 slots (grown, then emptied: tables never shrink).
    fn empty_table_of_16() -> KeyTable {
        let mut table = KeyTable::default();
        for key in 0..8u64 {
            table.insert(key, value_of(key));
        }
        for key in 0..8u64 {
            table.remove(key);
        }
        assert_eq!((table.capacity(), table.len()), (16, 0));
        table
    }

    /// Keys whose home is the last slot run over the end of the array into its start; removing
    /// any of them keeps the others reachable.
    #[test]
    fn runs_wrap_around_the_end() {
        let probe = empty_table_of_16();
        let at_end: Vec<u64> = (1_000u64..)
            .filter(|key| probe.home(*key) == 15)
            .take(4)
            .collect();
        for removed in 0..=at_end.len() {
            let mut table = empty_table_of_16();
            for key in &at_end {
                table.insert(*key, value_of(*key));
            }
            let wrapped = (0..3)
                .filter(|index| table.slots[*index].value.is_some())
                .count();
            assert_eq!(wrapped, 3, "three of the four run past the end");
            if let Some(key) = at_end.get(removed) {
                assert!(table.remove(*key).is_some());
            }
            assert!(table.check_invariants());
            for (index, key) in at_end.iter().enumerate() {
                assert_eq!(table.get(*key).is_some(), index != removed);
            }
        }
    }

    #[test]
    fn slots_are_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        assert!(std::mem::size_of::<KeyTable>() <= 24);
        // A channel's 4096 shards: 128 KiB of locked tables, empty or not (hashbrown's: 160).
        assert_eq!(std::mem::size_of::<std::sync::Mutex<KeyTable>>(), 32);
    }

    #[test]
    fn entry_overwrites_in_place_or_inserts() {
        let mut table = KeyTable::default();
        match table.entry(5) {
            Entry::Vacant(entry) => entry.insert(Value::new(b"abc", 0)),
            Entry::Occupied(_) => panic!("empty table"),
        }
        match table.entry(5) {
            Entry::Occupied(value) => value.overwrite(b"xyz", 0),
            Entry::Vacant(_) => panic!("inserted"),
        }
        assert_eq!(table.get(5).map(Value::as_bytes), Some(&b"xyz"[..]));
        // The home slot: the key's own when nothing collides.
        let slot: *const Slot = &table.slots[table.home(5)];
        assert_eq!(table.slot_address(hash(5)), Some(slot.cast()));
    }
}

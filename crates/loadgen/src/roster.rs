//! Who knows whom among provisioned users: a ring where user `i` of `n` is a contact of the ten
//! users after it and the ten before it (20 accepted contacts each, as `provision` creates them).
//! `provision` writes these pairs and `run` picks message and call partners from them, so both
//! agree without a file saying who is whose contact.

/// Contacts on each side of a user in the ring.
pub const HALF: usize = 10;

/// Users needed for every user to have `2 * HALF` distinct contacts.
pub const MIN_USERS: usize = 2 * HALF + 1;

/// The contacts of user `i` among `n` users (`2 * HALF` of them when `n >= MIN_USERS`, fewer
/// for a smaller ring, never `i` itself, never twice).
pub fn contacts_of(i: usize, n: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(2 * HALF);
    if n < 2 || i >= n {
        return out;
    }
    for k in 1..=HALF.min(n - 1) {
        for j in [(i + k) % n, (i + n - k) % n] {
            if j != i && !out.contains(&j) {
                out.push(j);
            }
        }
    }
    out
}

/// Every contact pair once, as `(lower, higher)` user numbers: the rows `provision` writes.
pub fn pairs(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).flat_map(move |i| {
        contacts_of(i, n).into_iter().filter(move |&j| j > i).map(move |j| (i, j))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_has_twenty_distinct_contacts_and_the_relation_is_symmetric() {
        let n = 1000;
        for i in 0..n {
            let c = contacts_of(i, n);
            assert_eq!(c.len(), 2 * HALF, "user {i}");
            assert!(!c.contains(&i));
            for &j in &c {
                assert!(contacts_of(j, n).contains(&i), "{i} -> {j} but not back");
            }
        }
        assert_eq!(pairs(n).count(), n * HALF);
    }

    #[test]
    fn a_small_ring_has_fewer_contacts_but_no_duplicates() {
        assert_eq!(contacts_of(0, 1), Vec::<usize>::new());
        assert_eq!(contacts_of(0, 2), vec![1]);
        let c = contacts_of(2, 5);
        assert_eq!(c.len(), 4);
        assert_eq!(pairs(5).count(), 10);
        assert!(contacts_of(7, 5).is_empty());
    }
}

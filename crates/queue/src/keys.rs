//! Key encoding. Every key starts with one byte naming the record kind (see the crate docs for
//! the full layout); numbers are big-endian so byte order is numeric order.

use herald_core::{DeliveryId, EventId, SubscriberId};

/// `e` + event id → event meta and payload.
pub(crate) const EVENT: u8 = b'e';
/// `d` + delivery id → delivery state with attempt history.
pub(crate) const DELIVERY: u8 = b'd';
/// `z` + subscriber + 0x00 + delivery id → dead index.
pub(crate) const DEAD: u8 = b'z';
/// `f` + finished ms + delivery id → finished index (value: event id).
pub(crate) const FINISHED: u8 = b'f';
/// `c` + claim ms + sequence → the deliveries one claim leased (ids and event ids): the
/// finished index of everything claimed at that time.
pub(crate) const CLAIMED: u8 = b'c';
/// `i` + idempotency key → receipt.
pub(crate) const IDEMPOTENCY: u8 = b'i';
/// `j` + created ms + idempotency key → expiry index.
pub(crate) const IDEMPOTENCY_TTL: u8 = b'j';
/// `s` + subscriber → pause reason.
pub(crate) const PAUSE: u8 = b's';

/// `m` + `format` → the store's format version (the only `m` key so far).
pub(crate) const FORMAT_KEY: &[u8] = b"mformat";

pub(crate) fn event(id: EventId) -> [u8; 17] {
    with_id(EVENT, id.to_bytes())
}

pub(crate) fn delivery(id: DeliveryId) -> [u8; 17] {
    with_id(DELIVERY, id.to_bytes())
}

fn with_id(prefix: u8, id: [u8; 16]) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = prefix;
    k[1..].copy_from_slice(&id);
    k
}

/// The first `e` key of events accepted at or after `ms`: event ids are UUIDv7 stamped with
/// their `received_at` (48-bit big-endian milliseconds first), so a time window is a key range.
pub(crate) fn event_at(ms: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = EVENT;
    let ms = ms.min((1 << 48) - 1);
    k[1..7].copy_from_slice(&ms.to_be_bytes()[2..]);
    k
}

/// The 16 id bytes of an `e` or `d` key, if it has the right shape.
pub(crate) fn id_of(key: &[u8]) -> Option<[u8; 16]> {
    if key.len() != 17 {
        return None;
    }
    key[1..].try_into().ok()
}

/// `z` + subscriber + 0x00: the prefix of one subscriber's dead index.
pub(crate) fn dead_prefix(sub: &SubscriberId) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + sub.as_str().len() + 16);
    k.push(DEAD);
    k.extend_from_slice(sub.as_str().as_bytes());
    k.push(0);
    k
}

pub(crate) fn dead(sub: &SubscriberId, id: DeliveryId) -> Vec<u8> {
    let mut k = dead_prefix(sub);
    k.extend_from_slice(&id.to_bytes());
    k
}

/// The delivery id at the end of a `z` key.
pub(crate) fn dead_id(key: &[u8]) -> Option<DeliveryId> {
    let tail = key.len().checked_sub(16)?;
    let bytes: [u8; 16] = key[tail..].try_into().ok()?;
    Some(DeliveryId::from_bytes(bytes))
}

/// `f` + ms: everything finished strictly before `ms` sorts before this key.
pub(crate) fn finished_bound(ms: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = FINISHED;
    k[1..].copy_from_slice(&ms.to_be_bytes());
    k
}

pub(crate) fn finished(ms: u64, id: DeliveryId) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[..9].copy_from_slice(&finished_bound(ms));
    k[9..].copy_from_slice(&id.to_bytes());
    k
}

pub(crate) fn parse_finished(key: &[u8]) -> Option<(u64, DeliveryId)> {
    if key.len() != 25 || key[0] != FINISHED {
        return None;
    }
    let ms = u64::from_be_bytes(key[1..9].try_into().ok()?);
    let id: [u8; 16] = key[9..].try_into().ok()?;
    Some((ms, DeliveryId::from_bytes(id)))
}

/// `c` + ms: every claim made strictly before `ms` sorts before this key.
pub(crate) fn claimed_bound(ms: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = CLAIMED;
    k[1..].copy_from_slice(&ms.to_be_bytes());
    k
}

pub(crate) fn claimed(ms: u64, seq: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..9].copy_from_slice(&claimed_bound(ms));
    k[9..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn idempotency(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(IDEMPOTENCY);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `j` + ms: every key created strictly before `ms` sorts before this key.
pub(crate) fn idempotency_ttl_bound(ms: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = IDEMPOTENCY_TTL;
    k[1..].copy_from_slice(&ms.to_be_bytes());
    k
}

pub(crate) fn idempotency_ttl(ms: u64, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.extend_from_slice(&idempotency_ttl_bound(ms));
    k.extend_from_slice(key.as_bytes());
    k
}

pub(crate) fn parse_idempotency_ttl(key: &[u8]) -> Option<(u64, &[u8])> {
    if key.len() < 9 || key[0] != IDEMPOTENCY_TTL {
        return None;
    }
    let ms = u64::from_be_bytes(key[1..9].try_into().ok()?);
    Some((ms, &key[9..]))
}

pub(crate) fn pause(sub: &SubscriberId) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + sub.as_str().len());
    k.push(PAUSE);
    k.extend_from_slice(sub.as_str().as_bytes());
    k
}

/// The smallest key greater than every key starting with `prefix` (prefix has no 0xff tail in
/// our layout, so incrementing the last byte is enough).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    // Only reachable for an all-0xff prefix, which we never build.
    vec![u8::MAX; prefix.len() + 1]
}

/// A printable form of a key for error messages: the kind letter, then the rest in hex.
pub(crate) fn describe(key: &[u8]) -> String {
    match key.split_first() {
        Some((kind, rest)) if kind.is_ascii_alphabetic() => {
            let mut s = String::with_capacity(2 + rest.len() * 2);
            s.push(char::from(*kind));
            s.push('/');
            for b in rest {
                s.push_str(&format!("{b:02x}"));
            }
            s
        }
        _ => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn finished_keys_sort_by_time_and_round_trip() {
        let a = DeliveryId::generate();
        let b = DeliveryId::generate();
        assert!(finished(5, b) < finished(6, a));
        assert!(finished(5, a)[..] < finished_bound(6)[..]);
        assert!(finished(6, a)[..] >= finished_bound(6)[..]);
        assert_eq!(parse_finished(&finished(7, a)), Some((7, a)));
        assert_eq!(parse_finished(b"f123"), None);
    }

    #[test]
    fn claimed_keys_sort_by_time_then_sequence() {
        assert!(claimed(5, 9) < claimed(6, 1));
        assert!(claimed(5, 1) < claimed(5, 2));
        assert!(claimed(5, u64::MAX)[..] < claimed_bound(6)[..]);
        assert!(claimed(6, 0)[..] >= claimed_bound(6)[..]);
    }

    #[test]
    fn dead_keys_are_scoped_by_subscriber() {
        let s = SubscriberId::new("acme").unwrap();
        let s2 = SubscriberId::new("acme2").unwrap();
        let id = DeliveryId::generate();
        let k = dead(&s, id);
        assert!(k.starts_with(&dead_prefix(&s)));
        assert!(!dead(&s2, id).starts_with(&dead_prefix(&s)));
        assert!(k < prefix_end(&dead_prefix(&s)));
        assert_eq!(dead_id(&k), Some(id));
    }

    #[test]
    fn ttl_keys_round_trip() {
        let k = idempotency_ttl(42, "abc");
        assert_eq!(parse_idempotency_ttl(&k), Some((42, &b"abc"[..])));
        assert!(k.as_slice() < &idempotency_ttl_bound(43)[..]);
    }

    #[test]
    fn event_time_bounds_sort_with_stamped_ids() {
        let id = EventId::from_bytes(crate::store::event_id_at(5_000));
        assert!(event_at(4_999)[..] <= event(id)[..]);
        assert!(event_at(5_000)[..] <= event(id)[..]);
        assert!(event(id)[..] < event_at(5_001)[..]);
    }

    #[test]
    fn describe_is_printable() {
        assert_eq!(describe(&[b'd', 0xab, 0x01]), "d/ab01");
        assert_eq!(describe(&[0x00, 0xff]), "00ff");
    }
}

//! Source addresses for outgoing connections: a range of IPv4 loopback addresses handed out round
//! robin, so that tens of thousands of connections to one supernode port do not run out of
//! ephemeral ports (each source address has its own ~28,000), and so that per-address quotas on the
//! supernode (registrations per address per hour) see many addresses, as they would in the field.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// Most addresses one range may hold (a /16); enough for a million connections.
const MAX_ADDRESSES: u32 = 65_536;

/// An inclusive range of IPv4 loopback addresses, e.g. `127.0.0.2-127.0.0.200` or
/// `127.0.1.1-127.0.4.254` (the range may cross octet boundaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceAddrs {
    first: u32,
    count: u32,
}

/// Why a `--source-ips` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRange(String);

impl fmt::Display for BadRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadRange {}

impl FromStr for SourceAddrs {
    type Err = BadRange;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let parse = |part: &str| {
            part.trim().parse::<Ipv4Addr>().map_err(|_| {
                BadRange(format!(
                    "{part:?} is not an IPv4 address; write FIRST-LAST, e.g. 127.0.0.2-127.0.0.200"
                ))
            })
        };
        let (a, b) = (parse(a)?, parse(b)?);
        if !a.is_loopback() || !b.is_loopback() {
            return Err(BadRange(format!(
                "{s}: source addresses must be in 127.0.0.0/8 (the load generator is loopback only)"
            )));
        }
        let (first, last) = (u32::from(a), u32::from(b));
        if last < first {
            return Err(BadRange(format!("{s}: the last address is below the first")));
        }
        let count = last - first + 1;
        if count > MAX_ADDRESSES {
            return Err(BadRange(format!(
                "{s}: {count} addresses; at most {MAX_ADDRESSES} are allowed"
            )));
        }
        Ok(Self { first, count })
    }
}

impl SourceAddrs {
    /// The address for the `n`th connection: round robin over the range.
    pub fn nth(&self, n: usize) -> IpAddr {
        // `count` is at least 1 and at most 65,536, so the offset stays inside the range.
        let offset = (n % self.count as usize) as u32;
        IpAddr::V4(Ipv4Addr::from(self.first + offset))
    }
}

impl fmt::Display for SourceAddrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = Ipv4Addr::from(self.first + self.count - 1);
        write!(f, "{}-{last}", Ipv4Addr::from(self.first))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cross_octets_and_wrap_round_robin() {
        let r: SourceAddrs = "127.0.0.254-127.0.1.1".parse().unwrap();
        assert_eq!(r.count, 4);
        let seen: Vec<String> = (0..5).map(|n| r.nth(n).to_string()).collect();
        assert_eq!(seen, ["127.0.0.254", "127.0.0.255", "127.0.1.0", "127.0.1.1", "127.0.0.254"]);
        assert_eq!(r.to_string(), "127.0.0.254-127.0.1.1");
    }

    #[test]
    fn a_single_address_is_a_range_of_one() {
        let r: SourceAddrs = "127.0.0.9".parse().unwrap();
        assert_eq!((r.count, r.nth(7).to_string()), (1, "127.0.0.9".to_owned()));
    }

    #[test]
    fn bad_ranges_are_refused_with_a_reason() {
        for bad in
            ["10.0.0.1-10.0.0.9", "127.0.0.9-127.0.0.2", "127.0.0.1-127.2.0.0", "x-127.0.0.2", ""]
        {
            assert!(bad.parse::<SourceAddrs>().is_err(), "{bad}");
        }
    }
}

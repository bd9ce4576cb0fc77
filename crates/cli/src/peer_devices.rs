//! Contacts' devices as this device knows them: the loud announcement of a contact's new device
//! when a call pins it, and `peerline verify USER`, which lists the contact's pinned devices and
//! the ones the supernode names, with the safety numbers to compare.
//!
//! A supernode cannot swap the key of a device this client has pinned, but it can present a
//! key of its own as a *new* device of the contact. People do get new phones, so that cannot be
//! refused; it is announced instead, in words that say what to check.

use std::collections::BTreeMap;

use anyhow::Context;
use peerline_client::peer_keys::safety_number;
use peerline_client::wire::{DeviceKey, Reply, Request};
use peerline_client::{Client, Home};
use serde_json::{Value, json};

use crate::output::Out;
use crate::sanitize::Escaped;

/// This device as the other side of a safety number, and the pins: what announcing a
/// contact's new device needs while a call runs.
#[derive(Debug, Clone)]
pub struct Identity {
    home: Home,
    me: String,
    key: [u8; 32],
}

impl Identity {
    /// The logged-in user and this device's key.
    pub fn of(client: &Client) -> anyhow::Result<Self> {
        Ok(Identity {
            home: client.home().clone(),
            me: client.logged_in_username()?,
            key: client.device_key()?.verifying_key().to_bytes(),
        })
    }

    /// The safety number of this device with `peer`'s device key (hex); `None` for a key that
    /// is not hex.
    fn safety_number(&self, peer: &str, key_hex: &str) -> Option<String> {
        let key = hex::decode(key_hex).ok()?;
        Some(safety_number(&self.me, &self.key, peer, &key))
    }

    /// A contact's device that a call has just pinned as new ([`peerline_call::KeyCheck::NewDevice`]).
    pub fn new_device(&self, peer: &str, device_id: i64) -> NewDevice {
        let public_key = self
            .home
            .pinned_peer_keys(peer)
            .ok()
            .and_then(|keys| keys.into_iter().find(|(id, _)| *id == device_id))
            .map(|(_, key)| key);
        let safety_number = public_key.as_deref().and_then(|k| self.safety_number(peer, k));
        NewDevice { peer: peer.to_owned(), device_id, public_key, safety_number }
    }
}

/// A contact's new device, as announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    /// The contact.
    pub peer: String,
    /// The device.
    pub device_id: i64,
    /// Its pinned key, hex (`None` if the pins could not be read).
    pub public_key: Option<String>,
    /// This device's safety number with it.
    pub safety_number: Option<String>,
}

impl NewDevice {
    /// The announcement: a `new_device` JSON line, or a line of text meant to be noticed.
    pub fn line(&self, json: bool) -> String {
        if json {
            return json!({
                "event": "new_device",
                "peer": self.peer,
                "device_id": self.device_id,
                "public_key": self.public_key,
                "safety_number": self.safety_number,
            })
            .to_string();
        }
        let peer = Escaped(&self.peer);
        let key = self.public_key.as_deref().map_or_else(
            || "key unknown".to_owned(),
            |k| format!("key {}…", Escaped(k.get(..16).unwrap_or(k))),
        );
        let number = self.safety_number.as_deref().unwrap_or("unknown");
        format!(
            "NEW DEVICE: {peer} has a new device {} ({key}, safety number {number}). If {peer} \
             did not add a device, someone may be listening in: compare safety numbers with \
             `peerline verify {peer}`.",
            self.device_id
        )
    }
}

/// Where a device stands, from the pins and the supernode's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceState {
    /// Pinned, and the supernode lists the same key.
    Pinned,
    /// Pinned, but the supernode lists another key: calls with it fail as "identity changed".
    KeyChanged {
        /// The key the supernode lists.
        listed: String,
    },
    /// Pinned, and the supernode no longer lists it (removed, or hidden).
    NotListed,
    /// Listed, not pinned, and no device of the contact is: the first call pins it.
    NotPinned,
    /// Listed, not pinned, while other devices of the contact are.
    NewDevice,
}

impl DeviceState {
    /// The `state` of `verify --json`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeviceState::Pinned => "pinned",
            DeviceState::KeyChanged { .. } => "key_changed",
            DeviceState::NotListed => "not_listed",
            DeviceState::NotPinned => "not_pinned",
            DeviceState::NewDevice => "new_device",
        }
    }

    fn explained(&self) -> &'static str {
        match self {
            DeviceState::Pinned => "pinned",
            DeviceState::KeyChanged { .. } => {
                "KEY CHANGED: the supernode names another key than the pinned one; calls with \
                 this device are refused"
            }
            DeviceState::NotListed => "pinned, no longer listed by the supernode",
            DeviceState::NotPinned => "not pinned yet: the first call with it pins it",
            DeviceState::NewDevice => {
                "NEW DEVICE, not pinned yet: the supernode names it, no call has seen it"
            }
        }
    }
}

/// One device in `peerline verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// The device.
    pub device_id: i64,
    /// Its name, as the supernode lists it (empty when it does not).
    pub name: String,
    /// The key the safety number is of: the pinned one, or else the listed one.
    pub public_key: String,
    /// Where it stands.
    pub state: DeviceState,
}

/// Every device of the contact: the ones the supernode lists, in its order (oldest first), then
/// the pinned ones it no longer lists. Device ids are random, so they say nothing of age.
pub fn device_rows(listed: &[DeviceKey], pinned: &[(i64, String)]) -> Vec<DeviceRow> {
    let pinned: BTreeMap<i64, &str> = pinned.iter().map(|(id, k)| (*id, k.as_str())).collect();
    let listed_by_id: BTreeMap<i64, &DeviceKey> = listed.iter().map(|d| (d.device_id, d)).collect();
    let mut ids: Vec<i64> = listed.iter().map(|d| d.device_id).collect();
    ids.extend(pinned.keys().filter(|id| !listed_by_id.contains_key(id)));
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(*id));
    ids.into_iter()
        .filter_map(|id| {
            let listed = listed_by_id.get(&id);
            let name = listed.map(|d| d.name.clone()).unwrap_or_default();
            let (public_key, state) = match (pinned.get(&id), listed) {
                (Some(pin), Some(d)) if d.public_key.eq_ignore_ascii_case(pin) => {
                    ((*pin).to_owned(), DeviceState::Pinned)
                }
                (Some(pin), Some(d)) => (
                    (*pin).to_owned(),
                    DeviceState::KeyChanged { listed: d.public_key.to_ascii_lowercase() },
                ),
                (Some(pin), None) => ((*pin).to_owned(), DeviceState::NotListed),
                (None, Some(d)) if pinned.is_empty() => {
                    (d.public_key.to_ascii_lowercase(), DeviceState::NotPinned)
                }
                (None, Some(d)) => (d.public_key.to_ascii_lowercase(), DeviceState::NewDevice),
                (None, None) => return None,
            };
            Some(DeviceRow { device_id: id, name, public_key, state })
        })
        .collect()
}

/// `peerline verify USER`: the safety number of this device with each of USER's devices, pinned
/// or listed by the supernode. Both users run it and compare the numbers over another channel
/// (in person, on the phone). It never pins a key: the supernode's list is not signed by the
/// devices, so only a call, once the device signed it, pins the device's key.
pub async fn verify(
    client: &Client,
    out: &Out,
    username: &str,
    forget: bool,
) -> anyhow::Result<()> {
    let username = username.to_ascii_lowercase();
    if forget {
        let removed = client.home().forget_peer_keys(&username)?;
        out.done(&if removed {
            format!("Forgot {username}'s pinned device keys; the next call pins them anew.")
        } else {
            format!("No keys were pinned for {username}.")
        });
        return Ok(());
    }
    let identity = Identity::of(client)?;
    let listed = match client.request(Request::DeviceKeys { username: username.clone() }).await? {
        Reply::DeviceKeys { devices, .. } => devices,
        other => anyhow::bail!("unexpected reply: {other:?}"),
    };
    let pinned = client.home().pinned_peer_keys(&username)?;
    let mut rows = Vec::new();
    for row in device_rows(&listed, &pinned) {
        let number = identity
            .safety_number(&username, &row.public_key)
            .context("the supernode sent a malformed key")?;
        rows.push((row, number));
    }
    if out.is_json() {
        let list: Vec<Value> = rows.iter().map(|(row, number)| row_json(row, number)).collect();
        println!("{}", json!({"username": username, "devices": list}));
    } else {
        for line in verify_text(&identity.me, &username, &rows) {
            println!("{line}");
        }
    }
    Ok(())
}

fn row_json(row: &DeviceRow, number: &str) -> Value {
    let mut value = json!({
        "device_id": row.device_id,
        "name": row.name,
        "public_key": row.public_key,
        "safety_number": number,
        "state": row.state.as_str(),
        "pinned": matches!(
            row.state,
            DeviceState::Pinned | DeviceState::KeyChanged { .. } | DeviceState::NotListed
        ),
    });
    if let (DeviceState::KeyChanged { listed }, Some(map)) = (&row.state, value.as_object_mut()) {
        map.insert("listed_key".into(), json!(listed));
    }
    value
}

/// The text of `peerline verify`, line by line.
fn verify_text(me: &str, username: &str, rows: &[(DeviceRow, String)]) -> Vec<String> {
    let (me, user) = (Escaped(me), Escaped(username));
    let mut lines = vec![
        format!("Safety numbers of this device with {user}'s devices; {user} sees the same"),
        format!("numbers with `peerline verify {me}`. Compare them over another channel."),
    ];
    if rows.is_empty() {
        lines.push(format!("  {user} has no devices."));
    }
    for (row, number) in rows {
        let name =
            if row.name.is_empty() { String::new() } else { format!(" ({})", Escaped(&row.name)) };
        lines.push(format!(
            "  device {}{name}: {number} — {}",
            row.device_id,
            row.state.explained()
        ));
    }
    lines
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn listed(id: i64, key: &str, name: &str) -> DeviceKey {
        DeviceKey { device_id: id, public_key: key.into(), name: name.into() }
    }

    #[test]
    fn every_pinned_and_listed_device_gets_a_row_in_the_supernodes_order() {
        // Ids are random: the supernode's order (oldest first) is the one that means something.
        let pinned = vec![(90, "aa".to_owned()), (2, "bb".to_owned()), (3, "cc".to_owned())];
        let list = [listed(90, "AA", "phone"), listed(2, "ff", "laptop"), listed(4, "dd", "new")];
        let rows = device_rows(&list, &pinned);
        let states: Vec<(i64, &str, &str)> =
            rows.iter().map(|r| (r.device_id, r.public_key.as_str(), r.state.as_str())).collect();
        assert_eq!(
            states,
            [
                (90, "aa", "pinned"),
                (2, "bb", "key_changed"),
                (4, "dd", "new_device"),
                (3, "cc", "not_listed"),
            ]
        );
        assert_eq!(rows[1].state, DeviceState::KeyChanged { listed: "ff".into() });
        assert_eq!(rows[2].name, "new");
        // Nothing pinned yet: the devices wait for their first call.
        let rows = device_rows(&list, &[]);
        assert!(rows.iter().all(|r| r.state == DeviceState::NotPinned));
    }

    #[test]
    fn the_new_device_line_is_loud_and_escaped() {
        let device = NewDevice {
            peer: "bob\u{1b}[2J".into(),
            device_id: 47,
            public_key: Some("0123456789abcdef0123".into()),
            safety_number: Some("12345 67890".into()),
        };
        assert_eq!(
            device.line(false),
            "NEW DEVICE: bob\\x1b[2J has a new device 47 (key 0123456789abcdef…, safety number \
             12345 67890). If bob\\x1b[2J did not add a device, someone may be listening in: \
             compare safety numbers with `peerline verify bob\\x1b[2J`."
        );
        let json: Value = serde_json::from_str(&device.line(true)).unwrap();
        assert_eq!(json["event"], "new_device");
        assert_eq!(json["peer"], "bob\u{1b}[2J");
        assert_eq!(json["device_id"], 47);
        assert_eq!(json["public_key"], "0123456789abcdef0123");
        assert_eq!(json["safety_number"], "12345 67890");
    }

    #[test]
    fn verify_text_escapes_what_the_supernode_names() {
        let row = DeviceRow {
            device_id: 2,
            name: "x\u{1b}]0;title\u{7}\u{202e}".into(),
            public_key: "aa".into(),
            state: DeviceState::NewDevice,
        };
        let lines = verify_text("alice", "bob", &[(row, "11111".into())]);
        assert_eq!(
            lines[2],
            "  device 2 (x\\x1b]0;title\\x07\\u{202e}): 11111 — NEW DEVICE, not pinned yet: the \
             supernode names it, no call has seen it"
        );
    }
}

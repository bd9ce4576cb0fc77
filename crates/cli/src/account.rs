//! This device's standing with its account: what a login remembers for the network (`--ca`,
//! `--device-name`), the guard that keeps `register` from replacing another account's session,
//! and removing a device — this one included.

use peerline_client::wire::{EndReason, Reply, Request};
use peerline_client::{Client, ClientError, Home};

use crate::args::{Args, Command};
use crate::failure::CliError;
use crate::output::Out;

/// The `--device-name` typed for `register` or `login`, if any.
pub fn typed_device_name(args: &Args) -> Option<String> {
    match &args.command {
        Command::Register { device_name, .. } | Command::Login { device_name, .. } => {
            device_name.clone()
        }
        _ => None,
    }
}

/// After a login with the password: keeps the `--ca` file (as an absolute path, so that it is
/// found from any directory) and the `--device-name` for the network, so that later commands
/// need not repeat them — and so that their logins, which send the device name again, keep it.
pub fn remember_options(args: &Args, client: &Client) -> anyhow::Result<()> {
    let name = typed_device_name(args);
    let ca_file = args.ca.as_ref().map(|path| std::fs::canonicalize(path).unwrap_or(path.clone()));
    if name.is_none() && ca_file.is_none() {
        return Ok(());
    }
    client.home().update_network(&[client.supernode_url().to_owned()], |network| {
        if let Some(name) = name {
            network.device_name = Some(name);
        }
        if let Some(ca_file) = ca_file {
            network.ca_file = Some(ca_file);
        }
    })?;
    Ok(())
}

/// `register` in a home logged in to this network as someone else would silently replace that
/// session: refused, saying whose it is.
pub fn refuse_if_logged_in_as_other(
    home: &Home,
    args: &Args,
    username: &str,
) -> anyhow::Result<()> {
    let Some(session) = home.network(&args.supernode)?.session else {
        return Ok(());
    };
    if session.username.eq_ignore_ascii_case(username) {
        return Ok(());
    }
    Err(CliError::new(
        "logged_in_as_other",
        format!(
            "this home is logged in as {}; log out first (`peerline logout`) or use another \
             --home",
            session.username
        ),
    )
    .into())
}

/// `devices remove ID`. Removing this very device ends its session: the supernode closes the
/// connection, maybe before its answer arrives. That is the success it looks like, and the
/// session saved here is void, so it is forgotten.
pub async fn remove_device(
    client: &Client,
    login: &Reply,
    out: &Out,
    id: i64,
) -> anyhow::Result<()> {
    let this_device = matches!(login, Reply::LoggedIn { device_id, .. } if *device_id == id);
    let result = client.done(Request::RemoveDevice { device_id: id }).await;
    if !this_device {
        result?;
        out.done(&format!("Device {id} removed."));
        return Ok(());
    }
    match result {
        Ok(()) | Err(ClientError::Closed(Some(EndReason::DeviceRemoved))) => {}
        Err(e) => return Err(e.into()),
    }
    client.home().clear_session(client.supernode_url())?;
    out.done(&format!(
        "Device {id} (this device) removed; this device is now logged out. Log in again with \
         `peerline login USERNAME`."
    ));
    Ok(())
}

//! `peerline`: the command line for people who use Peerline — register, log in, manage contacts,
//! set presence, search the directory, send and read instant messages, stay online for events.

mod account;
mod args;
mod call_log;
mod calls;
mod echo;
mod failure;
mod manual;
mod messages;
mod output;
mod password;
mod peer_devices;
mod sanitize;
mod trust;

use std::time::Duration;

use anyhow::Context;
use args::{Args, Command, ContactsCommand, DevicesCommand};
use clap::{CommandFactory, FromArgMatches};
use output::Out;
use peerline_call::CallOptions;
use peerline_client::wire::{EndReason, Event, Reply, Request, Status};
use peerline_client::{Client, ClientError, ConnectOptions, Home};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Diagnostics go to stderr, Peerline's own warnings only unless PEERLINE_LOG (or RUST_LOG)
    // asks for more; stdout stays for the command's output. Other crates' warnings (str0m's
    // ICE chatter during calls) mean nothing to a user: errors only. A directive's target
    // matches by prefix, so `peerline` covers every peerline_* crate.
    let filter = std::env::var("PEERLINE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "error,peerline=warn".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let matches =
        Args::command().try_get_matches().unwrap_or_else(|e| failure::exit_on_usage_error(&e));
    let mut args =
        Args::from_arg_matches(&matches).unwrap_or_else(|e| failure::exit_on_usage_error(&e));
    // A global option is found in the matches of the subcommand it was typed after, too.
    let typed = |m: &clap::ArgMatches| {
        m.value_source("fingerprint") == Some(clap::parser::ValueSource::CommandLine)
    };
    args.fingerprint_typed =
        typed(&matches) || matches.subcommand().is_some_and(|(_, sub)| typed(sub));
    let out = Out::new(args.json);
    if let Err(err) = run(args, &out).await {
        out.error(&err);
        std::process::exit(1);
    }
}

/// This machine's host name, the device name a login gives unless told otherwise.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "peerline-cli".into())
}

fn home_dir(args: &Args) -> anyhow::Result<std::path::PathBuf> {
    match &args.home {
        Some(dir) => Ok(dir.clone()),
        None => dirs::data_dir()
            .map(|d| d.join("peerline"))
            .context("no home directory for Peerline: set PEERLINE_HOME or --home"),
    }
}

/// How to reach the supernodes named by `--supernode` (one or several of one network). The CA
/// file and device name given at login are remembered for the network (see
/// [`account::remember_options`]): used when not given again. A `--fingerprint` instead of a
/// CA is obeyed as typed.
fn connect_options(args: &Args) -> ConnectOptions {
    let saved = home_dir(args)
        .ok()
        .filter(|dir| dir.is_dir())
        .and_then(|dir| Home::open(&dir).ok())
        .and_then(|home| home.network(&args.supernode).ok())
        .unwrap_or_default();
    let ca_file = args.ca.clone().or(saved.ca_file.filter(|_| args.fingerprint.is_none()));
    let device_name =
        account::typed_device_name(args).or(saved.device_name).unwrap_or_else(host_name);
    ConnectOptions { url: args.supernode.join(","), ca_file, device_name }
}

async fn connect(args: &Args, out: &Out) -> anyhow::Result<Client> {
    let home = Home::open(&home_dir(args)?)?;
    let options = connect_options(args);
    let mut client = match Client::connect_expecting(&options, args.fingerprint, home).await {
        Err(e @ ClientError::CertificateChanged { .. }) if args.fingerprint.is_some() => {
            return Err(anyhow::Error::new(e).context(
                "the supernode did not present the certificate given with --fingerprint (or \
                 PEERLINE_FINGERPRINT); nothing was sent",
            ));
        }
        result => result?,
    };
    // Only a device that stays connected appears online; a one-shot command logs in quietly,
    // so that contacts do not see "online" then "offline" each time it runs.
    client.set_quiet(!matches!(args.command, Command::Online { .. } | Command::Call { .. }));
    trust::note_first_use(out, &client);
    Ok(client)
}

/// Connects for a command that sends a password: on a first use at a terminal, only once the
/// person said the supernode may have it (see [`trust::confirm_before_password`]).
async fn connect_for_password(
    args: &Args,
    out: &Out,
    password_stdin: bool,
) -> anyhow::Result<Client> {
    let client = connect(args, out).await?;
    let interactive = trust::interactive(args.json, password_stdin);
    match trust::confirm_before_password(client, interactive, &connect_options(args).urls())? {
        Some(client) => Ok(client),
        None => connect(args, out).await,
    }
}

async fn logged_in(args: &Args, out: &Out) -> anyhow::Result<Client> {
    Ok(logged_in_with_reply(args, out).await?.0)
}

/// [`logged_in`], with the supernode's `logged_in` reply (device id, status).
async fn logged_in_with_reply(args: &Args, out: &Out) -> anyhow::Result<(Client, Reply)> {
    let mut client = connect(args, out).await?;
    let reply = client.login_saved().await?;
    Ok((client, reply))
}

async fn run(args: Args, out: &Out) -> anyhow::Result<()> {
    match &args.command {
        Command::Register { username, display_name, password_stdin, .. } => {
            // Before the password is asked for: a session of another account would be replaced.
            account::refuse_if_logged_in_as_other(
                &Home::open(&home_dir(&args)?)?,
                &args,
                username,
            )?;
            let password = password::new_password(*password_stdin, "Choose a password")?;
            let mut client = connect_for_password(&args, out, *password_stdin).await?;
            let name = client.register(username, display_name.as_deref(), &password).await?;
            let reply = client.login_with_password(&name, &password).await?;
            account::remember_options(&args, &client)?;
            out.logged_in(&reply, "Registered and logged in");
        }
        Command::Login { username, password_stdin, .. } => {
            let password = password::existing_password(*password_stdin, "Password")?;
            let mut client = connect_for_password(&args, out, *password_stdin).await?;
            let reply = client.login_with_password(username, &password).await?;
            account::remember_options(&args, &client)?;
            out.logged_in(&reply, "Logged in");
        }
        Command::Logout => {
            let client = logged_in(&args, out).await?;
            client.logout().await?;
            out.done("Logged out; this device's session token is revoked.");
        }
        Command::Whoami => {
            let client = logged_in(&args, out).await?;
            out.reply(&client.request(Request::Whoami).await?);
        }
        Command::Passwd { password_stdin } => {
            let (old, new) = password::change(*password_stdin)?;
            let mut client = connect_for_password(&args, out, *password_stdin).await?;
            client.login_saved().await?;
            client.done(Request::ChangePassword { old_password: old, new_password: new }).await?;
            out.done("Password changed; other devices must log in again.");
        }
        Command::Devices { command } => {
            let (client, reply) = logged_in_with_reply(&args, out).await?;
            match command {
                None => out.reply(&client.request(Request::Devices).await?),
                Some(DevicesCommand::Remove { id }) => {
                    account::remove_device(&client, &reply, out, *id).await?;
                }
            }
        }
        Command::Search { query } => {
            let client = logged_in(&args, out).await?;
            out.reply(&client.request(Request::Search { query: query.clone() }).await?);
        }
        Command::Contacts { command } => {
            let client = logged_in(&args, out).await?;
            let (request, what) = match command {
                None => {
                    out.contacts(&client.contacts().await?);
                    return Ok(());
                }
                Some(ContactsCommand::Add { username, message }) => (
                    Request::ContactAdd { username: username.clone(), message: message.clone() },
                    format!("Contact request sent to {username}."),
                ),
                Some(ContactsCommand::Accept { username }) => (
                    Request::ContactAccept { username: username.clone() },
                    format!("{username} is now a contact."),
                ),
                Some(ContactsCommand::Decline { username }) => (
                    Request::ContactDecline { username: username.clone() },
                    format!("Declined {username}'s request."),
                ),
                Some(ContactsCommand::Remove { username }) => (
                    Request::ContactRemove { username: username.clone() },
                    format!("Removed {username}."),
                ),
                Some(ContactsCommand::Block { username }) => (
                    Request::ContactBlock { username: username.clone() },
                    format!("Blocked {username}."),
                ),
            };
            client.done(request).await?;
            out.done(&what);
        }
        Command::Status { status } => {
            let client = logged_in(&args, out).await?;
            match status {
                Some(s) => {
                    let status = Status::parse(s)
                        .context("status must be online, away, busy or invisible")?;
                    client.done(Request::SetStatus { status }).await?;
                    out.status(status);
                }
                None => match client.request(Request::Whoami).await? {
                    Reply::Me(profile) => out.status(profile.status),
                    other => out.reply(&other),
                },
            }
        }
        Command::Profile { display_name, discoverable } => {
            let client = logged_in(&args, out).await?;
            client
                .done(Request::SetProfile {
                    display_name: display_name.clone(),
                    discoverable: *discoverable,
                })
                .await?;
            out.reply(&client.request(Request::Whoami).await?);
        }
        Command::Send { username, text } => {
            // Read (and check) the text before connecting: nothing is sent if it cannot go.
            let text = messages::text(text, std::io::stdin().lock())?;
            let client = logged_in(&args, out).await?;
            let message = client.send_message(username, &text).await?;
            out.sent(&message);
        }
        Command::Inbox { limit, peek } => {
            let client = logged_in(&args, out).await?;
            messages::inbox(&client, out, *limit, *peek).await?;
        }
        Command::History { username, limit, before } => {
            let client = logged_in(&args, out).await?;
            messages::history(&client, out, username, *limit, *before).await?;
        }
        Command::Calls { missed, limit, before } => {
            let client = logged_in(&args, out).await?;
            call_log::list(&client, out, *missed, *limit, *before).await?;
        }
        Command::Online { status, exit_after, auto_answer, play, record, relay_only } => {
            calls::warn_if_no_audio(play.as_deref(), record.as_deref());
            let (mut client, reply) = logged_in_with_reply(&args, out).await?;
            let mut now_status = match reply {
                Reply::LoggedIn { status, .. } => status,
                _ => Status::Online,
            };
            if let Some(s) = status {
                let status =
                    Status::parse(s).context("status must be online, away, busy or invisible")?;
                client.done(Request::SetStatus { status }).await?;
                now_status = status;
            }
            let answering = calls::Answering {
                auto: *auto_answer,
                play: play.as_deref(),
                record: record.as_deref(),
                duration: None,
                relay_only: *relay_only || client.home().settings()?.relay_only,
            };
            online(&mut client, out, *exit_after, answering, now_status).await?;
        }
        Command::Call { username, play, record, duration, relay_only } => {
            // Open the audio first: a missing sound card is reported before anyone's phone rings.
            let audio = calls::open_audio(play.as_deref(), record.as_deref())?;
            let mut client = logged_in(&args, out).await?;
            let options = CallOptions {
                relay_only: *relay_only || client.home().settings()?.relay_only,
                ..CallOptions::default()
            };
            calls::call(&mut client, out, username, audio, *duration, options).await?;
        }
        Command::Settings { relay_only } => {
            let home = Home::open(&home_dir(&args)?)?;
            let mut settings = home.settings()?;
            if let Some(relay_only) = relay_only {
                settings.relay_only = *relay_only;
                home.save_settings(&settings)?;
            }
            out.settings(&settings);
        }
        Command::Verify { username, forget } => {
            let client = logged_in(&args, out).await?;
            peer_devices::verify(&client, out, username, *forget).await?;
        }
        Command::EchoService { username, delay, exit_after } => {
            let home = Home::open(&home_dir(&args)?)?;
            let options = connect_options(&args);
            let delay = Duration::from_secs_f64(delay.clamp(0.0, 10.0));
            let trusting = echo::Trusting {
                expected: args.fingerprint,
                interactive: trust::interactive(args.json, false),
            };
            echo::run(&options, trusting, &home, out, username, delay, *exit_after).await?;
        }
        Command::Completions { shell } => manual::completions(*shell),
        Command::Manpage => manual::manpage()?,
        Command::Trust { forget } => {
            let home = Home::open(&home_dir(&args)?)?;
            // Only a fingerprint typed for this command is pinned; one in the environment is
            // what connections expect, and `trust` without options only shows the pin.
            let fingerprint = args.fingerprint.filter(|_| args.fingerprint_typed);
            let urls = connect_options(&args).urls();
            trust::command(&home, out, &urls, *forget, fingerprint, args.ca.as_deref())?;
        }
    }
    Ok(())
}

/// Stays connected and prints events until Ctrl-C (or `--exit-after`), and takes calls. Messages
/// and missed calls shown here are acknowledged, so they are not pushed again at the next login;
/// messages shown are read, so `inbox` (the unread ones) does not show them again.
async fn online(
    client: &mut Client,
    out: &Out,
    exit_after: Option<f64>,
    mut answering: calls::Answering<'_>,
    status: Status,
) -> anyhow::Result<()> {
    let deadline =
        exit_after.map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let me = client.username().unwrap_or_default().to_owned();
    // Pending contact requests are shown once at start; "online" is printed after that
    // request, so a script that acts on it finds the session ready.
    let contacts = client.contacts().await?;
    out.connected(&me, status);
    for c in contacts {
        if c.state == peerline_client::wire::ContactState::Incoming {
            out.event(&Event::ContactRequest {
                username: c.username,
                display_name: c.display_name,
                message: c.message,
            });
        }
    }
    let stop = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            event = client.next_event() => {
                let Some(event) = event else {
                    // The supernode is gone (it died, or this machine's network changed): go on
                    // with another supernode of the network, on the saved session.
                    let lost_at = tokio::time::Instant::now();
                    out.connection_lost(client.supernode_url());
                    let reconnected = tokio::select! {
                        () = &mut stop => return Ok(()),
                        result = client.reconnect() => result?,
                    };
                    out.reconnected(&reconnected, lost_at.elapsed());
                    continue;
                };
                if let Event::SessionEnded { reason } = &event {
                    out.event(&event);
                    // The token died with these; the others (shutdown, a timeout) only end this
                    // connection, which closes next and is replaced.
                    if matches!(
                        reason,
                        EndReason::LoggedOut | EndReason::DeviceRemoved | EndReason::PasswordChanged
                    ) {
                        return Err(ClientError::Closed(Some(*reason)).into());
                    }
                    continue;
                }
                out.event(&event);
                if let Event::Message { message } = &event
                    && message.to == me {
                        let ids = vec![message.id];
                        acknowledge(client, Request::AckDelivered { ids: ids.clone() }).await?;
                        // Shown is read: the sender sees it read, and `inbox` has it no more.
                        acknowledge(client, Request::MarkRead { ids }).await?;
                    }
                if let Event::MissedCall { missed } = &event {
                    acknowledge(client, Request::AckMissedCalls { ids: vec![missed.id] }).await?;
                }
                if let Some(call) = peerline_call::IncomingCall::from_event(&event) {
                    // A call in progress ends with the session (--exit-after).
                    answering.duration = deadline.map(|at| {
                        at.saturating_duration_since(tokio::time::Instant::now()).as_secs_f64()
                    });
                    if let Err(e) = calls::incoming(client, out, call, &answering).await {
                        out.error_event(&e);
                    }
                }
            }
        }
    }
}

/// Sends an acknowledgement (delivered, read, missed call seen) for something `online` printed.
/// One lost with the connection is no error: the loss is noticed next and `online` reconnects,
/// and the supernode pushes again what was not acknowledged.
async fn acknowledge(client: &Client, request: Request) -> anyhow::Result<()> {
    match client.done(request).await {
        Err(ClientError::Closed(_) | ClientError::TimedOut) => Ok(()),
        other => Ok(other?),
    }
}

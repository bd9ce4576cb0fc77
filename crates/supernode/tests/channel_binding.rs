//! Logins are bound to their TLS connection (RFC 9266 `tls-exporter`): a man in the middle whom
//! the user accepted (a first-use pin of the wrong certificate) terminates TLS on both sides and
//! relays every byte, yet the supernode refuses the relayed login, because the signature covers
//! the exporter of the client's TLS session and the supernode sees another one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use common::{PASSWORD, TestNode, assert_still_serves_then_stop, device_key, login, within};
use peerline_client::ClientError;
use peerline_client::connection::{Connection, Endpoint};
use peerline_client::tls::{Trust, client_config};
use peerline_wire::{ErrorCode, Reply};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};

/// A TLS-terminating relay in front of `node`, with a certificate of its own; returns its URL.
async fn man_in_the_middle(node: &TestNode) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap().self_signed(&key).unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("wss://{}", listener.local_addr().unwrap());
    let upstream = node.client_addr;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut client) = acceptor.accept(tcp).await else { return };
                let (config, _) = client_config(&Trust::Pin { expected: None }).unwrap();
                let connector = tokio_rustls::TlsConnector::from(config);
                let tcp = TcpStream::connect(upstream).await.unwrap();
                let name = ServerName::try_from("127.0.0.1").unwrap();
                let Ok(mut server) = connector.connect(name, tcp).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_relayed_by_an_accepted_man_in_the_middle_is_refused() {
    let node = TestNode::start(&["alice"]).await;
    let mitm = man_in_the_middle(&node).await;
    let known = node.dir.path().join("known_supernodes");
    let endpoint = Endpoint::parse(&mitm).unwrap();
    // The client trusts the relay's certificate, as after a first use through it.
    let (conn, _) =
        within("connect", Connection::connect(&endpoint, &Trust::Pin { expected: None }, &known))
            .await
            .expect("connects through the relay");
    let key = device_key();
    let relayed = login(&conn, &key, "alice", Some(PASSWORD), None).await;
    match relayed {
        Err(ClientError::Server(body)) => {
            assert_eq!(body.code, ErrorCode::InvalidDeviceSignature, "{body:?}");
        }
        other => panic!("the relayed login must be refused: {other:?}"),
    }
    // The same client, directly: its bound login verifies.
    let conn = common::connection(&node).await;
    let direct = login(&conn, &key, "alice", Some(PASSWORD), None).await;
    assert!(matches!(direct, Ok(Reply::LoggedIn { .. })), "{direct:?}");
    assert_still_serves_then_stop(node, "alice").await;
}

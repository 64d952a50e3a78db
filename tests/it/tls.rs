//! TLS both ways: HTTPS termination on the webhook listener, and `rediss://`
//! to a TLS-only redis-server trusting a CA file. Certificates are made by
//! the test (rcgen).

use crate::support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use support::{Bot, Config, Statehold};

struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ca_der: Vec<u8>,
}

fn make_certs(dir: &Path) -> Certs {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let certs = Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        ca_der: ca.der().to_vec(),
    };
    std::fs::write(&certs.ca, ca.pem()).unwrap();
    std::fs::write(&certs.cert, cert.pem()).unwrap();
    std::fs::write(&certs.key, key.serialize_pem()).unwrap();
    certs
}

/// One HTTPS request with a client that trusts only the test CA.
fn https_post(port: u16, path: &str, body: &str, ca_der: &[u8]) -> support::Response {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(support::addr(port)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    // A TLS peer may close without close_notify; what arrived is complete.
    let _ = tls.read_to_end(&mut buf);
    support::parse_response(&buf).unwrap()
}

#[test]
fn https_termination_with_rustls() {
    let dir = support::temp_dir();
    let certs = make_certs(dir.path());
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.server_extra = format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        certs.cert.display(),
        certs.key.display()
    );
    let sh = Statehold::start(config);
    let r = https_post(
        sh.config.listen,
        "/telegram",
        &support::tg_update(1, 95, "/start"),
        &certs.ca_der,
    );
    assert_eq!(r.status, 200);
    assert_eq!(support::reply_text(&r), "Welcome! What's your name?");
    let seen = bot.handled().pop().unwrap();
    assert_eq!(seen["forwarded_proto"], "https");
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(support::post_json(sh.addr(), "/telegram", "{}", &[]).is_err());
    assert_eq!(bot.handled().len(), 1);
}

#[test]
fn rediss_with_a_custom_ca() {
    let dir = support::temp_dir();
    let certs = make_certs(dir.path());
    let port = support::free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
    ])
    .arg("--tls-cert-file")
    .arg(&certs.cert)
    .arg("--tls-key-file")
    .arg(&certs.key)
    .arg("--tls-ca-cert-file")
    .arg(&certs.ca)
    .args(["--tls-auth-clients", "no"])
    .stdout(std::process::Stdio::null());
    let _redis = support::Proc::from_child("redis-server", cmd.spawn().expect("redis-server"));
    support::wait_until("redis TLS port", || {
        std::net::TcpStream::connect(support::addr(port)).is_ok()
    });

    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.redis = Some(port);
    config.redis_tls_ca = Some(certs.ca.clone());
    let sh = Statehold::start(config);
    assert!(sh.logs().contains("redis reachable"), "{}", sh.logs());
    sh.update(1, 96, "/start");
    assert_eq!(
        support::reply_text(&sh.update(2, 96, "Zed")),
        "Nice to meet you, Zed. Your email?"
    );
    assert_eq!(sh.stored("tg", "96").unwrap()["state"]["name"], "Zed");
}

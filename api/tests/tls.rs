//! `caseflow serve` over HTTPS (`tls_cert`, `tls_key`): a real TLS handshake with rustls on
//! both ends, a certificate made for the test, requests answered as over plain HTTP; plain
//! HTTP to the TLS port refused without disturbing the server; bad key files refused at start
//! with what is wrong.

mod common;

use common::Api;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls;

struct Files(std::path::PathBuf);

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn certificate(name: &str) -> (Files, rustls::pki_types::CertificateDer<'static>) {
    let dir = std::env::temp_dir().join(format!("caseflow-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), made.key_pair.serialize_pem()).unwrap();
    (Files(dir), made.cert.der().clone())
}

async fn serve(api: &Api, files: &Files) -> std::net::SocketAddr {
    let acceptor = caseflow::listen::tls_acceptor(&files.0.join("cert.pem"), &files.0.join("key.pem")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = caseflow::listen::Limits {
        header_read_timeout: Duration::from_secs(5),
        connections_max: 16,
        shutdown_grace: Duration::from_secs(1),
    };
    tokio::spawn(caseflow::listen::serve_with(
        listener,
        api.app.clone(),
        limits,
        Some(acceptor),
        std::future::pending(),
    ));
    addr
}

/// GET `path` over TLS, trusting `root`: the status and the body.
async fn get(
    addr: std::net::SocketAddr,
    root: &rustls::pki_types::CertificateDer<'static>,
    path: &str,
) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    #[allow(deprecated)] // the provider the server uses (see listen::tls_acceptor)
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path).header("host", "localhost").body(Empty::<Bytes>::new()).unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_server_answers_over_tls_and_plain_http_to_it_changes_nothing() {
    let api = Api::new();
    let (files, root) = certificate("serve");
    let addr = serve(&api, &files).await;
    let (status, body) = get(addr, &root, "/health").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    // Plain HTTP to the TLS port: the handshake fails, the connection closes.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let plain = async {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        send.send_request(hyper::Request::get("/health").header("host", "x").body(Empty::<Bytes>::new()).unwrap()).await
    };
    assert!(plain.await.is_err(), "plain HTTP is not answered on the TLS port");
    assert_eq!(get(addr, &root, "/ui/login").await.0, 200, "and the server goes on");
}

#[tokio::test]
async fn key_files_that_do_not_make_an_identity_are_refused_with_the_reason() {
    let (files, _) = certificate("bad");
    let (other, _) = certificate("other");
    let cert = files.0.join("cert.pem");
    let err = caseflow::listen::tls_acceptor(&cert, &cert).err().unwrap().to_string();
    assert!(err.contains("not a PEM private key"), "{err}");
    std::fs::write(files.0.join("empty.pem"), "").unwrap();
    let err =
        caseflow::listen::tls_acceptor(&files.0.join("empty.pem"), &files.0.join("key.pem")).err().unwrap().to_string();
    assert!(err.contains("holds no certificate"), "{err}");
    let err = caseflow::listen::tls_acceptor(&cert, &other.0.join("key.pem")).err().unwrap();
    assert!(format!("{err:#}").contains("do not make a TLS identity"), "{err:#}");
}

//! The accept loop: HTTP/1.1 connections with a header-read (and keep-alive idle) timeout, a
//! cap on open connections, and a shutdown with a bounded grace period.
//!
//! `axum::serve` has none of the three: a client that opens sockets and sends nothing holds
//! them forever, ~1,100 of them exhaust the default limit of 1,024 open files, and one
//! connected `/events` client keeps a graceful shutdown waiting for ever. Here:
//! - hyper closes a connection that has not sent a whole request head within
//!   `header_read_timeout`, counted from its opening or from the end of its previous response;
//! - at `connections_max`, each new connection first asks the least recently active one to
//!   close (gracefully: a request in flight finishes first), so a flood of idle sockets cannot
//!   lock out `/health` or a real client;
//! - on shutdown the listener closes, idle connections close at once, requests in flight get
//!   `shutdown_grace` to finish, and whatever is left after it is dropped.

use caseflow_engine::sync::Unpoisoned;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A connection must send a whole request head within this time of opening, or of the end
    /// of its previous response (so it is also the keep-alive idle timeout).
    pub header_read_timeout: Duration,
    /// Open connections beyond which the least recently active one is closed for a new one.
    pub connections_max: usize,
    /// How long requests in flight may take to finish once shutdown begins.
    pub shutdown_grace: Duration,
}

/// What a shutdown left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Connections still open when the grace period ran out (dropped).
    pub dropped: usize,
}

/// One open connection, as the loop sees it.
struct Conn {
    /// Milliseconds since the loop started, at the last byte read or written.
    last_active: AtomicU64,
    /// Set once the connection has been asked to close; it is not picked again.
    closing: AtomicBool,
    close: tokio::sync::Notify,
}

#[derive(Default)]
struct Registry {
    next: u64,
    open: HashMap<u64, Arc<Conn>>,
}

/// The TLS acceptor for a certificate chain and its private key, both PEM files (rustls on
/// ring: no OpenSSL). HTTP/1.1 only, as the server speaks.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context as _;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("{}: not a PEM private key: {e}", key.display()))?;
    // ring, not aws-lc-rs: it builds with the C compiler alone (aws-lc-rs wants cmake). Its
    // provider offers TLS 1.2 and 1.3 with X25519, not yet the post-quantum hybrid, which is why
    // rustls marks it deprecated.
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and the key do not make a TLS identity (do they belong together?)")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}

/// Serves `app` on `listener` until `shutdown` completes, then stops as described above.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> Stopped {
    serve_with(listener, app, limits, None, shutdown).await
}

/// `serve`, over TLS when `tls` is given: the handshake must finish within the header-read
/// timeout, like a request head.
// One piece (over 100 lines): the accept loop and the shutdown that must see every connection it registered.
pub async fn serve_with(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) -> Stopped {
    let epoch = Instant::now();
    let registry = Arc::new(Mutex::new(Registry::default()));
    let all_closed = Arc::new(tokio::sync::Notify::new());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.as_mut() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors (or another passing error): let the open
                    // connections close some before trying again, rather than spin.
                    tracing::warn!(error = %e, "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn {
            last_active: AtomicU64::new(millis_since(epoch)),
            closing: AtomicBool::new(false),
            close: tokio::sync::Notify::new(),
        });
        let id = {
            let mut reg = registry.lock().unpoisoned();
            if reg.open.len() >= limits.connections_max {
                shed_least_active(&reg);
            }
            reg.next += 1;
            let id = reg.next;
            reg.open.insert(id, conn.clone());
            id
        };
        // The peer's address, for handlers that count by address (the console's sign-in).
        let with_peer = tower::ServiceBuilder::new()
            .map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                req
            })
            .service(app.clone());
        let service = TowerToHyperService::new(with_peer);
        let (registry, all_closed) = (registry.clone(), all_closed.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let tracked = Tracked { inner: stream, conn: conn.clone(), epoch };
            match tls {
                None => serve_connection(TokioIo::new(tracked), service, &limits, &conn).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tracked)).await {
                        Ok(Ok(secured)) => serve_connection(TokioIo::new(secured), service, &limits, &conn).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            let mut reg = registry.lock().unpoisoned();
            reg.open.remove(&id);
            if reg.open.is_empty() {
                all_closed.notify_waiters();
            }
        });
    }
    drop(listener);
    // Idle connections close now; busy ones after their response (or at the deadline).
    let waiting = {
        let reg = registry.lock().unpoisoned();
        for c in reg.open.values() {
            c.closing.store(true, Ordering::Relaxed);
            c.close.notify_one();
        }
        let waiting = all_closed.notified();
        (!reg.open.is_empty()).then_some(waiting)
    };
    if let Some(waiting) = waiting {
        let _ = tokio::time::timeout(limits.shutdown_grace, waiting).await;
    }
    let dropped = registry.lock().unpoisoned().open.len();
    Stopped { dropped }
}

/// One connection's requests, until it ends or is asked to close (gracefully).
async fn serve_connection<I, S>(io: TokioIo<I>, service: S, limits: &Limits, conn: &Conn)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<hyper::Request<hyper::body::Incoming>, Response = axum::response::Response> + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let served = builder.serve_connection(io, service).with_upgrades();
    let mut served = std::pin::pin!(served);
    let result = tokio::select! {
        r = served.as_mut() => r,
        _ = conn.close.notified() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Asks the least recently active connection that is not already closing to close.
fn shed_least_active(reg: &Registry) {
    let victim = reg
        .open
        .values()
        .filter(|c| !c.closing.load(Ordering::Relaxed))
        .min_by_key(|c| c.last_active.load(Ordering::Relaxed));
    if let Some(c) = victim {
        c.closing.store(true, Ordering::Relaxed);
        c.close.notify_one();
    }
}

fn millis_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

/// A socket that records when it last moved a byte, for choosing whom to close at the cap.
struct Tracked {
    inner: TcpStream,
    conn: Arc<Conn>,
    epoch: Instant,
}

impl Tracked {
    fn touch(&self) {
        self.conn.last_active.store(millis_since(self.epoch), Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Raises the soft limit on open files to the hard limit (Unix) and returns the limit now in
/// force, if it can be known. Linux starts most processes at 1,024, which a few hundred idle
/// clients use up.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "could not raise the open-file limit");
                rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap for an open-file limit: what is configured, but never so many that
/// connections leave no descriptors for the store's files, the folders' watcher and accept.
pub fn connections_max(configured: usize, open_file_limit: Option<u64>) -> usize {
    const RESERVED: u64 = 128;
    match open_file_limit {
        Some(limit) => configured.min(limit.saturating_sub(RESERVED).max(16) as usize),
        None => configured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_the_store() {
        assert_eq!(connections_max(10_000, Some(1_024)), 896);
        assert_eq!(connections_max(500, Some(1_024)), 500);
        assert_eq!(connections_max(10_000, Some(100)), 16);
        assert_eq!(connections_max(10_000, None), 10_000);
    }
}

//! An S3-compatible store served in-process over a local folder, for development and tests:
//! the endpoint, its listener and its connections.

mod checked;
mod handler;
mod keys;
mod uploads;

#[cfg(test)]
pub(crate) mod test_support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use handler::DiskKeys;

/// How long `stop` lets open connections finish their current request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A running in-process S3 endpoint (path-style, SigV4 checked).
pub struct EmbeddedS3 {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl EmbeddedS3 {
    /// Serves `root` (created if missing) on `addr` (port 0 = any free port). Returns once listening.
    pub async fn start(
        root: &Path,
        addr: SocketAddr,
        access_key: &str,
        secret_key: &str,
    ) -> anyhow::Result<EmbeddedS3> {
        tokio::fs::create_dir_all(root)
            .await
            .with_context(|| format!("creating {}", root.display()))?;
        let fs = s3s_fs::FileSystem::new(root)
            .map_err(|e| anyhow::anyhow!("opening {} as a store: {e:?}", root.display()))?;
        let served = std::env::current_dir()
            .context("reading the working directory")?
            .join(root)
            .canonicalize()
            .with_context(|| format!("resolving {}", root.display()))?;
        let mut builder = S3ServiceBuilder::new(DiskKeys { fs, root: served });
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        let service = builder.build();

        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .context("creating socket")?;
        // Lets a restart bind the same port while old connections sit in TIME_WAIT.
        socket.set_reuseaddr(true).context("setting SO_REUSEADDR")?;
        socket
            .bind(addr)
            .with_context(|| format!("binding {addr}"))?;
        let listener = socket.listen(1024).context("listening")?;
        let addr = listener.local_addr().context("reading local address")?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, service, shutdown_rx));
        tracing::debug!(%addr, root = %root.display(), "embedded S3 listening");
        Ok(EmbeddedS3 {
            addr,
            shutdown,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, closes open connections within about a second, and releases the port.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        tracing::debug!(addr = %self.addr, "embedded S3 stopped");
    }
}

impl Drop for EmbeddedS3 {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // Aborting drops the listener and the JoinSet, which aborts every connection task.
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, service: S3Service, mut shutdown: watch::Receiver<bool>) {
    let http = ConnBuilder::new(TokioExecutor::new());
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Streamed bodies go out in several writes; Nagle would hold each for a delayed ACK.
                    if let Err(err) = stream.set_nodelay(true) {
                        tracing::debug!(%err, "could not disable Nagle on an embedded S3 connection");
                    }
                    let http = http.clone();
                    let service = service.clone();
                    let shutdown = shutdown.clone();
                    conns.spawn(serve_conn(http, stream, service, shutdown));
                }
                // Usually EMFILE or a reset before accept; keep serving the rest.
                Err(err) => tracing::warn!(%err, "embedded S3 accept failed"),
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(left = conns.len(), "embedded S3 aborting slow connections");
    }
    conns.shutdown().await;
}

async fn serve_conn(
    http: ConnBuilder<TokioExecutor>,
    stream: tokio::net::TcpStream,
    service: S3Service,
    mut shutdown: watch::Receiver<bool>,
) {
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        res = conn.as_mut() => res,
        _ = shutdown.changed() => {
            // Idle keep-alive connections close at once; busy ones finish the current request.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%err, "embedded S3 connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime};

    use reqwest::StatusCode;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::test_support::{http_put, Harness, ACCESS_KEY, HOUR, SECRET_KEY};
    use super::EmbeddedS3;
    use crate::blob::BlobError;

    #[tokio::test]
    async fn restart_on_same_addr_keeps_objects() {
        let mut h = Harness::new().await;
        h.upload("kept/one", "text/plain", b"still here".to_vec())
            .await;
        let server = h.server.take().unwrap();
        let addr = server.addr();
        server.stop().await;

        let server = EmbeddedS3::start(&h.root, addr, ACCESS_KEY, SECRET_KEY)
            .await
            .unwrap();
        assert_eq!(server.addr(), addr);
        assert_eq!(server.endpoint(), format!("http://{addr}"));
        h.server = Some(server);
        assert_eq!(h.store.head("kept/one").await.unwrap().size, 10);
    }

    #[tokio::test]
    async fn stop_does_not_wait_for_stuck_connections() {
        let mut h = Harness::new().await;
        let addr = h.server.as_ref().unwrap().addr();
        // A request that never completes keeps its connection busy until it is cut.
        let mut stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
        stuck
            .write_all(b"PUT /uploads/k HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;

        let started = Instant::now();
        h.server.take().unwrap().stop().await;
        assert!(started.elapsed() < Duration::from_secs(2));
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(1), stuck.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }

    #[tokio::test]
    async fn head_against_stopped_store_is_transient_and_quick() {
        let mut h = Harness::new().await;
        h.upload("k", "text/plain", b"x".to_vec()).await;
        h.server.take().unwrap().stop().await;

        let started = Instant::now();
        let err = h.store.head("k").await.unwrap_err();
        assert!(matches!(err, BlobError::Transient(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn dropping_the_server_releases_the_port() {
        let mut h = Harness::new().await;
        let addr = h.server.as_ref().unwrap().addr();
        drop(h.server.take());
        // Abort is asynchronous; give the runtime a moment to drop the listener.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let server = EmbeddedS3::start(&h.root, addr, ACCESS_KEY, SECRET_KEY)
            .await
            .unwrap();
        h.server = Some(server);
        h.store.ensure_bucket().await.unwrap();
    }

    #[tokio::test]
    async fn put_with_other_content_type_than_signed_is_refused() {
        let h = Harness::new().await;
        let url = h.presign("up/a", "image/png").await;
        let status = http_put(&url, "text/html", b"<p>".to_vec()).await;
        assert!(status.is_client_error(), "{status}");
        assert!(matches!(
            h.store.head("up/a").await,
            Err(BlobError::NotFound)
        ));
    }

    #[tokio::test]
    async fn put_with_tampered_signature_is_refused() {
        let h = Harness::new().await;
        let url = h.presign("up/b", "text/plain").await;
        let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
        let flipped = if url.as_bytes()[at] == b'0' { "1" } else { "0" };
        let tampered = format!("{}{}{}", &url[..at], flipped, &url[at + 1..]);
        let status = http_put(&tampered, "text/plain", b"x".to_vec()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn put_with_expired_url_is_refused() {
        let h = Harness::new().await;
        let start = SystemTime::now() - 2 * HOUR;
        let url = h
            .store
            .presign_put("up/c", "text/plain", start, Duration::from_secs(60))
            .await
            .unwrap();
        let status = http_put(&url, "text/plain", b"x".to_vec()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}

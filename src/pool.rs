//! Keep-alive HTTP/1.1 connections to the origin.
//!
//! Each worker thread keeps its own stack of idle connections (a shard,
//! found by the thread), so a request takes a connection whose task runs on
//! its own thread and nothing crosses threads on the way to the origin and
//! back. A connection goes back on the stack when its response body has
//! been read to the end; one whose response was cut, upgraded or failed is
//! dropped (and so closed). The most recently used is taken first, so the
//! rest age out: those idle for longer than `pool_idle_seconds` are closed
//! by a sweep, and no more than `pool_max_idle` are kept by each worker.

use std::cell::Cell;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;

use crate::proxy::OriginConnector;

/// Why a request got no response: in connecting (the origin is down), or
/// after (it failed on the way); with the error's description.
pub enum Failure {
    Connect(String),
    Failed(String),
}

/// The pool; `B` is the request body type.
pub struct Pool<B> {
    connector: OriginConnector,
    url: Uri,
    shards: Box<[Mutex<Vec<Idle<B>>>]>,
    /// Idle connections kept at most, per shard (per worker thread).
    max_idle: usize,
    idle_timeout: Duration,
}

struct Idle<B> {
    sender: http1::SendRequest<B>,
    since: Instant,
}

/// Which shard the current thread uses.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
    }
    SHARD.with(|shard| match shard.get() {
        Some(index) => index,
        None => {
            let index = NEXT.fetch_add(1, Ordering::Relaxed);
            shard.set(Some(index));
            index
        }
    })
}

impl<B> Pool<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// A pool for the origin at `url`, reached by `connector`, keeping at
    /// most `max_idle` idle connections a worker thread, each for at most
    /// `idle_timeout`.
    pub fn new(
        connector: OriginConnector,
        url: Uri,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Arc<Pool<B>> {
        // The workers, and the runtime that starts them.
        let shards = crate::listener::cores() + 1;
        let pool = Arc::new(Pool {
            connector,
            url,
            shards: (0..shards).map(|_| Mutex::new(Vec::new())).collect(),
            max_idle: max_idle.max(1),
            idle_timeout,
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sweep(Arc::downgrade(&pool)));
        }
        pool
    }

    fn shard(&self) -> &Mutex<Vec<Idle<B>>> {
        &self.shards[shard_index() % self.shards.len()]
    }

    /// Sends `request` on an idle connection, or a new one. A request that
    /// never left on a reused connection (the origin closed it while it
    /// was idle) is sent again once, on a new one.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<B>,
    ) -> Result<Response<Pooled<B>>, Failure> {
        let mut reuse = true;
        loop {
            let (mut sender, reused) = match reuse.then(|| self.take()).flatten() {
                Some(sender) => (sender, true),
                None => (self.connect().await.map_err(Failure::Connect)?, false),
            };
            if reused {
                if sender.ready().await.is_err() {
                    continue;
                }
            } else if let Err(e) = sender.ready().await {
                return Err(Failure::Connect(crate::proxy::error_chain(&e)));
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
                    let mut pooled = response.map(|body| Pooled {
                        body,
                        back: (!upgraded).then(|| (self.clone(), sender)),
                    });
                    if pooled.body().body.is_end_stream() {
                        pooled.body_mut().give_back();
                    }
                    return Ok(pooled);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => {
                        request = unsent;
                        reuse = false;
                    }
                    _ => return Err(Failure::Failed(crate::proxy::error_chain(&e.into_error()))),
                },
            }
        }
    }

    /// The most recently used idle connection still open and fresh.
    fn take(&self) -> Option<http1::SendRequest<B>> {
        let mut idle = self.shard().lock().unwrap_or_else(|p| p.into_inner());
        while let Some(entry) = idle.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < self.idle_timeout {
                return Some(entry.sender);
            }
        }
        None
    }

    fn put(&self, sender: http1::SendRequest<B>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.shard().lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<http1::SendRequest<B>, String> {
        let io = tower_service::Service::call(&mut self.connector.clone(), self.url.clone())
            .await
            .map_err(|e| crate::proxy::error_chain(e.as_ref()))?;
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| crate::proxy::error_chain(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "origin connection ended");
            }
        });
        Ok(sender)
    }

    /// Closes the connections idle for too long; the number closed.
    fn close_stale(&self) -> usize {
        let mut closed = 0;
        for shard in self.shards.iter() {
            let mut idle = shard.lock().unwrap_or_else(|p| p.into_inner());
            let before = idle.len();
            idle.retain(|entry| {
                !entry.sender.is_closed() && entry.since.elapsed() < self.idle_timeout
            });
            closed += before - idle.len();
        }
        closed
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// Closes stale idle connections every little while, until the pool is
/// gone (a reload made a new one).
async fn sweep<B>(pool: Weak<Pool<B>>)
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let every = match pool.upgrade() {
        Some(pool) => {
            (pool.idle_timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(15))
        }
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        match pool.upgrade() {
            Some(pool) => {
                pool.close_stale();
            }
            None => return,
        }
    }
}

/// An origin response's body; its connection goes back to the pool when
/// it has been read to the end.
pub struct Pooled<B> {
    body: Incoming,
    back: Option<(Arc<Pool<B>>, http1::SendRequest<B>)>,
}

impl<B> Pooled<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn give_back(&mut self) {
        if let Some((pool, sender)) = self.back.take() {
            pool.put(sender);
        }
    }
}

impl<B> hyper::body::Body for Pooled<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let poll = Pin::new(&mut self.body).poll_frame(cx);
        match &poll {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.give_back(),
            _ => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn idle_connections_are_bounded_and_closed_when_stale() {
        // An origin that answers every request on a connection.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let url: Uri = format!("http://{addr}").parse().unwrap();
        let pool = Pool::new(
            OriginConnector::plain(Duration::from_secs(5)),
            url,
            2,
            Duration::from_millis(600),
        );
        let get = || async {
            let empty = http_body_util::Empty::<Bytes>::new();
            let request = Request::get("/").header("host", "x").body(empty).unwrap();
            let Ok(response) = pool.send(request).await else {
                panic!("no response")
            };
            response.into_body().collect().await.unwrap().to_bytes()
        };
        // One after another: one connection, reused.
        for _ in 0..3 {
            assert_eq!(get().await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle(), 1);
        // Five at once: the idle one and four new, at most two kept (all
        // on this one thread).
        let all = futures_join5(get(), get(), get(), get(), get()).await;
        assert!(all.iter().all(|b| b == "ok"));
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
        assert_eq!(pool.idle(), 2);
        // Unused for longer than the idle timeout: closed by the sweep.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(pool.idle(), 0);
    }

    async fn futures_join5<T>(
        a: impl std::future::Future<Output = T>,
        b: impl std::future::Future<Output = T>,
        c: impl std::future::Future<Output = T>,
        d: impl std::future::Future<Output = T>,
        e: impl std::future::Future<Output = T>,
    ) -> Vec<T> {
        let (a, b, c, d, e) = tokio::join!(a, b, c, d, e);
        vec![a, b, c, d, e]
    }
}

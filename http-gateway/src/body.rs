//! Response bodies the gateway sends: empty and small ones, bodies a task produces through a
//! bounded channel (so a slow client slows the producer, never fills memory), and a wrapper that
//! counts the bytes of a body streamed through from elsewhere.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use tokio::sync::mpsc;

use crate::headers::Provenance;
use crate::metrics::Metrics;

/// Errors of bodies.
pub use engine::origin::BoxError;

/// Every body the gateway sends or forwards.
pub type Body = BoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body of `b`.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// It broke off.
    #[error(transparent)]
    Body(BoxError),
    /// It is longer than the reader takes.
    #[error("longer than {max} bytes")]
    TooLong {
        /// The most bytes read.
        max: usize,
    },
}

/// All of `body`, refusing more than `max` bytes (without reading them).
pub async fn read_to_end(mut body: Body, max: usize) -> Result<Bytes, ReadError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return Err(ReadError::Body(e)),
        };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(ReadError::TooLong { max });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(out))
}

/// A body whose chunks are sent through the returned sender; an `Err` chunk aborts it (the
/// client sees the connection close before the promised length).
pub fn channel(depth: usize) -> (mpsc::Sender<io::Result<Bytes>>, Body) {
    let (tx, rx) = mpsc::channel(depth);
    (tx, ChanBody { rx }.boxed())
}

struct ChanBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
}

impl HttpBody for ChanBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Which source a counted body's bytes are credited to.
#[derive(Debug, Clone, Copy)]
pub enum Credit {
    /// The origin.
    Origin,
    /// The store.
    Store,
}

/// Counts the data bytes of `inner` into `metrics` as they pass.
pub fn counted<B>(inner: B, metrics: Arc<Metrics>, credit: Credit) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    Counted {
        inner,
        metrics,
        credit,
    }
    .boxed()
}

struct Counted<B> {
    inner: B,
    metrics: Arc<Metrics>,
    credit: Credit,
}

impl<B> HttpBody for Counted<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    let n = d.len() as u64;
                    let p = match self.credit {
                        Credit::Origin => Provenance {
                            origin: n,
                            ..Default::default()
                        },
                        Credit::Store => Provenance {
                            store: n,
                            ..Default::default()
                        },
                    };
                    self.metrics.sent(p);
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

//! Request bodies read whole under a deadline, a size limit and a memory budget shared by every
//! request of the server, and answers that reach HTTP/2 clients before the body was read.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The first bytes of every request come from a pool of their own, so requests of a usual size
/// (an AdmissionReview is a few KiB) never wait behind large ones.
pub const SMALL_PART: usize = 64 * 1024;

/// Memory for request bodies being read or handled, in two pools: [`SMALL_PART`] of each
/// request from `small`, the rest from `large`.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    small: Arc<Semaphore>,
    large: Arc<Semaphore>,
}

impl BodyBudget {
    /// A budget of `small` and `large` bytes (rounded down to KiB).
    pub fn new(small: usize, large: usize) -> Self {
        Self {
            small: Arc::new(Semaphore::new(small / 1024)),
            large: Arc::new(Semaphore::new(large / 1024)),
        }
    }
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("request body not received within {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("client went away before sending the whole body: {0}")]
    ClientGone(String),
}

/// A body read whole; holds its share of the budget until dropped.
pub struct Buffered {
    pub bytes: Bytes,
    _permits: Vec<OwnedSemaphorePermit>,
}

/// Reads `body` whole: at most `limit` bytes, within `deadline` (waiting for budget included).
/// With a `Content-Length` the size is refused or reserved before anything is read. On an
/// error the body is handed back, so the answer can hold it until sent (see
/// [`answer_abandoning`]).
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: Duration,
    budget: &BodyBudget,
) -> Result<Buffered, (BodyError, Body)> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err((BodyError::TooLarge(limit), body));
    }
    let mut reader = Reader {
        body,
        buf: Vec::new(),
        reserved_kib: 0,
        permits: Vec::new(),
    };
    let result = tokio::time::timeout(deadline, async {
        if let Some(n) = declared {
            // Memory is taken only once the budget allows it.
            reader.reserve(n, budget).await;
            reader.buf.reserve_exact(n);
        }
        reader.fill(limit, budget).await
    })
    .await;
    match result {
        Ok(Ok(())) => Ok(Buffered {
            bytes: Bytes::from(reader.buf),
            _permits: reader.permits,
        }),
        Ok(Err(err)) => Err((err, reader.body)),
        Err(_) => Err((BodyError::TimedOut(deadline), reader.body)),
    }
}

struct Reader {
    body: Body,
    buf: Vec<u8>,
    reserved_kib: usize,
    permits: Vec<OwnedSemaphorePermit>,
}

impl Reader {
    async fn fill(&mut self, limit: usize, budget: &BodyBudget) -> Result<(), BodyError> {
        while let Some(frame) = self.body.frame().await {
            let frame = frame.map_err(|e| BodyError::ClientGone(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let len = self.buf.len() + data.len();
            if len > limit {
                return Err(BodyError::TooLarge(limit));
            }
            self.reserve(len, budget).await;
            self.buf.extend_from_slice(&data);
        }
        Ok(())
    }

    /// Holds budget for `len` bytes in all: the large pool first, so a request queued for it
    /// holds none of the small pool meanwhile.
    async fn reserve(&mut self, len: usize, budget: &BodyBudget) {
        let want = len.div_ceil(1024);
        if want <= self.reserved_kib {
            return;
        }
        let small_kib = SMALL_PART / 1024;
        let (small_have, large_have) = (
            self.reserved_kib.min(small_kib),
            self.reserved_kib.saturating_sub(small_kib),
        );
        let (small_want, large_want) = (want.min(small_kib), want.saturating_sub(small_kib));
        for (pool, n) in [
            (&budget.large, large_want - large_have),
            (&budget.small, small_want - small_have),
        ] {
            if n > 0 {
                let n = u32::try_from(n).expect("bodies are far below 4 TiB");
                let permit = pool
                    .clone()
                    .acquire_many_owned(n)
                    .await
                    .expect("the budget is never closed");
                self.permits.push(permit);
            }
        }
        self.reserved_kib = want;
    }
}

/// Most bytes of an unwanted request body read (and dropped) after an early answer.
pub const DRAIN_LIMIT: usize = 8 * 1024 * 1024;
/// Longest an unwanted request body is read after an early answer.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

/// `response` to a request whose body we do not want, answered before reading it: the body is
/// read and dropped in the background (at most [`DRAIN_LIMIT`] bytes within [`DRAIN_TIME`]).
/// Dropping it unread would reset an HTTP/2 stream, and clients (curl among them) may then lose
/// the answer; drained, the stream ends normally, and a client that stops sending once it has
/// the answer (Go's) is not kept waiting.
pub fn answer_early(response: Response, request: Body) -> Response {
    tokio::spawn(async move {
        let mut request = request;
        let mut drained = 0;
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while let Some(Ok(frame)) = request.frame().await {
                drained += frame.data_ref().map_or(0, Bytes::len);
                if drained > DRAIN_LIMIT {
                    break;
                }
            }
        })
        .await;
    });
    response
}

/// `response` to a request we give up on (too slow, too large): the request body is kept until
/// the response is sent and then dropped, so the reset of the stream follows the answer.
pub fn answer_abandoning(response: Response, request: Body) -> Response {
    response.map(|body| {
        Body::new(Holding {
            response: body,
            _request: request,
        })
    })
}

struct Holding {
    response: Body,
    _request: Body,
}

impl HttpBody for Holding {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.response).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.response.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.response.size_hint()
    }
}

//! The control API's client: one typed method per route, answers decoded into the types of
//! [`super::api`], refusals into [`ControlError::Refused`] with their kind.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::api::{
    ContentRecord, Failure, FetchLine, FetchRequest, NodeStatus, PeerView, PublishRequest,
    Published, Removed, RmRequest, SOCKET_NAME, SeedRequest, SeedResult, Verified, VerifyRequest,
};

/// Largest JSON answer the client reads.
const MAX_ANSWER: usize = 64 << 20;
/// Longest line of a fetch's answer.
const MAX_LINE: usize = 1 << 20;

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The socket could not be reached, or broke.
    #[error("talking to the running node: {0}")]
    Io(#[from] io::Error),
    /// HTTP over the socket failed.
    #[error("talking to the running node: {0}")]
    Http(#[from] hyper::Error),
    /// The node's answer does not decode.
    #[error("a malformed answer from the running node: {0}")]
    Malformed(#[from] serde_json::Error),
    /// An answer or line larger than the client reads.
    #[error("an answer from the running node longer than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The node's answer ended before its last line.
    #[error("the running node ended the answer early")]
    Ended,
    /// The node refused the request.
    #[error(transparent)]
    Refused(#[from] Failure),
}

/// A client of a node's control API.
#[derive(Debug, Clone)]
pub struct ControlClient {
    path: PathBuf,
}

impl ControlClient {
    /// A client for the node whose data directory is `data_dir`, if one is running there.
    pub async fn connect(data_dir: &Path) -> Option<ControlClient> {
        let path = data_dir.join(SOCKET_NAME);
        UnixStream::connect(&path).await.ok()?;
        Some(ControlClient { path })
    }

    /// Sends one request (`body` as JSON); the answer's body is left to read, and a refusal
    /// is read and returned as one.
    async fn send(
        &self,
        method: Method,
        uri: &str,
        body: Option<&impl Serialize>,
    ) -> Result<Incoming, ControlError> {
        let stream = UnixStream::connect(&self.path).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection lives as long as this request's body is read.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let bytes = match body {
            Some(b) => serde_json::to_vec(b)?,
            None => Vec::new(),
        };
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "pdist")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .expect("a valid request");
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body();
        if status != StatusCode::OK {
            let bytes = read_all(body, MAX_LINE).await?;
            return Err(serde_json::from_slice::<Failure>(&bytes)?.into());
        }
        Ok(body)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        uri: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ControlError> {
        let answer = self.send(method, uri, body).await?;
        Ok(serde_json::from_slice(
            &read_all(answer, MAX_ANSWER).await?,
        )?)
    }

    /// The node's status.
    pub async fn status(&self) -> Result<NodeStatus, ControlError> {
        self.call(Method::GET, "/v1/status", None::<&()>).await
    }

    /// The nodes it sees.
    pub async fn peers(&self) -> Result<Vec<PeerView>, ControlError> {
        self.call(Method::GET, "/v1/peers", None::<&()>).await
    }

    /// Its store's records.
    pub async fn ls(&self) -> Result<Vec<ContentRecord>, ControlError> {
        self.call(Method::GET, "/v1/ls", None::<&()>).await
    }

    /// Publishes files (absolute paths).
    pub async fn publish(&self, r: &PublishRequest) -> Result<Vec<Published>, ControlError> {
        self.call(Method::POST, "/v1/publish", Some(r)).await
    }

    /// Removes contents.
    pub async fn rm(&self, r: &RmRequest) -> Result<Vec<Removed>, ControlError> {
        self.call(Method::POST, "/v1/rm", Some(r)).await
    }

    /// Checks every block the store holds (or one content's), repairing which are present.
    pub async fn verify(&self, r: &VerifyRequest) -> Result<Vec<Verified>, ControlError> {
        self.call(Method::POST, "/v1/verify", Some(r)).await
    }

    /// Asks cache nodes to fetch and keep content.
    pub async fn seed(&self, r: &SeedRequest) -> Result<Vec<SeedResult>, ControlError> {
        self.call(Method::POST, "/v1/seed", Some(r)).await
    }

    /// Starts a fetch; its lines come from the stream (dropping it cancels the fetch).
    pub async fn fetch(&self, r: &FetchRequest) -> Result<FetchLines, ControlError> {
        let body = self.send(Method::POST, "/v1/fetch", Some(r)).await?;
        Ok(FetchLines {
            body,
            buf: Vec::new(),
            ended: false,
        })
    }

    /// A stored content's bytes, chunk by chunk.
    pub async fn content(&self, ticket: &str) -> Result<ContentBytes, ControlError> {
        let uri = format!("/v1/content/{ticket}");
        let body = self.send(Method::GET, &uri, None::<&()>).await?;
        Ok(ContentBytes { body })
    }
}

async fn read_all(mut body: Incoming, max: usize) -> Result<Vec<u8>, ControlError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if out.len() + data.len() > max {
                return Err(ControlError::TooLarge { max });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// The lines of a fetch, as they come.
#[derive(Debug)]
pub struct FetchLines {
    body: Incoming,
    buf: Vec<u8>,
    ended: bool,
}

impl FetchLines {
    /// The next line; `None` after the last (`done` or `error`).
    pub async fn next(&mut self) -> Result<Option<FetchLine>, ControlError> {
        if self.ended {
            return Ok(None);
        }
        loop {
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                let l: FetchLine = serde_json::from_slice(&line)?;
                self.ended = matches!(l, FetchLine::Done(_) | FetchLine::Error(_));
                return Ok(Some(l));
            }
            if self.buf.len() > MAX_LINE {
                return Err(ControlError::TooLarge { max: MAX_LINE });
            }
            match self.body.frame().await {
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                None => return Err(ControlError::Ended),
            }
        }
    }
}

/// A content's bytes from the node.
#[derive(Debug)]
pub struct ContentBytes {
    body: Incoming,
}

impl ContentBytes {
    /// The next chunk; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ControlError> {
        while let Some(frame) = self.body.frame().await {
            if let Ok(data) = frame?.into_data() {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }
}

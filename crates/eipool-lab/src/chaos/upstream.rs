//! moto behind the proxy: requests forwarded to it, one or two at a time, and the proxy's own
//! queries (for snapshots and for the AWS-semantics emulation), which are not counted.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{xml, Dropped};

pub(super) struct Upstream {
    url: String,
    /// moto serves one request at a time (it is CPU-bound in one Python process); EC2 does not
    /// slow down under concurrency. Requests queue here instead, and a request whose client hung
    /// up while queued is dropped with its connection, never reaching moto.
    slots: tokio::sync::Semaphore,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Upstream {
    pub(super) fn new(url: &str) -> Self {
        Upstream {
            url: url.trim_end_matches('/').to_string(),
            slots: tokio::sync::Semaphore::new(2),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Forward a request's body with its headers (its signature included); moto's status and body.
    pub(super) async fn forward(
        &self,
        headers: &hyper::HeaderMap,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), Dropped> {
        let _slot = self.slots.acquire().await.map_err(|_| Dropped)?;
        let mut req = Request::builder()
            .method("POST")
            .uri(format!("{}/", self.url));
        for (k, v) in headers {
            if k != "host" && k != "content-length" {
                req = req.header(k, v);
            }
        }
        let resp = self
            .client
            .request(req.body(Full::new(body)).unwrap())
            .await
            .map_err(|_| Dropped)?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|_| Dropped)?
            .to_bytes();
        Ok((status, bytes))
    }

    /// One EC2 query of the proxy's own (with the caller's headers), its body when it succeeded.
    pub(super) async fn query(
        &self,
        headers: &hyper::HeaderMap,
        action: &str,
        params: &[(&str, &str)],
    ) -> Option<String> {
        let form = xml::query_form(action, params);
        match self.forward(headers, Bytes::from(form)).await {
            Ok((s, b)) if s.is_success() => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        }
    }
}

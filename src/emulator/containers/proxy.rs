//! `getTcpPort(p).fetch`: the port is claimed for the instance, the emulator waits for
//! `127.0.0.1:p` to accept (or the instance to exit), and forwards the request and
//! the container's answer without hop-by-hop headers.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;

use super::log::shown_tail;
use super::{
    CLASS_HEADER, CONTAINER_HEADER, ContainerError, Containers, ID_HEADER, Key, OP_HEADER,
    PORT_HEADER,
};

/// How long a `fetch` waits for the container's port to accept.
pub const PORT_TIMEOUT: Duration = Duration::from_secs(20);

impl Containers {
    pub(super) async fn fetch(
        &self,
        key: &Key,
        port: u16,
        req: Request,
    ) -> Result<Response, ContainerError> {
        // What the instance left behind stays readable if it is forgotten meanwhile.
        let (mut exit, log, secrets) = {
            let mut map = crate::lock(&self.instances);
            if let Some((other, _)) = map
                .iter()
                .find(|(k, i)| *k != key && i.alive() && i.ports.contains(&port))
            {
                return Err(ContainerError::PortInUse {
                    port,
                    other: other.id.clone(),
                });
            }
            let i = map.get_mut(key).ok_or(ContainerError::NotRunning)?;
            i.ports.insert(port);
            (i.exit.clone(), i.log.clone(), i.secrets.clone())
        };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = tokio::time::Instant::now() + PORT_TIMEOUT;
        loop {
            if let Some(code) = *exit.borrow() {
                return Err(ContainerError::Exited {
                    code,
                    log: shown_tail(&log, &secrets),
                });
            }
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                    .await
            {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ContainerError::PortTimeout {
                    port,
                    secs: PORT_TIMEOUT.as_secs(),
                    log: shown_tail(&log, &secrets),
                });
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), exit.changed()).await;
        }
        let Some(http) = &self.http else {
            return Err(ContainerError::Proxy {
                port,
                why: "no HTTP client".into(),
            });
        };
        let (parts, body) = req.into_parts();
        let bytes = crate::emulator::limits::read_bounded(body, 100 * 1024 * 1024)
            .await
            .map_err(|_| ContainerError::BadRequest("request body too large".into()))?;
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let mut headers = parts.headers.clone();
        for h in HOP_BY_HOP.iter().chain(&[
            CONTAINER_HEADER,
            CLASS_HEADER,
            ID_HEADER,
            OP_HEADER,
            PORT_HEADER,
            "host",
        ]) {
            headers.remove(*h);
        }
        let resp = http
            .request(parts.method, format!("http://127.0.0.1:{port}{pq}"))
            .headers(headers)
            .body(bytes)
            .send()
            .await
            .map_err(|e| ContainerError::Proxy {
                port,
                why: e.to_string(),
            })?;
        let status = resp.status();
        let mut headers = resp.headers().clone();
        for h in HOP_BY_HOP {
            headers.remove(h);
        }
        let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

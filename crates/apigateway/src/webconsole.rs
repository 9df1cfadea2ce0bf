//! In-browser consoles (Cloudpods' webconsole, at the gateway's origin).
//!
//! `POST /api/v1/webconsole/server/{id}` (`{}` for VNC as Cloudpods'
//! dashboard sends it, `{"protocol": "serial"}`) checks with the region,
//! with the caller's token, that the server is visible, running and has
//! that console, and answers a ticket: the caller's token, the server and
//! the console kind, sealed under the gateway key for ten minutes. The
//! browser opens `GET /websockify?access_token=<ticket>` (Cloudpods' path),
//! as often as it likes until the ticket expires (reconnects need no new
//! POST). Each connect asks the region again with the caller's token — a
//! logged-out session, a lost role or a stopped guest is refused there,
//! before the upgrade and before any byte of the console — for a ticket to
//! the host agent's `/servers/{id}/console/{protocol}`, pre-signed with the
//! host's key; the gateway connects to the agent and only then upgrades the
//! browser. No VNC password exists or is shown: QEMU's VNC is on the
//! host's loopback, reached through the agent.
//!
//! Stateless like the sessions: any gateway with the key serves any
//! ticket.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message as AgentMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{GatewayError, Result};
use crate::{Gateway, auth, catalog_type, check_origin, check_same_origin};

/// What a console ticket is sealed for (it never opens as a session).
const TICKET_AAD: &[u8] = b"cloudpods-apigateway-console-ticket-v1";
/// How long a ticket opens consoles (reconnects included).
const TICKET_SECS: i64 = 600;
/// Pings to the browser keep proxies from closing an idle console.
const PING_EVERY: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize)]
struct Ticket {
    #[serde(rename = "t")]
    token: String,
    #[serde(rename = "s")]
    server_id: String,
    #[serde(rename = "p")]
    protocol: String,
    #[serde(rename = "e")]
    expires: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OpenInput {
    protocol: Option<String>,
    /// As the gateway forwards it to Cloudpods' webconsole service.
    webconsole: Option<Box<OpenInput>>,
}

fn protocol_of(body: &[u8]) -> Result<String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok("vnc".into());
    }
    let input: OpenInput = serde_json::from_slice(body)
        .map_err(|e| GatewayError::Input(format!("the body is not a console request: {e}")))?;
    let p = input
        .protocol
        .or_else(|| input.webconsole.and_then(|w| w.protocol))
        .unwrap_or_else(|| "vnc".into());
    match p.as_str() {
        "vnc" | "serial" => Ok(p),
        other => Err(GatewayError::Input(format!(
            "protocol {other:?}: the consoles are vnc and serial"
        ))),
    }
}

/// What the region says of the console: where the agent's console socket
/// is and its pre-signed headers.
#[derive(Debug, Deserialize)]
struct AgentTicket {
    #[serde(default)]
    name: String,
    url: String,
    timestamp: i64,
    signature: String,
}

async fn agent_ticket(gw: &Gateway, token: &str, id: &str, protocol: &str) -> Result<AgentTicket> {
    let region = gw.endpoint(token, catalog_type("compute")).await?;
    let id_enc = crate::segment(id);
    let resp = gw
        .http
        // `protocol` is vnc or serial: checked where it came in.
        .get(format!(
            "{region}/servers/{id_enc}/console?protocol={protocol}"
        ))
        .header("X-Auth-Token", token)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        return Err(auth::upstream_error(status, &body));
    }
    let inner = body.get("server").cloned().unwrap_or(body);
    serde_json::from_value(inner)
        .map_err(|e| GatewayError::Internal(format!("the region's console answer: {e}")))
}

/// `POST /api/v1/webconsole/server/{id}`.
pub async fn open(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match open_inner(&gw, &id, &headers, &body).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn open_inner(gw: &Gateway, id: &str, headers: &HeaderMap, body: &[u8]) -> Result<Value> {
    let caller = gw.caller(headers).await?;
    if caller.by_cookie {
        check_same_origin(&Method::POST, headers)?;
    }
    let protocol = protocol_of(body)?;
    let agent = agent_ticket(gw, &caller.token, id, &protocol).await?;
    let now = chrono::Utc::now().timestamp();
    let expires = (now + TICKET_SECS).min(caller.session.expires.max(now + 1));
    let ticket = Ticket {
        token: caller.token.clone(),
        server_id: id.to_string(),
        protocol: protocol.clone(),
        expires,
    };
    let sealed = gw.sealer.seal_as(TICKET_AAD, &ticket)?;
    let origin = auth::api_server(headers);
    let id_enc = crate::segment(id);
    let params: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("access_token", &sealed)
        .append_pair("api_server", &origin)
        .append_pair("protocol", &protocol)
        .append_pair("instance_name", &agent.name)
        .append_pair("is_need_login", "false")
        .finish();
    Ok(json!({
        "session": sealed,
        "protocol": protocol,
        "server_id": id,
        "instance_name": agent.name,
        "websocket": format!("/websockify?access_token={sealed}"),
        "access_url": format!("{origin}/servers/{id_enc}/console?protocol={protocol}"),
        "connect_params": STANDARD.encode(params),
        "expires_at": chrono::DateTime::from_timestamp(expires, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    }))
}

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    #[serde(default)]
    access_token: String,
}

/// `GET /websockify?access_token=<ticket>`: the console's WebSocket.
pub async fn websockify(
    State(gw): State<Arc<Gateway>>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    ws: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ticket = match open_ticket(&gw, &q.access_token, &headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let Ok(ws) = ws else {
        return GatewayError::Input("this is a WebSocket: connect with an upgrade".into())
            .into_response();
    };
    match connect_agent(&gw, &ticket).await {
        Ok(agent) => ws
            .protocols(["binary"])
            .on_upgrade(move |browser| relay(browser, agent))
            .into_response(),
        Err(e) => e.into_response(),
    }
}

fn open_ticket(gw: &Gateway, sealed: &str, headers: &HeaderMap) -> Result<Ticket> {
    check_origin(headers)?;
    if sealed.is_empty() {
        return Err(GatewayError::NoSession);
    }
    let ticket: Ticket = gw.sealer.open_as(TICKET_AAD, sealed)?;
    if ticket.expires <= chrono::Utc::now().timestamp() {
        return Err(GatewayError::BadSession);
    }
    Ok(ticket)
}

type AgentSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect_agent(gw: &Gateway, ticket: &Ticket) -> Result<AgentSocket> {
    // A logged-out token is refused here, before the region is asked.
    gw.verifier
        .verify(&ticket.token)
        .await
        .map_err(|_| GatewayError::BadSession)?;
    let agent = agent_ticket(gw, &ticket.token, &ticket.server_id, &ticket.protocol).await?;
    let mut req = agent
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| GatewayError::Internal(format!("the agent's console URL: {e}")))?;
    let h = req.headers_mut();
    for (k, v) in [
        (
            cloudpods_apis::agent_auth::TIMESTAMP_HEADER,
            agent.timestamp.to_string(),
        ),
        (
            cloudpods_apis::agent_auth::SIGNATURE_HEADER,
            agent.signature.clone(),
        ),
    ] {
        let v = v
            .parse()
            .map_err(|_| GatewayError::Internal("the agent ticket is not a header".into()))?;
        h.insert(k, v);
    }
    let connect = tokio_tungstenite::connect_async(req);
    match tokio::time::timeout(Duration::from_secs(15), connect).await {
        Err(_) => Err(GatewayError::Unreachable(
            "the host agent did not open the console within 15 s".into(),
        )),
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err(auth::upstream_error(status, &body))
        }
        Ok(Err(e)) => Err(GatewayError::Unreachable(format!(
            "the host agent's console: {e}"
        ))),
    }
}

/// Copy frames both ways until either side ends; the agent's end (the
/// guest stopped) closes the browser's socket with 1000, an error with
/// 1011.
async fn relay(browser: WebSocket, agent: AgentSocket) {
    let (mut btx, mut brx) = browser.split();
    let (mut atx, mut arx) = agent.split();
    let up = async {
        while let Some(Ok(m)) = brx.next().await {
            let m = match m {
                Message::Binary(b) => AgentMessage::Binary(b),
                Message::Text(t) => AgentMessage::Binary(Bytes::copy_from_slice(t.as_bytes())),
                Message::Close(_) => break,
                _ => continue,
            };
            if atx.send(m).await.is_err() {
                break;
            }
        }
        let _ = atx.send(AgentMessage::Close(None)).await;
    };
    let down = async {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let (code, reason) = loop {
            tokio::select! {
                m = arx.next() => match m {
                    Some(Ok(AgentMessage::Binary(b))) => {
                        if btx.send(Message::Binary(b)).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(AgentMessage::Text(t))) => {
                        if btx.send(Message::Binary(Bytes::copy_from_slice(t.as_bytes()))).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(AgentMessage::Close(_))) | None => break (1000, "the console ended"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "console relay: the agent's side failed");
                        break (1011, "the host agent's console failed");
                    }
                },
                _ = ping.tick() => {
                    if btx.send(Message::Ping(Bytes::new())).await.is_err() {
                        return;
                    }
                }
            }
        };
        let _ = btx
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    };
    tokio::select! {
        _ = up => {},
        _ = down => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_requests() {
        assert_eq!(protocol_of(b"").unwrap(), "vnc");
        assert_eq!(protocol_of(b"{}").unwrap(), "vnc");
        assert_eq!(protocol_of(br#"{"protocol":"serial"}"#).unwrap(), "serial");
        assert_eq!(
            protocol_of(br#"{"webconsole":{"protocol":"serial"}}"#).unwrap(),
            "serial"
        );
        assert!(protocol_of(br#"{"protocol":"spice"}"#).is_err());
        assert!(protocol_of(b"[1]").is_err());
    }

    #[test]
    fn a_session_does_not_open_as_a_ticket() {
        let s = crate::session::Sealer::new(&[7u8; 32]).unwrap();
        let session = crate::session::SessionData {
            token: "tok".into(),
            expires: i64::MAX,
            user_id: "u".into(),
        };
        let sealed = s.seal(&session).unwrap();
        assert!(s.open_as::<Ticket>(TICKET_AAD, &sealed).is_err());
        let t = Ticket {
            token: "tok".into(),
            server_id: "x".into(),
            protocol: "vnc".into(),
            expires: i64::MAX,
        };
        let sealed = s.seal_as(TICKET_AAD, &t).unwrap();
        assert!(s.open(&sealed, 0).is_err());
        assert_eq!(
            s.open_as::<Ticket>(TICKET_AAD, &sealed).unwrap().server_id,
            "x"
        );
    }
}

//! `GET /traffic/routes/ws?vehicleId=&routeId=&since=`: live events over WebSocket.
//!
//! # Protocol
//!
//! Server-to-client JSON text frames; the client sends nothing but pongs and a close frame. The
//! subprotocol is `routegate.v1` (answered when offered; a browser puts its token next to it as
//! `bearer.<token>`). Every message has a `type` and a `seq`:
//!
//! | `type`                          | when                                  | other fields                                   |
//! |---------------------------------|---------------------------------------|------------------------------------------------|
//! | `hello`                         | first, on every connection            | `time`, `data: {protocol, head, kafka}`        |
//! | `route.optimized`               | a route was planned                   | `eventId, vehicleId, routeId, time, data`: the whole route (`version` 1) |
//! | `route.updated`                 | a stop changed, or the route was re-planned | `eventId, vehicleId, routeId, time, data`: a stop change carries only the change and the route's new `version`; a re-plan (`data.change.type = "reoptimized"`) the whole route |
//! | `vehicle.position`              | a GPS fix                             | `eventId, vehicleId, routeId?, time, data`: the fix, next stop, ETA, delay |
//! | `kafka.status`                  | Kafka connectivity changed            | `time`, `data: {circuit, reachable}`           |
//! | `reset`                         | `since` cannot be replayed            | `time`, `data: {oldestAvailable, reason}`      |
//! | `lagged`                        | the client fell behind; close follows | `time`, `data: {reason}`                       |
//!
//! `data` is the event's payload as stored (the Kafka record's value). A stop change's
//! `route.updated` (`data.change.type = "stop_status"`) is `{routeId, vehicleId, version, status,
//! eventId, updatedAt, change, stop: {id, status, arrivedAt, finishedAt, note}, etas: {stopId:
//! eta|null}, delaySeconds, lastPosition}`: it applies to the route at `version - 1`; a client
//! holding another version missed a change and reads the route again with
//! `GET /traffic/routes/{routeId}` (how to apply it: [`crate::store::announce`]).
//!
//! `seq` is always a **resume point**: once a client has processed a message with `seq = n`, it
//! has every matching event up to `n`, and reconnecting with `since=n` continues with no gap and
//! no duplicate. For events that is the event's sequence number; `kafka.status` carries the last
//! event routed before it (it is not in the log and has no number of its own); `hello` carries
//! where the stream starts (`since`, or the head when there is nothing to replay; `data.head` is
//! the newest durable seq); `reset` and `lagged` carry the point to continue from.
//!
//! Filters: `vehicleId` and `routeId` (empty or absent = any); both set means both must match.
//!
//! # Resume and the seam
//!
//! Events reach clients only once durable, from the outbox's live channel (the `hub` module). With
//! `since`, the session replays the log from `since` toward the head before it registers, so a
//! long replay never competes with the live queue; then it registers, which returns `routed`
//! (every later event will come live), and replays the short rest up to `routed`. A per-connection
//! `Cursor` drops any event that arrives both ways. The log is on disk, so this works
//! across gateway restarts. If retention already pruned part of the range, or `since` is ahead of
//! the log (another gateway's data), the client gets `reset` and the stream continues live.
//!
//! # Backpressure and liveness
//!
//! Each connection has a bounded queue of `websocket.buffer_messages` frames beyond what the
//! kernel's socket buffers took. The outbox writer never waits for the WebSocket side: the router
//! follows it through a channel and, if it falls behind, through the log. A connection whose queue
//! is full while its socket is not taking data is **lagging**: it is sent `lagged` (its cursor as
//! `seq`) and closed with [`CLOSE_LAGGED`], and the other clients never notice. A connection that
//! is full while its socket still drains is only waiting for CPU (a burst, such as one large
//! position batch): the router waits for it, at most [`ROOM_WAIT`] per event, before calling it
//! lagging. A slow client gets two ping intervals to read up to its `lagged` message. The server
//! pings every `websocket.ping_interval_ms`; a peer that sends no pong for two intervals is
//! closed with [`CLOSE_PING_TIMEOUT`] (its pings or other frames do not count: they do not show
//! that it reads). A peer that does not read while it sends (each ping queues a pong) fills a
//! bounded write buffer (8 MiB) and is closed with [`CLOSE_SLOW_READER`]: metric reason
//! `slow_reader`.
//!
//! # Admission and lifecycle
//!
//! The upgrade needs a token when tokens are configured (401 JSON otherwise) and is refused with
//! 503 JSON (and `Retry-After`) at `websocket.max_connections`, before anything is allocated for
//! it. At shutdown ([`Hub::close`], called by the app after HTTP stopped accepting and before the
//! outbox stops) every client gets close code 1001 (Going Away).
//!
//! The upgrade is done here rather than with `warp::ws()` because warp builds its sockets with
//! tungstenite's default buffers (a 128 KiB read buffer per connection, zero-filled on first read):
//! measured with the `ws_fanout` example's method, an idle `warp::ws()` connection costs about
//! 134 KB of gateway RSS, against about 5.5 KB here; see `session::socket_config`.

mod hub;
mod message;
mod out;
mod registry;
mod session;

use serde::Deserialize;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::auth::{self, Tokens};
use super::error::ApiError;
use crate::metrics;
use crate::queue;

pub use hub::{Hub, ROOM_WAIT};
pub use message::{HELLO, KAFKA_STATUS, LAGGED, RESET};

/// The subprotocol, answered when the client offers it.
pub const PROTOCOL: &str = auth::WS_PROTOCOL;
/// Close code after `lagged`: the client fell behind; reconnect with `since`.
pub const CLOSE_LAGGED: CloseCode = CloseCode::Library(4000);
/// Close code for a peer that stopped answering pings.
pub const CLOSE_PING_TIMEOUT: CloseCode = CloseCode::Library(4001);
/// Close code for a peer that does not read what it is sent (its write buffer filled up). It
/// rarely arrives: the socket is dropped after the close grace either way.
pub const CLOSE_SLOW_READER: CloseCode = CloseCode::Library(4002);

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("websocket: {0}")]
    Socket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("event log: {0}")]
    Log(#[from] queue::Error),
    #[error("event log read did not finish: {0}")]
    Blocking(#[from] tokio::task::JoinError),
}

/// The query string, as sent.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Query {
    vehicle_id: Option<String>,
    route_id: Option<String>,
    since: Option<String>,
}

/// `GET /traffic/routes/ws?vehicleId=&routeId=&since=`
pub fn route(
    hub: Hub,
    tokens: Tokens,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("traffic" / "routes" / "ws")
        .and(crate::http::openapi::read())
        .and(auth::required(tokens))
        .and(warp::header::headers_cloned())
        .and(warp::query::<Query>())
        .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
        .and_then(move |headers: HeaderMap, query: Query, upgrade| {
            let hub = hub.clone();
            async move { upgrade_to_session(&hub, &headers, query, upgrade) }
        })
}

fn upgrade_to_session(
    hub: &Hub,
    headers: &HeaderMap,
    query: Query,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response, Rejection> {
    let accept = Accept::check(headers)?;
    let request = parse_query(query, hub.max_id_len())?;
    let upgrade =
        upgrade.ok_or_else(|| ApiError::bad_request("this connection cannot be upgraded", None))?;
    let Some(slot) = hub.admit() else {
        metrics::ws_dropped("over_limit");
        return Err(warp::reject::custom(ApiError::Unavailable {
            message: "too many WebSocket connections".into(),
            retry_after_secs: 5,
        }));
    };
    hub.spawn(session::accept(hub.clone(), slot, upgrade, request));
    Ok(accept.into_response())
}

fn parse_query(q: Query, max_id_len: usize) -> Result<session::Request, ApiError> {
    let id = |value: Option<String>, field: &str| match value.filter(|v| !v.is_empty()) {
        Some(v) if v.len() > max_id_len => Err(ApiError::bad_request(
            format!("{field} is longer than {max_id_len} bytes"),
            Some(field),
        )),
        Some(v) => crate::http::body::id(&v, field).map(|()| Some(v)),
        None => Ok(None),
    };
    let since = match q.since.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            ApiError::bad_request("since must be a sequence number (u64)", Some("since"))
        })?),
    };
    Ok(session::Request {
        filter: message::Filter {
            vehicle: id(q.vehicle_id, "vehicleId")?,
            route: id(q.route_id, "routeId")?,
        },
        since,
    })
}

/// A valid upgrade request: what the `101 Switching Protocols` answer needs.
#[derive(Debug, PartialEq, Eq)]
struct Accept {
    key: String,
    protocol: bool,
}

impl Accept {
    fn check(headers: &HeaderMap) -> Result<Accept, ApiError> {
        let has = |name: header::HeaderName, token: &str| {
            headers.get_all(name).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            })
        };
        let not_ws = || ApiError::bad_request("expected a WebSocket upgrade", Some("upgrade"));
        if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
            return Err(not_ws());
        }
        if headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
            return Err(ApiError::bad_request(
                "only WebSocket version 13 is supported",
                Some("sec-websocket-version"),
            ));
        }
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or_else(not_ws)?
            .as_bytes();
        let offered = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| !v.trim().is_empty()));
        let protocol = has(header::SEC_WEBSOCKET_PROTOCOL, PROTOCOL);
        if offered && !protocol {
            return Err(ApiError::bad_request(
                format!("offer the {PROTOCOL} subprotocol"),
                Some("sec-websocket-protocol"),
            ));
        }
        Ok(Accept {
            key: derive_accept_key(key),
            protocol,
        })
    }

    fn into_response(self) -> Response {
        let mut res = warp::reply().into_response();
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = res.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let accept = HeaderValue::from_str(&self.key).expect("base64 is a valid header value");
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        if self.protocol {
            h.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(PROTOCOL),
            );
        }
        res
    }
}

#[cfg(test)]
mod tests;

//! One connection, from the upgrade to the close frame.
//!
//! A session is one task that polls, in one `select!`: the shutdown token, its lag signal, the
//! peer (only a pong counts as alive: two ping intervals without one end the session) and the
//! work, which is `hello`, the replay, then the live queue with a ping every interval. When the
//! router drops the connection because it fell behind, the session does not end: it replays
//! what it missed from the log after its cursor (as a `since` resume does, without a second
//! `hello`) and follows live again, unless it is more than `websocket.max_lag_events` behind.
//! Whatever ends it, the session then says why (a close frame, preceded by `lagged` when it fell
//! too far behind) under a deadline, and drops the socket.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::hub::{Hub, Registration, Slot};
use super::message::{self, Cursor, Filter, Frame};
use super::out::{Out, Watched};
use super::registry::Link;
use super::{CLOSE_LAGGED, CLOSE_PING_TIMEOUT, CLOSE_SLOW_READER, Error};
use crate::metrics;
use crate::queue::Replay;

/// Events read from the log per blocking call during a replay.
const REPLAY_PAGE: usize = 256;
/// Replay rounds toward a moving head before following live anyway.
const CATCH_UP_ROUNDS: usize = 8;
/// Frames written per flush when the queue has a backlog.
const BATCH: usize = 64;
/// How long closing (after shutdown or a dead peer) may take before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Most bytes a connection may have waiting to be written to its socket (tungstenite's
/// `max_write_buffer_size`). A reading client keeps this near `write_buffer_size` plus one frame
/// (events are far smaller); only a client that stops reading while it keeps sending (each ping
/// queues a pong) gets here. Writing past it fails and the session ends as `slow_reader`, so such
/// a client costs at most this much, for at most two ping intervals and the close grace. A constant rather than a setting: no dashboard comes near it.
pub(super) const MAX_WRITE_BUFFER: usize = 8 * 1024 * 1024;

/// What the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Request {
    pub filter: Filter,
    pub since: Option<u64>,
}

/// Socket buffers sized for many mostly idle connections: tungstenite's defaults (128 KiB read
/// buffer, eagerly allocated and zero-filled) would cost far more per connection than the
/// 30 KB budget. Clients only send pongs and close frames. The write buffer is bounded
/// ([`MAX_WRITE_BUFFER`]): unbounded, a client that sends pings and never reads grows it by one
/// pong per ping without end.
pub(super) fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

/// Finish the upgrade and run the session.
pub(super) async fn accept(
    hub: Hub,
    slot: Slot,
    upgrade: hyper::upgrade::OnUpgrade,
    request: Request,
) {
    match upgrade.await {
        Ok(io) => {
            let io = hyper_util::rt::TokioIo::new(io);
            let socket =
                WebSocketStream::from_raw_socket(io, Role::Server, Some(socket_config())).await;
            run(hub, slot, socket, request).await;
        }
        Err(e) => tracing::debug!(cause = %e, "websocket upgrade failed"),
    }
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    Shutdown,
    Lagged,
    PeerTimeout,
    /// The client does not read: the write buffer is full, or no pong came while the socket was
    /// not taking data.
    SlowReader,
    PeerClosed,
    Failed(Error),
}

/// Serve one connection until it ends. A connection that falls behind (its queue filled while
/// its socket did not take data) is caught up from the log on the same connection, the way a
/// `since` resume is, as long as it is within `websocket.max_lag_events` of the newest event;
/// further behind it ends with `lagged`.
pub(super) async fn run<T>(hub: Hub, slot: Slot, socket: WebSocketStream<T>, request: Request)
where
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    let _slot = slot;
    let (sink, mut stream) = socket.split();
    let interval = Duration::from_millis(hub.config().ping_interval_ms);
    let mut link = Arc::new(Link::default());
    let sink = Watched {
        inner: sink,
        link: link.clone(),
    };
    let mut out = Out::new(sink, interval);
    let mut request = request;
    let mut announce = true;
    let mut alive_until = tokio::time::Instant::now() + 2 * interval;
    let end = loop {
        let end = {
            let work = serve(&hub, &mut out, &request, &link, announce);
            let peer = watch_peer(&mut stream, 2 * interval, &mut alive_until);
            tokio::select! {
                biased;
                () = hub.shutdown().cancelled() => End::Shutdown,
                () = link.lagged() => End::Lagged,
                end = peer => end,
                end = work => end,
            }
        };
        if !matches!(end, End::Lagged) || !within_reach(&hub, &out) {
            break end;
        }
        metrics::ws_caught_up();
        request.since = Some(out.cursor.position());
        announce = false;
        link = Arc::new(Link::default());
        out.sink.link = link.clone();
    };
    let end = match end {
        End::Failed(Error::Socket(WsError::WriteBufferFull(_))) => End::SlowReader,
        End::PeerTimeout if link.is_blocked() => End::SlowReader,
        end => end,
    };
    finish(&hub, end, out, stream).await;
}

/// Whether a connection that lagged is close enough to the newest event to be caught up.
fn within_reach<S>(hub: &Hub, out: &Out<S>) -> bool {
    let behind = hub
        .outbox()
        .durable_seq()
        .saturating_sub(out.cursor.position());
    let bound = hub.config().max_lag_events;
    bound > 0 && behind <= bound
}

/// `hello` (unless this is a catch-up), the replay, then live events; returns only when the
/// session must end.
async fn serve<S>(
    hub: &Hub,
    out: &mut Out<S>,
    request: &Request,
    link: &Arc<Link>,
    announce: bool,
) -> End
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let started = start(hub, out, request, link, announce).await;
    let (_registration, mut queue) = match started {
        Ok(r) => r,
        Err(e) => return End::Failed(e),
    };
    link.set_following();
    match follow(out, &mut queue, &request.filter).await {
        Ok(end) => end,
        Err(e) => End::Failed(e),
    }
}

/// The seam. Without `since`: register, and start at `routed`. With `since`: replay toward the
/// head while unregistered (a long replay cannot overflow the live queue), register, then replay
/// the last stretch up to `routed`; the cursor drops anything that arrives twice.
async fn start<S>(
    hub: &Hub,
    out: &mut Out<S>,
    request: &Request,
    link: &Arc<Link>,
    announce: bool,
) -> Result<(Registration, mpsc::Receiver<Arc<Frame>>), Error>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let head = hub.outbox().durable_seq();
    let kafka = hub.kafka();
    let Some(since) = request.since.filter(|&s| s <= head) else {
        let (registration, queue, routed) = hub.register(&request.filter, link.clone());
        out.cursor = Cursor::at(routed);
        let now = Utc::now();
        out.control(message::hello_text(routed, head.max(routed), kafka, now))
            .await?;
        if request.since.is_some() {
            let oldest = oldest_available(hub).await?;
            let reason = "since is ahead of this gateway's event log";
            out.control(message::reset_text(routed, oldest, reason, now))
                .await?;
        }
        out.flush().await?;
        return Ok((registration, queue));
    };
    out.cursor = Cursor::at(since);
    if announce {
        out.control(message::hello_text(since, head, kafka, Utc::now()))
            .await?;
    }
    let mut reset = catch_up(hub, out, &request.filter).await?;
    let (registration, queue, routed) = hub.register(&request.filter, link.clone());
    if reset.is_none() {
        reset = replay(hub, out, &request.filter, routed).await?;
    }
    if let Some(oldest) = reset {
        out.cursor.advance(routed);
        let reason = "events after since were pruned from the event log";
        out.control(message::reset_text(routed, oldest, reason, Utc::now()))
            .await?;
    }
    out.flush().await?;
    Ok((registration, queue))
}

/// Replay toward the moving head until the rest is within one queue's worth.
/// Returns `Some(oldest available)` if the log no longer has what is needed.
async fn catch_up<S>(hub: &Hub, out: &mut Out<S>, filter: &Filter) -> Result<Option<u64>, Error>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let near = u64::from(hub.config().buffer_messages);
    for _ in 0..CATCH_UP_ROUNDS {
        let head = hub.outbox().durable_seq();
        if head.saturating_sub(out.cursor.position()) <= near {
            return Ok(None);
        }
        if let Some(oldest) = replay(hub, out, filter, head).await? {
            return Ok(Some(oldest));
        }
    }
    Ok(None)
}

/// Send the matching logged events after the cursor up to `upto`; the cursor ends at `upto`.
async fn replay<S>(
    hub: &Hub,
    out: &mut Out<S>,
    filter: &Filter,
    upto: u64,
) -> Result<Option<u64>, Error>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let mut scanned = out.cursor.position();
    while scanned < upto {
        let outbox = hub.outbox().clone();
        let page = tokio::task::spawn_blocking(move || outbox.replay(scanned, upto, REPLAY_PAGE))
            .await??;
        let events = match page {
            Replay::Reset { oldest_available } => return Ok(Some(oldest_available)),
            Replay::Events(events) if events.is_empty() => break,
            Replay::Events(events) => events,
        };
        for env in &events {
            scanned = env.seq;
            if filter.matches(&env.key, env.route_id.as_deref()) {
                out.event(env.seq, message::event_text(env)).await?;
            }
        }
    }
    out.cursor.advance(upto);
    Ok(None)
}

async fn oldest_available(hub: &Hub) -> Result<u64, Error> {
    let outbox = hub.outbox().clone();
    let probe = tokio::task::spawn_blocking(move || outbox.replay(0, 0, 0)).await??;
    Ok(match probe {
        Replay::Reset { oldest_available } => oldest_available,
        Replay::Events(_) => 1,
    })
}

/// Live: frames from the queue (in batches when there is a backlog) and a ping every interval.
/// The queue closes only when the router dropped the connection: it lagged.
async fn follow<S>(
    out: &mut Out<S>,
    queue: &mut mpsc::Receiver<Arc<Frame>>,
    filter: &Filter,
) -> Result<End, Error>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    loop {
        let next = tokio::select! {
            frame = queue.recv() => Some(frame),
            _ = out.ticker.tick() => None,
        };
        match next {
            None => out.ping().await?,
            Some(None) => return Ok(End::Lagged),
            Some(Some(frame)) => {
                out.frame(&frame, filter).await?;
                for _ in 1..BATCH {
                    match queue.try_recv() {
                        Ok(frame) => out.frame(&frame, filter).await?,
                        Err(_) => break,
                    }
                }
                out.flush().await?;
            }
        }
    }
}

/// Reads the peer until it closes, fails or sends no pong for `silence`. Only a pong counts as
/// alive: it answers one of our pings, so the client reads. Anything else (pings above all, each
/// of which queues a pong) is read and dropped, and keeps no client alive that does not read.
/// `deadline` outlives one call: a catch-up restarts this watch without granting more time.
async fn watch_peer<St>(
    stream: &mut St,
    silence: Duration,
    deadline: &mut tokio::time::Instant,
) -> End
where
    St: Stream<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        match tokio::time::timeout_at(*deadline, stream.next()).await {
            Err(_) => return End::PeerTimeout,
            Ok(None | Some(Ok(Message::Close(_)))) => return End::PeerClosed,
            Ok(Some(Ok(Message::Pong(_)))) => *deadline = tokio::time::Instant::now() + silence,
            // The deadline is checked here too: while frames keep arriving (a ping flood) the
            // stream is always ready and the timer above may never get its turn.
            Ok(Some(Ok(_))) if tokio::time::Instant::now() >= *deadline => {
                return End::PeerTimeout;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return End::Failed(e.into()),
        }
    }
}

/// Say why the session ends, under a deadline, then drop the socket.
async fn finish<S, St>(hub: &Hub, end: End, mut out: Out<S>, mut stream: St)
where
    S: Sink<Message, Error = WsError> + Unpin,
    St: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let (reason, close) = match &end {
        End::Shutdown => ("shutdown", Some((CloseCode::Away, "gateway shutting down"))),
        End::Lagged => ("lagged", Some((CLOSE_LAGGED, "lagged: resume with since"))),
        End::PeerTimeout => ("ping_timeout", Some((CLOSE_PING_TIMEOUT, "ping timeout"))),
        End::SlowReader => (
            "slow_reader",
            Some((CLOSE_SLOW_READER, "slow reader: not reading")),
        ),
        End::PeerClosed => ("client", None),
        End::Failed(e) => {
            tracing::debug!(cause = %e, "websocket session failed");
            ("error", None)
        }
    };
    metrics::ws_dropped(reason);
    // A slow client gets time to read up to its `lagged` message, unless the gateway stops.
    let grace = match end {
        End::Lagged => 2 * Duration::from_millis(hub.config().ping_interval_ms),
        _ => CLOSE_GRACE,
    };
    let lagged = matches!(end, End::Lagged).then(|| out.cursor.position());
    let closing = async {
        if let Some(seq) = lagged {
            out.sink
                .feed(Message::Text(message::lagged_text(seq, Utc::now())))
                .await?;
        }
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            out.sink.send(Message::Close(Some(frame))).await?;
            while let Some(Ok(_)) = stream.next().await {}
        } else {
            out.sink.close().await?;
        }
        Ok::<_, WsError>(())
    };
    let stop = async {
        if matches!(end, End::Shutdown) {
            std::future::pending().await
        } else {
            hub.shutdown().cancelled().await
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(grace, closing) => {}
        () = stop => {}
    }
}

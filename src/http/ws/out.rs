//! The sending side of a session: the cursor, the ping clock, and the watch on the socket.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, Sink, SinkExt};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::message::{self, Cursor, Filter, Frame, Target};
use super::registry::Link;

/// The sending half with the connection's cursor and ping clock.
pub(super) struct Out<S> {
    pub sink: S,
    pub ticker: Interval,
    pub cursor: Cursor,
}

impl<S> Out<S>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    pub(super) fn new(sink: S, interval: Duration) -> Out<S> {
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Out {
            sink,
            ticker,
            cursor: Cursor::default(),
        }
    }

    /// An event, unless the cursor already covers it.
    pub(super) async fn event(&mut self, seq: u64, text: Utf8Bytes) -> Result<(), WsError> {
        if self.cursor.admits(seq) {
            self.feed(Message::Text(text)).await?;
            self.cursor.advance(seq);
        }
        Ok(())
    }

    /// A frame from the live queue. A status notice carries the connection's resume point: the
    /// router's `routed` normally, restated when this connection's cursor is already past it.
    pub(super) async fn frame(&mut self, frame: &Frame, filter: &Filter) -> Result<(), WsError> {
        match &frame.target {
            Target::Event { .. } if frame.is_for(filter) => {
                self.event(frame.seq, frame.text.clone()).await
            }
            Target::Event { .. } => Ok(()),
            Target::Status { connectivity, at } => {
                let text = if self.cursor.position() <= frame.seq {
                    self.cursor.advance(frame.seq);
                    frame.text.clone()
                } else {
                    message::status_text(self.cursor.position(), *at, *connectivity)
                };
                self.feed(Message::Text(text)).await
            }
        }
    }

    pub(super) async fn control(&mut self, text: Utf8Bytes) -> Result<(), WsError> {
        self.feed(Message::Text(text)).await
    }

    /// Queue a message; a ping that fell due meanwhile goes first (long replays keep pinging).
    pub(super) async fn feed(&mut self, msg: Message) -> Result<(), WsError> {
        if self.ticker.tick().now_or_never().is_some() {
            self.sink.feed(Message::Ping(Bytes::new())).await?;
        }
        self.sink.feed(msg).await
    }

    pub(super) async fn ping(&mut self) -> Result<(), WsError> {
        self.sink.send(Message::Ping(Bytes::new())).await
    }

    pub(super) async fn flush(&mut self) -> Result<(), WsError> {
        self.sink.flush().await
    }
}

/// The socket's sending half, telling the router (through the [`Link`]) while the peer is not
/// taking data: a full queue is then the client's doing, not the gateway's.
pub(super) struct Watched<S> {
    pub inner: S,
    pub link: Arc<Link>,
}

impl<S> Watched<S> {
    fn watch(&self, poll: Poll<Result<(), WsError>>) -> Poll<Result<(), WsError>> {
        self.link.set_blocked(poll.is_pending());
        poll
    }
}

impl<S> Sink<Message> for Watched<S>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    type Error = WsError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let poll = Pin::new(&mut self.inner).poll_ready(cx);
        self.watch(poll)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        Pin::new(&mut self.inner).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(poll)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use futures_util::sink::SinkMapErr;

    use super::*;
    use crate::delivery::{Circuit, Connectivity};
    use crate::events::{Envelope, NewEvent, VEHICLE_POSITION};

    type Capture = SinkMapErr<Vec<Message>, fn(std::convert::Infallible) -> WsError>;

    fn out(cursor: u64) -> Out<Capture> {
        let sink: Capture = Vec::new().sink_map_err(|e| match e {});
        let mut out = Out::new(sink, Duration::from_secs(3600));
        out.cursor = Cursor::at(cursor);
        out
    }

    fn sent(out: &Out<Capture>) -> Vec<serde_json::Value> {
        out.sink
            .get_ref()
            .iter()
            .filter_map(|m| match m {
                Message::Text(t) => serde_json::from_str(t.as_str()).ok(),
                _ => None,
            })
            .collect()
    }

    fn event(seq: u64, vehicle: &str) -> Arc<Frame> {
        let e = NewEvent::now(VEHICLE_POSITION, "t", vehicle, None, &seq);
        Frame::event(&Envelope::sequenced(seq, e))
    }

    fn v1() -> Filter {
        Filter {
            vehicle: Some("v1".into()),
            route: None,
        }
    }

    #[tokio::test]
    async fn events_the_cursor_covers_or_the_filter_rejects_are_not_sent() {
        let mut out = out(5);
        for f in [
            event(4, "v1"),
            event(5, "v1"),
            event(6, "v2"),
            event(7, "v1"),
        ] {
            out.frame(&f, &v1()).await.unwrap();
        }
        out.event(7, event(7, "v1").text.clone()).await.unwrap();
        let seqs: Vec<_> = sent(&out).iter().map(|v| v["seq"].clone()).collect();
        assert_eq!(seqs, [7]);
        assert_eq!(out.cursor.position(), 7);
    }

    #[tokio::test]
    async fn a_status_notice_carries_the_later_of_its_seq_and_the_cursor() {
        let c = Connectivity {
            circuit: Circuit::Open,
            reachable: false,
        };
        let mut out = out(10);
        out.frame(&Frame::status(8, Utc::now(), c), &v1())
            .await
            .unwrap();
        out.frame(&Frame::status(12, Utc::now(), c), &v1())
            .await
            .unwrap();
        let notices = sent(&out);
        assert_eq!(notices[0]["seq"], 10, "restated: never behind the cursor");
        assert_eq!(notices[1]["seq"], 12, "the router's routed, shared text");
        assert!(notices.iter().all(|n| n["type"] == "kafka.status"));
        assert_eq!(out.cursor.position(), 12);
    }
}

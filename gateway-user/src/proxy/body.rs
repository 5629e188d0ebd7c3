//! The response body every request ends with: it forwards frames (through an optional SSE
//! transform) and hands the finished `RequestLog` to
//! telemetry exactly once: at end of stream, on error, or when the client goes away (drop).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::body::{Body, BoxError};
use crate::ctx::{Blame, RequestLog};
use crate::llm::stream::SseTransform;
use crate::telemetry::Telemetry;

/// Called once with the finished log (telemetry, plus proxy-side bookkeeping).
pub type Finisher = Arc<dyn Fn(RequestLog) + Send + Sync>;

pub struct ObservedBody {
    inner: Body,
    log: Option<RequestLog>,
    finish: Finisher,
    transform: Option<SseTransform>,
    ended: bool,
    /// An upstream failure reported on the next poll, after hyper flushed what came before it.
    deferred: Option<BoxError>,
    /// The upstream body ended; the transform may still be finishing a guard check.
    upstream_done: bool,
}

impl ObservedBody {
    pub fn new(
        inner: Body,
        log: RequestLog,
        finish: Finisher,
        transform: Option<SseTransform>,
    ) -> Self {
        ObservedBody {
            inner,
            log: Some(log),
            finish,
            transform,
            ended: false,
            deferred: None,
            upstream_done: false,
        }
    }

    /// A guard check of the stream is in flight: drives it. `None` when there is none (read
    /// upstream), else the poll result to return.
    #[allow(clippy::type_complexity)]
    fn poll_check(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Option<Poll<Option<Result<Frame<Bytes>, BoxError>>>> {
        loop {
            let t = self.transform.as_mut().filter(|t| t.busy())?;
            let mut scratch = crate::ctx::LlmInfo::default();
            let info = match self.log.as_mut().and_then(|l| l.llm.as_mut()) {
                Some(i) => i,
                None => &mut scratch,
            };
            let out = match t.poll_resume(cx, info) {
                Poll::Pending => return Some(Poll::Pending),
                Poll::Ready(out) => out,
            };
            if t.stopped() {
                self.ended = true;
                self.complete();
                return Some(Poll::Ready((!out.is_empty()).then(|| Ok(Frame::data(out)))));
            }
            if !out.is_empty() {
                return Some(Poll::Ready(Some(Ok(Frame::data(out)))));
            }
            // Nothing for the client yet: another check may have started (loop), or not (read
            // upstream).
        }
    }

    /// Upstream ended and no check is in flight: the transform's closing bytes, the stream's
    /// completeness recorded, the log handed over.
    fn end_stream(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.ended = true;
        let mut tail = Bytes::new();
        if let Some(t) = self.transform.as_mut() {
            let mut scratch = crate::ctx::LlmInfo::default();
            let info = match self.log.as_mut().and_then(|l| l.llm.as_mut()) {
                Some(i) => i,
                None => &mut scratch,
            };
            tail = t.end(info);
            if t.stopped() {
                // Rejected at the end (text held back until then): no completion error, the
                // guard's outcome says what happened.
            } else if let Some(log) = self.log.as_mut() {
                if t.malformed() > 0 {
                    log.error.get_or_insert_with(|| {
                        format!("upstream sent {} malformed stream event(s)", t.malformed())
                    });
                    log.blame.get_or_insert(Blame::Upstream);
                }
                if !t.completed() {
                    log.error
                        .get_or_insert_with(|| "upstream stream ended before completion".into());
                    log.blame.get_or_insert(Blame::Upstream);
                }
            }
        }
        self.complete();
        if tail.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(tail))))
    }

    fn complete(&mut self) {
        if let (Some(t), Some(log)) = (self.transform.as_mut(), self.log.as_mut()) {
            t.finish(log);
        }
        if let Some(mut log) = self.log.take() {
            log.end = Some(Instant::now());
            (self.finish)(log);
        }
    }

    fn fail(&mut self, msg: String, blame: Blame) {
        if let Some(log) = self.log.as_mut() {
            if log.error.is_none() {
                log.error = Some(msg);
            }
            log.blame.get_or_insert(blame);
        }
        self.complete();
    }

    /// Fails the body on the next poll. hyper discards output it has not flushed yet when a
    /// body errors, so events that arrived together with an upstream reset would never reach
    /// the client; returning `Pending` once (with a wake-up) lets hyper flush them first.
    fn fail_after_flush(
        &mut self,
        msg: String,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Not `ended` yet: hyper would read that as a clean end of the body.
        self.fail(msg.clone(), Blame::Upstream);
        self.deferred = Some(msg.into());
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl HttpBody for ObservedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(e) = this.deferred.take() {
            this.ended = true;
            return Poll::Ready(Some(Err(e)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            if let Some(p) = this.poll_check(cx) {
                return p;
            }
            if this.upstream_done {
                return this.end_stream();
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                // Silence is bounded below: streams and plain upstream bodies come wrapped in
                // `IdleTimeout`, whose error ends up in the arm for upstream errors.
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Some(t) = this.transform.as_mut() else {
                        // hyper stops polling once a sized body is written out, so notice the
                        // end here rather than waiting for a `None` that may never be asked for.
                        if this.inner.is_end_stream() {
                            this.ended = true;
                            this.complete();
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    let data = match frame.into_data() {
                        Ok(d) => d,
                        // Trailers pass through untouched.
                        Err(f) => return Poll::Ready(Some(Ok(f))),
                    };
                    let log = this.log.as_mut();
                    let mut scratch = crate::ctx::LlmInfo::default();
                    let info = match log.and_then(|l| l.llm.as_mut()) {
                        Some(i) => i,
                        None => &mut scratch,
                    };
                    match t.data(&data, info) {
                        Ok(out) if t.stopped() => {
                            // A guard ended the stream: its error event is the last frame, and
                            // the upstream is dropped with the body.
                            this.ended = true;
                            this.complete();
                            if out.is_empty() {
                                return Poll::Ready(None);
                            }
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(e) => {
                            return this.fail_after_flush(format!("upstream stream: {e}"), cx);
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    return this.fail_after_flush(format!("upstream body: {e}"), cx);
                }
                Poll::Ready(None) => {
                    this.upstream_done = true;
                    let Some(t) = this.transform.as_mut() else {
                        return this.end_stream();
                    };
                    let mut scratch = crate::ctx::LlmInfo::default();
                    let info = match this.log.as_mut().and_then(|l| l.llm.as_mut()) {
                        Some(i) => i,
                        None => &mut scratch,
                    };
                    // The last event and the filter's end; a final guard check may start,
                    // which the top of the loop then drives.
                    let out = t.finish_input(info);
                    if t.stopped() {
                        this.ended = true;
                        this.complete();
                        return Poll::Ready((!out.is_empty()).then(|| Ok(Frame::data(out))));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        if self.transform.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        if let Some(log) = self.log.as_mut() {
            // The client went away (or the connection broke) before the body finished. Dropping
            // `inner` right after this cancels the upstream request.
            log.client_cancelled = true;
            log.error
                .get_or_insert_with(|| "client disconnected before the response completed".into());
            log.blame.get_or_insert(Blame::Client);
        }
        self.complete();
    }
}

/// An upstream body (an LLM stream or a plain `host` body) with the stream idle timeout:
/// silence longer than `idle` between frames ends it with an error, which `ObservedBody` logs
/// and blames on the upstream.
pub struct IdleTimeout {
    inner: Body,
    idle: Duration,
    /// Allocated on the first wait, re-armed (not re-allocated) after each frame.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

impl IdleTimeout {
    pub fn new(inner: Body, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            sleep: None,
            armed: false,
        }
    }
}

impl HttpBody for IdleTimeout {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                let idle = this.idle;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if !this.armed {
                    sleep.as_mut().reset(tokio::time::Instant::now() + idle);
                    this.armed = true;
                }
                ready!(sleep.as_mut().poll(cx));
                this.armed = false;
                Poll::Ready(Some(Err(format!("stream idle for {idle:?}").into())))
            }
            other => {
                this.armed = false;
                other
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Finisher that reads the upstream connection's kernel flow record (one map lookup, after
/// the response completed, off the latency path of the request) and hands the log to
/// telemetry.
pub fn finisher(
    t: Arc<Telemetry>,
    ebpf: Option<Arc<crate::ebpf::Ebpf>>,
    prices: Arc<crate::spend::Prices>,
) -> Finisher {
    Arc::new(move |mut log: RequestLog| {
        // Usage is final here, streams included: price it (once; a non-streamed response
        // was priced already, for its cost header).
        if let Some(l) = log.llm.as_mut()
            && (l.input_tokens.is_some() || l.output_tokens.is_some())
        {
            prices.price(l);
        }
        for s in std::mem::take(&mut log.settle) {
            s.settle(log.llm.as_ref());
        }
        if let (Some(e), Some(cookie)) = (&ebpf, log.upstream_cookie) {
            log.upstream_flow = e.flow_by_cookie(cookie);
            e.record_upstream_conn(cookie, log.upstream_flow.as_ref());
        }
        t.submit(log)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn silent_plain_body_ends_with_an_error_after_the_idle_timeout() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let inner = http_body_util::StreamBody::new(stream).boxed_unsync();
        let mut body = IdleTimeout::new(inner, Duration::from_millis(300));
        // Frames closer together than the timeout pass.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                .await
                .expect("send");
            let f = body.frame().await.expect("frame").expect("ok");
            assert_eq!(f.into_data().expect("data"), Bytes::from_static(b"x"));
        }
        // Then silence: an error, not a hang.
        let err = body.frame().await.expect("frame").expect_err("idle");
        assert!(err.to_string().contains("stream idle for 300ms"), "{err}");
        drop(tx);
    }
}

//! Chaining two stream translations.

use super::stream::StreamHandler;
use crate::ctx::LlmInfo;

/// Two stream handlers in series: the first's output is parsed again and fed to the second
/// (Gemini → OpenAI chat → Anthropic).
pub struct Chain {
    first: Box<dyn StreamHandler>,
    second: Box<dyn StreamHandler>,
    parser: crate::sse::SseParser,
    scratch: LlmInfo,
}

impl Chain {
    pub fn new(first: Box<dyn StreamHandler>, second: Box<dyn StreamHandler>) -> Self {
        Chain {
            first,
            second,
            parser: Default::default(),
            scratch: LlmInfo::default(),
        }
    }

    fn pump(&mut self, mid: &[u8], out: &mut bytes::BytesMut) {
        self.parser.push(mid);
        while let Ok(Some(ev)) = self.parser.next_event() {
            // The second stage observes its own input again; its counts go to scratch so the
            // request's info keeps the provider's numbers from the first stage.
            self.second.on_event(&ev, out, &mut self.scratch);
        }
    }
}

impl StreamHandler for Chain {
    fn on_event(
        &mut self,
        ev: &crate::sse::SseEvent,
        out: &mut bytes::BytesMut,
        info: &mut LlmInfo,
    ) {
        let mut mid = bytes::BytesMut::new();
        self.first.on_event(ev, &mut mid, info);
        self.scratch.input_tokens = info.input_tokens;
        self.scratch.output_tokens = info.output_tokens;
        self.scratch.cached_input_tokens = info.cached_input_tokens;
        self.pump(&mid, out);
    }

    fn on_end(&mut self, out: &mut bytes::BytesMut, info: &mut LlmInfo) {
        let mut mid = bytes::BytesMut::new();
        self.first.on_end(&mut mid, info);
        self.scratch.input_tokens = info.input_tokens;
        self.scratch.output_tokens = info.output_tokens;
        self.pump(&mid, out);
        self.second.on_end(out, &mut self.scratch);
    }

    fn completed(&self) -> bool {
        self.second.completed()
    }
}

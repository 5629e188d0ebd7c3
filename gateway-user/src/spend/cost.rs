//! A request's cost: its token counts priced by the catalog, as decimal USD.
//!
//! Token counts follow the gateway's convention (`ctx::LlmInfo`): input tokens include cache
//! reads and writes, output tokens include reasoning. Priced lines are disjoint: cache reads
//! and writes come out of input when the model prices them (else they are billed as input),
//! reasoning comes out of output and is billed at the reasoning rate (falling back to output).

use rust_decimal::Decimal;

use super::catalog::{Catalog, Money, Rates};
use crate::ctx::LlmInfo;

/// How a catalog lookup went (agentgateway's `CostLookupStatus`, its label values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupStatus {
    /// Priced.
    Exact,
    /// The model is in the catalog with no rates that apply.
    Unpriced,
    /// Not in the catalog.
    Missing,
    /// No catalog configured.
    NoCatalog,
}

impl LookupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LookupStatus::Exact => "Exact",
            LookupStatus::Unpriced => "Unpriced",
            LookupStatus::Missing => "Missing",
            LookupStatus::NoCatalog => "NoCatalog",
        }
    }
}

/// USD per line; `total()` sums them exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Breakdown {
    pub input: Decimal,
    pub output: Decimal,
    pub cache_read: Decimal,
    pub cache_write: Decimal,
    pub reasoning: Decimal,
    pub input_audio: Decimal,
    pub output_audio: Decimal,
}

impl Breakdown {
    pub fn total(&self) -> Decimal {
        self.input
            + self.output
            + self.cache_read
            + self.cache_write
            + self.reasoning
            + self.input_audio
            + self.output_audio
    }

    /// `(name, value)` in agentgateway's attribute spelling (`cacheRead`, ...), total first.
    pub fn lines(&self) -> [(&'static str, Decimal); 8] {
        [
            ("total", self.total()),
            ("input", self.input),
            ("output", self.output),
            ("cacheRead", self.cache_read),
            ("cacheWrite", self.cache_write),
            ("reasoning", self.reasoning),
            ("inputAudio", self.input_audio),
            ("outputAudio", self.output_audio),
        ]
    }
}

/// Token counts per priced line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub reasoning: u64,
}

impl Usage {
    /// Splits the record's counts into disjoint lines for `rates`.
    pub fn split(info: &LlmInfo, rates: &Rates) -> Usage {
        let mut input = info.input_tokens.unwrap_or(0);
        let mut cache_read = info.cached_input_tokens.unwrap_or(0);
        let mut cache_write = info.cache_write_tokens.unwrap_or(0);
        if rates.cache_read.is_some() {
            input = input.saturating_sub(cache_read);
        } else {
            cache_read = 0;
        }
        if rates.cache_write.is_some() {
            input = input.saturating_sub(cache_write);
        } else {
            cache_write = 0;
        }
        let reasoning = info.reasoning_tokens.unwrap_or(0);
        let output = info.output_tokens.unwrap_or(0).saturating_sub(reasoning);
        Usage {
            input,
            output,
            cache_read,
            cache_write,
            reasoning,
        }
    }
}

const PER: u64 = 1_000_000;

fn line(tokens: u64, rate: Option<Money>) -> Decimal {
    match rate {
        Some(r) if tokens > 0 => Decimal::from(tokens) * r / Decimal::from(PER),
        _ => Decimal::ZERO,
    }
}

pub fn price(rates: &Rates, u: &Usage) -> Breakdown {
    Breakdown {
        input: line(u.input, rates.input),
        output: line(u.output, rates.output),
        cache_read: line(u.cache_read, rates.cache_read),
        cache_write: line(u.cache_write, rates.cache_write),
        reasoning: line(u.reasoning, rates.reasoning.or(rates.output)),
        input_audio: Decimal::ZERO,
        output_audio: Decimal::ZERO,
    }
}

/// Catalog ids a provider's prices may be filed under: its own name, then agentgateway's
/// spelling where it differs (`gcp.gemini`, `azure`).
pub fn provider_ids(provider: &str) -> [&str; 2] {
    let alias = match provider {
        "gemini" => "gcp.gemini",
        "azure.openai" => "azure",
        "vertex" => "gcp.vertex_ai",
        "bedrock" => "aws.bedrock",
        other => other,
    };
    [provider, alias]
}

/// Prices a finished exchange: the provider's response model first, then the request model.
pub fn cost(catalog: Option<&Catalog>, info: &LlmInfo) -> (LookupStatus, Option<Breakdown>) {
    let Some(catalog) = catalog else {
        return (LookupStatus::NoCatalog, None);
    };
    let models = [
        info.response_model.as_deref(),
        info.request_model.as_deref(),
    ];
    let found = models.into_iter().flatten().find_map(|m| {
        provider_ids(&info.provider)
            .into_iter()
            .find_map(|p| catalog.get(p, m))
    });
    let Some(price_of) = found else {
        return (LookupStatus::Missing, None);
    };
    let context = info.input_tokens.unwrap_or(0);
    let rates = price_of.effective(context);
    if rates.is_empty() {
        return (LookupStatus::Unpriced, None);
    }
    let usage = Usage::split(info, &rates);
    (LookupStatus::Exact, Some(price(&rates, &usage)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn catalog() -> Catalog {
        Catalog::parse(&json!({"providers": {
            "openai": {"models": {
                "gpt-4o": {"rates": {"input": "2.50", "output": "10", "cacheRead": "1.25"}},
                "o3": {"rates": {"input": "2", "output": "8", "reasoning": "4"}},
                "free": {"rates": {}}}},
            "gcp.gemini": {"models": {"gemini-2.5-pro": {
                "rates": {"input": "1.25", "output": "10"},
                "tiers": [{"contextOver": 200000, "rates": {"input": "2.5", "output": "15"}}]}}}}}))
        .unwrap()
    }

    fn info(provider: &str, model: &str, input: u64, output: u64) -> LlmInfo {
        LlmInfo {
            provider: provider.into(),
            request_model: Some(model.into()),
            input_tokens: Some(input),
            output_tokens: Some(output),
            ..Default::default()
        }
    }

    #[test]
    fn prices_exactly_with_cache_and_reasoning_lines() {
        let c = catalog();
        let mut i = info("openai", "gpt-4o", 1000, 500);
        i.cached_input_tokens = Some(400);
        let (s, b) = cost(Some(&c), &i);
        let b = b.unwrap();
        assert_eq!(s, LookupStatus::Exact);
        // 600 × 2.5 + 400 × 1.25 + 500 × 10, per million.
        assert_eq!(b.input, d("0.0015"));
        assert_eq!(b.cache_read, d("0.0005"));
        assert_eq!(b.output, d("0.005"));
        assert_eq!(b.total(), d("0.007"));
        let mut i = info("openai", "o3", 0, 100);
        i.reasoning_tokens = Some(40);
        let b = cost(Some(&c), &i).1.unwrap();
        assert_eq!((b.output, b.reasoning), (d("0.00048"), d("0.00016")));
    }

    #[test]
    fn lookup_order_tiers_and_statuses() {
        let c = catalog();
        // The response model wins; the request model is the fallback.
        let mut i = info("openai", "gpt-4o", 1_000_000, 0);
        i.response_model = Some("gpt-4o-2024-08-06".into());
        assert_eq!(cost(Some(&c), &i).1.unwrap().total(), d("2.5"));
        i.response_model = Some("o3".into());
        assert_eq!(cost(Some(&c), &i).1.unwrap().total(), d("2"));
        // agentgateway's provider id for Gemini, and its context tiers.
        let b = cost(Some(&c), &info("gemini", "gemini-2.5-pro", 200_001, 0))
            .1
            .unwrap();
        assert_eq!(b.input, d("0.5000025"));
        assert_eq!(
            cost(Some(&c), &info("openai", "nope", 1, 1)).0,
            LookupStatus::Missing
        );
        assert_eq!(
            cost(Some(&c), &info("openai", "free", 1, 1)).0,
            LookupStatus::Unpriced
        );
        assert_eq!(
            cost(None, &info("openai", "gpt-4o", 1, 1)).0,
            LookupStatus::NoCatalog
        );
    }
}

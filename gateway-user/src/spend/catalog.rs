//! `config.modelCatalog`: prices per provider and model, as agentgateway's `Catalog` writes
//! them (`providers.<id>.models.<model>.rates` / `.tiers`, rates in USD per 1M tokens as
//! decimal strings). Sources are merged in order, later ones winning per model and rate.
//!
//! Parsing walks a JSON value (a file, an inline string, or inline YAML turned into JSON) so
//! every error names where it is: `providers.openai.models.gpt-4o.rates.input: ...`.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

/// USD per 1M tokens, at most 6 decimal places (agentgateway's `Money`).
pub type Money = Decimal;

/// Rates a model charges; `None` is unpriced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    pub input: Option<Money>,
    pub output: Option<Money>,
    pub cache_read: Option<Money>,
    pub cache_write: Option<Money>,
    /// Falls back to `output`.
    pub reasoning: Option<Money>,
    /// Falls back to `input`.
    pub input_audio: Option<Money>,
    /// Falls back to `output`.
    pub output_audio: Option<Money>,
}

const RATE_KEYS: [&str; 7] = [
    "input",
    "output",
    "cacheRead",
    "cacheWrite",
    "reasoning",
    "inputAudio",
    "outputAudio",
];

impl Rates {
    fn slot(&mut self, key: &str) -> Option<&mut Option<Money>> {
        Some(match key {
            "input" => &mut self.input,
            "output" => &mut self.output,
            "cacheRead" => &mut self.cache_read,
            "cacheWrite" => &mut self.cache_write,
            "reasoning" => &mut self.reasoning,
            "inputAudio" => &mut self.input_audio,
            "outputAudio" => &mut self.output_audio,
            _ => return None,
        })
    }

    /// `self` with every rate `over` sets replaced.
    pub fn overlay(&self, over: &Rates) -> Rates {
        let pick = |a: Option<Money>, b: Option<Money>| b.or(a);
        Rates {
            input: pick(self.input, over.input),
            output: pick(self.output, over.output),
            cache_read: pick(self.cache_read, over.cache_read),
            cache_write: pick(self.cache_write, over.cache_write),
            reasoning: pick(self.reasoning, over.reasoning),
            input_audio: pick(self.input_audio, over.input_audio),
            output_audio: pick(self.output_audio, over.output_audio),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Rates::default()
    }
}

/// Rates that apply once the context (input tokens, cache included) exceeds `context_over`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tier {
    pub context_over: u64,
    pub rates: Rates,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelPrice {
    pub rates: Rates,
    /// Ascending `context_over`.
    pub tiers: Vec<Tier>,
}

impl ModelPrice {
    /// The base rates with the highest tier the context exceeds laid over them.
    pub fn effective(&self, context_tokens: u64) -> Rates {
        match self
            .tiers
            .iter()
            .rev()
            .find(|t| context_tokens > t.context_over)
        {
            Some(t) => self.rates.overlay(&t.rates),
            None => self.rates.clone(),
        }
    }
}

/// The merged catalog: provider id → model id → price.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    pub providers: BTreeMap<String, HashMap<String, ModelPrice>>,
}

impl Catalog {
    pub fn get(&self, provider: &str, model: &str) -> Option<&ModelPrice> {
        self.providers.get(provider)?.get(model)
    }

    pub fn models(&self) -> usize {
        self.providers.values().map(HashMap::len).sum()
    }

    /// Lays `over` on `self`: per model, rates merge and non-empty tiers replace.
    pub fn merge(&mut self, over: Catalog) {
        for (pid, models) in over.providers {
            let base = self.providers.entry(pid).or_default();
            for (mid, m) in models {
                match base.get_mut(&mid) {
                    Some(b) => {
                        b.rates = b.rates.overlay(&m.rates);
                        if !m.tiers.is_empty() {
                            b.tiers = m.tiers;
                        }
                    }
                    None => {
                        base.insert(mid, m);
                    }
                }
            }
        }
    }

    /// Parses one catalog document. Errors name the path inside it.
    pub fn parse(v: &Value) -> Result<Catalog, String> {
        let top = object(v, "")?;
        let mut out = Catalog::default();
        for (k, pv) in top {
            if k != "providers" {
                return Err(format!("{k}: unknown field (expected `providers`)"));
            }
            for (pid, p) in object(pv, "providers")? {
                let ppath = format!("providers.{pid}");
                let models = out.providers.entry(pid.clone()).or_default();
                for (pk, mv) in object(p, &ppath)? {
                    if pk != "models" {
                        return Err(format!("{ppath}.{pk}: unknown field (expected `models`)"));
                    }
                    for (mid, m) in object(mv, &format!("{ppath}.models"))? {
                        let mpath = format!("{ppath}.models.{mid}");
                        models.insert(mid.clone(), model(m, &mpath)?);
                    }
                }
            }
        }
        Ok(out)
    }
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a serde_json::Map<String, Value>, String> {
    v.as_object().ok_or_else(|| {
        let at = if path.is_empty() { "catalog" } else { path };
        format!("{at}: expected a mapping, got {v}")
    })
}

fn model(v: &Value, path: &str) -> Result<ModelPrice, String> {
    let mut m = ModelPrice::default();
    for (k, f) in object(v, path)? {
        match k.as_str() {
            "rates" => m.rates = rates(f, &format!("{path}.rates"))?,
            "tiers" => {
                let list = f
                    .as_array()
                    .ok_or_else(|| format!("{path}.tiers: expected a list, got {f}"))?;
                for (i, t) in list.iter().enumerate() {
                    let tpath = format!("{path}.tiers[{i}]");
                    let obj = object(t, &tpath)?;
                    let over = obj
                        .get("contextOver")
                        .ok_or_else(|| format!("{tpath}.contextOver: missing"))?;
                    let context_over = over.as_u64().ok_or_else(|| {
                        format!("{tpath}.contextOver: expected a whole number, got {over}")
                    })?;
                    if let Some(prev) = m.tiers.last()
                        && context_over <= prev.context_over
                    {
                        return Err(format!(
                            "{tpath}.contextOver: {context_over} is not greater than the tier before ({})",
                            prev.context_over
                        ));
                    }
                    let r = obj
                        .get("rates")
                        .ok_or_else(|| format!("{tpath}.rates: missing"))?;
                    if let Some(k) = obj.keys().find(|k| *k != "contextOver" && *k != "rates") {
                        return Err(format!("{tpath}.{k}: unknown field"));
                    }
                    m.tiers.push(Tier {
                        context_over,
                        rates: rates(r, &format!("{tpath}.rates"))?,
                    });
                }
            }
            // Free-form labels; nothing here reads them.
            "tags" => {}
            other => return Err(format!("{path}.{other}: unknown field")),
        }
    }
    Ok(m)
}

fn rates(v: &Value, path: &str) -> Result<Rates, String> {
    let mut r = Rates::default();
    for (k, f) in object(v, path)? {
        let slot = r.slot(k).ok_or_else(|| {
            format!(
                "{path}.{k}: unknown rate (expected one of {})",
                RATE_KEYS.join(", ")
            )
        })?;
        if !f.is_null() {
            *slot = Some(money(f).map_err(|e| format!("{path}.{k}: {e}"))?);
        }
    }
    Ok(r)
}

/// A decimal string (agentgateway's form) or a plain number, non-negative, at most 6
/// decimal places.
pub fn money(v: &Value) -> Result<Money, String> {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(format!(
                "expected a decimal rate such as \"2.50\", got {other}"
            ));
        }
    };
    let d = Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| format!("{text:?} is not a decimal number"))?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(format!("{text:?} is negative"));
    }
    if d.scale() > 6 {
        return Err(format!("{text:?} has more than 6 decimal places"));
    }
    Ok(d.normalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn parses_agentgateway_catalog_shape() {
        let c = Catalog::parse(&json!({"providers": {"openai": {"models": {
            "gpt-4o": {"rates": {"input": "2.50", "output": "10", "cacheRead": "1.25"},
                       "tiers": [{"contextOver": 200000, "rates": {"input": "5"}}],
                       "tags": ["chat"]}
        }}}}))
        .unwrap();
        let m = c.get("openai", "gpt-4o").unwrap();
        assert_eq!(m.rates.input, Some(d("2.5")));
        assert_eq!(m.effective(200_000).input, Some(d("2.5")));
        assert_eq!(m.effective(200_001).input, Some(d("5")));
        assert_eq!(m.effective(200_001).output, Some(d("10")));
    }

    #[test]
    fn errors_name_the_path() {
        let e = Catalog::parse(&json!({"providers": {"openai": {"models": {
            "gpt-4o": {"rates": {"input": "cheap"}}}}}}))
        .unwrap_err();
        assert_eq!(
            e,
            "providers.openai.models.gpt-4o.rates.input: \"cheap\" is not a decimal number"
        );
        let e = Catalog::parse(
            &json!({"providers": {"a": {"models": {"m": {"rates": {"inptu": "1"}}}}}}),
        )
        .unwrap_err();
        assert!(
            e.starts_with("providers.a.models.m.rates.inptu: unknown rate"),
            "{e}"
        );
        let e = Catalog::parse(
            &json!({"providers": {"a": {"models": {"m": {"rates": {"input": "-1"}}}}}}),
        )
        .unwrap_err();
        assert!(e.ends_with("is negative"), "{e}");
        let e = Catalog::parse(&json!({"providers": {"a": {"models": {"m": {"tiers": [
            {"contextOver": 10, "rates": {}}, {"contextOver": 10, "rates": {}}]}}}}}))
        .unwrap_err();
        assert!(
            e.starts_with("providers.a.models.m.tiers[1].contextOver"),
            "{e}"
        );
        assert!(money(&json!("0.0000001")).is_err());
        assert_eq!(money(&json!(0.15)).unwrap(), d("0.15"));
    }

    #[test]
    fn later_sources_win_per_rate() {
        let mut a = Catalog::parse(&json!({"providers": {"openai": {"models": {
            "m": {"rates": {"input": "1", "output": "2"}}}}}}))
        .unwrap();
        let b = Catalog::parse(&json!({"providers": {"openai": {"models": {
            "m": {"rates": {"output": "3"}}, "n": {"rates": {"input": "4"}}}}}}))
        .unwrap();
        a.merge(b);
        let m = a.get("openai", "m").unwrap();
        assert_eq!(
            (m.rates.input, m.rates.output),
            (Some(d("1")), Some(d("3")))
        );
        assert_eq!(a.models(), 2);
    }
}
